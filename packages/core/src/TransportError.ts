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
  /** The address cannot be used at all (malformed URI, unsupported scheme). */
  "InvalidAddress",
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

export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  reason: TransportErrorReason,
  address: Schema.String,
  detail: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `${this.reason} (${this.address})${this.detail === undefined ? "" : `: ${this.detail}`}`
  }
}
