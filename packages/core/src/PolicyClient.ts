/**
 * The policy side: requests (metadata, reset, observation, legacy step), a
 * background observation stream, and a queue of actions dispatched at a fixed
 * rate. The service composes its concerns, each a module of its own:
 *  - `ClientConnection`: connecting (retrying while nobody answers), reading,
 *    noticing the connection is gone, reconnecting on a `Schedule`; what is
 *    built on a connection lives and dies with it;
 *  - `RequestSlot`: one request in flight per connection, replies matched by
 *    order and type, late replies dropped;
 *  - `ObservationStream`: the latest observation, a stream of them, and the
 *    fixed-rate request loop;
 *  - `ActionDispatcher`: the action queue and its fixed-rate dispatch, on this
 *    thread or on the transport's own (`OffThreadDispatch`); queued actions
 *    never outlive their connection;
 *  - `ResetFence`: what was planned before a reset is not sent after it.
 */
import { type DecodeLimits, type Message, type Observation, type Tensor, type UserMap, warmYoungGeneration } from "@chiral/protocol"
import { Context, Duration, Effect, Layer, Option, type Scope, type Stream, SubscriptionRef } from "effect"
import { type Action, type ActionChunk, chunkToTensor } from "./Action.js"
import * as ActionDispatcher from "./ActionDispatcher.js"
import { obsTime } from "./ActionPlan.js"
import * as ActionQueue from "./ActionQueue.js"
import * as ActionSpec from "./ActionSpec.js"
import { captureTime } from "./CameraState.js"
import * as ClientConnection from "./ClientConnection.js"
import * as ObservationStream from "./ObservationStream.js"
import type * as RefillSignal from "./RefillSignal.js"
import { RequestError } from "./RequestError.js"
import * as RequestSlot from "./RequestSlot.js"
import * as ResetFence from "./ResetFence.js"
import * as RobotClock from "./RobotClock.js"
import * as RobotSilence from "./RobotSilence.js"
import { ClientTransport } from "./Transport.js"
import type { TransportError } from "./TransportError.js"

export type ConnectionState = ClientConnection.ConnectionState

/**
 * What a client accepts from a server by default: anything a reference
 * server can send. Headers up to the wire's own bound (a u32 `header_len`;
 * the Python client has no cap, and a robot description in `metadata` can
 * take megabytes), nesting up to 1024 levels (the Python msgpack reader's
 * limit; its writer stops at 511). A server keeps tighter limits against its
 * clients (`PolicyServer`'s `decodeLimits`).
 */
export const clientDecodeLimits: DecodeLimits = {
  maxHeaderBytes: 0xffff_ffff,
  maxDepth: 1024,
  maxFrameBytes: Number.POSITIVE_INFINITY
}

export interface PolicyClientOptions {
  /** How long getMetadata, getObs and step wait for their answer (the wait for the slot included). Default 30 s. */
  readonly requestTimeout?: Duration.Input | undefined
  /** How long reset waits (robots can take a while to reset). Default 5 minutes. */
  readonly resetTimeout?: Duration.Input | undefined
  /** Pause between attempts at the first connection while the server is not up. Default 100 ms. */
  readonly retryInterval?: Duration.Input | undefined
  /**
   * How long making the client may wait for its first connection, attempts
   * and handshakes included (the transport is told the time left); past it,
   * making the client fails with the last attempt's `TransportError`
   * (`Silent` when something accepted the connection but never completed the
   * handshake). Default: no limit, as the references wait. Either way a
   * host name that does not exist is not waited for: making the client fails
   * at once with an `InvalidAddress` `TransportError` that names the host
   * and the resolver's answer (`unresolved`, code `ENOTFOUND`); one the
   * resolver cannot answer for now (`EAI_AGAIN`) is retried, with a warning.
   */
  readonly openTimeout?: Duration.Input | undefined
  /**
   * Reconnecting after a connection is lost. Default: on, at once and then
   * with exponential backoff from 100 ms capped at 1 s
   * (`ClientConnection.defaultReconnect`), for as long as it takes; `false`:
   * the client is `closed` with its first connection. A connection the robot
   * refuses (1008: its `onConnect` failed; 1013: try again later, a recording
   * proxy whose robot is not up) counts as a failed attempt, so a refused
   * client backs off as from a robot that is down. Either way nothing
   * queued outlives its connection (see `putActions`).
   */
  readonly reconnect?: ClientConnection.ReconnectSchedule | false | undefined
  /**
   * Limits on what the client decodes from the server; unset fields keep
   * `clientDecodeLimits`, which accept anything a reference server sends.
   */
  readonly decodeLimits?: Partial<DecodeLimits> | undefined
  /** Actions that may wait for dispatch; beyond it the oldest are dropped. Default 10 000. */
  readonly maxQueuedActions?: number | undefined
  /**
   * How long (a Duration; a number is milliseconds) nothing may come from the
   * robot while a request (an observation, a reset, …) waits before the
   * dispatcher stops sending actions: the actions due after that are dropped,
   * counted in `droppedActions().robotSilent` and said in one warning, until
   * anything arrives from the robot; then a second line says how long it was
   * silent and how many were dropped, and what still waits (planned before
   * the silence) is dropped with them. A robot whose process is stopped or
   * whose loop is blocked keeps its connection, which keepalives give up only
   * after 10–40 s; the actions sent meanwhile would wait in its socket, and a
   * server that applies what it reads (the references') would apply them all
   * at once when it resumes. Only a client that makes requests (the obs
   * stream, getObs, …) can tell. What arrives is read on this process's main
   * thread: a pause of it (a long synchronous inference) while a request
   * waits reads the same, and drops the actions the worker dispatcher would
   * otherwise send meanwhile. A request the robot never answers keeps it
   * silent until anything arrives. Default 1 s; choose it above the robot's
   * slowest answer, the transfer of its largest observation included (17 MB
   * take about 1.4 s at 100 Mbit/s), or a reset you act through; `false`:
   * never.
   */
  readonly maxRobotSilence?: Duration.Input | false | undefined
  /** Do not print the waiting line (`chiral: waiting for server at <uri> …`). */
  readonly quiet?: boolean | undefined
  /**
   * Whether making the client first touches this thread's young generation
   * (`warmYoungGeneration`, from @chiral/protocol), so that receiving
   * observations does not fault its pages in a few at a time for the first
   * seconds. Once per thread; 0.1–0.6 s where it had grown to 64–128 MiB.
   * Default true; false for a client that asks once and exits (`chiral probe`).
   */
  readonly warmYoungGeneration?: boolean | undefined
}

export interface ResetOutcome {
  readonly obs: Observation
  readonly info: UserMap
}

export interface StepOutcome {
  readonly obs: Observation
  readonly reward: number
  readonly terminated: boolean
  readonly truncated: boolean
  readonly info: UserMap
}

export interface PolicyClientApi {
  /** The server address. */
  readonly address: string
  /**
   * Requests fail with a `RequestError`: `Timeout` (no answer in time),
   * `Malformed`, or `Disconnected`, at once, while there is no live
   * connection (lost, reconnecting, closed) and for a request in flight when
   * its connection goes. A `Disconnected` error's detail says why the
   * connection went: "closed by the server: 1011 chiral: reset failed: …"
   * when the server said why (a WebSocket close's code and reason).
   *
   * `getMetadata`: the server's metadata. When it gives the robot's action
   * shape (`action_shape`, or `action_N`/`action_D`), every action put or
   * sent from then on must have its D values (`putActions`); the last
   * metadata read decides, across reconnections (a robot answering without a
   * shape ends the check). The client does not ask for it by itself.
   */
  readonly getMetadata: Effect.Effect<UserMap, RequestError>
  /**
   * Resets the robot; the reset's observation becomes `latestObs` (before
   * the call returns, and before anyone else sees it). Nothing planned before
   * the reset is sent after its request: what waits for dispatch when it is
   * called is dropped first (an action being handed to the connection at that
   * moment leaves before the request), counted in `droppedActions().reset`
   * and logged once ("N queued actions dropped: planned before the reset").
   * Until its reply is read, or it fails, every action put or sent
   * (`putActions`, `sendAction`) is dropped the same way (one warning per
   * reset), and a legacy `step` fails with `Stale`: nothing of the new
   * episode has been observed yet. After it, a chunk put with
   * `obsTimestamps` earlier than the reset's observation (an inference that
   * ran across the reset) is dropped too; one put without carries
   * `latestObs`' timestamps, the reset's or newer, and goes. A reset that
   * times out ends this at once, though the robot may still be resetting
   * (`maxRobotSilence` keeps actions from it meanwhile).
   */
  readonly reset: Effect.Effect<ResetOutcome, RequestError>
  /** One observation, now; it also becomes `latestObs`. */
  readonly getObs: Effect.Effect<Observation, RequestError>
  /**
   * Legacy coupled step (C++ servers): sends an N×D chunk, returns the
   * server's step result. Refused (`Stale`, nothing sent) when the client
   * observed the robot on an earlier connection but not yet on this one: the
   * chunk can only have come from the robot that went away; and while a
   * reset is under way: it was planned before it; and when it would go while
   * the robot has left a request (an earlier step's included) unanswered
   * beyond `maxRobotSilence`, or if it was asked for before such a silence
   * ended: a robot that was stopped would apply it when it resumes, with the
   * steps before it. A robot that ignores a request type (a C++ reference
   * robot ignores `getObs`) is silent for this until it answers another.
   * Refused as `Malformed` (nothing sent) for a value that is not finite,
   * rows of another size than the D of the robot's metadata, or more rows
   * than its N (see `getMetadata`). A step that times out says whether it
   * was sent: one that was may still be applied.
   */
  readonly step: (chunk: ActionChunk) => Effect.Effect<StepOutcome, RequestError>
  /**
   * Sends one `apply_action` now, stamped with `latestObs`' camera timestamps
   * (no reply). An action with a value that is not finite as float32 is not
   * sent: `Malformed`, naming the value; nor one whose number of values is
   * not the D of the robot's metadata (see `getMetadata`). Nor is one from a
   * client that observed the robot on an earlier connection but not yet on
   * this one (dropped as from an earlier connection, as by `putActions`), nor
   * one sent while a reset is under way (dropped as `reset`; see `reset`),
   * nor one sent while the robot is silent (dropped as `robotSilent`; see
   * `maxRobotSilence`).
   */
  readonly sendAction: (action: Action) => Effect.Effect<void, RequestError>

  /**
   * Seconds to add to a camera timestamp (the robot's clock) to place it on
   * this machine's capture clock: 0 while the two look like one clock (see
   * `RobotClock`). The client's own timing uses it already.
   */
  readonly clockOffset: Effect.Effect<number>
  /**
   * The most recent observation received on the live connection (from
   * getObs, reset, step or the obs stream); none until its first, and none
   * once it is lost: a robot that went away is never taken for the next.
   */
  readonly latestObs: SubscriptionRef.SubscriptionRef<Option.Option<Observation>>
  /**
   * Observations as they arrive. A subscriber that falls behind skips to the
   * newest (only the latest one waits for it), so it never holds old frames.
   */
  readonly observations: Stream.Stream<Observation>
  /**
   * Requests an observation every 1/hz s on a fixed grid (`Cadence.fixed`);
   * replaces a running stream. It pauses while the client reconnects and
   * carries on over the new connection.
   */
  readonly startObsStream: (hz: number) => Effect.Effect<void>
  readonly stopObsStream: Effect.Effect<void>

  /**
   * Appends one action (stamped, if given, with the camera timestamps it was
   * computed from) on the live connection; see `putActions` for what happens
   * when there is none.
   */
  readonly putAction: (action: Action, options?: Omit<ActionQueue.PutOptions, "mode">) => Effect.Effect<void, RequestError>
  /**
   * Puts a chunk. `mode`: `append` (default), `replace`, `time-aligned`
   * (actions placed on the ticks after the observation they were computed
   * from; late ones dropped, never sent late) or `ActionPlan.blend(…)`
   * (temporal ensembling with what waits); see `ActionPlan`. `obsTimestamps`:
   * the camera timestamps of that observation (`obs.cameras[i].timestamp`),
   * needed by `time-aligned`; its actions carry them to the server. Dies with
   * a RangeError for a chunk that cannot be put. A chunk with a value that is
   * not finite as float32 (NaN, ±Infinity, beyond ±3.4e38) fails as
   * `Malformed`, naming the action and the value, and nothing of it is queued:
   * servers without the check (the Python reference's) would apply it. So
   * does a chunk with an action whose number of values is not D, once the
   * robot's metadata has given its action shape (`action_shape [1, D]`,
   * `[D]`, or `action_D`; see `getMetadata`): one action is one step, of D
   * values, whatever its tensor's shape. Without that metadata any size goes.
   *
   * Nothing planned before a reset is sent after it (see `reset`): a chunk
   * put while a reset is under way, or stamped before its observation, is
   * dropped and counted in `droppedActions().reset`.
   *
   * Actions never outlive their connection: when it is lost, whatever still
   * waits is dropped (counted in `droppedActions().disconnected`, one log
   * line), and while there is no live connection this fails at once with a
   * `Disconnected` `RequestError` instead of queueing actions that could only
   * be applied late. Nor do actions computed from an earlier connection's
   * observation go out on a later one: a chunk whose given `obsTimestamps`
   * cannot be this connection's (pass `Observation.timestamps(obs)`), or any
   * chunk put by a client that observed the robot before but not yet on this
   * connection, is dropped, counted in `droppedActions().earlierConnection`
   * and logged (once per connection); the robot may have restarted
   * meanwhile. A chunk put without timestamps carries `latestObs`' at the
   * put, so after the new connection's first observation it is not told
   * apart. While the robot is silent (`maxRobotSilence`) the chunk is queued,
   * and its actions due then are dropped.
   */
  readonly putActions: (chunk: Iterable<Action>, options?: ActionQueue.PutOptions) => Effect.Effect<void, RequestError>
  /** Actions waiting on the live connection (0 while there is none). */
  readonly pendingActions: Effect.Effect<number>
  /**
   * The refill signal: the waiting actions as they change, `awaitBelow(n)`
   * and `lowWater(n)`, so the next inference starts before the queue runs dry.
   */
  readonly refill: RefillSignal.RefillSignal
  /**
   * What was dropped so far: late (slot passed), replaced (by a newer chunk),
   * overflow (capacity), disconnected (still waiting when their connection
   * was lost, or when the client closed), earlierConnection (computed from an
   * earlier connection's observation; see `putActions`), robotSilent (due
   * while the robot left a request unanswered; see `maxRobotSilence`),
   * stalled (untimed actions still waiting when the dispatcher's thread had
   * not run for 1 s or more: this process was stopped, or starved of CPU;
   * dropped at its first tick after, which sends nothing, and said in one
   * warning), and reset (planned before a reset: waiting when it began, put
   * or sent while it was under way, or stamped before its observation; see
   * `reset`).
   */
  readonly droppedActions: Effect.Effect<ActionDispatcher.ClientDrops>
  /** Each action as it leaves the client: when, and how old its observation was then. */
  readonly actionTimings: Stream.Stream<ActionDispatcher.ActionTiming>
  /**
   * Empties the queue, the dispatcher going on; what it held is not counted
   * as dropped (the caller asked). `reset` does this by itself, counted.
   */
  readonly clearActions: Effect.Effect<void>
  /**
   * Sends one queued action per tick (1/hz s, fixed grid); replaces a running
   * dispatcher. It keeps its rate across reconnections: each new connection
   * starts dispatching at once (with an empty queue).
   */
  readonly startActionDispatch: (hz: number) => Effect.Effect<void>
  readonly stopActionDispatch: Effect.Effect<void>
  /** How many actions the dispatcher (or sendAction) has handed to a live connection. */
  readonly dispatched: SubscriptionRef.SubscriptionRef<number>

  /** connecting → connected → (reconnecting → connected)* → closed. */
  readonly connectionState: SubscriptionRef.SubscriptionRef<ConnectionState>
  /** Connections made after the first one. */
  readonly reconnects: SubscriptionRef.SubscriptionRef<number>
  /** Completes when there is no live connection: at once, or when the current one is lost. */
  readonly awaitDisconnect: Effect.Effect<void>
}

export class PolicyClient extends Context.Service<PolicyClient, PolicyClientApi>()("@chiral/core/PolicyClient") {
  /** A client connected through the `ClientTransport`; leaving the scope closes it and stops its loops. */
  static readonly layer = (
    options: PolicyClientOptions = {}
  ): Layer.Layer<PolicyClient, TransportError, ClientTransport> => Layer.effect(PolicyClient, make(options))
}

/**
 * Said once when the metadata reads as the C++ reference robot's: that
 * server answers metadata, reset and the legacy step only, and ignores the
 * rest without a word, so actions put for dispatch would be counted as sent
 * and never applied (seen in a trial).
 */
const legacyRobotWarning = (address: string) =>
  `chiral: ${address}'s metadata gives action_N/action_D, as the C++ reference robot's does: if it is one, it ` +
  `answers only metadata, reset and the legacy step, and ignores get_obs and apply_action without a word ` +
  `(actions dispatched would be counted as sent and never applied, the obs stream would time out): drive it with reset and step`

/** The values of each row of a legacy step's chunk: D of [N, D] (a 1-D chunk is one row). */
const rowSize = (chunk: Tensor): number =>
  chunk.shape.length <= 1 ? chunk.data.length : chunk.shape.slice(1).reduce((a, b) => a * b, 1)

/**
 * The legacy `step`'s request: the chunk as an N×D float32 tensor, or why it
 * is not one (a value not finite, or rows of another size than the robot's
 * metadata gives).
 */
const stepRequest = (chunk: ActionChunk, latestObs: Option.Option<Observation>, shape: ActionSpec.MetadataShape | undefined) =>
  Effect.try({
    try: () => {
      const action = chunkToTensor(chunk)
      // Never sent to a motor, as for the other action paths.
      const refused = ActionSpec.problem(action, undefined)
      if (refused !== undefined) throw new RangeError(`${refused}; the chunk was not sent`)
      if (shape !== undefined && rowSize(action) !== shape.shape[1]) {
        throw new RangeError(
          `the chunk's rows have ${rowSize(action)} values (shape [${action.shape.join(", ")}]), the robot's metadata ` +
            `says ${shape.said}: ${shape.shape[1]} per action; the chunk was not sent`
        )
      }
      const rows = ActionSpec.rowsOf(action)
      if (shape !== undefined && rows > shape.shape[0]) {
        throw new RangeError(
          `the chunk has ${rows} rows (shape [${action.shape.join(", ")}]), the robot's metadata says ${shape.said}: ` +
            `at most ${shape.shape[0]} per step; the chunk was not sent`
        )
      }
      return { type: "action" as const, action, obsTimestamps: ObservationStream.timestampsOf(latestObs) }
    },
    catch: (cause) => new RequestError({ request: "action", reason: "Malformed", detail: String(cause) })
  })

/** The answer a request type expects, or a defect: the slot only completes a request with its own reply type. */
const expect = <T extends Message["type"]>(type: T) => (m: Message): Effect.Effect<Extract<Message, { type: T }>> =>
  m.type === type ? Effect.succeed(m as Extract<Message, { type: T }>) : Effect.die(`expected ${type}, got ${m.type}`)

/** `maxRobotSilence` in seconds; undefined: never. Dies on a limit that is not > 0. */
const silenceLimitOf = (limit: Duration.Input | false | undefined): Effect.Effect<number | undefined> => {
  if (limit === false) return Effect.succeed(undefined)
  const seconds = Duration.toSeconds(Duration.fromInputUnsafe(limit ?? Duration.seconds(1)))
  return seconds > 0
    ? Effect.succeed(Number.isFinite(seconds) ? seconds : undefined)
    : Effect.die(new RangeError(`maxRobotSilence must be longer than 0, got ${Duration.format(Duration.fromInputUnsafe(limit!))}`))
}

/** What each connection carries. */
interface Parts {
  readonly slot: RequestSlot.RequestSlot
  readonly actions: ActionDispatcher.LinkDispatcher
}

/**
 * The client's two loops (observation stream, action dispatcher) and the
 * connection that carries them: each new connection gets a request slot
 * whose observations feed the stream, and the dispatcher attached to it.
 */
const connectParts = (transport: ClientTransport["Service"], options: PolicyClientOptions, limits: DecodeLimits) =>
  Effect.gen(function*() {
    let link: ClientConnection.ClientConnection<Parts> | undefined
    const why = () => link?.why() ?? "not connected yet"
    const observations = yield* ObservationStream.make
    const robotClock = RobotClock.make()
    const silenceLimit = yield* silenceLimitOf(options.maxRobotSilence)
    const resetFence = ResetFence.make()
    // The action shape of the last metadata read, across connections: a
    // policy built for it must not drive a robot of another.
    const actionShape = { current: undefined as ActionSpec.MetadataShape | undefined }
    const actions = yield* ActionDispatcher.make({
      latestObs: observations.latest,
      clockOffset: robotClock.offset,
      capacity: options.maxQueuedActions ?? ActionQueue.defaultCapacity,
      current: () => link?.current()?.actions,
      why,
      fromEarlierConnection: observations.fromEarlierConnection,
      resetFence,
      actionShape: () => actionShape.current
    })
    link = yield* ClientConnection.make<Parts>(transport, options, (live) =>
      Effect.gen(function*() {
        // The robot behind this connection may be another machine, with another clock.
        robotClock.forget()
        const silence = silenceLimit === undefined ? undefined : RobotSilence.make(silenceLimit)
        const slot = yield* RequestSlot.make(live.connection, live.lost, (obs) => {
          const timestamps = ObservationStream.timestampsOf(Option.some(obs))
          live.offThread?.observed(timestamps)
          return Effect.flatMap(captureTime, (arrival) => {
            const observed = obsTime(timestamps)
            const differ = observed === undefined ? undefined : robotClock.observe(observed, arrival)
            const published = observations.publish(obs)
            return differ === undefined ? published : Effect.andThen(Effect.logWarning(differ), published)
          })
        }, limits, silence && { robot: silence, answered: actions.robotAnswered })
        const dispatcher = yield* actions.attach(live, silence?.cell)
        return {
          parts: { slot, actions: dispatcher },
          receive: slot.receive,
          heard: actions.heard,
          forget: Effect.andThen(Effect.sync(resetFence.connectionLost), observations.connectionLost),
          onLost: (reason, final, repeated) => Effect.andThen(slot.fail, actions.detach(dispatcher, reason, final, repeated))
        }
      }))
    // Closing the client stops the loops before the connection: otherwise its
    // end would fail their requests first and each would log that it stopped
    // for a lost connection.
    yield* Effect.addFinalizer(() => Effect.andThen(observations.stop, actions.stop))
    return { observations, actions, connection: link, robotClock, resetFence, actionShape }
  })

/** A request on the live connection's slot, answered by a `reply`, or `Disconnected` at once. */
const requestOn = (connection: ClientConnection.ClientConnection<Parts>) =>
<T extends RequestSlot.RequestType, R extends Message["type"]>(
  message: Effect.Effect<Message & { readonly type: T }, RequestError>,
  reply: R,
  timeout: Duration.Input,
  onAnswer?: (reply: Message) => void
) =>
  Effect.flatMap(message, (m) =>
    Effect.suspend(() => {
      const parts = connection.current()
      return parts === undefined
        ? Effect.fail(RequestSlot.disconnected(m.type, connection.why()))
        : parts.slot.request(m, timeout, onAnswer)
    })).pipe(Effect.flatMap(expect(reply)))

/**
 * Connects (see `PolicyClientOptions`) and gives the client, in the scope,
 * after touching this thread's young generation unless a server, client or
 * recording proxy did before (see `PolicyClientOptions.warmYoungGeneration`).
 */
export const make = (
  options: PolicyClientOptions = {}
): Effect.Effect<PolicyClientApi, TransportError, Scope.Scope | ClientTransport> =>
  Effect.gen(function*() {
    const transport = yield* ClientTransport
    const requestTimeout = options.requestTimeout ?? Duration.seconds(30)
    const resetTimeout = options.resetTimeout ?? Duration.minutes(5)
    const limits = { ...clientDecodeLimits, ...options.decodeLimits }
    // Before the first observation (see `warmYoungGeneration`).
    if (options.warmYoungGeneration !== false) warmYoungGeneration()
    const { actions, actionShape, connection, observations, resetFence, robotClock } = yield* connectParts(
      transport,
      options,
      limits
    )
    const request = requestOn(connection)
    const getObs = Effect.map(request(Effect.succeed({ type: "obs_request" as const }), "obs_response", requestTimeout), (m) => m.obs)
    const reconnection: ObservationStream.Reconnection = {
      awaitDisconnected: connection.awaitDisconnected,
      pending: () => SubscriptionRef.getUnsafe(connection.state) === "reconnecting",
      awaitConnected: connection.awaitConnected,
      refusedAgain: connection.refusedAgain
    }

    let saidLegacyRobot = false
    return {
      address: transport.address,
      getMetadata: Effect.flatMap(
        request(Effect.succeed({ type: "metadata" as const }), "metadata_response", requestTimeout, (reply) => {
          // read before the caller resumes: the next action it sends is checked
          if (reply.type === "metadata_response") actionShape.current = ActionSpec.shapeFromMetadata(reply.data)
        }),
        (m) => {
          if (saidLegacyRobot || !ActionSpec.isLegacyRobot(m.data)) return Effect.succeed(m.data)
          saidLegacyRobot = true
          return Effect.as(Effect.logWarning(legacyRobotWarning(transport.address)), m.data)
        }
      ),
      // The fence opens first, then what waits is dropped, then the request
      // goes: nothing planned before the reset can follow it. Opened and its
      // closing set up without a chance of interruption in between: a fence
      // left open would drop every action until the connection is lost.
      reset: Effect.uninterruptibleMask((restore) => {
        const settle = resetFence.begin()
        return restore(actions.dropForReset.pipe(
          Effect.andThen(request(
            Effect.succeed({ type: "reset" as const }),
            "reset_response",
            resetTimeout,
            (reply) => settle(reply.type === "reset_response" ? reply.obs : undefined)
          )),
          Effect.map((m) => ({ obs: m.obs, info: m.info }))
        )).pipe(Effect.ensuring(Effect.sync(() => settle())))
      }),
      getObs,
      step: (chunk) =>
        Effect.map(
          request(
            Effect.suspend(() => {
              // no robot connected: Disconnected, as for every request, not the Stale of a robot not yet observed
              if (connection.current() === undefined) return Effect.fail(RequestSlot.disconnected("action", connection.why()))
              const latest = SubscriptionRef.getUnsafe(observations.latest)
              const beforeReset = resetFence.plannedBefore(ObservationStream.timestampsOf(latest))
              const stale = observations.fromEarlierConnection(undefined) ??
                (beforeReset && `planned before the reset: ${beforeReset}`)
              return stale === undefined
                ? stepRequest(chunk, latest, actionShape.current)
                : Effect.fail(new RequestError({ request: "action", reason: "Stale", detail: stale }))
            }),
            "step_response",
            requestTimeout
          ),
          (m) => ({ obs: m.obs, reward: m.reward, terminated: m.terminated, truncated: m.truncated, info: m.info })
        ),
      sendAction: actions.send,
      clockOffset: Effect.sync(robotClock.offset),
      latestObs: observations.latest,
      observations: observations.observations,
      startObsStream: (hz) => observations.start(hz, getObs, reconnection),
      stopObsStream: observations.stop,
      putAction: actions.put,
      putActions: actions.putAll,
      pendingActions: actions.pending,
      refill: actions.refill,
      droppedActions: actions.dropped,
      actionTimings: actions.timings,
      clearActions: actions.clear,
      startActionDispatch: actions.start,
      stopActionDispatch: actions.stop,
      dispatched: actions.dispatched,
      connectionState: connection.state,
      reconnects: connection.reconnects,
      awaitDisconnect: connection.awaitDisconnected
    } satisfies PolicyClientApi
  })
