/**
 * The request slot: one request in flight per connection. The protocol
 * carries no request ids, so a reply is matched to its request by order and
 * must have the expected type.
 *
 * A request keeps the slot until its reply has arrived or the connection is
 * gone, even after its caller gave up on a timeout: a late reply is then
 * dropped instead of being taken for the next request's. Only a reply later
 * than twice the timeout is given up for lost.
 */
import {
  type DecodeLimits,
  decodeFrame,
  encodeFrame,
  type Message,
  type MessageType,
  type Observation
} from "@chiral/protocol"
import { Deferred, Duration, Effect, Exit, FiberSet, Result, Semaphore, type Scope } from "effect"
import { RequestError } from "./RequestError.js"
import type { Connection } from "./Transport.js"

/** What each request is answered with. */
export const replyType = {
  metadata: "metadata_response",
  reset: "reset_response",
  obs_request: "obs_response",
  action: "step_response"
} as const satisfies Partial<Record<MessageType, MessageType>>

export type RequestType = keyof typeof replyType

export interface RequestSlot {
  /** Sends `message` when the slot is free; its reply, or a typed failure after `timeout`. */
  readonly request: (
    message: Message & { readonly type: RequestType },
    timeout: Duration.Input
  ) => Effect.Effect<Message, RequestError>
  /** Takes one frame from the server: the reply to the request in flight, or dropped. */
  readonly receive: (frame: Uint8Array) => Effect.Effect<void>
  /** The connection is gone: every request still waiting (in flight or for the slot) fails with `Disconnected`. */
  readonly fail: Effect.Effect<void>
}

export const disconnected = (request: string, detail: string) =>
  new RequestError({ request, reason: "Disconnected", detail })

/**
 * The slot over `connection`. `lost` says why the connection is gone (once it
 * is); `onObservation` sees every observation a reply carries, before its
 * caller does; replies are decoded within `limits`.
 */
export const make = (
  connection: Connection,
  lost: () => string | undefined,
  onObservation: (obs: Observation) => Effect.Effect<void>,
  limits: Partial<DecodeLimits>
): Effect.Effect<RequestSlot, never, Scope.Scope> =>
  Effect.gen(function*() {
    const slot = yield* Semaphore.make(1)
    const exchanges = yield* FiberSet.make()
    let pending:
      | {
        readonly request: RequestType
        readonly expect: MessageType
        readonly reply: Deferred.Deferred<Message, RequestError>
      }
      | undefined

    const gone = (request: string, detail?: string) =>
      disconnected(request, detail ?? lost() ?? "connection closed")

    const receive = (frame: Uint8Array): Effect.Effect<void> => {
      const decoded = decodeFrame(frame, limits)
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
      return Effect.andThen(obs === undefined ? Effect.void : onObservation(obs), Deferred.succeed(current.reply, message))
    }

    // Every request whose caller still waits, sent or waiting for the slot:
    // when the connection goes they all fail at once (the exchanges waiting
    // for the slot are interrupted with the connection's scope, and would
    // otherwise leave their callers to their timeouts).
    const waiting = new Map<Deferred.Deferred<Message, RequestError>, RequestType>()

    const fail = Effect.sync(() => {
      pending = undefined
      for (const [reply, type] of waiting) Deferred.doneUnsafe(reply, Exit.fail(gone(type)))
      waiting.clear()
    })

    /** Holds the slot from sending until the reply (or the end of the connection). */
    const exchange = (
      type: RequestType,
      frame: Uint8Array,
      reply: Deferred.Deferred<Message, RequestError>,
      lateReplyGrace: Duration.Duration,
      wanted: () => boolean
    ) =>
      Effect.suspend(() => {
        if (!wanted()) return Effect.void
        if (lost() !== undefined) return Deferred.fail(reply, gone(type))
        pending = { request: type, expect: replyType[type], reply }
        return connection.send(frame).pipe(
          Effect.catch((error) => Deferred.fail(reply, gone(type, error.message))),
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

    const request = (message: Message & { readonly type: RequestType }, timeout: Duration.Input) =>
      Effect.suspend((): Effect.Effect<Message, RequestError> => {
        if (lost() !== undefined) return Effect.fail(gone(message.type))
        let frame: Uint8Array
        try {
          frame = encodeFrame(message)
        } catch (cause) {
          return Effect.fail(new RequestError({ request: message.type, reason: "Malformed", detail: String(cause) }))
        }
        const reply = Deferred.makeUnsafe<Message, RequestError>()
        waiting.set(reply, message.type)
        let wanted = true
        const grace = Duration.times(Duration.fromInputUnsafe(timeout), 2)
        return FiberSet.run(exchanges, exchange(message.type, frame, reply, grace, () => wanted)).pipe(
          Effect.andThen(Deferred.await(reply)),
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () =>
              Effect.fail(
                new RequestError({
                  request: message.type,
                  reason: "Timeout",
                  detail: `no ${replyType[message.type]} within ${Duration.format(Duration.fromInputUnsafe(timeout))}`
                })
              )
          }),
          Effect.ensuring(Effect.sync(() => {
            wanted = false
            waiting.delete(reply)
          }))
        )
      })

    return { request, receive, fail }
  })
