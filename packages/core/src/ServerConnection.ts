/**
 * One client connection on the robot side. Two fibers: the reader decodes
 * each frame and either applies an action at once or queues a request; the
 * responder answers queued requests in order and awaits each send. So a
 * client that reads slowly only ever holds up its own responder, and actions
 * keep arriving while a large observation is on its way out.
 */
import {
  decodeFrame,
  type DecodeLimits,
  encodeFrameParts,
  type Message,
  type Observation,
  type Tensor
} from "@chiral/protocol"
import { Cause, Data, Effect, Queue, Result, Stream } from "effect"
import type { ActionContext, Handlers, StepResult } from "./Handlers.js"
import type { Connection } from "./Transport.js"
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
}

/** What the connection does with what arrives: the server's handlers, with what they need provided. */
export interface Responder<R> {
  /** The reply to one request, as a message to encode. */
  readonly answer: (request: Request, connection: string) => Effect.Effect<Message, unknown, R>
  /** Applies one `apply_action` (no reply). */
  readonly applyAction: (action: Tensor, context: ActionContext) => Effect.Effect<void, unknown, R>
}

/**
 * The responder of a server's `handlers`: default metadata `{}`, `getObs`
 * defaulting to `makeObs`, and the legacy `step` defaulting to `applyAction`
 * then `makeObs` (reward 0, not terminated, not truncated).
 */
export const responder = <E, R>(handlers: Handlers<E, R>, makeObs: Effect.Effect<Observation>): Responder<R> => {
  const step = handlers.step ?? ((action, context: ActionContext) =>
    Effect.flatMap(handlers.applyAction(action, context), () => Effect.map(makeObs, (obs): StepResult => ({ obs }))))
  const answer = (request: Request, connection: string): Effect.Effect<Message, E, R> => {
    switch (request.type) {
      case "metadata":
        return handlers.getMetadata === undefined
          ? Effect.succeed({ type: "metadata_response", data: {} })
          : Effect.map(handlers.getMetadata, (data) => ({ type: "metadata_response", data }))
      case "reset":
        return Effect.map(handlers.reset, ({ info, obs }) => ({ type: "reset_response", obs, info: info ?? {} }))
      case "obs_request":
        return Effect.map(handlers.getObs ?? makeObs, (obs) => ({ type: "obs_response", obs }))
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
  return { answer, applyAction: handlers.applyAction }
}

/** Logs a handler's failure (it ends neither the connection nor the server); interruption passes through. */
const logFailure = (message: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A | void, never, R> =>
  Effect.catchCause(effect, (cause) =>
    Cause.hasInterruptsOnly(cause) ? Effect.interrupt : Effect.logWarning(message, cause))

class Unanswered extends Data.TaggedError("Unanswered")<{ readonly request: string }> {}

/**
 * Answers one request and sends the reply. A request the handler cannot
 * answer would leave the client waiting, and the protocol has no error reply:
 * it is logged and the connection closed, which the client sees at once as a
 * typed error (the Python server does the same by letting the handler's
 * exception end the connection). A shared connection (Zenoh) stays open; its
 * client runs into its timeout.
 */
const respond = <R>(connection: Connection, responder: Responder<R>) => (request: Request) =>
  responder.answer(request, connection.id).pipe(
    Effect.flatMap((reply) => Effect.try({ try: () => encodeFrameParts(reply), catch: (cause) => cause })),
    Effect.matchCauseEffect({
      onFailure: (cause) => {
        if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
        const what = `chiral: cannot answer ${request.type} from ${connection.id}`
        return connection.shared === true
          ? Effect.logWarning(what, cause)
          : Effect.andThen(
            Effect.logWarning(`${what}; closing it`, cause),
            Effect.fail(new Unanswered({ request: request.type }))
          )
      },
      onSuccess: connection.send
    })
  )

const dropped = (connection: Connection, reason: string) =>
  Effect.logWarning(`chiral: dropped frame from ${connection.id}: ${reason}`)

/** Serves `connection` until the client leaves or a request cannot be answered. */
export const serve = <R>(
  connection: Connection,
  responder: Responder<R>,
  options: ConnectionOptions
): Effect.Effect<void, TransportError, R> =>
  Effect.gen(function*() {
    const requests = yield* Queue.bounded<Request>(options.maxPending)
    const answering = Effect.forever(Effect.flatMap(Queue.take(requests), respond(connection, responder)))
    const reading = connection.frames.pipe(
      Stream.runForEach((frame) => {
        const decoded = decodeFrame(frame, options.limits)
        if (Result.isFailure(decoded)) return dropped(connection, decoded.failure.message)
        const message = decoded.success
        switch (message.type) {
          case "metadata":
          case "reset":
          case "obs_request":
          case "action":
            return Queue.offer(requests, message)
          case "apply_action":
            return responder.applyAction(message.action, {
              obsTimestamps: message.obsTimestamps,
              connection: connection.id
            }).pipe(logFailure(`chiral: applyAction failed for ${connection.id}`))
          default:
            return dropped(connection, `a client does not send ${message.type}`)
        }
      })
    )
    // Either ends the connection: the client leaving, or a request that cannot be answered.
    yield* Effect.raceFirst(reading, answering).pipe(Effect.catchTag("Unanswered", () => Effect.void))
  })
