/**
 * The policy side: requests (metadata, reset, observation, legacy step), a
 * background observation stream, and a queue of actions dispatched at a fixed
 * rate.
 *
 * The protocol carries no request ids, so a reply is matched to its request by
 * order: one request is in flight per connection at a time, and the reply must
 * have the expected type. A request keeps the slot until its reply has arrived
 * or the connection is gone, even after its caller gave up on a timeout: a
 * late reply is then dropped instead of being taken for the next request's.
 * Only a reply later than twice the timeout is given up for lost.
 *
 * Actions bypass that slot: the dispatcher sends `apply_action` (which has no
 * reply) on its own fiber, so a tick never waits behind an observation that is
 * still in transit. When the transport offers a dispatcher on a thread of its
 * own (`ActionDispatch`; the WebSocket client on its worker does), the queue
 * and the ticks live there instead, out of reach of this thread's pauses.
 */
import {
  decodeFrame,
  encodeFrame,
  type Message,
  type MessageType,
  type Observation,
  type ObsTimestamps,
  type UserMap
} from "@chiral/protocol"
import {
  Cause,
  Console,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  FiberHandle,
  FiberSet,
  Layer,
  Option,
  PubSub,
  Queue,
  Result,
  Schedule,
  Scope,
  Semaphore,
  Stream,
  SubscriptionRef
} from "effect"
import { type Action, type ActionChunk, chunkToTensor, toTensor } from "./Action.js"
import * as ActionDispatch from "./ActionDispatch.js"
import * as ActionQueue from "./ActionQueue.js"
import * as Cadence from "./Cadence.js"
import { RequestError } from "./RequestError.js"
import { ClientTransport, type Connection } from "./Transport.js"
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

  readonly putAction: (action: Action) => Effect.Effect<void>
  /** Appends a chunk (default), or replaces every waiting action with it. */
  readonly putActions: (
    chunk: Iterable<Action>,
    options?: { readonly mode?: ActionQueue.PutMode | undefined }
  ) => Effect.Effect<void>
  readonly pendingActions: Effect.Effect<number>
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

const replyType = {
  metadata: "metadata_response",
  reset: "reset_response",
  obs_request: "obs_response",
  action: "step_response"
} as const satisfies Partial<Record<MessageType, MessageType>>

type RequestType = keyof typeof replyType

const timestampsOf = (obs: Option.Option<Observation>): ObsTimestamps => {
  if (Option.isNone(obs)) return {}
  const out: Record<string, number> = {}
  for (const camera of obs.value.cameras) out[camera.name] = camera.timestamp
  return out
}

const periodOf = (hz: number): Effect.Effect<Duration.Duration> =>
  Number.isFinite(hz) && hz > 0
    ? Effect.succeed(Duration.millis(1000 / hz))
    : Effect.die(new RangeError(`rate must be a positive number of Hz, got ${hz}`))

/**
 * Connects, retrying every `retryInterval` while nobody answers; prints the
 * waiting line once, as the references do. Each attempt has its own scope so
 * failed attempts leave nothing behind.
 */
const connect = (
  transport: ClientTransport["Service"],
  options: PolicyClientOptions
): Effect.Effect<Connection, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    let warned = options.quiet === true
    const attempt = Effect.gen(function*() {
      const child = yield* Scope.fork(scope)
      return yield* transport.connect.pipe(
        Scope.provide(child),
        Effect.onError(() => Scope.close(child, Exit.void))
      )
    })
    return yield* attempt.pipe(
      Effect.tapError((error) => {
        if (warned || error.reason !== "Unavailable") return Effect.void
        warned = true
        return Console.log(transport.waitingMessage ?? `chiral: waiting for server at ${transport.address} …`)
      }),
      Effect.retry({
        while: (error) => error.reason === "Unavailable",
        schedule: Schedule.spaced(options.retryInterval ?? Duration.millis(100))
      })
    )
  })

export const make = (
  options: PolicyClientOptions = {}
): Effect.Effect<PolicyClientApi, TransportError, Scope.Scope | ClientTransport> =>
  Effect.gen(function*() {
    const transport = yield* ClientTransport
    const connection = yield* connect(transport, options)
    const requestTimeout = options.requestTimeout ?? Duration.seconds(30)
    const resetTimeout = options.resetTimeout ?? Duration.minutes(5)

    const latestObs = yield* SubscriptionRef.make(Option.none<Observation>())
    const published = yield* PubSub.sliding<Observation>(1)
    const dispatched = yield* SubscriptionRef.make(0)
    const actions = yield* ActionQueue.make(options.maxQueuedActions)
    const slot = yield* Semaphore.make(1)
    const exchanges = yield* FiberSet.make()
    const gone = yield* Deferred.make<void>()

    let pending:
      | {
        readonly request: RequestType
        readonly expect: MessageType
        readonly reply: Deferred.Deferred<Message, RequestError>
      }
      | undefined
    let lost: string | undefined

    // Actions dispatched on the transport's own thread, if it has one (see ActionDispatch).
    const offThread = ActionDispatch.of(connection)

    const disconnected = (request: string, detail?: string) =>
      new RequestError({ request, reason: "Disconnected", detail: detail ?? lost ?? "connection closed" })

    const receive = (frame: Uint8Array): Effect.Effect<void> => {
      const decoded = decodeFrame(frame)
      const current = pending
      if (Result.isFailure(decoded)) {
        // Servers only ever answer requests, so this was the answer to the current one.
        if (current === undefined) return Effect.logWarning(`chiral: dropped frame from server: ${decoded.failure.message}`)
        pending = undefined
        return Deferred.fail(
          current.reply,
          new RequestError({ request: current.request, reason: "Malformed", detail: decoded.failure.message })
        ).pipe(Effect.asVoid)
      }
      const message = decoded.success
      if (current === undefined || current.expect !== message.type) {
        return Effect.logDebug(`chiral: dropped unrequested ${message.type} from server`)
      }
      pending = undefined
      const obs = message.type === "reset_response" || message.type === "obs_response" ||
          message.type === "step_response"
        ? message.obs
        : undefined
      if (obs !== undefined) offThread?.observed(timestampsOf(Option.some(obs)))
      const publish = obs === undefined
        ? Effect.void
        : Effect.andThen(SubscriptionRef.set(latestObs, Option.some(obs)), PubSub.publish(published, obs))
      return Effect.andThen(publish, Deferred.succeed(current.reply, message))
    }

    // Reader: every frame from the server goes through here, in order.
    yield* connection.frames.pipe(
      Stream.runForEach(receive),
      Effect.onExit((exit) =>
        Effect.suspend(() => {
          lost = Exit.isSuccess(exit)
            ? "closed by the server"
            : Cause.hasInterruptsOnly(exit.cause)
            ? "the client is closed"
            : `connection lost: ${Cause.squash(exit.cause)}`
          const current = pending
          pending = undefined
          const fail = current === undefined ? Effect.void : Deferred.fail(current.reply, disconnected(current.request))
          return Effect.andThen(fail, Deferred.succeed(gone, undefined))
        })
      ),
      Effect.ignore,
      Effect.forkScoped
    )

    const request = (message: Message & { readonly type: RequestType }, timeout: Duration.Input) =>
      Effect.suspend((): Effect.Effect<Message, RequestError> => {
        if (lost !== undefined) return Effect.fail(disconnected(message.type))
        let frame: Uint8Array
        try {
          frame = encodeFrame(message)
        } catch (cause) {
          return Effect.fail(new RequestError({ request: message.type, reason: "Malformed", detail: String(cause) }))
        }
        const expect = replyType[message.type]
        const lateReplyGrace = Duration.times(Duration.fromInputUnsafe(timeout), 2)
        const reply = Deferred.makeUnsafe<Message, RequestError>()
        let wanted = true
        // Holds the slot from sending until the reply (or the end of the connection).
        const exchange = Effect.suspend(() => {
          if (!wanted) return Effect.void
          if (lost !== undefined) return Deferred.fail(reply, disconnected(message.type))
          pending = { request: message.type, expect, reply }
          return connection.send(frame).pipe(
            Effect.catch((error) => Deferred.fail(reply, disconnected(message.type, error.message))),
            // A reply later than twice the timeout is taken as lost, so a server
            // that never answers (possible on a shared Zenoh connection) cannot
            // hold the slot forever.
            Effect.andThen(Effect.timeoutOption(Deferred.await(reply), lateReplyGrace)),
            Effect.ignore,
            Effect.ensuring(Effect.sync(() => {
              if (pending?.reply === reply) pending = undefined
            }))
          )
        }).pipe(slot.withPermit)
        return FiberSet.run(exchanges, exchange).pipe(
          Effect.andThen(Deferred.await(reply)),
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () =>
              Effect.fail(
                new RequestError({
                  request: message.type,
                  reason: "Timeout",
                  detail: `no ${expect} within ${Duration.format(Duration.fromInputUnsafe(timeout))}`
                })
              )
          }),
          Effect.ensuring(Effect.sync(() => {
            wanted = false
          }))
        )
      })

    const getMetadata = Effect.map(
      request({ type: "metadata" }, requestTimeout),
      (m) => m.type === "metadata_response" ? m.data : {}
    )
    const reset = Effect.flatMap(request({ type: "reset" }, resetTimeout), (m) =>
      m.type === "reset_response"
        ? Effect.succeed({ obs: m.obs, info: m.info })
        : Effect.die(`reset answered by ${m.type}`))
    const getObs = Effect.flatMap(request({ type: "obs_request" }, requestTimeout), (m) =>
      m.type === "obs_response" ? Effect.succeed(m.obs) : Effect.die(`obs_request answered by ${m.type}`))
    const step = (chunk: ActionChunk) =>
      Effect.suspend(() => {
        let action: ReturnType<typeof chunkToTensor>
        try {
          action = chunkToTensor(chunk)
        } catch (cause) {
          return Effect.fail(new RequestError({ request: "action", reason: "Malformed", detail: String(cause) }))
        }
        return request({
          type: "action",
          action,
          obsTimestamps: timestampsOf(SubscriptionRef.getUnsafe(latestObs))
        }, requestTimeout)
      }).pipe(Effect.flatMap((m) =>
        m.type === "step_response"
          ? Effect.succeed({
            obs: m.obs,
            reward: m.reward,
            terminated: m.terminated,
            truncated: m.truncated,
            info: m.info
          })
          : Effect.die(`action answered by ${m.type}`)
      ))

    const sendTensor = (action: ReturnType<typeof toTensor>) =>
      Effect.suspend((): Effect.Effect<void, RequestError> => {
        if (lost !== undefined) return Effect.fail(disconnected("apply_action"))
        const frame = encodeFrame({
          type: "apply_action",
          action,
          obsTimestamps: timestampsOf(SubscriptionRef.getUnsafe(latestObs))
        })
        return connection.send(frame).pipe(
          Effect.mapError((error) => disconnected("apply_action", error.message)),
          Effect.andThen(SubscriptionRef.update(dispatched, (n) => n + 1))
        )
      })
    const sendAction = (action: Action) => Effect.suspend(() => sendTensor(toTensor(action)))

    const obsLoop = yield* FiberHandle.make()
    const dispatchLoop = yield* FiberHandle.make()
    const capacity = options.maxQueuedActions ?? ActionQueue.defaultCapacity

    // A transport that dispatches on a thread of its own keeps the queue there;
    // what it reports sent is added to `dispatched` here.
    if (offThread !== undefined) {
      const counts = yield* Queue.unbounded<number>()
      let reported = 0
      offThread.onDispatched((count) => {
        Queue.offerUnsafe(counts, count - reported)
        reported = count
      })
      yield* Queue.take(counts).pipe(
        Effect.flatMap((sent) => SubscriptionRef.update(dispatched, (n) => n + sent)),
        Effect.forever,
        Effect.forkScoped
      )
    }

    // A loop ends quietly when the connection is gone; other failures are logged and it carries on.
    const untilDisconnected = (name: string) => <A>(tick: Effect.Effect<A, RequestError>) =>
      tick.pipe(
        Effect.catch((error) =>
          error.reason === "Disconnected" ? Effect.fail(error) : Effect.logWarning(`chiral: ${name}: ${error.message}`)
        )
      )

    const startObsStream = (hz: number) =>
      Effect.flatMap(periodOf(hz), (period) =>
        FiberHandle.run(obsLoop)(
          getObs.pipe(
            untilDisconnected("obs stream"),
            Effect.repeat(Cadence.fixed(period)),
            Effect.catch((error) => Effect.logInfo(`chiral: obs stream stopped: ${error.message}`))
          )
        )).pipe(Effect.asVoid)

    const dispatchTick = Effect.flatMap(actions.poll, (next) =>
      Option.isSome(next) ? sendTensor(next.value) : Effect.void)

    const startActionDispatch = (hz: number) =>
      Effect.flatMap(periodOf(hz), (period) =>
        offThread !== undefined ? offThread.start(Duration.toMillis(period)) :
        FiberHandle.run(dispatchLoop)(
          dispatchTick.pipe(
            untilDisconnected("action dispatch"),
            Effect.repeat(Cadence.fixed(period)),
            Effect.catch((error) => Effect.logInfo(`chiral: action dispatch stopped: ${error.message}`))
          )
        )).pipe(Effect.asVoid)

    return {
      address: transport.address,
      getMetadata,
      reset,
      getObs,
      step,
      sendAction,
      latestObs,
      observations: Stream.fromPubSub(published),
      startObsStream,
      stopObsStream: FiberHandle.clear(obsLoop),
      putAction: offThread === undefined
        ? actions.put
        : (action) => Effect.suspend(() => offThread.put([toTensor(action)], false, capacity)),
      putActions: (chunk, putOptions) =>
        offThread === undefined
          ? actions.putAll(chunk, putOptions?.mode)
          : Effect.suspend(() => offThread.put(Array.from(chunk, toTensor), putOptions?.mode === "replace", capacity)),
      pendingActions: offThread?.pending ?? actions.size,
      clearActions: offThread?.clear ?? actions.clear,
      startActionDispatch,
      stopActionDispatch: offThread?.stop ?? FiberHandle.clear(dispatchLoop),
      dispatched,
      awaitDisconnect: Deferred.await(gone)
    } satisfies PolicyClientApi
  })
