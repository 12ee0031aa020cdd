/**
 * Scripted evaluation: runs N episodes of a policy against a robot through a
 * `PolicyClient`, and says how they went (`EvaluationResult`: per episode and
 * in aggregate, a typed value that is also JSON).
 *
 * An episode: reset the robot, start the action dispatcher, then loop: take a
 * fresh observation, ask the policy for a chunk (an Effect, fast or slow), put
 * the chunk (by default `time-aligned`: its actions are placed on the ticks
 * after the observation it was computed from, late ones dropped), and wait for
 * the refill signal (fewer than `refillBelow` actions waiting) before the next
 * observation. So inference overlaps the execution of the previous chunk's
 * last actions, and the robot does not stop while the policy thinks. With
 * `maxSteps`, a chunk is cut to the steps left, and the policy is asked again
 * only when what waits falls short of them: the last steps cost no inference
 * they cannot use.
 *
 * It ends on the first of: `maxSteps` actions sent, `maxDuration` passed, the
 * server's `terminated` or `truncated`, or the user's `until` predicate (which
 * sees the server's `info`). Whatever ends it, or an interruption, the
 * dispatcher is stopped and the queue cleared before the next reset.
 *
 * How the runner learns `terminated`/`truncated`/`reward`/`info`: the modern
 * protocol's replies carry them nowhere but in an observation's `extra` (the
 * legacy `step_response` has them as fields, but `apply_action` gets no
 * reply). So a server states them there, under the same names:
 * `extra = { reward: number, terminated: boolean, truncated: boolean, info: {…} }`
 * (`chiral serve --task` does; a Python server can put the same keys in the
 * `extra` of its observations). `status` reads another convention. The
 * reset's own `info` is kept in the result as `resetInfo`.
 */
import type { Observation, UserMap } from "@chiral/protocol"
import { Data, Duration, Effect, Option, Stream, SubscriptionRef } from "effect"
import type { Action } from "./Action.js"
import { type ChunkMode, lateAt, obsTime } from "./ActionPlan.js"
import { captureTime } from "./CameraState.js"
import * as EvaluationProgress from "./EvaluationProgress.js"
import { type Episode, type EpisodeEnd, type EvaluationResult, percentiles, summarize } from "./EvaluationResult.js"
import { timestampsOf } from "./ObservationStream.js"
import type { PolicyClientApi } from "./PolicyClient.js"
import { RequestError } from "./RequestError.js"

/** What the server says of the episode (see the module's note on where it travels). */
export interface EpisodeStatus {
  readonly reward: number
  readonly terminated: boolean
  readonly truncated: boolean
  readonly info: UserMap
}

const isMap = (u: unknown): u is UserMap =>
  typeof u === "object" && u !== null && !Array.isArray(u) && !ArrayBuffer.isView(u)

/** The status in an observation's `extra` (`reward`, `terminated`, `truncated`, `info`); undefined when it has none. */
export const statusOf = (obs: Observation): EpisodeStatus | undefined => {
  const extra = obs.extra
  if (!("terminated" in extra || "truncated" in extra || "reward" in extra)) return undefined
  const reward = typeof extra["reward"] === "number" || typeof extra["reward"] === "bigint" ? Number(extra["reward"]) : 0
  return {
    reward,
    terminated: extra["terminated"] === true,
    truncated: extra["truncated"] === true,
    info: isMap(extra["info"]) ? extra["info"] : {}
  }
}

/** What the policy is told with each observation. */
export interface PolicyContext {
  /** 1, 2, … */
  readonly episode: number
  /** Policy calls so far in this episode. */
  readonly inference: number
  /** Actions sent so far in this episode. */
  readonly sent: number
  /** Seconds since the reset answered. */
  readonly elapsed: number
}

/** A policy: an observation to a chunk of actions (rows of D values). */
export type Policy<E = never, R = never> = (
  obs: Observation,
  context: PolicyContext
) => Effect.Effect<Iterable<Action>, E, R>

export interface EvaluationOptions<E = never, R = never> {
  /** Number of episodes (≥ 1). */
  readonly episodes: number
  readonly policy: Policy<E, R>
  /** Action rate (Hz): one action per tick. */
  readonly hz: number
  /** End an episode once this many actions were sent. */
  readonly maxSteps?: number | undefined
  /** End an episode after this long. */
  readonly maxDuration?: Duration.Input | undefined
  /** End an episode when this holds for an observation (with the server's status, if any). */
  readonly until?: ((obs: Observation, status: EpisodeStatus | undefined, context: PolicyContext) => boolean) | undefined
  /**
   * How chunks join the waiting actions (`ActionPlan`). Default `time-aligned`
   * (`append` when observations carry no camera, so no time).
   */
  readonly mode?: ChunkMode | undefined
  /** The low-water mark: the next inference starts when fewer actions wait. Default half the first chunk. */
  readonly refillBelow?: number | undefined
  /**
   * Also request observations at this rate, so a `terminated` is seen within
   * 1/obsHz s instead of at the next inference. Default: none.
   */
  readonly obsHz?: number | undefined
  /** Reads the server's status from an observation. Default `statusOf` (`extra`). */
  readonly status?: ((obs: Observation) => EpisodeStatus | undefined) | undefined
  /** Progress: a line on stderr when it is a terminal (default), none (false), or your own. */
  readonly progress?: boolean | EvaluationProgress.EvaluationProgress | undefined
  /** Told each episode's result as soon as it is known (an interrupted run keeps those). */
  readonly onEpisode?: ((result: Episode) => Effect.Effect<void>) | undefined
}

/**
 * An evaluation that stopped before its last episode finished: `cause` is
 * why (the policy's error, or a `RequestError`: the connection gone, a request
 * timed out, a chunk refused as `Malformed`), `episode` the episode it
 * stopped in (1, 2, …; that episode has no result), and `result` the results
 * of the episodes finished before it, summed up over them alone: what a
 * finished evaluation of those episodes would have returned.
 */
export class EvaluationError<E = never> extends Data.TaggedError("EvaluationError")<{
  readonly cause: E | RequestError
  readonly episode: number
  readonly result: EvaluationResult
}> {
  override get message(): string {
    const why = this.cause instanceof Error ? this.cause.message : String(this.cause)
    const finished = this.result.episodes.length
    return `evaluation stopped in episode ${this.episode}: ${why}; ${finished} episode${finished === 1 ? "" : "s"} finished before (error.result)`
  }
}

const check = (options: EvaluationOptions<unknown, unknown>): string | undefined => {
  if (!(Number.isInteger(options.episodes) && options.episodes >= 1)) return `episodes must be an integer ≥ 1, got ${options.episodes}`
  if (!(Number.isFinite(options.hz) && options.hz > 0)) return `hz must be a positive number, got ${options.hz}`
  if (options.maxSteps !== undefined && !(Number.isInteger(options.maxSteps) && options.maxSteps >= 1)) {
    return `maxSteps must be an integer ≥ 1, got ${options.maxSteps}`
  }
  if (options.refillBelow !== undefined && !(Number.isInteger(options.refillBelow) && options.refillBelow >= 1)) {
    return `refillBelow must be an integer ≥ 1, got ${options.refillBelow}`
  }
  if (options.obsHz !== undefined && !(Number.isFinite(options.obsHz) && options.obsHz > 0)) {
    return `obsHz must be a positive number, got ${options.obsHz}`
  }
  return undefined
}

const progressOf = (options: EvaluationOptions<unknown, unknown>): EvaluationProgress.EvaluationProgress =>
  typeof options.progress === "object"
    ? options.progress
    : options.progress === false
    ? EvaluationProgress.none
    : EvaluationProgress.terminal({
      episodes: options.episodes,
      maxSteps: options.maxSteps,
      maxSeconds: options.maxDuration === undefined
        ? undefined
        : Duration.toSeconds(Duration.fromInputUnsafe(options.maxDuration))
    })

/**
 * Runs `options.episodes` episodes on `client` and returns their results.
 * It reads the robot's metadata first (`getMetadata`), so that every action
 * the policy returns is checked against the robot's action shape before it
 * is queued (a chunk of another width fails `Malformed`, nothing of it sent);
 * a robot that does not answer it stops the evaluation before its first
 * episode (`EvaluationError`, episode 1, no results). An episode that fails
 * (the policy's error, or a `RequestError`: a request timed out, the
 * connection is gone, or the policy's chunk held a value that is not finite:
 * `Malformed`, nothing of it sent) stops the evaluation with an
 * `EvaluationError` that carries that cause and the results of the episodes
 * finished before it. Dies with a RangeError on options that make no sense.
 * Interrupting it ends the current episode cleanly (dispatch stopped, queue
 * cleared); `onEpisode` has been told of every finished episode.
 */
export const runEpisodes = <E = never, R = never>(
  client: PolicyClientApi,
  options: EvaluationOptions<E, R>
): Effect.Effect<EvaluationResult, EvaluationError<E>, R> =>
  Effect.suspend(() => {
    const invalid = check(options as EvaluationOptions<unknown, unknown>)
    if (invalid !== undefined) return Effect.die(new RangeError(`runEpisodes: ${invalid}`))
    const progress = progressOf(options as EvaluationOptions<unknown, unknown>)
    return Effect.gen(function*() {
      const episodes: Array<Episode> = []
      const ages: Array<number> = []
      const inferences: Array<number> = []
      const finished = (): EvaluationResult => ({ episodes: [...episodes], summary: summarize(episodes, { ages, inferences }) })
      yield* client.getMetadata.pipe(
        Effect.mapError((cause) => new EvaluationError<E>({ cause, episode: 1, result: finished() }))
      )
      for (let episode = 1; episode <= options.episodes; episode++) {
        const run = yield* runEpisode(client, options, episode, progress).pipe(
          Effect.mapError((cause) => new EvaluationError<E>({ cause, episode, result: finished() }))
        )
        episodes.push(run.result)
        ages.push(...run.ages)
        inferences.push(...run.inferences)
        progress.episodeDone(run.result)
        if (options.onEpisode !== undefined) yield* options.onEpisode(run.result)
      }
      return finished()
    }).pipe(Effect.ensuring(Effect.sync(() => progress.done())))
  })

/** One episode: its result and its raw timing samples (ms). */
const runEpisode = <E, R>(
  client: PolicyClientApi,
  options: EvaluationOptions<E, R>,
  episode: number,
  progress: EvaluationProgress.EvaluationProgress
) =>
  Effect.gen(function*() {
    const reset = yield* client.reset
    const started = yield* captureTime
    const base = yield* SubscriptionRef.get(client.dispatched)
    const lateBefore = (yield* client.droppedActions).late
    const ages = yield* collectAges(client, base)
    const state: EpisodeState = {
      episode,
      started,
      base,
      inferences: [],
      status: (options.status ?? statusOf)(reset.obs),
      ending: undefined,
      sent: () => SubscriptionRef.getUnsafe(client.dispatched) - base
    }
    const stop = Effect.andThen(
      Effect.andThen(client.stopActionDispatch, client.clearActions),
      options.obsHz === undefined ? Effect.void : client.stopObsStream
    )
    const end = yield* Effect.gen(function*() {
      yield* client.clearActions
      yield* client.startActionDispatch(options.hz)
      if (options.obsHz !== undefined) yield* client.startObsStream(options.obsHz)
      return yield* Effect.raceAllFirst(endings(client, options, state, reset.obs, progress))
    }).pipe(Effect.ensuring(stop))

    // The status after the last action (the task may have been reached by
    // it); but an episode the server ended keeps the status that ended it,
    // since what a server says after its episode's end (the next episode's
    // start, say) is no longer about it.
    observe(options, state, yield* client.getObs)
    const steps = (yield* SubscriptionRef.get(client.dispatched)) - base
    const samples = yield* ages.collected(base + steps)
    const status = state.ending ?? state.status
    const success = typeof status?.info["success"] === "boolean"
      ? status.info["success"]
      : status?.terminated === true && !status.truncated
    const result: Episode = {
      episode,
      end,
      success,
      reward: status?.reward ?? 0,
      steps,
      duration: (yield* captureTime) - started,
      inferences: state.inferences.length,
      inferenceMillis: percentiles(state.inferences),
      actionAgeMillis: percentiles(samples),
      late: (yield* client.droppedActions).late - lateBefore,
      info: status?.info ?? {},
      resetInfo: reset.info
    }
    return { result, ages: samples, inferences: state.inferences }
  }).pipe(Effect.scoped)

interface EpisodeState {
  readonly episode: number
  readonly started: number
  readonly base: number
  /** Time per policy call (ms). */
  readonly inferences: Array<number>
  /** The server's latest status. */
  status: EpisodeStatus | undefined
  /** The first status that said `terminated` or `truncated`. */
  ending: EpisodeStatus | undefined
  /** Actions sent so far in this episode. */
  readonly sent: () => number
}

const contextOf = (state: EpisodeState, now: number): PolicyContext => ({
  episode: state.episode,
  inference: state.inferences.length,
  sent: state.sent(),
  elapsed: now - state.started
})

/** Takes in an observation: the server's status, and whether it ends the episode. */
const observe = (
  options: Pick<EvaluationOptions, "status" | "until">,
  state: EpisodeState,
  obs: Observation,
  now?: number
): EpisodeEnd | undefined => {
  const status = (options.status ?? statusOf)(obs)
  if (status !== undefined) {
    state.status = status
    if (status.terminated || status.truncated) state.ending ??= status
    if (status.terminated) return "terminated"
    if (status.truncated) return "truncated"
  }
  if (options.until !== undefined && now !== undefined && options.until(obs, status, contextOf(state, now))) {
    return "predicate"
  }
  return undefined
}

/** Everything that can end the episode, to race: the first to finish says why (or fails it). */
const endings = <E, R>(
  client: PolicyClientApi,
  options: EvaluationOptions<E, R>,
  state: EpisodeState,
  first: Observation,
  progress: EvaluationProgress.EvaluationProgress
): Array<Effect.Effect<EpisodeEnd, E | RequestError, R>> => {
  const all: Array<Effect.Effect<EpisodeEnd, E | RequestError, R>> = [
    inferenceLoop(client, options, state, first),
    // observations from any request (the obs stream's too) may carry the end
    client.observations.pipe(
      Stream.mapEffect((obs) => Effect.map(captureTime, (now) => observe(options, state, obs, now))),
      Stream.filter((end): end is EpisodeEnd => end !== undefined),
      Stream.runHead,
      Effect.flatMap(Option.match({ onNone: () => Effect.never, onSome: Effect.succeed }))
    ),
    Effect.andThen(
      client.awaitDisconnect,
      Effect.fail(new RequestError({ request: "evaluation", reason: "Disconnected", detail: "the connection is gone" }))
    ),
    // progress, never the winner
    Effect.flatMap(captureTime, (now) => Effect.sync(() => progress.update(state.episode, state.sent(), now - state.started))).pipe(
      Effect.andThen(Effect.sleep("100 millis")),
      Effect.forever
    )
  ]
  const maxSteps = options.maxSteps
  if (maxSteps !== undefined) {
    all.push(
      SubscriptionRef.changes(client.dispatched).pipe(
        Stream.takeUntil((n) => n - state.base >= maxSteps),
        Stream.runDrain,
        Effect.as("steps" as const)
      )
    )
  }
  if (options.maxDuration !== undefined) all.push(Effect.as(Effect.sleep(options.maxDuration), "time" as const))
  return all
}

/**
 * Observation → policy → put → wait until more actions are needed → the next
 * fresh observation; ends only when an observation ends the episode (the
 * other endings race it).
 */
const inferenceLoop = <E, R>(
  client: PolicyClientApi,
  options: EvaluationOptions<E, R>,
  state: EpisodeState,
  first: Observation
): Effect.Effect<EpisodeEnd, E | RequestError, R> =>
  Effect.gen(function*() {
    let obs = first
    let refillBelow = options.refillBelow
    for (;;) {
      const asked = yield* captureTime
      const end = observe(options, state, obs, asked)
      if (end !== undefined) return end
      const chunk = Array.from(yield* options.policy(obs, contextOf(state, asked)))
      state.inferences.push(((yield* captureTime) - asked) * 1000)
      refillBelow ??= Math.max(1, Math.floor(chunk.length / 2))
      yield* putChunk(client, options, state, obs, chunk)
      yield* awaitNeed(client, options.maxSteps, state, refillBelow)
      obs = yield* client.getObs
    }
  })

/**
 * Actions on their way: those waiting and those sent. The two counts move at
 * different moments of a tick (an action leaves the queue, then is being
 * sent, then is counted sent), and a reading in between can count an action
 * twice or not at all; so the reading is repeated, letting the dispatcher
 * finish its tick, until two agree.
 */
const committed = (client: PolicyClientApi, state: EpisodeState) => {
  const read = Effect.map(client.pendingActions, (pending) => ({ pending, sent: state.sent() }))
  return Effect.gen(function*() {
    let last = yield* read
    for (let i = 0; i < 8; i++) {
      yield* Effect.yieldNow
      const next = yield* read
      if (next.pending === last.pending && next.sent === last.sent) break
      last = next
    }
    return last
  })
}

/**
 * Waits until the policy must be asked again: fewer than `refillBelow`
 * actions wait and, with `maxSteps`, those waiting fall short of it (one was
 * dropped, or the last chunk could not fill it). Without that second
 * condition the last steps of an episode would call the policy in a loop,
 * since what waits for them is below the mark by nature.
 */
const awaitNeed = (client: PolicyClientApi, maxSteps: number | undefined, state: EpisodeState, refillBelow: number) => {
  const below = Effect.asVoid(client.refill.awaitBelow(refillBelow))
  if (maxSteps === undefined) return below
  // re-judged whenever an action leaves or is dropped
  return Effect.andThen(
    below,
    Stream.merge(client.refill.changes, SubscriptionRef.changes(client.dispatched)).pipe(
      Stream.mapEffect(() => committed(client, state)),
      Stream.filter(({ pending, sent }) => pending < refillBelow && pending + sent < maxSteps),
      Stream.runHead,
      Effect.asVoid
    )
  )
}

/**
 * Puts the policy's chunk, never more than `maxSteps` can take: of what
 * already waits, a chunk supersedes everything (`replace`), merges with it
 * (blend) or, timed, replaces it from its first slot on (`time-aligned`), so
 * only `append` must leave room for it. An action still being sent is
 * counted whatever the mode.
 */
const putChunk = <E, R>(
  client: PolicyClientApi,
  options: EvaluationOptions<E, R>,
  state: EpisodeState,
  obs: Observation,
  chunk: ReadonlyArray<Action>
): Effect.Effect<void, RequestError> =>
  Effect.gen(function*() {
    const obsTimestamps = timestampsOf(Option.some(obs))
    const observed = obsTime(obsTimestamps)
    // On this machine's clock: the robot's may be another machine's (RobotClock).
    const t0 = observed === undefined ? undefined : observed + (yield* client.clockOffset)
    const mode = options.mode ?? (t0 === undefined ? "append" : "time-aligned")
    const put = (actions: ReadonlyArray<Action>) =>
      actions.length === 0 ? Effect.void : client.putActions(actions, { mode, obsTimestamps: t0 === undefined ? undefined : obsTimestamps })
    const maxSteps = options.maxSteps
    if (maxSteps === undefined) return yield* put(chunk)
    const room = Effect.gen(function*() {
      const { pending, sent } = yield* committed(client, state)
      const inFlight = Math.max(0, pending - (yield* client.refill.pending))
      return maxSteps - sent - (mode === "append" ? pending : inFlight)
    })
    if (t0 === undefined || mode === "append" || mode === "replace") return yield* put(chunk.slice(0, Math.max(0, yield* room)))
    yield* putTimed(options.hz, t0, chunk, room, put)
  })

/**
 * A timed chunk within `room` actions. Its first action on time is due in
 * the slot under way, whose tick may already have gone: then it will be
 * dropped, and an action still waiting from an earlier chunk may go on that
 * tick instead. Either way that tick sends at most one of them, and each
 * later action has a tick of its own, so a chunk of `room` actions from its
 * first on time never overruns. When `room` cuts the chunk short (the last
 * steps), the put waits for that slot to end: otherwise a put landing just
 * after its tick, as one woken by that tick does, loses its only action every
 * time, and the policy is asked again and again for it.
 */
const putTimed = (
  hz: number,
  t0: number,
  chunk: ReadonlyArray<Action>,
  room: Effect.Effect<number, RequestError>,
  put: (actions: ReadonlyArray<Action>) => Effect.Effect<void, RequestError>
) =>
  Effect.gen(function*() {
    const period = 1 / hz
    const late = lateAt(t0, period, yield* captureTime, chunk.length)
    if (chunk.length - late < (yield* room)) return yield* put(chunk)
    const slotEnd = t0 + late * period + period / 2
    yield* Effect.sleep(Duration.millis(Math.max(0, Math.ceil((slotEnd - (yield* captureTime)) * 1000))))
    const left = yield* room
    if (left <= 0) return
    yield* put(chunk.slice(0, lateAt(t0, period, yield* captureTime, chunk.length) + left))
  })

/**
 * Collects, from when it is called, the age (ms) of each action the client
 * sends; `collected(count)` waits until the action numbered `count` (or a
 * later one) was seen, then gives the samples.
 */
const collectAges = (client: PolicyClientApi, base: number) =>
  Effect.gen(function*() {
    const samples: Array<number> = []
    const seen = yield* SubscriptionRef.make(base)
    yield* client.actionTimings.pipe(
      Stream.runForEach((t) =>
        Effect.suspend(() => {
          if (t.count <= base) return Effect.void
          if (t.age !== undefined) samples.push(t.age * 1000)
          return SubscriptionRef.set(seen, t.count)
        })
      ),
      Effect.forkScoped({ startImmediately: true })
    )
    // subscribed before the dispatcher starts
    for (let i = 0; i < 4; i++) yield* Effect.yieldNow
    return {
      collected: (count: number) =>
        SubscriptionRef.changes(seen).pipe(
          Stream.takeUntil((n) => n >= count),
          Stream.runDrain,
          Effect.as(samples)
        )
    }
  })
