/**
 * Why the server ends a client's connection on purpose, as the client is told
 * (`Connection.close`, where the transport can say why: WebSocket). Without
 * it the client saw only that the server closed the connection, and the
 * policy author could not tell a failed reset from a server that went away.
 *
 * Codes are WebSocket's (RFC 6455 §7.4.1). A reason holds the request and
 * the handler's error message, nothing else: no frames, no stack, no
 * connection's token (those are never in an error message). The transport
 * cuts one that is too long (WebSocket: 123 bytes).
 */
import { Cause, Option, Predicate } from "effect"

/** 1011: the server met a condition that kept it from answering (a handler failed). */
export const internalError = 1011

/** 1008: the server refuses this client (a failing `onConnect`). */
export const policyViolation = 1008

/** 1013: try again later (nothing behind the server answers yet: the recording proxy without its robot). */
export const tryAgainLater = 1013

/**
 * The message of what failed in `cause`, on one line: the first error's
 * `message` (its `_tag` when it has no message, a string as it is), or else
 * the first defect's.
 */
export const messageOf = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.findErrorOption(cause)
  const error = Option.isSome(failure) ? failure.value : Cause.squash(cause)
  const text = typeof error === "string"
    ? error
    : Predicate.hasProperty(error, "message") && typeof error.message === "string" && error.message !== ""
    ? error.message
    : Predicate.hasProperty(error, "_tag") && typeof error._tag === "string"
    ? error._tag
    : error instanceof Error
    ? error.name
    : String(error)
  return text.replace(/\s+/g, " ").trim()
}

/** How a request is named to the client: its wire type, the legacy `action` as the step it is. */
const requestName = (request: string): string => request === "action" ? "step" : request

/** A request's handler failed: "chiral: reset failed: e-stop pressed". */
export const failed = (request: string, cause: Cause.Cause<unknown>): string =>
  `chiral: ${requestName(request)} failed: ${messageOf(cause)}`

/** A request's reply could not be encoded: "chiral: cannot encode the obs_request reply: …". */
export const unencodable = (request: string, cause: Cause.Cause<unknown>): string =>
  `chiral: cannot encode the ${requestName(request)} reply: ${messageOf(cause)}`

/** The action gate refused a legacy step, which cannot be answered without applying it: "chiral: step refused (stale): …". */
export const stepRefused = (reason: string, detail: string): string => `chiral: step refused (${reason}): ${detail}`

/** The action gate refused a reset (another client has control): "chiral: reset refused (notController): …". */
export const resetRefused = (reason: string, detail: string): string => `chiral: reset refused (${reason}): ${detail}`

/** The robot's `onConnect` refused the client: "chiral: refused by the robot's onConnect: controller busy". */
export const refused = (cause: Cause.Cause<unknown>): string => `chiral: refused by the robot's onConnect: ${messageOf(cause)}`
