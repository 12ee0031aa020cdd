/**
 * Zenoh's variable-length integers ("zint"): 7 value bits per byte, low group first, bit 7 says
 * another byte follows. At most 9 bytes; the 9th carries 8 full bits so any u64 fits.
 *
 * `number` variants cover values up to `Number.MAX_SAFE_INTEGER` (every field chiral uses);
 * `bigint` variants cover the full u64 range (NTP64 timestamps, z64 extensions).
 */
import { ZReader } from "./ZBuf.js"

/** The largest number of bytes a zint takes on the wire. */
export const MAX_LENGTH = 9

/** Upper bounds the protocol puts on specific fields. */
export const MAX_Z16 = 0xffff
export const MAX_Z32 = 0xffff_ffff
export const MAX_Z64 = 0xffff_ffff_ffff_ffffn

const TWO_7 = 0x80

/** Bytes needed to encode `value` (a non-negative safe integer). */
export const lengthOf = (value: number): number => {
  let n = 1
  while (value >= TWO_7 && n < 8) {
    value = Math.floor(value / TWO_7)
    n++
  }
  return n
}

/** Bytes needed to encode a u64 `value`. */
export const lengthOf64 = (value: bigint): number => {
  let n = 1
  while (value >= 0x80n && n < MAX_LENGTH) {
    value >>= 7n
    n++
  }
  return n
}

/**
 * Writes `value` at `offset` and returns the offset after it. The caller guarantees room for
 * `lengthOf(value)` bytes and that `value` is a non-negative safe integer.
 */
export const writeInto = (target: Uint8Array, offset: number, value: number): number => {
  // Division rather than shifts: safe integers go beyond 32 bits. They stay below 2^53 < 2^56,
  // so the 9-byte form never occurs for numbers.
  while (value >= TWO_7) {
    target[offset++] = (value % TWO_7) | 0x80
    value = Math.floor(value / TWO_7)
  }
  target[offset++] = value
  return offset
}

/** Writes a u64 `value` at `offset` and returns the offset after it. */
export const writeInto64 = (target: Uint8Array, offset: number, value: bigint): number => {
  let n = 1
  while (value >= 0x80n && n < MAX_LENGTH) {
    target[offset++] = Number(value & 0x7fn) | 0x80
    value >>= 7n
    n++
  }
  target[offset++] = Number(value)
  return offset
}

/** Encodes a non-negative safe integer or a u64 bigint. */
export const encode = (value: number | bigint): Uint8Array => {
  if (typeof value === "bigint") {
    const out = new Uint8Array(lengthOf64(value))
    writeInto64(out, 0, value)
    return out
  }
  const out = new Uint8Array(lengthOf(value))
  writeInto(out, 0, value)
  return out
}

/**
 * Decodes one zint at `offset`. Throws `ZenohDecodeError` when the bytes end early or the value
 * exceeds `max`.
 */
export const decode = (
  bytes: Uint8Array,
  offset = 0,
  max = Number.MAX_SAFE_INTEGER
): { readonly value: number; readonly next: number } => {
  const reader = new ZReader(bytes, offset)
  const value = reader.zint("zint", max)
  return { value, next: reader.pos }
}

/** Decodes one u64 zint at `offset` as a bigint. */
export const decode64 = (bytes: Uint8Array, offset = 0): { readonly value: bigint; readonly next: number } => {
  const reader = new ZReader(bytes, offset)
  const value = reader.zint64("zint")
  return { value, next: reader.pos }
}
