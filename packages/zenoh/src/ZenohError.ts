/**
 * Typed failures of the Zenoh codec, links and sessions. Each one says what was wrong and where,
 * so a caller can tell a malformed peer from a vanished one from its own mistake.
 */
import { Predicate, Schema } from "effect"

/** Bytes that do not decode: `what` names the field or message, `offset` is relative to the decoded buffer. */
export class ZenohDecodeError extends Schema.TaggedError<ZenohDecodeError>()("ZenohDecodeError", {
  what: Schema.String,
  offset: Schema.Number,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot decode ${this.what} at byte ${this.offset}: ${this.reason}`
  }
}

/** A key expression that is not valid Zenoh syntax (or an unknown wire scope). */
export class ZenohKeyExprError extends Schema.TaggedError<ZenohKeyExprError>()("ZenohKeyExprError", {
  keyExpr: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `invalid key expression ${JSON.stringify(this.keyExpr)}: ${this.reason}`
  }
}

/** A fragmented message that cannot be put back together (too large, out of order, interrupted). */
export class ZenohReassemblyError extends Schema.TaggedError<ZenohReassemblyError>()("ZenohReassemblyError", {
  reason: Schema.String,
  size: Schema.Number,
  limit: Schema.Number
}) {
  override get message(): string {
    return `fragment reassembly failed (${this.size} bytes, limit ${this.limit}): ${this.reason}`
  }
}

/** The INIT/OPEN exchange did not complete: bad answer, unsupported version, or timeout. */
export class ZenohHandshakeError extends Schema.TaggedError<ZenohHandshakeError>()("ZenohHandshakeError", {
  role: Schema.Literals(["listener", "connector"]),
  peer: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `handshake as ${this.role} with ${this.peer} failed: ${this.reason}`
  }
}

/** The TCP link failed: could not connect or listen, a socket error, or the peer closed the connection. */
export class ZenohLinkError extends Schema.TaggedError<ZenohLinkError>()("ZenohLinkError", {
  peer: Schema.String,
  operation: Schema.Literals(["connect", "listen", "read", "write"]),
  reason: Schema.String,
  /**
   * The socket error's code, when there was one: `ECONNREFUSED`, and for a host name the
   * resolver could not resolve `ENOTFOUND` (no such name) or getaddrinfo's `EAI_AGAIN` (a
   * temporary failure), …; `ETIMEOUT` when a connect timed out before the name was resolved.
   * Kept across threads, where `cause` is not.
   */
  code: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `${this.operation} on ${this.peer} failed: ${this.reason}`
  }
}

/** The remote peer closed the session with a CLOSE message. */
export class ZenohCloseReceived extends Schema.TaggedError<ZenohCloseReceived>()("ZenohCloseReceived", {
  peer: Schema.String,
  reason: Schema.Number,
  reasonName: Schema.String
}) {
  override get message(): string {
    return `peer ${this.peer} closed the session (${this.reasonName})`
  }
}

/** Nothing arrived from the remote peer for its whole lease. */
export class ZenohLeaseExpired extends Schema.TaggedError<ZenohLeaseExpired>()("ZenohLeaseExpired", {
  peer: Schema.String,
  leaseMillis: Schema.Number
}) {
  override get message(): string {
    return `peer ${this.peer} silent for its lease of ${this.leaseMillis} ms`
  }
}

/** An operation on a session that was already closed locally. */
export class ZenohSessionClosed extends Schema.TaggedError<ZenohSessionClosed>()("ZenohSessionClosed", {
  operation: Schema.String
}) {
  override get message(): string {
    return `${this.operation}: the session is closed`
  }
}

/** A configuration value outside what the protocol allows. */
export class ZenohConfigError extends Schema.TaggedError<ZenohConfigError>()("ZenohConfigError", {
  field: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `invalid Zenoh configuration ${this.field}: ${this.reason}`
  }
}

/** Why a remote peer's session ended. */
export type PeerError =
  | ZenohDecodeError
  | ZenohReassemblyError
  | ZenohLinkError
  | ZenohCloseReceived
  | ZenohLeaseExpired

export type ZenohError =
  | PeerError
  | ZenohKeyExprError
  | ZenohHandshakeError
  | ZenohSessionClosed
  | ZenohConfigError

const tags = new Set([
  "ZenohDecodeError",
  "ZenohKeyExprError",
  "ZenohReassemblyError",
  "ZenohHandshakeError",
  "ZenohLinkError",
  "ZenohCloseReceived",
  "ZenohLeaseExpired",
  "ZenohSessionClosed",
  "ZenohConfigError"
])

export const isZenohError = (u: unknown): u is ZenohError =>
  Predicate.hasProperty(u, "_tag") && Predicate.isString(u._tag) && tags.has(u._tag)
