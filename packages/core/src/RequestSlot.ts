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
import { captureTime } from "./CameraState.js"
import { RequestError } from "./RequestError.js"
import { asked, limitOf, type RobotSilence } from "./RobotSilence.js"
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
  /**
   * Sends `message` when the slot is free; its reply, or a typed failure
   * after `timeout`. `onAnswer` is told of the reply as soon as it is read,
   * before its observation is published and before the caller resumes (also
   * for a late reply whose caller gave up).
   */
  readonly request: (
    message: Message & { readonly type: RequestType },
    timeout: Duration.Input,
    onAnswer?: (reply: Message) => void
  ) => Effect.Effect<Message, RequestError>
  /** Takes one frame from the server: the reply to the request in flight, or dropped. */
  readonly receive: (frame: Uint8Array) => Effect.Effect<void>
  /** The connection is gone: every request still waiting (in flight or for the slot) fails with `Disconnected`. */
  readonly fail: Effect.Effect<void>
}

export const disconnected = (request: string, detail: string) =>
  new RequestError({ request, reason: "Disconnected", detail })

/** The request in flight: what it asked, the reply type that answers it, and where that reply goes. */
interface InFlight {
  readonly request: RequestType
  readonly expect: MessageType
  readonly reply: Deferred.Deferred<Message, RequestError>
  readonly onAnswer: ((reply: Message) => void) | undefined
}

/** What the slot's two sides share: the request in flight, set by the exchange and answered by `receive`. */
interface SlotState {
  pending: InFlight | undefined
}

/** The observation a reply carries, if any. */
const observationOf = (message: Message): Observation | undefined =>
  message.type === "reset_response" || message.type === "obs_response" || message.type === "step_response"
    ? message.obs
    : undefined

/**
 * The receive side: `frame` answers the request in flight if it decodes to
 * the reply that request expects (its observation goes to `onObservation`
 * first), or fails it as `Malformed` if it does not decode; anything else is
 * dropped.
 */
const receiveReply = (
  state: SlotState,
  frame: Uint8Array,
  limits: Partial<DecodeLimits>,
  onObservation: (obs: Observation) => Effect.Effect<void>
): Effect.Effect<void> => {
  const decoded = decodeFrame(frame, limits)
  const current = state.pending
  if (Result.isFailure(decoded)) {
    // Servers only ever answer requests, so this was the answer to the current one.
    if (current === undefined) return Effect.logWarning(`chiral: dropped frame from server: ${decoded.failure.message}`)
    state.pending = undefined
    return Deferred.fail(
      current.reply,
      new RequestError({ request: current.request, reason: "Malformed", detail: decoded.failure.message })
    ).pipe(Effect.asVoid)
  }
  const message = decoded.success
  if (current === undefined || current.expect !== message.type) {
    return Effect.logDebug(`chiral: dropped unrequested ${message.type} from server`)
  }
  state.pending = undefined
  current.onAnswer?.(message)
  const obs = observationOf(message)
  return Effect.andThen(obs === undefined ? Effect.void : onObservation(obs), Deferred.succeed(current.reply, message))
}

const stepMayApply = "the step was sent, and a robot that resumes may still apply it"

/**
 * What a caller that waited `timeout` for its reply fails with. A legacy step
 * that went out may still be applied: a robot that was stopped reads it when
 * it resumes.
 */
const timedOut = (type: RequestType, timeout: Duration.Input, sent: boolean) =>
  new RequestError({
    request: type,
    reason: "Timeout",
    detail: `no ${replyType[type]} within ${Duration.format(Duration.fromInputUnsafe(timeout))}` +
      (type !== "action" ? "" : sent ? `; ${stepMayApply}` : "; the step was not sent")
  })

/** Whether the robot answers: what the slot tells of each request sent and each frame received. */
export interface SilenceWatch {
  readonly robot: RobotSilence
  /**
   * A frame arrived after the robot had been silent `silentFor` s, more than
   * its limit (the cell's): run before the watch is cleared, so the
   * dispatcher still drops what is due while it runs.
   */
  readonly answered: (silentFor: number) => Effect.Effect<void>
}

/**
 * The slot over `connection`. `lost` says why the connection is gone (once it
 * is); `onObservation` sees every observation a reply carries, before its
 * caller does; replies are decoded within `limits`; `silence` hears of each
 * request sent and each frame received.
 */
export const make = (
  connection: Connection,
  lost: () => string | undefined,
  onObservation: (obs: Observation) => Effect.Effect<void>,
  limits: Partial<DecodeLimits>,
  silence?: SilenceWatch
): Effect.Effect<RequestSlot, never, Scope.Scope> =>
  Effect.gen(function*() {
    const slot = yield* Semaphore.make(1)
    const exchanges = yield* FiberSet.make()
    const state: SlotState = { pending: undefined }

    const gone = (request: string, detail?: string) =>
      disconnected(request, detail ?? lost() ?? "connection closed")

    // Every request whose caller still waits, sent or waiting for the slot:
    // when the connection goes they all fail at once (the exchanges waiting
    // for the slot are interrupted with the connection's scope, and would
    // otherwise leave their callers to their timeouts).
    const waiting = new Map<Deferred.Deferred<Message, RequestError>, { readonly type: RequestType; readonly sent: () => boolean }>()

    const fail = Effect.sync(() => {
      state.pending = undefined
      for (const [reply, { sent, type }] of waiting) {
        // a step that went out may still be applied: the robot's kernel took it before the connection was given up
        const detail = type === "action" && sent() ? `${lost() ?? "connection closed"}; ${stepMayApply}` : undefined
        Deferred.doneUnsafe(reply, Exit.fail(gone(type, detail)))
      }
      waiting.clear()
    })

    // What the silence watch knows beyond its cell, for a legacy step's refusal:
    // which request left the robot silent; how many silences beyond the limit
    // have ended (a step asked for under another count waited across one: a
    // count, not a time, since a step asked at the very instant one ended,
    // on a virtual clock, must not be taken for one asked before) and how
    // long the last lasted (s).
    let silencedBy: RequestType | undefined
    let silencesEnded = 0
    let lastSilenceLasted = 0

    /**
     * Why a legacy step is not sent at `now` (s), if it is not: the robot has
     * left a request unanswered beyond its limit, or a silence beyond the
     * limit has ended since it was asked for (`askedIn`: the count of them
     * then; it waited for the slot across one: planned before it). Sent, it would wait in a stopped
     * robot's socket and be applied when it resumes, with those before it, all
     * at once.
     */
    const stepRefusal = (now: number, askedIn: number): RequestError | undefined => {
      if (silence === undefined) return undefined
      const limit = limitOf(silence.robot.cell)
      const silentFor = silence.robot.silentFor(now)
      if (silentFor > limit) {
        const by = silencedBy ?? "request"
        return new RequestError({
          request: "action",
          reason: "Stale",
          detail: `not sent: the robot has answered nothing for ${silentFor.toFixed(1)} s (maxRobotSilence ${limit} s) ` +
            `since ${/^[aeiou]/.test(by) ? "an" : "a"} ${by} it left unanswered; anything it answers ends this (a reset, ` +
            `getMetadata), and a robot that ignores ${by} requests (a C++ reference robot ignores obs_request) keeps it so`
        })
      }
      if (silencesEnded !== askedIn) {
        return new RequestError({
          request: "action",
          reason: "Stale",
          detail: `not sent: asked for before the robot's silence of ${lastSilenceLasted.toFixed(1)} s ended ` +
            `(maxRobotSilence ${limit} s): planned before it`
        })
      }
      return undefined
    }

    /**
     * Holds the slot from sending until the reply (or the end of the
     * connection). A legacy step is judged when it would go, not when it was
     * asked for (`stepRefusal`). From the last check to the send's start is
     * one synchronous step: a caller that gave up in between (its timeout)
     * is never told "not sent" of a step that then goes.
     */
    const exchange = (
      type: RequestType,
      frame: Uint8Array,
      reply: Deferred.Deferred<Message, RequestError>,
      lateReplyGrace: Duration.Duration,
      caller: { wanted: boolean; sent: boolean; readonly askedIn: number },
      onAnswer: ((reply: Message) => void) | undefined
    ) =>
      Effect.flatMap(captureTime, (now) => {
        if (!caller.wanted) return Effect.void
        if (lost() !== undefined) return Deferred.fail(reply, gone(type))
        const refused = type === "action" ? stepRefusal(now, caller.askedIn) : undefined
        if (refused !== undefined) return Deferred.fail(reply, refused)
        state.pending = { request: type, expect: replyType[type], reply, onAnswer }
        if (silence !== undefined) {
          if (Number.isNaN(asked(silence.robot.cell))) silencedBy = type
          silence.robot.asked(now)
        }
        caller.sent = true
        return connection.send(frame).pipe(
          Effect.catch((error) => Deferred.fail(reply, gone(type, error.message))),
          // A reply later than twice the timeout is taken as lost, so a server
          // that never answers (possible on a shared Zenoh connection) cannot
          // hold the slot forever.
          Effect.andThen(Effect.timeoutOption(Deferred.await(reply), lateReplyGrace)),
          Effect.ignore
        )
      }).pipe(
        // around the whole exchange: an interruption before its send started still clears it
        Effect.ensuring(Effect.sync(() => {
          if (state.pending?.reply === reply) state.pending = undefined
        })),
        slot.withPermit
      )

    const request = (
      message: Message & { readonly type: RequestType },
      timeout: Duration.Input,
      onAnswer?: (reply: Message) => void
    ) =>
      Effect.suspend((): Effect.Effect<Message, RequestError> => {
        if (lost() !== undefined) return Effect.fail(gone(message.type))
        let frame: Uint8Array
        try {
          frame = encodeFrame(message)
        } catch (cause) {
          return Effect.fail(new RequestError({ request: message.type, reason: "Malformed", detail: String(cause) }))
        }
        const reply = Deferred.makeUnsafe<Message, RequestError>()
        const caller = { wanted: true, sent: false, askedIn: silencesEnded }
        waiting.set(reply, { type: message.type, sent: () => caller.sent })
        const grace = Duration.times(Duration.fromInputUnsafe(timeout), 2)
        return FiberSet.run(exchanges, exchange(message.type, frame, reply, grace, caller, onAnswer)).pipe(
          Effect.andThen(Deferred.await(reply)),
          Effect.timeoutOrElse({
            duration: timeout,
            // read and given up in one step: the exchange sends only while it is wanted
            orElse: () =>
              Effect.suspend(() => {
                caller.wanted = false
                return Effect.fail(timedOut(message.type, timeout, caller.sent))
              })
          }),
          Effect.ensuring(Effect.sync(() => {
            caller.wanted = false
            waiting.delete(reply)
          }))
        )
      })

    const reply = (frame: Uint8Array) => receiveReply(state, frame, limits, onObservation)
    // Any frame shows the robot is reading and answering (a late reply, one
    // for another client of a shared Zenoh session); a request it did not
    // answer is watched from this frame on.
    const receive = silence === undefined ? reply : (frame: Uint8Array) =>
      Effect.flatMap(captureTime, (now) => {
        const silentFor = silence.robot.silentFor(now)
        const overLimit = silentFor > limitOf(silence.robot.cell)
        // before the reply that ends it frees the slot: a step queued across it is judged by it
        if (overLimit) {
          lastSilenceLasted = silentFor
          silencesEnded++
        }
        const received = Effect.sync(() => silence.robot.answered(now)).pipe(
          Effect.andThen(reply(frame)),
          Effect.andThen(Effect.sync(() => {
            if (state.pending !== undefined) {
              silencedBy = state.pending.request
              silence.robot.asked(now)
            }
          }))
        )
        return overLimit ? Effect.andThen(silence.answered(silentFor), received) : received
      })
    return { request, receive, fail }
  })

