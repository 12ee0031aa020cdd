/**
 * Zenoh's TCP stream framing: every batch is a u16 little-endian length followed by that many
 * bytes. The length prefix counts toward the negotiated batch size, so a batch body holds at most
 * `batchSize - 2` bytes.
 */

/** Bytes of the length prefix. */
export const PREFIX_LENGTH = 2

/** The largest batch size the u16 prefix allows (prefix included). */
export const MAX_BATCH_SIZE = 65535

/** The largest body in a batch of `batchSize` bytes. */
export const maxBody = (batchSize: number): number => batchSize - PREFIX_LENGTH

/** Writes a length prefix at `offset`. */
export const writePrefix = (target: Uint8Array, offset: number, bodyLength: number): void => {
  target[offset] = bodyLength & 0xff
  target[offset + 1] = (bodyLength >>> 8) & 0xff
}

/** Prefix + body in one buffer (for small batches). */
export const encode = (body: Uint8Array): Uint8Array => {
  if (body.length > 0xffff) throw new RangeError(`batch body of ${body.length} bytes exceeds 65535`)
  const out = new Uint8Array(PREFIX_LENGTH + body.length)
  writePrefix(out, 0, body.length)
  out.set(body, PREFIX_LENGTH)
  return out
}

const EMPTY = new Uint8Array(0)

/** One buffer holding `parts` back to back (the part itself when there is one). */
export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => parts.length === 1 ? parts[0]! : copy(parts)

/** One new buffer holding `parts` back to back, always a copy (for bytes in memory that is reused). */
export const copy = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/**
 * Splits a byte stream into batch bodies. Chunks are kept as they arrive and bodies are returned
 * as views of them (`nextParts`), or copied once into one buffer when they span chunks (`next`).
 * Work is linear in the bytes received, however the stream is cut.
 *
 * `passed` (optional) is told of every chunk the splitter no longer refers to: every byte of it
 * was returned or skipped, or `clear` dropped it. The views returned still refer to it; a reader
 * that reuses its memory has to know about those too (see `Link`).
 */
export class BatchSplitter {
  private readonly passed: ((chunk: Uint8Array) => void) | undefined
  private chunks: Array<Uint8Array> = []
  /** Index of the first unconsumed chunk and offset inside it. */
  private head = 0
  private offset = 0
  private buffered = 0

  constructor(passed?: (chunk: Uint8Array) => void) {
    this.passed = passed
  }

  /** Bytes received but not yet returned as batches. */
  get pending(): number {
    return this.buffered
  }

  /** The body length the next, still incomplete, batch announced; undefined before its prefix. */
  get announced(): number | undefined {
    return this.buffered < PREFIX_LENGTH ? undefined : this.byteAt(0) | (this.byteAt(1) << 8)
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return this.passed?.(chunk)
    this.chunks.push(chunk)
    this.buffered += chunk.length
  }

  /** The body of the next complete batch, or undefined until more bytes arrive. */
  next(): Uint8Array | undefined {
    const parts = this.nextParts()
    return parts === undefined ? undefined : concat(parts)
  }

  /**
   * The body of the next complete batch as views of the received chunks (usually one, two when
   * the batch straddles reads): no copy at all. The views are as valid as the chunks pushed.
   */
  nextParts(): ReadonlyArray<Uint8Array> | undefined {
    if (this.buffered < PREFIX_LENGTH) return undefined
    const length = this.byteAt(0) | (this.byteAt(1) << 8)
    if (this.buffered < PREFIX_LENGTH + length) return undefined
    this.skip(PREFIX_LENGTH)
    return this.take(length)
  }

  /** Drops everything buffered. */
  clear(): void {
    if (this.passed !== undefined) for (let i = this.head; i < this.chunks.length; i++) this.passed(this.chunks[i]!)
    this.chunks = []
    this.head = 0
    this.offset = 0
    this.buffered = 0
  }

  private byteAt(index: number): number {
    let i = this.head
    let at = this.offset + index
    while (at >= this.chunks[i]!.length) {
      at -= this.chunks[i]!.length
      i++
    }
    return this.chunks[i]![at]!
  }

  private skip(n: number): void {
    this.buffered -= n
    while (n > 0) {
      const chunk = this.chunks[this.head]!
      const left = chunk.length - this.offset
      if (n < left) {
        this.offset += n
        return
      }
      n -= left
      this.advanceChunk()
    }
  }

  private take(n: number): Array<Uint8Array> {
    this.buffered -= n
    const out: Array<Uint8Array> = []
    while (n > 0 || out.length === 0) {
      const c = this.chunks[this.head]
      if (c === undefined) {
        out.push(EMPTY)
        break
      }
      const m = Math.min(n, c.length - this.offset)
      out.push(c.subarray(this.offset, this.offset + m))
      n -= m
      this.offset += m
      if (this.offset === c.length) this.advanceChunk()
    }
    return out
  }

  private advanceChunk(): void {
    this.passed?.(this.chunks[this.head]!)
    this.head++
    this.offset = 0
    // Compact now and then so the array does not grow without bound.
    if (this.head >= 64 || this.head === this.chunks.length) {
      this.chunks = this.chunks.slice(this.head)
      this.head = 0
    }
  }
}
