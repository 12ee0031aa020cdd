/**
 * Byte cursors for the codecs. `ZReader` reads fields out of one buffer without copying (byte
 * fields are views) and throws `ZenohDecodeError` naming the field and offset on bad input;
 * `ZWriter` appends fields to a growable buffer.
 *
 * The codecs throw rather than return results because one batch decodes into many nested fields:
 * the edge (a session, a test) catches the typed error once per batch.
 */
import { ZenohDecodeError } from "./ZenohError.js"

const utf8Decoder = new TextDecoder("utf-8", { fatal: true })
const utf8Encoder = new TextEncoder()

export class ZReader {
  readonly buf: Uint8Array
  readonly end: number
  pos: number

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf
    this.pos = start
    this.end = end
  }

  get remaining(): number {
    return this.end - this.pos
  }

  fail(what: string, reason: string, offset = this.pos): never {
    throw new ZenohDecodeError({ what, offset, reason })
  }

  u8(what: string): number {
    if (this.pos >= this.end) this.fail(what, "unexpected end of data")
    return this.buf[this.pos++]!
  }

  /** The next byte without consuming it, or -1 at the end. */
  peek(): number {
    return this.pos < this.end ? this.buf[this.pos]! : -1
  }

  u16le(what: string): number {
    if (this.end - this.pos < 2) this.fail(what, "unexpected end of data")
    const v = this.buf[this.pos]! | (this.buf[this.pos + 1]! << 8)
    this.pos += 2
    return v
  }

  /** A zint as a number; fails when larger than `max` (default: the largest safe integer). */
  zint(what: string, max = Number.MAX_SAFE_INTEGER): number {
    const start = this.pos
    let value = 0
    let scale = 1
    for (let i = 0; i < 9; i++) {
      if (this.pos >= this.end) this.fail(what, "unexpected end of data in zint", start)
      const b = this.buf[this.pos++]!
      if (i === 8) {
        value += b * scale
        break
      }
      value += (b & 0x7f) * scale
      if ((b & 0x80) === 0) break
      scale *= 0x80
    }
    if (value > max || !Number.isSafeInteger(value)) {
      this.fail(what, `value ${value} exceeds the limit ${max}`, start)
    }
    return value
  }

  /** A zint as a bigint (the full u64 range). */
  zint64(what: string): bigint {
    const start = this.pos
    let value = 0n
    let shift = 0n
    for (let i = 0; i < 9; i++) {
      if (this.pos >= this.end) this.fail(what, "unexpected end of data in zint", start)
      const b = this.buf[this.pos++]!
      if (i === 8) {
        value |= BigInt(b) << shift
        break
      }
      value |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) break
      shift += 7n
    }
    return value
  }

  /** `n` bytes as a view into the buffer. */
  slice(n: number, what: string): Uint8Array {
    if (n > this.end - this.pos) {
      this.fail(what, `needs ${n} bytes, only ${this.end - this.pos} left`)
    }
    const out = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }

  /** A zint length followed by that many bytes (a view). */
  zbytes(what: string, max = 0xffff_ffff): Uint8Array {
    const n = this.zint(what, max)
    return this.slice(n, what)
  }

  /** A zint length followed by UTF-8 text. */
  string(what: string, max = 0xffff): string {
    const bytes = this.zbytes(what, max)
    try {
      return utf8Decoder.decode(bytes)
    } catch {
      return this.fail(what, "invalid UTF-8", this.pos - bytes.length)
    }
  }

  /** Everything up to the end (a view). */
  rest(): Uint8Array {
    const out = this.buf.subarray(this.pos, this.end)
    this.pos = this.end
    return out
  }
}

/** Decodes UTF-8 text that runs to the end of `bytes`. */
export const decodeUtf8 = (bytes: Uint8Array, what: string, offset: number): string => {
  try {
    return utf8Decoder.decode(bytes)
  } catch {
    throw new ZenohDecodeError({ what, offset, reason: "invalid UTF-8" })
  }
}

export const encodeUtf8 = (text: string): Uint8Array => utf8Encoder.encode(text)

export class ZWriter {
  buf: Uint8Array
  pos = 0

  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity)
  }

  /** Makes room for `n` more bytes, doubling so that appends stay linear. */
  ensure(n: number): void {
    const need = this.pos + n
    if (need <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < need) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
  }

  u8(v: number): this {
    this.ensure(1)
    this.buf[this.pos++] = v
    return this
  }

  u16le(v: number): this {
    this.ensure(2)
    this.buf[this.pos++] = v & 0xff
    this.buf[this.pos++] = (v >>> 8) & 0xff
    return this
  }

  zint(v: number): this {
    this.ensure(9)
    let value = v
    while (value >= 0x80) {
      this.buf[this.pos++] = (value % 0x80) | 0x80
      value = Math.floor(value / 0x80)
    }
    this.buf[this.pos++] = value
    return this
  }

  zint64(v: bigint): this {
    this.ensure(9)
    let value = v
    let n = 1
    while (value >= 0x80n && n < 9) {
      this.buf[this.pos++] = Number(value & 0x7fn) | 0x80
      value >>= 7n
      n++
    }
    this.buf[this.pos++] = Number(value)
    return this
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
    return this
  }

  zbytes(b: Uint8Array): this {
    return this.zint(b.length).bytes(b)
  }

  string(s: string): this {
    return this.zbytes(utf8Encoder.encode(s))
  }

  /** The bytes written so far (a view; do not keep writing after taking it). */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos)
  }
}
