/**
 * One client connection on the robot side. Two fibers: the reader decodes
 * each frame and either hands an action to the connection's `NewestAction`
 * slot (applied at the end of the turn unless a newer one arrived with it)
 * or queues a request; the responder answers queued requests in order and
 * awaits each send. So a client that reads slowly only ever holds up its own
 * responder, and actions keep arriving while a large observation is on its
 * way out. Every action (`apply_action` and the legacy step) passes the
 * server's `ActionGate` before a handler sees it. Where the transport offers
 * it (WebSocket), an obs_request with nothing ahead of it is answered where
 * it arrives, without either fiber (`inlineObservations`).
 */
import {
  decodeFrame,
  type DecodeLimits,
  encodeFrameParts,
  type Message,
  type Observation,
  type Tensor
} from "@chiral/protocol"
import { Cause, Clock, Data, Effect, Exit, Option, Queue, Result, Scope, Stream } from "effect"
import * as ActionGate from "./ActionGate.js"
import { ActionRefused } from "./ActionGate.js"
import type { ActionContext, Handlers, StepResult } from "./Handlers.js"
import * as CameraState from "./CameraState.js"
import * as NewestAction from "./NewestAction.js"
import type { LeasedObservation } from "./SensorState.js"
import * as CloseReason from "./CloseReason.js"
import { closeWith, type Connection, type InlineHandler } from "./Transport.js"
import type { TransportError } from "./TransportError.js"

/** A request that has a reply. */
export type Request =
  | { readonly type: "metadata" }
  | { readonly type: "reset" }
  | { readonly type: "obs_request" }
  | Extract<Message, { readonly type: "action" }>

export interface ConnectionOptions {
  /** Requests waiting for an answer before the reader stops reading (backpressure on this client only). */
  readonly maxPending: number
  /** Limits applied when decoding the client's frames. */
  readonly limits?: Partial<DecodeLimits> | undefined
  /** What every action from this connection passes before a handler sees it. */
  readonly gate: ActionGate.ConnectionGate
  /** Of actions that arrive together, apply only the newest (`NewestAction`). */
  readonly coalesceActions: boolean
}

/** What the connection does with what arrives: the server's handlers (the services they need provided around `serve`). */
export interface Responder<R> {
  /**
   * The reply to one request, as a message to encode. What it leases in the
   * scope (an observation's buffers, `SensorState.makeObsLeased`) stays lent
   * until the reply has been sent.
   */
  readonly answer: (request: Request, connection: string) => Effect.Effect<Message, unknown, R | Scope.Scope>
  /** Applies one `apply_action` (no reply). */
  readonly applyAction: (action: Tensor, context: ActionContext) => Effect.Effect<void, unknown, R>
  /**
   * The default `getObs` without a handler's effect (when the server has no
   * `getObs` handler): the observation stamped `timestamp` (s, the capture
   * clock), its buffers lent until `release`.
   */
  readonly observeUnsafe?: ((timestamp: number) => LeasedObservation) | undefined
}

/**
 * The responder of a server's `handlers`: default metadata `{}`, `getObs`
 * defaulting to `makeObsLeased` (the observation's buffers lent until the
 * reply is sent; `makeObs` when not given), and the legacy `step` defaulting
 * to `applyAction` then `makeObs` (reward 0, not terminated, not truncated).
 */
export const responder = <E, R>(
  handlers: Handlers<E, R>,
  makeObs: Effect.Effect<Observation>,
  makeObsLeased: Effect.Effect<Observation, never, Scope.Scope> = makeObs,
  leaseObservationUnsafe?: (timestamp: number) => LeasedObservation
): Responder<R> => {
  const step = handlers.step ?? ((action, context: ActionContext) =>
    Effect.flatMap(handlers.applyAction(action, context), () => Effect.map(makeObs, (obs): StepResult => ({ obs }))))
  const answer = (request: Request, connection: string): Effect.Effect<Message, E, R | Scope.Scope> => {
    switch (request.type) {
      case "metadata":
        return handlers.getMetadata === undefined
          ? Effect.succeed({ type: "metadata_response", data: {} })
          : Effect.map(handlers.getMetadata, (data) => ({ type: "metadata_response", data }))
      case "reset":
        return Effect.map(handlers.reset, ({ info, obs }) => ({ type: "reset_response", obs, info: info ?? {} }))
      case "obs_request":
        return Effect.map(
          handlers.getObs ?? makeObsLeased as Effect.Effect<Observation, E, R | Scope.Scope>,
          (obs): Message => ({ type: "obs_response", obs })
        )
      case "action":
        return Effect.map(step(request.action, { obsTimestamps: request.obsTimestamps, connection }), (result) => ({
          type: "step_response",
          obs: result.obs,
          reward: result.reward ?? 0,
          terminated: result.terminated ?? false,
          truncated: result.truncated ?? false,
          info: result.info ?? {}
        }))
    }
  }
  return {
    answer,
    applyAction: handlers.applyAction,
    observeUnsafe: handlers.getObs === undefined ? leaseObservationUnsafe : undefined
  }
}

/** Logs a handler's failure (it ends neither the connection nor the server); interruption passes through. */
const logFailure = (message: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A | void, never, R> =>
  Effect.catchCause(effect, (cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
    // the gate counted and logged its refusal already
    const error = Cause.findErrorOption(cause)
    if (Option.isSome(error) && error.value instanceof ActionRefused) return Effect.void
    return Effect.logWarning(message, cause)
  })

type ApplyAction = Extract<Message, { readonly type: "apply_action" }>

/** A request that cannot be answered; `reason` is what the client is told as its connection is closed. */
class Unanswered extends Data.TaggedError("Unanswered")<{ readonly request: string; readonly reason: string }> {}

/**
 * Answers one request and sends the reply: an obs_request without a `getObs`
 * handler from the sensors directly, anything else through the handler.
 */
const respond = <R>(connection: Connection, responder: Responder<R>, gate: ActionGate.ConnectionGate) => {
  const observation = responder.observeUnsafe === undefined
    ? undefined
    : defaultObservation(connection, responder.observeUnsafe, gate)
  return (request: Request): Effect.Effect<void, Unanswered | TransportError, R> =>
    request.type === "obs_request" && observation !== undefined
      ? observation
      : handlerReply(connection, responder, gate, request)
}

/**
 * The default reply to an obs_request: the sensors' observation stamped
 * `timestamp` (s, the capture clock), its buffers lent, and its frame, or
 * why it could not be encoded. The caller ends the lease once the frame has
 * been sent, or at once when there is none. One piece for both ways a reply
 * goes (`defaultObservation`, `inlineObservations`), so their bytes are the
 * same.
 */
const observationReply = (
  observe: (timestamp: number) => LeasedObservation,
  timestamp: number
):
  | { readonly leased: LeasedObservation; readonly frame: ReadonlyArray<Uint8Array> }
  | { readonly leased: LeasedObservation; readonly frame: undefined; readonly unencodable: unknown } =>
{
  const leased = observe(timestamp)
  try {
    return { leased, frame: encodeFrameParts({ type: "obs_response", obs: leased.obs }) }
  } catch (unencodable) {
    return { leased, frame: undefined, unencodable }
  }
}

/**
 * The reply to an obs_request without a `getObs` handler, built and encoded
 * in one step of the fiber, without a scope. At robot rates every step on a
 * reply's path runs cold and delays it: measured with the Python reference's
 * client at 30 Hz against `chiral serve`, from the request decoded to the
 * reply encoded, 0.10–0.11 ms through the handler's effect in a scope against
 * 0.06 ms here, and each 0.01 ms taken out of the server's part came off the
 * client's get_obs (README, the Python-client path).
 *
 * The lease ends when the step and the send have ended, however they end (a
 * send that fails, throws or is interrupted included): the exit hook is in
 * place before the lease is taken. An interrupted send ends it for good: the
 * transport may still be writing those bytes (a WebSocket message's later
 * fragments, a write the kernel has not taken yet), so they are never
 * recycled.
 */
const defaultObservation = (
  connection: Connection,
  observe: (timestamp: number) => LeasedObservation,
  gate: ActionGate.ConnectionGate
) =>
  Effect.suspend(() => {
    let release: LeasedObservation["release"] | undefined
    const reply = Effect.withFiber((fiber): Effect.Effect<void, Unanswered | TransportError> => {
      const reply = observationReply(observe, CameraState.captureTimeOf(fiber.getRef(Clock.Clock)))
      release = reply.leased.release
      if (reply.frame === undefined) {
        return unanswerable(connection, "obs_request")(Cause.fail(reply.unencodable), "encoding")
      }
      gate.served(reply.leased.obs)
      return connection.send(reply.frame)
    })
    // Interrupted, the send may have stopped waiting while the transport still reads the bytes.
    return Effect.onExit(reply, (exit) => Effect.sync(() => release?.(Exit.hasInterrupts(exit))))
  })

/**
 * A reset moves the robot: each is logged with the client that asked for it,
 * when it starts and when it is done (its failure is logged as the request's).
 * While it runs it is activity for the watchdog, as an `applyAction` still
 * running is (`ConnectionGate.whileResetting`): a reset longer than
 * `actionTimeout` would otherwise run `onActionTimeout` in its middle and take
 * control from the client resetting, letting another act on a robot that is
 * resetting.
 */
const loggedReset = <A, E, R>(connection: string, reset: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    yield* Effect.logInfo(`chiral: reset asked for by ${connection}`)
    const start = yield* Clock.currentTimeMillis
    const reply = yield* reset
    const end = yield* Clock.currentTimeMillis
    yield* Effect.logInfo(`chiral: reset for ${connection} done in ${((end - start) / 1000).toFixed(2)} s`)
    return reply
  })

/** The reply of the server's handler for `request`; what it leases ends with the scope, once the reply is sent. */
const handlerReply = <R>(
  connection: Connection,
  responder: Responder<R>,
  gate: ActionGate.ConnectionGate,
  request: Request
): Effect.Effect<void, Unanswered | TransportError, R> =>
  Effect.scopedWith((scope) => {
    const answer = responder.answer(request, connection.id)
    const unanswered = unanswerable(connection, request.type)
    const admitted = request.type === "action"
      ? Effect.andThen(gate.admit(request.action, request.obsTimestamps), answer)
      : request.type === "reset"
      ? Effect.andThen(gate.admitReset, gate.whileResetting(loggedReset(connection.id, answer)))
      : answer
    return Effect.matchCauseEffect(Scope.provide(admitted, scope), {
      onFailure: unanswered,
      onSuccess: (reply): Effect.Effect<void, Unanswered | TransportError> => {
        let frame: ReadonlyArray<Uint8Array>
        try {
          frame = encodeFrameParts(reply)
        } catch (cause) {
          return unanswered(Cause.fail(cause), "encoding")
        }
        if ("obs" in reply) gate.served(reply.obs)
        return connection.send(frame)
      }
    })
  })

/**
 * What follows a request that could not be answered (`failed`: its handler
 * failed, or the gate refused its legacy step; `encoding`: its reply could
 * not be encoded). It would leave the client waiting, and the protocol has
 * no error reply: it is logged and the connection closed, which the client
 * sees at once as a typed error, with the request and the error's message
 * where the transport can say why (WebSocket: 1011, see `CloseReason`). The
 * Python server also lets the handler's exception end the connection (1011,
 * with no reason). A shared connection (a Zenoh router's session, standing
 * for several clients) stays open; its client runs into its timeout.
 */
const unanswerable = (connection: Connection, request: Request["type"]) =>
(cause: Cause.Cause<unknown>, stage: "failed" | "encoding" = "failed"): Effect.Effect<void, Unanswered> => {
  if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
  const refused = Cause.findErrorOption(cause)
  if (Option.isSome(refused) && refused.value instanceof ActionRefused) {
    // Logged by the gate. A step's or a reset's only reply is an observation, which would say it was done.
    const isReset = request === "reset"
    const reason = (isReset ? CloseReason.resetRefused : CloseReason.stepRefused)(refused.value.reason, refused.value.detail)
    return connection.shared === true
      ? Effect.void
      : Effect.andThen(
        Effect.logWarning(
          isReset
            ? `chiral: closing ${connection.id}: its reset was refused, and a reset cannot be answered without doing it`
            : `chiral: closing ${connection.id}: its legacy step was refused, and a step cannot be answered without applying it`
        ),
        Effect.fail(new Unanswered({ request, reason }))
      )
  }
  const what = `chiral: cannot answer ${request} from ${connection.id}`
  const reason = stage === "encoding" ? CloseReason.unencodable(request, cause) : CloseReason.failed(request, cause)
  return connection.shared === true
    ? Effect.logWarning(what, cause)
    : Effect.andThen(Effect.logWarning(`${what}; closing it`, cause), Effect.fail(new Unanswered({ request, reason })))
}

const dropped = (connection: Connection, reason: string) =>
  Effect.logWarning(`chiral: dropped frame from ${connection.id}: ${reason}`)

/**
 * What one connection's reader may take of the event loop before it yields:
 * 16 frames, or 1 ms of handling, whichever comes first.
 *
 * Each arriving frame resumes the reader synchronously inside the socket's
 * read callback (Effect's callback resumes run the fiber at once, and its op
 * budget restarts with every resume), so without a limit a client flooding
 * small frames was served frame after frame inside libuv's read loop (up to
 * 32 reads of 64 KiB, some 46 000 actions, per wake-up) while every other
 * client's requests, timers and writes waited: another client's getObs took
 * 0.3–1.4 s at p99 during a 100k-action flood. The frame count bounds that
 * for cheap handlers (a few dozen flood frames per getObs); the time bounds
 * it for slow ones (an `applyAction` that takes 2 ms would otherwise hold
 * the loop 32 ms per turn). A flood alone is not slower.
 */
const framesPerTurn = 16
const millisPerTurn = 1

/** Whether a connection's reader has yielded between turns with a frame in hand: more of a burst may follow it. */
interface ReaderTurn {
  catchingUp: boolean
}

/**
 * Reads `frames` with `handle` in turns of the event loop (`framesPerTurn`,
 * `millisPerTurn`). A turn is the frames handled in one run of the event
 * loop: it starts after a yield, or when the reader had to wait for its frame
 * (the loop ran meanwhile, and a frame at robot rates should not pay for a
 * yield).
 */
const readInTurns = <E, R>(
  frames: Stream.Stream<Uint8Array, E>,
  handle: (frame: Uint8Array) => Effect.Effect<void, never, R>,
  turn: ReaderTurn
): Effect.Effect<void, E, R> => {
  let turnFrames = 0
  let turnStart = 0
  let handledAt = 0
  const handleTimed = (frame: Uint8Array) =>
    Effect.andThen(handle(frame), Effect.sync(() => void (handledAt = performance.now())))
  const yieldTurn = Effect.suspend(() => {
    turn.catchingUp = true
    return Effect.yieldNow
  })
  const startTurn = Effect.sync(() => {
    turnFrames = 1
    turnStart = performance.now()
  })
  const caughtUp = Effect.sync(() => void (turn.catchingUp = false))
  return Stream.runForEach(frames, (frame) => {
    const now = performance.now()
    if (now - handledAt >= millisPerTurn) {
      turnFrames = 0
      turnStart = now
    }
    if (turnFrames < framesPerTurn && now - turnStart < millisPerTurn) {
      turnFrames++
      return handleTimed(frame)
    }
    return Effect.andThen(Effect.andThen(yieldTurn, startTurn), Effect.andThen(handleTimed(frame), caughtUp))
  })
}

/**
 * Applies one `apply_action`: through the gate to the handler, as activity
 * for the watchdog. A handler that fails, throws or is interrupted from
 * within counts as failed (the robot may not have applied it) and is logged;
 * it ends neither the connection nor the fiber applying its actions.
 */
const applyOne = <R>(connection: Connection, responder: Responder<R>, gate: ActionGate.ConnectionGate) =>
(message: ApplyAction): Effect.Effect<void, never, R> =>
  gate.admit(message.action, message.obsTimestamps).pipe(
    Effect.andThen(
      gate.whileApplying(
        responder.applyAction(message.action, { obsTimestamps: message.obsTimestamps, connection: connection.id })
      ).pipe(
        Effect.catchCause((cause) =>
          Effect.andThen(
            gate.failed,
            Cause.hasInterruptsOnly(cause)
              ? Effect.logWarning(`chiral: applyAction was interrupted for ${connection.id}; it may not have been applied`)
              : Effect.failCause(cause)
          )
        )
      )
    ),
    logFailure(`chiral: applyAction failed for ${connection.id}`)
  )

/** What a connection does with its `apply_action`s, and how they order with its requests. */
interface ConnectionActions<R> {
  /** An `apply_action` read. */
  readonly arrive: (message: ApplyAction) => Effect.Effect<void, never, R>
  /** `request`, after the actions read before it (an obs_request sees the robot after them). */
  readonly after: (request: Effect.Effect<void>) => Effect.Effect<void, never, R>
  /** `reading`, then what its end means for the action waiting and the one being applied. */
  readonly ending: <E>(reading: Effect.Effect<void, E, R>) => Effect.Effect<void, E, R>
  /** Whether an action read is still to be applied or being applied (a request must wait for it: `after`). */
  readonly busy: () => boolean
}

/**
 * Applied as read when not coalescing, and on a shared connection (a Zenoh
 * router's session carries several clients: one's action must not supersede
 * another's); otherwise through the connection's `NewestAction` slot.
 */
const connectionActions = <R>(
  connection: Connection,
  apply: (message: ApplyAction) => Effect.Effect<void, never, R>,
  gate: ActionGate.ConnectionGate,
  coalesce: boolean,
  turn: ReaderTurn
): Effect.Effect<ConnectionActions<R>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    if (!coalesce || connection.shared === true) {
      // Applied by the reader itself, before it reads on.
      return {
        arrive: apply,
        after: (request) => request,
        ending: (reading) => reading,
        busy: () => false
      } satisfies ConnectionActions<R>
    }
    const newest = yield* NewestAction.make(
      (message: ApplyAction, superseded) =>
        superseded === 0 ? apply(message) : Effect.andThen(gate.supersede(superseded, message.obsTimestamps), apply(message)),
      () => turn.catchingUp
    )
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const left = newest.takeWaiting()
        return left === 0 ? Effect.void : gate.disconnected(left)
      })
    )
    return {
      arrive: newest.offer,
      // checked here, not inside an effect: at robot rates every step on a request's path counts
      after: (request) => newest.busy() ? Effect.andThen(newest.flush, request) : request,
      // The client's last action before it left is applied, as when actions were applied as read;
      // a connection lost lets the action being applied finish, and drops the one waiting.
      ending: (reading) =>
        Effect.onExit(reading, (exit) =>
          Exit.isSuccess(exit) ? newest.flush : Exit.hasInterrupts(exit) ? Effect.void : newest.settle),
      busy: newest.busy
    } satisfies ConnectionActions<R>
  })

/**
 * Requests of a connection not answered yet: each counts from when the reader
 * hands it to the responder until its reply has been sent (or has failed),
 * and an inline reply until it has been sent.
 */
interface Pending {
  requests: number
}

/**
 * Largest frame offered to be decoded inline. An obs_request is a header of
 * one key (22 bytes); an action, with its tensor and timestamps, is larger
 * and goes to the reader undecoded.
 */
const inlineFrameBytes = 64

/**
 * Answers an obs_request where it arrives, inside the transport's read
 * callback (`Connection.answerInline`), when it could not be out of order:
 * no request pending (a reset or a step ahead of it is answered first), no
 * action read and not yet applied (`quiet`: an observation shows the robot
 * after the actions read before it). The reply is the default one
 * (`defaultObservation`), byte for byte. Anything else, or a reply that
 * cannot be encoded, is left to the reader, which answers it as usual (an
 * encoding failure closes the connection and says why). A send that fails
 * on a connection still open goes to `failed`; one lost with its connection
 * is the reader's to report.
 *
 * Why: at robot rates every step on a reply's path runs cold. The reader's
 * wake-up, the queue to the responder and the responder's wake-up took 0.1
 * ms of the 0.33 ms from `ws`'s message event to its `send` returning (p50;
 * Python reference client at 30 Hz, chiral serve, 2 cameras 64×48 + depth); with
 * inline and queued replies alternating every 0.5 s in one server, inline
 * ones left the server 0.07–0.13 ms sooner and reached the client 0.09–0.18
 * ms sooner at p50 (3 runs of 30 s, `scratchpad/i15d`).
 */
const inlineObservations = (
  observe: (timestamp: number) => LeasedObservation,
  gate: ActionGate.ConnectionGate,
  clock: Clock.Clock,
  limits: Partial<DecodeLimits> | undefined,
  pending: Pending,
  quiet: () => boolean,
  failed: (error: TransportError) => void
): InlineHandler =>
(frame, sendNow) => {
  if (frame.byteLength > inlineFrameBytes || pending.requests > 0 || !quiet()) return false
  const decoded = decodeFrame(frame, limits)
  if (Result.isFailure(decoded) || decoded.success.type !== "obs_request") return false
  const { frame: reply, leased } = observationReply(observe, CameraState.captureTimeOf(clock))
  if (reply === undefined) {
    leased.release()
    return false
  }
  gate.served(leased.obs)
  pending.requests++
  sendNow(reply, (error) => {
    pending.requests--
    // A failed send may leave the bytes with the transport: never recycled.
    leased.release(error !== undefined)
    if (error !== undefined && error.reason !== "Closed") failed(error)
  })
  return true
}

/**
 * Serves `connection` until the client leaves or a request cannot be
 * answered (the connection is then closed with 1011 and why, where the
 * transport can: `Connection.close`).
 */
export const serve = <R>(
  connection: Connection,
  responder: Responder<R>,
  options: ConnectionOptions
): Effect.Effect<void, TransportError, R> =>
  Effect.gen(function*() {
    const gate = options.gate
    const requests = yield* Queue.bounded<Request>(options.maxPending)
    const flushRequests = Effect.sync(() => Queue.flushUnsafe(requests))
    const pending: Pending = { requests: 0 }
    const settled = Effect.sync(() => void pending.requests--)
    const respondTo = respond(connection, responder, gate)
    const answering = Effect.forever(
      Effect.flatMap(Queue.take(requests), (request) => Effect.ensuring(respondTo(request), settled))
    )
    const handOver = (request: Request) =>
      Effect.suspend(() => {
        pending.requests++
        return Effect.andThen(Queue.offer(requests, request), flushRequests)
      })
    const turn: ReaderTurn = { catchingUp: false }
    const actions = yield* connectionActions(
      connection,
      applyOne(connection, responder, gate),
      gate,
      options.coalesceActions,
      turn
    )
    const handle = (frame: Uint8Array) => {
      const decoded = decodeFrame(frame, options.limits)
      if (Result.isFailure(decoded)) return dropped(connection, decoded.failure.message)
      const message = decoded.success
      switch (message.type) {
        case "metadata":
        case "reset":
        case "obs_request":
        case "action":
          // The waiting responder takes the request now, inside this run,
          // and has the reply on its way before the reader goes on pulling
          // frames (measured at 30 Hz with a Python client: the stream's
          // pull after an offer took 0.16 of the 0.65 ms from a request's
          // bytes arriving to its reply's write, all before the responder
          // ran). A busy responder takes it from the queue as before.
          return actions.after(handOver(message))
        case "apply_action":
          return actions.arrive(message)
        default:
          return dropped(connection, `a client does not send ${message.type}`)
      }
    }
    if (connection.answerInline !== undefined && responder.observeUnsafe !== undefined) {
      const runFork = Effect.runForkWith(yield* Effect.context<never>())
      // As a reply the responder could not send: logged, and the connection ended.
      const failed = (error: TransportError) =>
        void runFork(Effect.andThen(
          Effect.logWarning(`chiral: cannot answer obs_request from ${connection.id}; closing it`, error),
          closeWith(connection, CloseReason.internalError, CloseReason.failed("obs_request", Cause.fail(error)))
        ))
      connection.answerInline(inlineObservations(
        responder.observeUnsafe,
        gate,
        yield* Clock.Clock,
        options.limits,
        pending,
        () => !actions.busy(),
        failed
      ))
    }
    const reading = actions.ending(readInTurns(connection.frames, handle, turn))
    // Either ends the connection: the client leaving, or a request that cannot
    // be answered, which the client is told (1011 and why) where the transport can.
    yield* Effect.raceFirst(reading, answering).pipe(
      Effect.catchTag("Unanswered", (unanswered) => closeWith(connection, CloseReason.internalError, unanswered.reason))
    )
  }).pipe(Effect.scoped)
