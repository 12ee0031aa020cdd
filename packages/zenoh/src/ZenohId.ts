/**
 * Zenoh ids: 1–16 bytes, the little-endian bytes of a non-zero u128. Shown, as Zenoh does, as
 * the hexadecimal value of that u128.
 */

/** 16 random bytes with a non-zero last byte (a peer re-encodes the id without trailing zeros). */
export const random = (): Uint8Array => {
  const zid = new Uint8Array(16)
  globalThis.crypto.getRandomValues(zid)
  if (zid[15] === 0) zid[15] = 1
  return zid
}

/** The id as Zenoh prints it: the u128 value in lowercase hex. */
export const toString = (zid: Uint8Array): string => {
  let out = ""
  for (let i = zid.length - 1; i >= 0; i--) out += zid[i]!.toString(16).padStart(2, "0")
  const trimmed = out.replace(/^0+/, "")
  return trimmed.length > 0 ? trimmed : "0"
}

/** Parses the hex form back into little-endian bytes; undefined when not 1–32 hex digits or zero. */
export const fromString = (hex: string): Uint8Array | undefined => {
  if (!/^[0-9a-fA-F]{1,32}$/.test(hex)) return undefined
  const padded = hex.length % 2 === 1 ? "0" + hex : hex
  const n = padded.length / 2
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[n - 1 - i] = parseInt(padded.slice(2 * i, 2 * i + 2), 16)
  if (out.every((b) => b === 0)) return undefined
  return out
}

export const equals = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * What tells a client's second session from its first: a fixed 128-bit pattern
 * the two ids differ by, all of its least significant byte set (so the pair
 * differ there, and `clientKey` can order them) and its most significant byte
 * clear (so a sibling keeps `random`'s non-zero last byte). Any pattern would
 * do; one with no structure keeps ids numbered by hand ("…0", "…1") from
 * looking like a pair.
 */
const siblingMask = Uint8Array.of(0xff, 0x3c, 0x91, 0x5e, 0x07, 0xd2, 0x6a, 0xb4, 0x19, 0xe8, 0x53, 0xc7, 0x2f, 0x8d, 0x64, 0x00)

/**
 * The id of a second session of the same client: `zid` XOR a fixed pattern.
 * Our Zenoh client's action dispatcher opens a session of its own (a second
 * TCP connection, on its own thread); its id is its client session's sibling
 * so that a server can tell the two belong to one client (`clientKey`),
 * without anything added to the wire. Only for 16-byte ids; undefined for
 * others. The client pairs only the ids it drew itself (`random`).
 */
export const sibling = (zid: Uint8Array): Uint8Array | undefined => {
  if (zid.length !== 16) return undefined
  return zid.map((b, i) => b ^ siblingMask[i]!)
}

/**
 * The client a session of id `zid` (hex, as `toString` shows it) belongs to:
 * the same for an id and its `sibling` (the one of the pair with the smaller
 * least significant byte), and, for two random 16-byte ids of different
 * clients, equal with a chance of about 2^-127. Undefined for an id that is
 * not 16 bytes, which is a client of its own.
 */
export const clientKey = (zid: string): string | undefined => {
  const bytes = fromString(zid)
  if (bytes === undefined || bytes.length !== 16) return undefined
  const other = sibling(bytes)!
  return toString(other[0]! < bytes[0]! ? other : bytes)
}
