/**
 * The `apply_action` frame, written without @chiral/protocol for the worker
 * thread that dispatches actions: that thread must start fast and keep a tiny
 * heap (its garbage collections would delay ticks), and the codec pulls in all
 * of Effect. The bytes are exactly `encodeFrame({ type: "apply_action", … })`
 * (Python layout; tested against the codec): a msgpack map of type, shape,
 * dtype "float32" and obs_timestamps (float64 values), then the float32 data.
 */

const encoder = new TextEncoder()

class Writer {
  buf: Uint8Array
  view: DataView
  pos = 4
  constructor(size: number) {
    this.buf = new Uint8Array(size)
    this.view = new DataView(this.buf.buffer)
  }
  ensure(n: number) {
    if (this.pos + n <= this.buf.byteLength) return
    const grown = new Uint8Array(Math.max(this.buf.byteLength * 2, this.pos + n))
    grown.set(this.buf)
    this.buf = grown
    this.view = new DataView(grown.buffer)
  }
  byte(b: number) {
    this.ensure(1)
    this.buf[this.pos++] = b
  }
  uint(v: number) {
    this.ensure(9)
    if (v < 0x80) this.buf[this.pos++] = v
    else if (v < 0x100) {
      this.buf[this.pos++] = 0xcc
      this.buf[this.pos++] = v
    } else if (v < 0x10000) {
      this.buf[this.pos++] = 0xcd
      this.view.setUint16(this.pos, v)
      this.pos += 2
    } else if (v < 0x100000000) {
      this.buf[this.pos++] = 0xce
      this.view.setUint32(this.pos, v)
      this.pos += 4
    } else {
      this.buf[this.pos++] = 0xcf
      this.view.setBigUint64(this.pos, BigInt(v))
      this.pos += 8
    }
  }
  float64(v: number) {
    this.ensure(9)
    this.buf[this.pos++] = 0xcb
    this.view.setFloat64(this.pos, v)
    this.pos += 8
  }
  str(s: string) {
    const bytes = encoder.encode(s)
    const n = bytes.byteLength
    this.ensure(5 + n)
    if (n < 32) this.buf[this.pos++] = 0xa0 | n
    else if (n < 0x100) {
      this.buf[this.pos++] = 0xd9
      this.buf[this.pos++] = n
    } else if (n < 0x10000) {
      this.buf[this.pos++] = 0xda
      this.view.setUint16(this.pos, n)
      this.pos += 2
    } else {
      this.buf[this.pos++] = 0xdb
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
    this.buf.set(bytes, this.pos)
    this.pos += n
  }
  header(fix: number, code16: number, n: number) {
    this.ensure(5)
    if (n < 16) this.buf[this.pos++] = fix | n
    else if (n < 0x10000) {
      this.buf[this.pos++] = code16
      this.view.setUint16(this.pos, n)
      this.pos += 2
    } else {
      this.buf[this.pos++] = code16 + 1
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
  }
}

/** One `apply_action` frame: `data` (float32, row-major) of `shape`, stamped with `obsTimestamps`. */
export const encodeApplyAction = (
  shape: ReadonlyArray<number>,
  data: Float32Array,
  obsTimestamps: Readonly<Record<string, number>>
): Uint8Array => {
  const w = new Writer(128)
  w.header(0x80, 0xde, 4)
  w.str("type")
  w.str("apply_action")
  w.str("shape")
  w.header(0x90, 0xdc, shape.length)
  for (const d of shape) w.uint(d)
  w.str("dtype")
  w.str("float32")
  w.str("obs_timestamps")
  const names = Object.keys(obsTimestamps)
  w.header(0x80, 0xde, names.length)
  for (const name of names) {
    w.str(name)
    w.float64(obsTimestamps[name]!)
  }
  const headerEnd = w.pos
  w.view.setUint32(0, headerEnd - 4, true)
  const out = new Uint8Array(headerEnd + data.byteLength)
  out.set(w.buf.subarray(0, headerEnd))
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), headerEnd)
  return out
}
