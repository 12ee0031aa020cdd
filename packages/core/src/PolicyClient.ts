/**
 * The policy side: requests (metadata, reset, observation, legacy step), a
 * background observation stream, and a queue of actions dispatched at a fixed
 * rate. The service composes its concerns, each a module of its own:
 *  - `ClientConnection`: connecting (retrying while nobody answers), reading,
 *    noticing the connection is gone;
 *  - `RequestSlot`: one request in flight, replies matched by order and type,
 *    late replies dropped;
 *  - `ObservationStream`: the latest observation, a stream of them, and the
 *    fixed-rate request loop;
 *  - `ActionDispatcher`: the action queue and its fixed-rate dispatch, on this
 *    thread or on the transport's own (`OffThreadDispatch`).
 */
import type { Message, Observation, UserMap } from "@chiral/protocol"
import { Context, Duration, Effect, Layer, Option, type Scope, type Stream, SubscriptionRef } from "effect"
import { type Action, type ActionChunk, chunkToTensor } from "./Action.js"
import * as ActionDispatcher from "./ActionDispatcher.js"
import type { Drops } from "./ActionPlan.js"
import * as ActionQueue from "./ActionQueue.js"
import * as ClientConnection from "./ClientConnection.js"
import * as ObservationStream from "./ObservationStream.js"
import type * as RefillSignal from "./RefillSignal.js"
import { RequestError } from "./RequestError.js"
import * as RequestSlot from "./RequestSlot.js"
import { ClientTransport } from "./Transport.js"
import type { TransportError } from "./TransportError.js"

export interface PolicyClientOptions {
  /** How long getMetadata, getObs and step wait for their answer. Default 30 s. */
  readonly requestTimeout?: Duration.Input | undefined
  /** How long reset waits (robots can take a while to reset). Default 5 minutes. */
  readonly resetTimeout?: Duration.Input | undefined
  /** Pause between connection attempts while the server is not up. Default 100 ms. */
  readonly retryInterval?: Duration.Input | undefined
  /** Actions that may wait for dispatch; beyond it the oldest are dropped. Default 10 000. */
  readonly maxQueuedActions?: number | undefined
  /** Do not print the waiting line (`chiral: waiting for server at <uri> …`). */
  readonly quiet?: boolean | undefined
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
  readonly getMetadata: Effect.Effect<UserMap, RequestError>
  /** Resets the robot; the observation also becomes `latestObs`. */
  readonly reset: Effect.Effect<ResetOutcome, RequestError>
  /** One observation, now; it also becomes `latestObs`. */
  readonly getObs: Effect.Effect<Observation, RequestError>
  /** Legacy coupled step (C++ servers): sends an N×D chunk, returns the server's step result. */
  readonly step: (chunk: ActionChunk) => Effect.Effect<StepOutcome, RequestError>
  /** Sends one `apply_action` now, stamped with `latestObs`' camera timestamps (no reply). */
  readonly sendAction: (action: Action) => Effect.Effect<void, RequestError>

  /** The most recent observation received (from getObs, reset, step or the obs stream). */
  readonly latestObs: SubscriptionRef.SubscriptionRef<Option.Option<Observation>>
  /**
   * Observations as they arrive. A subscriber that falls behind skips to the
   * newest (only the latest one waits for it), so it never holds old frames.
   */
  readonly observations: Stream.Stream<Observation>
  /** Requests an observation every 1/hz s on a fixed grid (`Cadence.fixed`); replaces a running stream. */
  readonly startObsStream: (hz: number) => Effect.Effect<void>
  readonly stopObsStream: Effect.Effect<void>

  /** Appends one action (stamped, if given, with the camera timestamps it was computed from). */
  readonly putAction: (action: Action, options?: Omit<ActionQueue.PutOptions, "mode">) => Effect.Effect<void>
  /**
   * Puts a chunk. `mode`: `append` (default), `replace`, `time-aligned`
   * (actions placed on the ticks after the observation they were computed
   * from; late ones dropped, never sent late) or `ActionPlan.blend(…)`
   * (temporal ensembling with what waits); see `ActionPlan`. `obsTimestamps`:
   * the camera timestamps of that observation (`obs.cameras[i].timestamp`),
   * needed by `time-aligned`; its actions carry them to the server. Dies with
   * a RangeError for a chunk that cannot be put.
   */
  readonly putActions: (chunk: Iterable<Action>, options?: ActionQueue.PutOptions) => Effect.Effect<void>
  readonly pendingActions: Effect.Effect<number>
  /**
   * The refill signal: the waiting actions as they change, `awaitBelow(n)`
   * and `lowWater(n)`, so the next inference starts before the queue runs dry.
   */
  readonly refill: RefillSignal.RefillSignal
  /** What the queue dropped so far: late (slot passed), replaced (by a newer chunk), overflow (capacity). */
  readonly droppedActions: Effect.Effect<Drops>
  /** Each action as it leaves the client: when, and how old its observation was then. */
  readonly actionTimings: Stream.Stream<ActionDispatcher.ActionTiming>
  readonly clearActions: Effect.Effect<void>
  /** Sends one queued action per tick (1/hz s, fixed grid); replaces a running dispatcher. */
  readonly startActionDispatch: (hz: number) => Effect.Effect<void>
  readonly stopActionDispatch: Effect.Effect<void>
  /** How many actions the dispatcher (or sendAction) has sent. */
  readonly dispatched: SubscriptionRef.SubscriptionRef<number>

  /** Completes when the connection is gone (closed by the server or lost). */
  readonly awaitDisconnect: Effect.Effect<void>
}

export class PolicyClient extends Context.Service<PolicyClient, PolicyClientApi>()("@chiral/core/PolicyClient") {
  /** A client connected through the `ClientTransport`; leaving the scope closes it and stops its loops. */
  static readonly layer = (
    options: PolicyClientOptions = {}
  ): Layer.Layer<PolicyClient, TransportError, ClientTransport> => Layer.effect(PolicyClient, make(options))
}

/** The legacy `step`'s request: the chunk as an N×D float32 tensor, or why it is not one. */
const stepRequest = (chunk: ActionChunk, latestObs: Option.Option<Observation>) =>
  Effect.try({
    try: () => ({
      type: "action" as const,
      action: chunkToTensor(chunk),
      obsTimestamps: ObservationStream.timestampsOf(latestObs)
    }),
    catch: (cause) => new RequestError({ request: "action", reason: "Malformed", detail: String(cause) })
  })

/** The answer a request type expects, or a defect: the slot only completes a request with its own reply type. */
const expect = <T extends Message["type"]>(type: T) => (m: Message): Effect.Effect<Extract<Message, { type: T }>> =>
  m.type === type ? Effect.succeed(m as Extract<Message, { type: T }>) : Effect.die(`expected ${type}, got ${m.type}`)

export const make = (
  options: PolicyClientOptions = {}
): Effect.Effect<PolicyClientApi, TransportError, Scope.Scope | ClientTransport> =>
  Effect.gen(function*() {
    const transport = yield* ClientTransport
    const link = yield* ClientConnection.open(transport, options)
    const requestTimeout = options.requestTimeout ?? Duration.seconds(30)
    const resetTimeout = options.resetTimeout ?? Duration.minutes(5)

    const observations = yield* ObservationStream.make
    const slot = yield* RequestSlot.make(link.connection, link.lost, (obs) => {
      link.offThread?.observed(ObservationStream.timestampsOf(Option.some(obs)))
      return observations.publish(obs)
    })
    const getObs = Effect.flatMap(slot.request({ type: "obs_request" }, requestTimeout), expect("obs_response")).pipe(
      Effect.map((m) => m.obs)
    )
    const actions = yield* ActionDispatcher.make({
      connection: link.connection,
      lost: link.lost,
      latestObs: observations.latest,
      offThread: link.offThread,
      capacity: options.maxQueuedActions ?? ActionQueue.defaultCapacity
    })
    yield* link.read({ receive: slot.receive, onLost: () => slot.fail })
    // Closing the client stops the loops before the reader: otherwise the
    // reader's end would fail their requests first and each would log that it
    // stopped for a lost connection.
    yield* Effect.addFinalizer(() => Effect.andThen(observations.stop, actions.stop))

    return {
      address: transport.address,
      getMetadata: Effect.flatMap(slot.request({ type: "metadata" }, requestTimeout), expect("metadata_response")).pipe(
        Effect.map((m) => m.data)
      ),
      reset: Effect.flatMap(slot.request({ type: "reset" }, resetTimeout), expect("reset_response")).pipe(
        Effect.map((m) => ({ obs: m.obs, info: m.info }))
      ),
      getObs,
      step: (chunk) =>
        Effect.suspend(() => stepRequest(chunk, SubscriptionRef.getUnsafe(observations.latest))).pipe(
          Effect.flatMap((message) => slot.request(message, requestTimeout)),
          Effect.flatMap(expect("step_response")),
          Effect.map((m) => ({ obs: m.obs, reward: m.reward, terminated: m.terminated, truncated: m.truncated, info: m.info }))
        ),
      sendAction: actions.send,
      latestObs: observations.latest,
      observations: observations.observations,
      startObsStream: (hz) => observations.start(hz, getObs),
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
      awaitDisconnect: link.gone
    } satisfies PolicyClientApi
  })
