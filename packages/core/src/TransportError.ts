/**
 * The one error a transport reports. `reason` says what went wrong, `address`
 * where (the URI or peer), `cause` keeps the underlying error for logs.
 */
import { Schema } from "effect"

export const TransportErrorReason = Schema.Literals([
  /** Nobody is listening (yet) at the address: worth retrying. */
  "Unavailable",
  /**
   * Something accepted the connection but never completed the protocol's
   * handshake in time: another service on that port, or a frozen server.
   * Worth retrying (a frozen server may resume).
   */
  "Silent",
  /**
   * The address cannot be used at all (malformed URI, unsupported scheme, a
   * host name that does not exist: see `unresolved`).
   */
  "InvalidAddress",
  /**
   * A server answered but turned this client away before any frame, and will
   * again if asked the same way: an HTTP error other than 5xx answering the
   * WebSocket upgrade (401 without the right token, 403, 404 from another
   * service; a 5xx is `Unavailable`).
   */
  "Refused",
  /** The server could not bind its address. */
  "Listen",
  /** The peer closed the connection, or it was lost. */
  "Closed",
  /** Reading from the connection failed (including an oversized message). */
  "Read",
  /** Writing to the connection failed. */
  "Write"
])
export type TransportErrorReason = typeof TransportErrorReason.Type

/**
 * A host name the resolver could not resolve: the name, and the resolver's
 * answer as Node's code. `ENOTFOUND`: no such name (a typo, or a name not
 * announced yet), reported as `InvalidAddress`; the others are reported as
 * `Unavailable`, worth retrying: `EAI_AGAIN` (a temporary failure: the
 * resolver could not answer now), other getaddrinfo `EAI_*` codes, and
 * `ETIMEOUT` (the attempt's time ran out before the resolver answered).
 */
export const Unresolved = Schema.Struct({ host: Schema.String, code: Schema.String })
export type Unresolved = typeof Unresolved.Type

/**
 * How the peer ended a connection on purpose, where the transport carries it
 * (a WebSocket close frame): its `code` (1011, 1008, 4000, …) and `reason`,
 * "" when it gave none.
 */
export const PeerClose = Schema.Struct({
  code: Schema.Number,
  reason: Schema.String
})
export type PeerClose = typeof PeerClose.Type

export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  reason: TransportErrorReason,
  address: Schema.String,
  detail: Schema.optional(Schema.String),
  /** Set when the address's host name could not be resolved. */
  unresolved: Schema.optional(Unresolved),
  /**
   * With reason `Closed`: the close the peer sent, when it was not a normal
   * end (those end the frames instead), so a client can say why the server
   * ended the connection rather than that it was lost.
   */
  closedBy: Schema.optional(PeerClose),
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `${this.reason} (${this.address})${this.detail === undefined ? "" : `: ${this.detail}`}`
  }
}

/**
 * Whether `code` (a Node error's `code`) says a host name could not be
 * resolved: `ENOTFOUND`, getaddrinfo's `EAI_*` (`EAI_AGAIN`, `EAI_FAIL`, …),
 * or `ETIMEOUT`. `net.connect` reports its lookup's failures with these codes
 * (and `syscall: "getaddrinfo"`); connecting to an IP address never does.
 */
export const isResolveCode = (code: unknown): code is string =>
  code === "ENOTFOUND" || code === "ETIMEOUT" || (typeof code === "string" && code.startsWith("EAI_"))

/** What the resolver's code means, for people (`ENOTFOUND` says it itself). */
const meaningOf = (code: string): string | undefined =>
  code === "EAI_AGAIN"
    ? "a temporary failure: the resolver could not answer now"
    : code === "ETIMEOUT"
    ? "no answer from the resolver in time"
    : undefined

/**
 * `cannot resolve host "robto" (ENOTFOUND)`, `cannot resolve host
 * "robot.local" (EAI_AGAIN: a temporary failure: …)`; `note` replaces the
 * explanation after the code.
 */
export const describeUnresolved = (unresolved: Unresolved, note?: string | undefined): string => {
  const meaning = note ?? meaningOf(unresolved.code)
  return `cannot resolve host ${JSON.stringify(unresolved.host)} (${
    meaning === undefined ? unresolved.code : `${unresolved.code}: ${meaning}`
  })`
}

/**
 * The error for a host name that could not be resolved (`code`, see
 * `Unresolved`): `InvalidAddress` for `ENOTFOUND`, `Unavailable` (worth
 * retrying) otherwise; its detail names the host and the resolver's answer,
 * e.g. `cannot resolve host "robto" (ENOTFOUND)`. `note` replaces the
 * explanation after the code.
 */
export const unresolvedHost = (options: {
  readonly address: string
  readonly host: string
  readonly code: string
  readonly note?: string | undefined
  readonly cause?: unknown
}): TransportError =>
  new TransportError({
    reason: options.code === "ENOTFOUND" ? "InvalidAddress" : "Unavailable",
    address: options.address,
    detail: describeUnresolved(options, options.note),
    unresolved: { host: options.host, code: options.code },
    cause: options.cause
  })
