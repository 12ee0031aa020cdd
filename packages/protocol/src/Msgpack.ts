/**
 * The small msgpack subset chiral needs, written by hand because the protocol
 * cares about exact forms (float64 for integral floats, smallest ints) and the
 * decoder must be bounded (depth, lengths) against hostile input.
 */

// ── writer ────────────────────────────────────────────────────────────────────

/** How a user value's numbers are written: "python" = ints as ints, other numbers float64. */
export class MsgpackWriter {
  buf: Uint8Array
  view: DataView
  pos: number

  constructor(initialCapacity = 1024, start = 0) {
    this.buf = new Uint8Array(initialCapacity)
    this.view = new DataView(this.buf.buffer)
    this.pos = start
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    let cap = this.buf.length * 2
    while (cap < this.pos + n) cap *= 2
    const next = new Uint8Array(cap)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  /** The bytes written so far (a view). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.pos)
  }

  nil(): void {
    this.ensure(1)
    this.buf[this.pos++] = 0xc0
  }

  bool(b: boolean): void {
    this.ensure(1)
    this.buf[this.pos++] = b ? 0xc3 : 0xc2
  }

  /** An integer in its smallest msgpack form (unsigned forms for non-negative values). */
  int(v: number): void {
    this.ensure(9)
    const buf = this.buf
    if (v >= 0) {
      if (v < 0x80) buf[this.pos++] = v
      else if (v < 0x100) {
        buf[this.pos++] = 0xcc
        buf[this.pos++] = v
      } else if (v < 0x10000) {
        buf[this.pos++] = 0xcd
        this.view.setUint16(this.pos, v)
        this.pos += 2
      } else if (v < 0x100000000) {
        buf[this.pos++] = 0xce
        this.view.setUint32(this.pos, v)
        this.pos += 4
      } else {
        buf[this.pos++] = 0xcf
        this.view.setBigUint64(this.pos, BigInt(v))
        this.pos += 8
      }
    } else {
      if (v >= -32) buf[this.pos++] = v & 0xff
      else if (v >= -0x80) {
        buf[this.pos++] = 0xd0
        this.view.setInt8(this.pos++, v)
      } else if (v >= -0x8000) {
        buf[this.pos++] = 0xd1
        this.view.setInt16(this.pos, v)
        this.pos += 2
      } else if (v >= -0x80000000) {
        buf[this.pos++] = 0xd2
        this.view.setInt32(this.pos, v)
        this.pos += 4
      } else {
        buf[this.pos++] = 0xd3
        this.view.setBigInt64(this.pos, BigInt(v))
        this.pos += 8
      }
    }
  }

  bigint(v: bigint): void {
    if (v >= -0x80000000n && v < 0x100000000n) return this.int(Number(v))
    this.ensure(9)
    if (v >= 0n) {
      this.buf[this.pos++] = 0xcf
      this.view.setBigUint64(this.pos, v)
    } else {
      this.buf[this.pos++] = 0xd3
      this.view.setBigInt64(this.pos, v)
    }
    this.pos += 8
  }

  float64(v: number): void {
    this.ensure(9)
    this.buf[this.pos++] = 0xcb
    this.view.setFloat64(this.pos, v)
    this.pos += 8
  }

  float32(v: number): void {
    this.ensure(5)
    this.buf[this.pos++] = 0xca
    this.view.setFloat32(this.pos, v)
    this.pos += 4
  }

  str(s: string): void {
    // Header size depends on the UTF-8 length, so count first (cheap for short keys).
    const n = utf8Length(s)
    this.ensure(5 + n)
    const buf = this.buf
    if (n < 32) buf[this.pos++] = 0xa0 | n
    else if (n < 0x100) {
      buf[this.pos++] = 0xd9
      buf[this.pos++] = n
    } else if (n < 0x10000) {
      buf[this.pos++] = 0xda
      this.view.setUint16(this.pos, n)
      this.pos += 2
    } else {
      buf[this.pos++] = 0xdb
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
    this.pos = writeUtf8(s, buf, this.pos)
  }

  bin(b: Uint8Array): void {
    const n = b.byteLength
    this.ensure(5 + n)
    if (n < 0x100) {
      this.buf[this.pos++] = 0xc4
      this.buf[this.pos++] = n
    } else if (n < 0x10000) {
      this.buf[this.pos++] = 0xc5
      this.view.setUint16(this.pos, n)
      this.pos += 2
    } else {
      this.buf[this.pos++] = 0xc6
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
    this.buf.set(b, this.pos)
    this.pos += n
  }

  arrayHeader(n: number): void {
    this.ensure(5)
    if (n < 16) this.buf[this.pos++] = 0x90 | n
    else if (n < 0x10000) {
      this.buf[this.pos++] = 0xdc
      this.view.setUint16(this.pos, n)
      this.pos += 2
    } else {
      this.buf[this.pos++] = 0xdd
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
  }

  mapHeader(n: number): void {
    this.ensure(5)
    if (n < 16) this.buf[this.pos++] = 0x80 | n
    else if (n < 0x10000) {
      this.buf[this.pos++] = 0xde
      this.view.setUint16(this.pos, n)
      this.pos += 2
    } else {
      this.buf[this.pos++] = 0xdf
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
  }

  /**
   * A user number the way Python's msgpack writes a Python value: integers as
   * ints, the rest float64. Integers beyond 2^53 are written as float64 because
   * a JS number that large is a float (exact ints that large are bigints).
   */
  number(v: number): void {
    if (Number.isSafeInteger(v) && !Object.is(v, -0)) this.int(v)
    else this.float64(v)
  }

  /**
   * A number the way msgpack-c writes a C++ double: integral values in range as
   * ints (including 0.0), the rest as float64.
   */
  compactDouble(v: number): void {
    if (Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 64) this.int(v === 0 ? 0 : v)
    else this.float64(v)
  }

  /** Like {@link compactDouble} for a C++ float: integral → int, else float32. */
  compactFloat(v: number): void {
    if (Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 64) this.int(v === 0 ? 0 : v)
    else this.float32(v)
  }

  /**
   * Any user value (metadata data, info, extra): null/undefined → nil, boolean,
   * number (see {@link number}), bigint, string, Uint8Array → bin, arrays, Maps and
   * plain objects → maps. `depth` guards against cycles.
   */
  value(v: unknown, depth = 0): void {
    if (depth > 512) throw new TypeError("value nested more than 512 levels deep (a cycle?)")
    switch (typeof v) {
      case "number":
        return this.number(v)
      case "string":
        return this.str(v)
      case "boolean":
        return this.bool(v)
      case "bigint":
        return this.bigint(v)
      case "undefined":
        return this.nil()
      case "object": {
        if (v === null) return this.nil()
        if (v instanceof Uint8Array) return this.bin(v)
        if (Array.isArray(v)) {
          this.arrayHeader(v.length)
          for (const item of v) this.value(item, depth + 1)
          return
        }
        if (v instanceof Map) {
          this.mapHeader(v.size)
          for (const [k, item] of v) {
            this.value(k, depth + 1)
            this.value(item, depth + 1)
          }
          return
        }
        if (ArrayBuffer.isView(v)) {
          // Other typed arrays: their elements, like numpy's tolist().
          const items = Array.from(v as unknown as ArrayLike<number | bigint>)
          this.arrayHeader(items.length)
          for (const item of items) this.value(item, depth + 1)
          return
        }
        const keys = Object.keys(v)
        this.mapHeader(keys.length)
        for (const k of keys) {
          this.str(k)
          this.value((v as Record<string, unknown>)[k], depth + 1)
        }
        return
      }
      default:
        throw new TypeError(`cannot encode a ${typeof v} as msgpack`)
    }
  }
}

const utf8Length = (s: string): number => {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4
      i++
    } else n += 3 // BMP char, or a lone surrogate written as U+FFFD
  }
  return n
}

const writeUtf8 = (s: string, buf: Uint8Array, pos: number): number => {
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i)
    if (c < 0x80) buf[pos++] = c
    else if (c < 0x800) {
      buf[pos++] = 0xc0 | (c >> 6)
      buf[pos++] = 0x80 | (c & 0x3f)
    } else {
      if (c >= 0xd800 && c < 0xe000) {
        const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0
        if (c < 0xdc00 && (next & 0xfc00) === 0xdc00) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00)
          buf[pos++] = 0xf0 | (cp >> 18)
          buf[pos++] = 0x80 | ((cp >> 12) & 0x3f)
          buf[pos++] = 0x80 | ((cp >> 6) & 0x3f)
          buf[pos++] = 0x80 | (cp & 0x3f)
          i++
          continue
        }
        c = 0xfffd
      }
      buf[pos++] = 0xe0 | (c >> 12)
      buf[pos++] = 0x80 | ((c >> 6) & 0x3f)
      buf[pos++] = 0x80 | (c & 0x3f)
    }
  }
  return pos
}

// ── reader ────────────────────────────────────────────────────────────────────

/** Why a msgpack value could not be read; `path` locates it inside the value. */
export class MsgpackIssue {
  readonly reason: string
  /** Keys/indices from the root value to where reading failed. */
  readonly path: ReadonlyArray<string | number>
  constructor(reason: string, path: ReadonlyArray<string | number>) {
    this.reason = reason
    this.path = path
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Strings up to this many bytes go through the cache. */
const cachedLength = 32
const cacheSlots = 1024
const cacheKeys = new Array<Uint8Array | undefined>(cacheSlots)
const cacheStrings = new Array<string>(cacheSlots)

/**
 * Reads exactly one msgpack value from `bytes[start, end)`.
 *
 * Bounded: nesting deeper than `maxDepth` fails before recursing further; an
 * array or map length larger than the bytes left could hold (every element
 * needs at least one byte) fails before anything is allocated, so nothing
 * allocates more than the input justifies. Maps with string keys become plain
 * objects; a map with any other key becomes a Map. uint64/int64 beyond 2^53
 * become bigint. Extension types are rejected (the protocol has none).
 */
export class MsgpackReader {
  readonly bytes: Uint8Array
  readonly view: DataView
  readonly end: number
  readonly maxDepth: number
  pos: number
  /** Where the reader is, kept as a stack so paths cost nothing until an error. */
  private readonly keys: Array<string | number> = []

  constructor(bytes: Uint8Array, start: number, end: number, maxDepth: number) {
    this.bytes = bytes
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.pos = start
    this.end = end
    this.maxDepth = maxDepth
  }

  private fail(reason: string): never {
    throw new MsgpackIssue(reason, [...this.keys])
  }

  private need(n: number, what: string): void {
    if (this.end - this.pos < n) this.fail(`msgpack truncated: ${what} needs ${n} bytes, ${this.end - this.pos} left`)
  }

  private u8(): number {
    this.need(1, "value")
    return this.bytes[this.pos++]!
  }

  private length(n: number): number {
    this.need(n, "length")
    let v: number
    if (n === 1) v = this.bytes[this.pos]!
    else if (n === 2) v = this.view.getUint16(this.pos)
    else v = this.view.getUint32(this.pos)
    this.pos += n
    return v
  }

  read(depth = 0): unknown {
    const t = this.u8()
    if (t < 0x80) return t
    if (t >= 0xe0) return t - 0x100
    if (t < 0x90) return this.map(t & 0x0f, depth)
    if (t < 0xa0) return this.array(t & 0x0f, depth)
    if (t < 0xc0) return this.string(t & 0x1f)
    if (t >= 0xca && t <= 0xd3) return this.number(t)
    switch (t) {
      case 0xc0:
        return null
      case 0xc2:
        return false
      case 0xc3:
        return true
      case 0xc4:
        return this.binary(this.length(1))
      case 0xc5:
        return this.binary(this.length(2))
      case 0xc6:
        return this.binary(this.length(4))
      case 0xd9:
        return this.string(this.length(1))
      case 0xda:
        return this.string(this.length(2))
      case 0xdb:
        return this.string(this.length(4))
      case 0xdc:
        return this.array(this.length(2), depth)
      case 0xdd:
        return this.array(this.length(4), depth)
      case 0xde:
        return this.map(this.length(2), depth)
      case 0xdf:
        return this.map(this.length(4), depth)
      case 0xc1:
        this.fail("byte 0xc1 is never used in msgpack")
      default:
        // 0xc7-0xc9, 0xd4-0xd8
        this.fail(`msgpack extension type (0x${t.toString(16)}) is not part of the protocol`)
    }
  }

  /** A fixed-size number (0xca–0xd3): a float, or an integer beyond a fixint; 64-bit ones outside the safe range stay bigints. */
  private number(t: number): number | bigint {
    const view = this.view
    let v: number | bigint
    switch (t) {
      case 0xca:
        this.need(4, "float32")
        v = view.getFloat32(this.pos)
        this.pos += 4
        return v
      case 0xcb:
        this.need(8, "float64")
        v = view.getFloat64(this.pos)
        this.pos += 8
        return v
      case 0xcc:
        this.need(1, "uint8")
        return this.bytes[this.pos++]
      case 0xcd:
        this.need(2, "uint16")
        v = view.getUint16(this.pos)
        this.pos += 2
        return v
      case 0xce:
        this.need(4, "uint32")
        v = view.getUint32(this.pos)
        this.pos += 4
        return v
      case 0xcf:
        this.need(8, "uint64")
        v = view.getBigUint64(this.pos)
        this.pos += 8
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v
      case 0xd0:
        this.need(1, "int8")
        return view.getInt8(this.pos++)
      case 0xd1:
        this.need(2, "int16")
        v = view.getInt16(this.pos)
        this.pos += 2
        return v
      case 0xd2:
        this.need(4, "int32")
        v = view.getInt32(this.pos)
        this.pos += 4
        return v
      case 0xd3:
        this.need(8, "int64")
        v = view.getBigInt64(this.pos)
        this.pos += 8
        return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v
      default:
        return this.fail(`msgpack type 0x${t.toString(16)} is not a number`)
    }
  }

  private string(n: number): string {
    this.need(n, "string")
    const start = this.pos
    this.pos += n
    if (n > cachedLength) return this.decodeUtf8(start, n)
    // Headers repeat the same short strings (keys, dtypes, camera names) in every
    // frame; building a JS string costs far more than finding it in a cache.
    const bytes = this.bytes
    let h = n
    for (let i = start; i < start + n; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193)
    const slot = (h >>> 0) & (cacheSlots - 1)
    const key = cacheKeys[slot]
    if (key !== undefined && key.length === n) {
      let same = true
      for (let i = 0; i < n; i++) {
        if (key[i] !== bytes[start + i]) {
          same = false
          break
        }
      }
      if (same) return cacheStrings[slot]!
    }
    let s = ""
    for (let i = start; i < start + n; i++) {
      const c = bytes[i]!
      if (c >= 0x80) {
        s = this.decodeUtf8(start, n)
        break
      }
      s += String.fromCharCode(c)
    }
    cacheKeys[slot] = bytes.slice(start, start + n)
    cacheStrings[slot] = s
    return s
  }

  private decodeUtf8(start: number, n: number): string {
    try {
      return utf8.decode(this.bytes.subarray(start, start + n))
    } catch {
      this.fail("string is not valid UTF-8")
    }
  }

  private binary(n: number): Uint8Array {
    this.need(n, "bin")
    const out = this.bytes.slice(this.pos, this.pos + n)
    this.pos += n
    return out
  }

  private array(n: number, depth: number): Array<unknown> {
    if (depth >= this.maxDepth) this.fail(`nested deeper than ${this.maxDepth} levels`)
    if (n > this.end - this.pos) this.fail(`array of ${n} items cannot fit in the ${this.end - this.pos} bytes left`)
    const out = new Array<unknown>(n)
    const keys = this.keys
    keys.push(0)
    for (let i = 0; i < n; i++) {
      keys[keys.length - 1] = i
      out[i] = this.read(depth + 1)
    }
    keys.pop()
    return out
  }

  private map(n: number, depth: number): Record<string, unknown> | Map<unknown, unknown> {
    if (depth >= this.maxDepth) this.fail(`nested deeper than ${this.maxDepth} levels`)
    if (n * 2 > this.end - this.pos) this.fail(`map of ${n} entries cannot fit in the ${this.end - this.pos} bytes left`)
    const keys = this.keys
    let obj: Record<string, unknown> | undefined = {}
    let map: Map<unknown, unknown> | undefined
    for (let i = 0; i < n; i++) {
      const key = this.read(depth + 1)
      keys.push(typeof key === "string" || typeof key === "number" ? key : String(key))
      const value = this.read(depth + 1)
      keys.pop()
      if (obj !== undefined && typeof key === "string") {
        if (key === "__proto__") Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
        else obj[key] = value
      } else {
        if (map === undefined) {
          map = new Map(Object.entries(obj!))
          obj = undefined
        }
        map.set(key, value)
      }
    }
    return obj ?? map!
  }
}

const identifier = /^[A-Za-z_][A-Za-z0-9_]*$/

/** `a.b` for identifier keys, `a["b c"]` for other strings, `a[3]` for indices. */
export const joinKey = (path: string, key: string | number): string =>
  typeof key === "number"
    ? `${path}[${key}]`
    : identifier.test(key)
    ? (path === "" ? key : `${path}.${key}`)
    : `${path}[${JSON.stringify(key)}]`

/** A readable path; very deep ones are shortened in the middle. */
export const formatPath = (root: string, keys: ReadonlyArray<string | number>): string => {
  if (keys.length > 12) {
    const head = keys.slice(0, 4).reduce<string>(joinKey, root)
    const tail = keys.slice(-4).reduce<string>(joinKey, "")
    return `${head}…(${keys.length - 8} more levels)…${tail.startsWith("[") ? tail : "." + tail}`
  }
  return keys.reduce<string>(joinKey, root)
}
