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

/**
 * Splits a byte stream into batch bodies. Chunks are kept as they arrive; a body that lies inside
 * one chunk is returned as a view (no copy), a body spanning chunks is copied once. Work is
 * linear in the bytes received, however the stream is cut.
 */
export class BatchSplitter {
  private chunks: Array<Uint8Array> = []
  /** Index of the first unconsumed chunk and offset inside it. */
  private head = 0
  private offset = 0
  private buffered = 0

  /** Bytes received but not yet returned as batches. */
  get pending(): number {
    return this.buffered
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.buffered += chunk.length
  }

  /** The body of the next complete batch, or undefined until more bytes arrive. */
  next(): Uint8Array | undefined {
    if (this.buffered < PREFIX_LENGTH) return undefined
    const length = this.byteAt(0) | (this.byteAt(1) << 8)
    if (this.buffered < PREFIX_LENGTH + length) return undefined
    this.skip(PREFIX_LENGTH)
    return this.take(length)
  }

  /** Drops everything buffered. */
  clear(): void {
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

  private take(n: number): Uint8Array {
    this.buffered -= n
    const chunk = this.chunks[this.head]!
    const left = chunk.length - this.offset
    if (n <= left) {
      const out = chunk.subarray(this.offset, this.offset + n)
      this.offset += n
      if (this.offset === chunk.length) this.advanceChunk()
      return out
    }
    const out = new Uint8Array(n)
    let filled = 0
    while (filled < n) {
      const c = this.chunks[this.head]!
      const m = Math.min(n - filled, c.length - this.offset)
      out.set(c.subarray(this.offset, this.offset + m), filled)
      filled += m
      this.offset += m
      if (this.offset === c.length) this.advanceChunk()
    }
    return out
  }

  private advanceChunk(): void {
    this.head++
    this.offset = 0
    // Compact now and then so the array does not grow without bound.
    if (this.head >= 64 || this.head === this.chunks.length) {
      this.chunks = this.chunks.slice(this.head)
      this.head = 0
    }
  }
}
