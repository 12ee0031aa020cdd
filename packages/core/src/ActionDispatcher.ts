/**
 * The policy side's actions: a queue of them and a dispatcher that sends one
 * `apply_action` per tick of a fixed grid. Actions bypass the request slot
 * (`apply_action` has no reply), so a tick never waits behind an observation
 * still in transit. Each action carries the camera timestamps its chunk came
 * with (`PutOptions.obsTimestamps`), or else those of the latest observation.
 *
 * The waiting actions are an `ActionPlan` (chunk modes: append, replace,
 * time-aligned, blend; late actions dropped, never sent late). When the
 * transport offers a dispatcher on a thread of its own (`OffThreadDispatch`;
 * the WebSocket and Zenoh clients do), the plan and the ticks live there, out
 * of reach of this thread's pauses, and what it reports is tracked here: the
 * count sent, the waiting actions (the refill signal), what was dropped, and
 * the timing of each action.
 *
 * Actions never outlive their connection: the plan belongs to one connection
 * (`attach`), and when that connection is gone (`detach`) whatever still waits
 * is dropped, counted (`dropped().disconnected`) and reported in one log line;
 * the next connection starts with an empty plan, and a running dispatch
 * carries on there at the same rate. While there is no connection, `put`,
 * `putAll` and `send` fail with a `Disconnected` `RequestError`: nothing is
 * queued that could only be sent late. Nor are actions computed from an
 * earlier connection's observation put or sent on a later one
 * (`DispatchContext.fromEarlierConnection`): they are dropped, counted
 * (`dropped().earlierConnection`) and said once per connection. Nor are
 * actions sent to a robot that has left a request unanswered beyond its
 * limit (`RobotSilence`): those due are dropped (`dropped().robotSilent`),
 * said when it begins and when the robot answers again. Nor are actions
 * planned before a reset sent after it (`ResetFence`): what waits when a reset
 * begins is dropped (`dropForReset`), and so is what is put or sent while it is
 * under way, or stamped before its observation (`dropped().reset`, said once
 * per reset). Nor are actions that waited through a stall of the dispatcher's
 * thread (a tick that ran `stallSeconds` or more after its grid time: the
 * process was stopped, or starved of CPU): the untimed ones waiting then are
 * dropped at that tick (`dropped().stalled`, said once per stall; timed ones
 * go by their slots). Nor is an action whose size is not the one the robot's
 * metadata gives (`DispatchContext.actionShape`): refused as `Malformed`, as
 * a non-finite one is.
 * `dispatched` counts actions handed to a live connection.
 */
import { encodeFrame, type Observation, type ObsTimestamps, type Tensor } from "@chiral/protocol"
import {
  Cause,
  Deferred,
  Duration,
  Effect,
  Exit,
  FiberHandle,
  Option,
  PubSub,
  Queue,
  type Scope,
  Semaphore,
  Stream,
  SubscriptionRef
} from "effect"
import { type Action, toTensor } from "./Action.js"
import { type Drops, noDrops, obsTime, portable, stallSeconds, validate } from "./ActionPlan.js"
import * as ActionQueue from "./ActionQueue.js"
import * as ActionSpec from "./ActionSpec.js"
import * as Cadence from "./Cadence.js"
import { captureTime } from "./CameraState.js"
import type { Link } from "./ClientConnection.js"
import { timestampsOf } from "./ObservationStream.js"
import type { OffThreadDispatch } from "./OffThreadDispatch.js"
import type { ResetFence } from "./ResetFence.js"
import * as ThreadPriority from "./ThreadPriority.js"
import * as RefillSignal from "./RefillSignal.js"
import * as SilenceReport from "./SilenceReport.js"
import { RequestError } from "./RequestError.js"
import { disconnected } from "./RequestSlot.js"

/** One action as it left the client. */
export interface ActionTiming {
  /** Actions this client has sent so far, this one included. */
  readonly count: number
  /** When it left the client (s, capture clock: `CameraState.captureTime`). */
  readonly sentAt: number
  /** The time of the observation it was stamped with (s, its newest camera timestamp); undefined if none. */
  readonly obsTime: number | undefined
  /**
   * How old that observation was when the action left: sentAt − obsTime (s),
   * with obsTime moved to this machine's clock when the robot's is another
   * (`RobotClock`).
   */
  readonly age: number | undefined
}

/**
 * What the client dropped: the plan's drops, the actions still waiting when
 * their connection went, those computed from an earlier connection's
 * observation, and those planned before a reset.
 */
export interface ClientDrops extends Drops {
  readonly disconnected: number
  /**
   * Put or sent on a connection after the one whose observation they were
   * computed from (`ObservationStream.fromEarlierConnection`): never sent.
   */
  readonly earlierConnection: number
  /**
   * Planned before a reset (`ResetFence`): still waiting when the reset
   * began, put or sent while it was under way, or stamped with an
   * observation before the reset's. Never sent after the reset request.
   */
  readonly reset: number
}

/**
 * The first of `actions` (as the float32 tensors that travel) with a value
 * that is not finite (NaN, ±Infinity, or beyond float32's range), as the
 * error that refuses the whole put: a motor must never be sent it, and a
 * server that does not check (the Python reference's does not) would apply it.
 */
const nonFiniteIn = (actions: ReadonlyArray<Tensor>): RequestError | undefined => {
  for (let k = 0; k < actions.length; k++) {
    const why = ActionSpec.problem(actions[k]!, undefined)
    if (why !== undefined) {
      return new RequestError({
        request: "apply_action",
        reason: "Malformed",
        detail: `${actions.length === 1 ? "the action" : `action ${k}`}: ${why}; nothing was queued or sent`
      })
    }
  }
  return undefined
}

/**
 * The first of `actions` that is not an action of the robot's, as the error
 * that refuses the whole put: `[D]`, or `[n, D]` with 1 ≤ n ≤ the metadata's
 * N (`action_shape [1, 7]`: one row). A reference server hands the robot
 * whatever it reads, reshaped as its header says (the Python one applied 8
 * values to a 7-joint arm, and would hand a `[2, 7]` action to a handler
 * written for one row of 7). `last`: how the refusal ends.
 */
const wrongSizeIn = (
  actions: ReadonlyArray<Tensor>,
  expected: ActionSpec.MetadataShape | undefined,
  request: string,
  last: string
): RequestError | undefined => {
  if (expected === undefined) return undefined
  const [rows, size] = expected.shape
  for (let k = 0; k < actions.length; k++) {
    const shape = actions[k]!.shape
    const fits = shape.length === 1
      ? shape[0] === size
      : shape.length === 2 && shape[1] === size && shape[0]! >= 1 && shape[0]! <= rows
    if (fits) continue
    return new RequestError({
      request,
      reason: "Malformed",
      detail: `${actions.length === 1 ? "the action" : `action ${k}`} has shape [${shape.join(", ")}], ` +
        `the robot's metadata says ${expected.said}: [${size}]${
          rows === 1 ? ` or [1, ${size}]` : ` or [n, ${size}] with n from 1 to ${rows}`
        } per action; ${last}`
    })
  }
  return undefined
}

/** One connection's plan and dispatch. */
export interface LinkDispatcher {
  /** Where the ticks run, for logs. */
  readonly where: string
  /** Sends one action now (no reply). */
  readonly send: (action: Action) => Effect.Effect<void, RequestError>
  /** Puts a chunk; dies with a RangeError for one that cannot be put. */
  readonly put: (chunk: Iterable<Action>, options: ActionQueue.PutOptions) => Effect.Effect<void>
  readonly pending: Effect.Effect<number>
  readonly clear: Effect.Effect<void>
  readonly start: (hz: number) => Effect.Effect<void>
  readonly stop: Effect.Effect<void>
  /** Stops the ticks and empties the plan: how many actions were dropped. */
  readonly drop: Effect.Effect<number>
  /** Empties the plan, the ticks going on: how many actions it held. */
  readonly discard: Effect.Effect<number>
  /** What its plan dropped (late, replaced, overflow, robotSilent, stalled). */
  readonly dropped: Effect.Effect<Drops>
}

export interface ActionDispatcher {
  /** Sends one `apply_action` now (no reply). */
  readonly send: (action: Action) => Effect.Effect<void, RequestError>
  readonly put: (action: Action, options?: Omit<ActionQueue.PutOptions, "mode">) => Effect.Effect<void, RequestError>
  /**
   * Puts a chunk: appends it (default), replaces every waiting action, or
   * aligns it in time / blends it (`ActionQueue.PutOptions`, `ActionPlan`).
   * Dies with a RangeError for a chunk that cannot be put.
   */
  readonly putAll: (
    chunk: Iterable<Action>,
    options?: ActionQueue.PutMode | ActionQueue.PutOptions
  ) => Effect.Effect<void, RequestError>
  readonly pending: Effect.Effect<number>
  readonly clear: Effect.Effect<void>
  /** Sends one queued action per tick (1/hz s, fixed grid); replaces a running dispatcher. */
  readonly start: (hz: number) => Effect.Effect<void>
  readonly stop: Effect.Effect<void>
  /**
   * A reset has begun (its `ResetFence` is open): drops what waits on the
   * live connection, counts it (`dropped().reset`) and says so. An action
   * being handed to the connection at that moment (a tick's, `send`'s) is
   * handed over first, so it leaves before the reset request; a put under way
   * reaches the plan first, and is dropped with it.
   */
  readonly dropForReset: Effect.Effect<void>
  /** How many actions have been handed to a live connection (once `stop` has returned, every one sent). */
  readonly dispatched: SubscriptionRef.SubscriptionRef<number>
  /** The waiting actions as they change, and the low-water mark. */
  readonly refill: RefillSignal.RefillSignal
  /** What was dropped so far, over every connection. */
  readonly dropped: Effect.Effect<ClientDrops>
  /** One element per action sent, as it leaves (a subscriber that falls 4096 behind loses the oldest). */
  readonly timings: Stream.Stream<ActionTiming>
  /**
   * Builds the plan and dispatch of a new connection (in its scope); a running
   * dispatch starts there. `silence`: the connection's `RobotSilence` cell,
   * if the actions due while the robot is silent are to be dropped.
   */
  readonly attach: (link: Link, silence?: Float64Array) => Effect.Effect<LinkDispatcher, never, Scope.Scope>
  /**
   * The robot answered after leaving a request unanswered `silentFor` s, more
   * than its limit: if actions were dropped meanwhile, says so.
   */
  readonly robotAnswered: (silentFor: number) => Effect.Effect<void>
  /**
   * The live connection's first frame arrived: the server let it in. Until a
   * connection is, the warnings said on the ones turned away are not repeated.
   */
  readonly heard: () => void
  /**
   * The connection of `link` is gone: drops what waits, counts and logs it
   * (`repeated`: the server refused it as it refused the one before, which
   * was said: a debug line then).
   */
  readonly detach: (link: LinkDispatcher, reason: string, final: boolean, repeated: boolean) => Effect.Effect<void>
}

export interface DispatchContext {
  readonly latestObs: SubscriptionRef.SubscriptionRef<Option.Option<Observation>>
  /** The robot's clock as this machine's: what to add to an observation's time (s). */
  readonly clockOffset: () => number
  /** Actions that may wait; beyond it the oldest are dropped. */
  readonly capacity: number
  /** The live connection's dispatcher (undefined from the moment the connection is known gone). */
  readonly current: () => LinkDispatcher | undefined
  /** Why there is no live connection, for the errors of calls made meanwhile. */
  readonly why: () => string
  /** Why actions stamped so were computed from an earlier connection's observation, if they were (see `ObservationStream`). */
  readonly fromEarlierConnection: (stamps: ObsTimestamps | undefined) => string | undefined
  /** The resets: what was planned before one is not sent after it. */
  readonly resetFence: ResetFence
  /** The actions' shape as the robot's metadata gives it, if it was read; actions of another size are refused. */
  readonly actionShape: () => ActionSpec.MetadataShape | undefined
}

const timing = (count: number, sentAt: number, observed: number | undefined, clockOffset: number): ActionTiming => ({
  count,
  sentAt,
  obsTime: observed,
  age: observed === undefined ? undefined : sentAt - (observed + clockOffset)
})

const optionsOf = (options: ActionQueue.PutMode | ActionQueue.PutOptions | undefined): ActionQueue.PutOptions =>
  typeof options === "string" ? { mode: options } : options ?? {}

/**
 * What a chunk is put with: the robot clock's offset, and, for an `append` or
 * `replace` chunk put without timestamps, those of the latest observation at
 * the put. Its actions then carry the newest observation they could have
 * been computed from, not a later one that arrives while they wait: a plan
 * runs no longer than the server's `maxActionAge` allows after it. (The
 * references stamp each action with the latest observation when it is sent.)
 */
const putOptions = (given: ActionQueue.PutOptions, context: DispatchContext): ActionQueue.PutOptions => {
  const untimed = given.mode === undefined || given.mode === "append" || given.mode === "replace"
  const latest = SubscriptionRef.getUnsafe(context.latestObs)
  const obsTimestamps = given.obsTimestamps === undefined && untimed && Option.isSome(latest)
    ? timestampsOf(latest)
    : given.obsTimestamps
  return { ...given, obsTimestamps, clockOffset: context.clockOffset() }
}

const addDrops = (a: Drops, b: Drops): Drops => ({
  late: a.late + b.late,
  replaced: a.replaced + b.replaced,
  overflow: a.overflow + b.overflow,
  robotSilent: a.robotSilent + b.robotSilent,
  stalled: a.stalled + b.stalled
})

/** How long dropping waits for an off-thread dispatcher to answer. */
const dropTimeout = Duration.seconds(1)

/**
 * Actions sent, counted synchronously where they are sent or reported, and
 * published in `dispatched`: by the sending fiber, or (for an off-thread
 * dispatcher, whose reports arrive outside any fiber) by a fiber woken per
 * report, and by `sync` once a request to the worker has returned, so that
 * after `stop` the count includes every action the worker sent. Each
 * connection's worker counts from 0; those of earlier connections stay counted.
 */
const makeCount = Effect.gen(function*() {
  const dispatched = yield* SubscriptionRef.make(0)
  let here = 0
  let offThread = 0
  let earlierWorkers = 0
  const total = () => here + offThread
  // read under the ref's lock: concurrent publications cannot go backwards
  const sync = SubscriptionRef.update(dispatched, () => total())
  return {
    dispatched,
    sync,
    /** One more sent from this thread: its number. */
    sentHere: () => ++here + offThread,
    /** A new connection's worker, which counts from 0. */
    newWorker: () => {
      earlierWorkers = offThread
    },
    /** The current worker has sent `count` in all: the total. */
    sentOffThread: (count: number) => {
      offThread = earlierWorkers + count
      return total()
    }
  }
})

type Count = Effect.Success<typeof makeCount>

/** What the dispatchers of every connection share: the counts, the refill signal, the timings. */
interface Shared {
  readonly context: DispatchContext
  readonly count: Count
  readonly refill: RefillSignal.SettableRefillSignal
  readonly timings: PubSub.PubSub<ActionTiming>
  /** What is dropped and said while the robot is silent. */
  readonly silence: SilenceReport.SilenceReport
  /**
   * Held while an action is handed over on this thread (a put into the plan,
   * a send, a tick's take and send) and while a reset empties the plan: an
   * action that passed the reset's check before the reset began reaches the
   * plan before it is emptied, or the connection before the reset request,
   * whatever fiber yields in between.
   */
  readonly handOff: Semaphore.Semaphore
}

/** Sends over `link` (stamped `stamp`, or with the latest observation's); `at`: when it was taken (s). */
const sender = (link: Link, shared: Shared) => (action: Tensor, stamp: ObsTimestamps | undefined, at?: number) =>
  Effect.suspend((): Effect.Effect<void, RequestError> => {
    const lost = link.lost()
    if (lost !== undefined) return Effect.fail(disconnected("apply_action", lost))
    const obsTimestamps = stamp ?? timestampsOf(SubscriptionRef.getUnsafe(shared.context.latestObs))
    const frame = encodeFrame({ type: "apply_action", action, obsTimestamps })
    return link.connection.send(frame).pipe(
      Effect.mapError((error) => disconnected("apply_action", error.message)),
      Effect.andThen(at === undefined ? captureTime : Effect.succeed(at)),
      Effect.flatMap((sentAt) =>
        PubSub.publish(
          shared.timings,
          timing(shared.count.sentHere(), sentAt, obsTime(obsTimestamps), shared.context.clockOffset())
        )
      ),
      Effect.andThen(shared.count.sync)
    )
  })

/**
 * Whether a send that ended with `exit` lost its action to the connection's
 * end: it failed as Disconnected, or it was interrupted (the loop stopped
 * because the connection went) while the connection was already lost. A send
 * interrupted on a live connection was handed to it and goes out.
 */
const wasCutOff = (exit: Exit.Exit<void, RequestError>, link: Link): boolean => {
  if (Exit.isSuccess(exit)) return false
  if (Cause.hasInterruptsOnly(exit.cause)) return link.lost() !== undefined
  return Cause.findErrorOption(exit.cause).pipe(Option.exists((error) => error.reason === "Disconnected"))
}

/** "1 action", "3 actions"; with `kind`, "3 queued actions". */
const actionCount = (n: number, kind = "") => `${n} ${kind === "" ? "" : `${kind} `}action${n === 1 ? "" : "s"}`

/**
 * Says what a stalled dispatcher dropped (`Drops.stalled`): one warning per
 * stall, as its plan's count grows (it grows only at a tick that ran
 * `stallSeconds` or more late). One per connection's plan, whose count starts at 0.
 */
const stallReport = (where: string, cause: string) => {
  let said = 0
  return (total: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (total <= said) return Effect.void
      const count = total - said
      said = total
      return Effect.logWarning(
        `chiral: action dispatch ${where} did not run for over ${stallSeconds} s (${cause}): ` +
          `${actionCount(count)} planned before it dropped (waiting, or put since from an older ` +
          `observation; counted in droppedActions().stalled); actions planned after it go on`
      )
    })
}

/**
 * The plan and ticks on this thread, in a fiber of the connection's scope.
 * The loop ends quietly when the connection goes: `detach` says so, with
 * what it dropped.
 */
const onThisThread = (
  link: Link,
  shared: Shared,
  silence: Float64Array | undefined
): Effect.Effect<LinkDispatcher, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* ActionQueue.make(shared.context.capacity, shared.refill, silence)
    const stalled = stallReport("on this thread", "this process was stopped, or this thread blocked or starved of CPU")
    // A tick that sent nothing may have dropped its action for a silent robot,
    // or what waited for a stall.
    const sentNothing = Effect.flatMap(queue.dropped, (dropped) =>
      Effect.andThen(
        silence === undefined ? Effect.void : shared.silence.planDropped(dropped.robotSilent),
        stalled(dropped.stalled)
      ))
    const running = yield* FiberHandle.make<void, never>()
    const sendTensor = sender(link, shared)
    // Taken from the plan, but the connection went before it was written (or
    // while it was: a send cut short by the connection's end counts here too).
    let unsent = 0
    // Taken from the plan and being written: counted as pending until it is
    // counted as sent, so pending + dispatched never misses it.
    let writing = 0
    /**
     * One dispatch loop. The grid's origin is its first tick (`Cadence.fixed`
     * anchors it there); a tick's grid time is its slot's (`Cadence.fixed`
     * tells it), however late it runs: a tick whose timer fired a second or
     * more after it (this thread blocked, the process stopped) finds the
     * actions waiting planned before that (`ActionPlan.take`: `stalled`).
     */
    const loop = (period: Duration.Duration) =>
      Effect.suspend(() => {
        const seconds = Duration.toSeconds(period)
        let origin: number | undefined
        const takeAndSend = (gridTime: number) =>
          Effect.flatMap(queue.takeAtTick(gridTime), (next) =>
            Option.isNone(next) ? sentNothing : Effect.suspend(() => {
              writing++
              return sendTensor(next.value.action, next.value.obsTimestamps, next.value.at).pipe(
                Effect.onExit((exit) =>
                  Effect.sync(() => {
                    writing--
                    if (wasCutOff(exit, link)) unsent++
                  })
                )
              )
            }))
        // The origin is read before the permit: a first tick that waits for it
        // (a sendAction under way) must not shift the grid late.
        const tick = (slot: number) =>
          Effect.flatMap(captureTime, (now) => {
            origin ??= now
            return shared.handOff.withPermit(takeAndSend(origin + slot * seconds))
          })
        return Effect.asVoid(Cadence.untilDisconnected("action dispatch", tick, period))
      })
    return {
      where: "on this thread",
      send: (action) => Effect.suspend(() => sendTensor(toTensor(action), undefined)),
      put: (chunk, options) => Effect.asVoid(queue.putAll(chunk, options)),
      pending: Effect.map(queue.size, (waiting) => waiting + writing),
      clear: queue.clear,
      discard: Effect.flatMap(queue.size, (waiting) => Effect.as(queue.clear, waiting)),
      start: (hz) =>
        Effect.flatMap(Cadence.periodOf(hz), (period) =>
          Effect.andThen(queue.setRate(hz), FiberHandle.run(running)(loop(period)))).pipe(Effect.asVoid),
      stop: FiberHandle.clear(running),
      drop: Effect.gen(function*() {
        yield* FiberHandle.clear(running)
        const waiting = yield* queue.size
        yield* queue.clear
        const dropped = waiting + unsent
        unsent = 0
        return dropped
      }),
      dropped: queue.dropped
    }
  })

/**
 * The plan and ticks on the transport's thread. What it reports is tracked
 * here: sends counted, the waiting actions in the refill signal and timings
 * published at once (synchronous).
 */
const offThreadOf = (
  link: Link,
  offThread: OffThreadDispatch,
  shared: Shared,
  silence: Float64Array | undefined
): Effect.Effect<LinkDispatcher, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { count, refill, timings } = shared
    count.newWorker()
    let dropped: Drops = noDrops
    // Reports arrive outside any fiber: fibers say what they show of a silent
    // robot, and of a stall of the worker's thread.
    const silentDrops = silence === undefined ? undefined : yield* Queue.sliding<number>(1)
    const stalledDrops = yield* Queue.sliding<number>(1)
    offThread.onQueue((state) => {
      if (silentDrops !== undefined && state.dropped.robotSilent > dropped.robotSilent) {
        Queue.offerUnsafe(silentDrops, state.dropped.robotSilent)
      }
      if (state.dropped.stalled > dropped.stalled) Queue.offerUnsafe(stalledDrops, state.dropped.stalled)
      dropped = state.dropped
      refill.set(state.pending)
    })
    if (silence !== undefined) {
      yield* Queue.take(silentDrops!).pipe(Effect.flatMap(shared.silence.planDropped), Effect.forever, Effect.forkScoped)
      offThread.watchSilence(silence)
    }
    const stalled = stallReport("on its worker thread", "this process was stopped, or starved of CPU")
    yield* Queue.take(stalledDrops).pipe(Effect.flatMap(stalled), Effect.forever, Effect.forkScoped)
    const wake = yield* Queue.sliding<void>(1)
    offThread.onDispatched((sent, at, _due, observed) => {
      const total = count.sentOffThread(sent)
      Queue.offerUnsafe(wake, undefined)
      PubSub.publishUnsafe(timings, timing(total, at / 1000, observed, shared.context.clockOffset()))
    })
    yield* Queue.take(wake).pipe(Effect.andThen(count.sync), Effect.forever, Effect.forkScoped)
    const obtained = yield* Deferred.make<ThreadPriority.Obtained>()
    offThread.onPriority((got) => Deferred.doneUnsafe(obtained, Effect.succeed(got)))
    yield* Deferred.await(obtained).pipe(
      // Debug: a line per connection would crowd the output of tools that connect often.
      Effect.flatMap((got) => Effect.logDebug(`action dispatch: its worker thread runs ${ThreadPriority.describe(got)}`)),
      Effect.forkScoped
    )
    const sendTensor = sender(link, shared)
    const capacity = shared.context.capacity
    return {
      where: "on its worker thread",
      send: (action) => Effect.suspend(() => sendTensor(toTensor(action), undefined)),
      put: (chunk, options) =>
        Effect.suspend(() => {
          const { clockOffset, mode = "append", obsTimestamps } = options
          const actions = Array.from(chunk, toTensor)
          const crossing = portable(mode, actions.length)
          // refused here, as the fiber dispatcher would (the worker refuses only blends of mismatched shapes)
          const invalid = validate({ actions: [], mode: crossing, obsTimestamps })
          if (invalid !== undefined) return Effect.die(new RangeError(invalid))
          return offThread.put(actions, { mode: crossing, obsTimestamps, clockOffset }, capacity)
        }),
      // The worker answers after the reports of every action it took from the
      // queue before: once `dispatched` has them too, `pending` + `dispatched`
      // never misses an action in flight between the two.
      pending: Effect.tap(offThread.pending, () => count.sync),
      clear: offThread.clear,
      discard: offThread.discard,
      start: (hz) =>
        Effect.flatMap(Cadence.periodOf(hz), (period) =>
          Effect.suspend(() => {
            // A new connection's worker has seen no observation yet.
            offThread.observed(timestampsOf(SubscriptionRef.getUnsafe(shared.context.latestObs)))
            return offThread.start(Duration.toMillis(period))
          })),
      stop: Effect.andThen(offThread.stop, count.sync),
      drop: Effect.flatMap(offThread.drop, (n) => Effect.as(count.sync, n)),
      dropped: Effect.sync(() => dropped)
    }
  })

/**
 * What outlives each connection's dispatcher: the rate asked for, the newest
 * connection's dispatcher, and what the dispatchers of earlier connections dropped.
 */
interface Across {
  rate: number | undefined
  // The newest connection's dispatcher, from `attach` on (its connection is
  // published a moment later): a rate set in between must reach it.
  attached: LinkDispatcher | undefined
  // What the plans of earlier connections dropped, and what was still waiting when they went.
  earlier: Drops
  disconnectedDrops: number
  // Refused as computed from an earlier connection's observation; whether the live connection has said so yet.
  earlierConnectionDrops: number
  earlierConnectionLogged: boolean
  // Planned before a reset; the reset (`ResetFence.resets`) whose refusals were said last.
  resetDrops: number
  resetLogged: number
  // Whether anything has arrived on the newest connection (true before the first).
  heard: boolean
}

/** A new connection's dispatcher, on the transport's thread if it has one; started at the rate asked for. */
const attachTo = (shared: Shared, across: Across) => (link: Link, silence?: Float64Array) =>
  Effect.gen(function*() {
    // After a connection the server turned away (never heard from), what was
    // said is not said again at every attempt: only once one is let in.
    const fresh = across.heard
    across.heard = false
    shared.silence.attach(silence, fresh)
    const dispatcher = link.offThread === undefined
      ? yield* onThisThread(link, shared, silence)
      : yield* offThreadOf(link, link.offThread, shared, silence)
    across.attached = dispatcher
    if (fresh) across.earlierConnectionLogged = false
    if (across.rate !== undefined) yield* dispatcher.start(across.rate)
    return dispatcher
  })

/**
 * A connection's dispatcher ends: what it still held is dropped and counted,
 * and the stop logged with it (unless nothing was dispatching or waiting).
 */
const detachFrom = (shared: Shared, across: Across) =>
(link: LinkDispatcher, reason: string, final: boolean, repeated: boolean) =>
  Effect.gen(function*() {
    const count = yield* link.drop.pipe(Effect.timeoutOrElse({ duration: dropTimeout, orElse: () => Effect.succeed(0) }))
    across.earlier = addDrops(across.earlier, yield* link.dropped)
    across.disconnectedDrops += count
    if (across.attached === link) across.attached = undefined
    shared.refill.set(0)
    const drops = count === 0 ? "" : `; ${actionCount(count, "queued")} dropped`
    if (reason === "the client is closed") {
      if (count > 0) yield* Effect.logWarning(`chiral: the client closed${drops}`)
      return
    }
    const { rate } = across
    if (rate === undefined && count === 0) return
    const resumes = rate === undefined || final ? "" : `; dispatch resumes at ${rate} Hz on the next connection`
    const log = repeated && count === 0 ? Effect.logDebug : Effect.logWarning
    yield* log(`chiral: action dispatch ${link.where} stopped: ${reason}${drops}${resumes}`)
  })

/**
 * `count` actions computed from an earlier connection's observation:
 * dropped, counted, and said once per connection (a policy stuck on an old
 * observation would otherwise log at every put).
 */
const refuseFromEarlierConnectionOf = (across: Across) => (count: number, why: string) =>
  Effect.suspend(() => {
    across.earlierConnectionDrops += count
    if (across.earlierConnectionLogged) return Effect.void
    across.earlierConnectionLogged = true
    return Effect.logWarning(
      `chiral: ${actionCount(count)} dropped, computed from an observation of an earlier ` +
        `connection (the robot may have restarted): ${why}. Further ones on this connection are counted in ` +
        `droppedActions().earlierConnection`
    )
  })

type Refuse = ReturnType<typeof refuseFromEarlierConnectionOf>

/**
 * `count` actions put or sent, planned before a reset: dropped, counted, and
 * said once per reset.
 */
const refuseBeforeResetOf = (across: Across, fence: ResetFence) => (count: number, why: string) =>
  Effect.suspend(() => {
    across.resetDrops += count
    const reset = fence.resets()
    if (across.resetLogged === reset) return Effect.void
    across.resetLogged = reset
    return Effect.logWarning(
      `chiral: ${actionCount(count)} dropped, planned before the reset (${why}). Further ones are counted in ` +
        `droppedActions().reset`
    )
  })

/**
 * What waits when a reset begins: dropped, counted and said, with the
 * permit, so that no action being handed over is cut in two by it.
 */
const dropForResetOf = (shared: Shared, across: Across) =>
  shared.handOff.withPermit(Effect.suspend(() => {
    const live = shared.context.current()
    if (live === undefined) return Effect.void
    return Effect.flatMap(live.discard, (count) => {
      across.resetDrops += count
      return count === 0
        ? Effect.void
        : Effect.logInfo(`chiral: reset: ${actionCount(count, "queued")} dropped: planned before the reset`)
    })
  }))

type RefuseBeforeReset = ReturnType<typeof refuseBeforeResetOf>

/** `use` on the live connection's dispatcher, or `Disconnected` at once. */
const onLive = (context: DispatchContext) => <A>(use: (link: LinkDispatcher) => Effect.Effect<A, RequestError>) =>
  Effect.suspend(() => {
    const live = context.current()
    return live === undefined ? Effect.fail(disconnected("apply_action", context.why())) : use(live)
  })

/** Why `actions` must not be queued or sent at all (not finite, or not the robot's size), or undefined. */
const malformedIn = (actions: ReadonlyArray<Tensor>, context: DispatchContext): RequestError | undefined =>
  nonFiniteIn(actions) ??
    wrongSizeIn(actions, context.actionShape(), "apply_action", "nothing was queued or sent")

/**
 * A chunk onto the live connection's plan: refused if not finite or not the
 * robot's size; dropped if from an earlier connection, or planned before a
 * reset. Judged and put with the hand-off permit (see `Shared.handOff`).
 */
const putAllOf = (shared: Shared, refuse: Refuse, refuseBeforeReset: RefuseBeforeReset) =>
(
  chunk: Iterable<Action>,
  options?: ActionQueue.PutMode | ActionQueue.PutOptions
): Effect.Effect<void, RequestError> =>
  Effect.suspend(() => {
    const context = shared.context
    // Converted once: the links take float32 tensors as they are.
    const actions = Array.from(chunk, toTensor)
    const refused = malformedIn(actions, context)
    if (refused !== undefined) return Effect.fail(refused)
    return shared.handOff.withPermit(onLive(context)((link) => {
      const put = putOptions(optionsOf(options), context)
      const earlier = context.fromEarlierConnection(put.obsTimestamps)
      const beforeReset = earlier === undefined ? context.resetFence.plannedBefore(put.obsTimestamps) : undefined
      if (earlier === undefined && beforeReset === undefined) return link.put(actions, put)
      // a chunk that cannot be put dies as it would on the link, dropped or not
      const invalid = validate({ actions: [], mode: put.mode ?? "append", obsTimestamps: put.obsTimestamps })
      if (invalid !== undefined) return Effect.die(new RangeError(invalid))
      return earlier !== undefined ? refuse(actions.length, earlier) : refuseBeforeReset(actions.length, beforeReset!)
    }))
  })

/**
 * One action now: refused if not finite or not the robot's size; dropped if
 * from an earlier connection, planned before a reset, or while the robot is
 * silent. Judged and sent with the hand-off permit.
 */
const sendOf = (shared: Shared, refuse: Refuse, refuseBeforeReset: RefuseBeforeReset) => (action: Action) =>
  Effect.suspend(() => {
    const context = shared.context
    const tensor = toTensor(action)
    const refused = malformedIn([tensor], context)
    if (refused !== undefined) return Effect.fail(refused)
    return shared.handOff.withPermit(onLive(context)((link) => {
      const earlier = context.fromEarlierConnection(undefined)
      if (earlier !== undefined) return refuse(1, earlier)
      // stamped with the latest observation at the send, as `sender` does
      const beforeReset = context.resetFence.plannedBefore(timestampsOf(SubscriptionRef.getUnsafe(context.latestObs)))
      if (beforeReset !== undefined) return refuseBeforeReset(1, beforeReset)
      return Effect.flatMap(shared.silence.refuseSend, (silent) => (silent ? Effect.void : link.send(tensor)))
    }))
  })

/** What was dropped so far, over every connection. */
const droppedOf = (shared: Shared, across: Across): Effect.Effect<ClientDrops> =>
  Effect.suspend(() =>
    Effect.map(across.attached?.dropped ?? Effect.succeed(noDrops), (current) => ({
      ...addDrops(addDrops(across.earlier, current), { ...noDrops, robotSilent: shared.silence.outsidePlans() }),
      disconnected: across.disconnectedDrops,
      earlierConnection: across.earlierConnectionDrops,
      reset: across.resetDrops
    }))
  )

/** The robot answered after a silence: said, with exact counts, before the watch is cleared (`SilenceReport`). */
const robotAnsweredOf = (shared: Shared, across: Across) => (silentFor: number) =>
  Effect.suspend(() => {
    const link = across.attached
    if (link === undefined) return Effect.void
    // `pending` first: a worker answers it once every tick before it is reported
    const planTotal = Effect.andThen(link.pending, Effect.map(link.dropped, (dropped) => dropped.robotSilent))
    return shared.silence.answered(silentFor, planTotal, link.discard)
  })

export const make = (context: DispatchContext): Effect.Effect<ActionDispatcher, never, Scope.Scope> =>
  Effect.gen(function*() {
    const across: Across = {
      rate: undefined,
      attached: undefined,
      earlier: noDrops,
      disconnectedDrops: 0,
      earlierConnectionDrops: 0,
      earlierConnectionLogged: false,
      resetDrops: 0,
      resetLogged: 0,
      heard: true
    }
    const shared: Shared = {
      context,
      count: yield* makeCount,
      refill: yield* RefillSignal.make(0),
      timings: yield* PubSub.sliding<ActionTiming>(4096),
      silence: SilenceReport.make(),
      handOff: yield* Semaphore.make(1)
    }
    const refuse = refuseFromEarlierConnectionOf(across)
    const refuseBeforeReset = refuseBeforeResetOf(across, context.resetFence)
    const putAll = putAllOf(shared, refuse, refuseBeforeReset)
    return {
      send: sendOf(shared, refuse, refuseBeforeReset),
      put: (action, options) => putAll([action], { obsTimestamps: options?.obsTimestamps }),
      putAll,
      pending: Effect.suspend(() => context.current()?.pending ?? Effect.succeed(0)),
      clear: Effect.suspend(() => context.current()?.clear ?? Effect.void),
      start: (hz) =>
        Effect.andThen(
          Cadence.periodOf(hz),
          Effect.suspend(() => {
            across.rate = hz
            return across.attached?.start(hz) ?? Effect.void
          })
        ),
      stop: Effect.suspend(() => {
        across.rate = undefined
        return across.attached?.stop ?? Effect.void
      }),
      dropForReset: dropForResetOf(shared, across),
      dispatched: shared.count.dispatched,
      refill: shared.refill,
      dropped: droppedOf(shared, across),
      timings: Stream.fromPubSub(shared.timings),
      attach: attachTo(shared, across),
      robotAnswered: robotAnsweredOf(shared, across),
      heard: () => {
        across.heard = true
        shared.silence.heard()
      },
      detach: detachFrom(shared, across)
    }
  })
