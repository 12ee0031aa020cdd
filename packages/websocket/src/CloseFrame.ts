/**
 * WebSocket close frames (RFC 6455 §5.5.1, §7.4): which codes end a
 * connection normally, how a received one reads in an error, and how a
 * server's reason is fitted into one it sends (`Connection.close`).
 */
import type { PeerClose } from "@chiral/core/TransportError"

/** Close codes that end the frame stream normally rather than as a lost connection. */
export const normalCloseCodes = new Set([1000, 1001, 1005])

/** A close frame, for an error's detail: "close code 1006", or "close code 4000: why". */
export const closeDetail = (code: number, reason: string): string =>
  `close code ${code}${reason === "" ? "" : `: ${reason}`}`

/**
 * The close the peer sent, for `TransportError.closedBy`; undefined for 1006,
 * which only says that the connection ended without a close frame.
 */
export const peerClose = (code: number, reason: string): PeerClose | undefined =>
  code === 1006 ? undefined : { code, reason }

/**
 * The longest reason a close frame carries, in bytes of UTF-8: a control
 * frame's payload is at most 125 bytes, 2 of them the code. `ws` throws on a
 * longer one.
 */
export const maxReasonBytes = 123

const encoder = new TextEncoder()
const ellipsis = "…"
const ellipsisBytes = encoder.encode(ellipsis).byteLength

/**
 * `reason` as a close frame can carry it: whole when it fits in
 * `maxReasonBytes` of UTF-8, else cut at a character boundary (never inside
 * a character's bytes, or a surrogate pair) so that it still fits with "…"
 * appended to show it was cut.
 */
export const fitReason = (reason: string): string => {
  if (Buffer.byteLength(reason) <= maxReasonBytes) return reason
  // encodeInto writes whole characters only: `read` ends at the last one that fit.
  const { read } = encoder.encodeInto(reason, new Uint8Array(maxReasonBytes - ellipsisBytes))
  return `${reason.slice(0, read)}${ellipsis}`
}

/**
 * Whether an endpoint may send `code` in a close frame (`ws` throws on any
 * other): 1000–1003, 1007–1014 (1004 is reserved; 1005 and 1006 only say
 * that no close frame came), and the registered and private 3000–4999.
 */
export const isSendableCode = (code: number): boolean =>
  Number.isInteger(code) &&
  ((code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999))
