/**
 * Memory a socket reads into (`node:net`'s `onread`), reused once nothing cut out of it is held.
 *
 * Why: left to itself a socket reads every chunk into a fresh 64 KiB Buffer. A 17 MB observation
 * is ~270 such reads, and on the machines we measured fresh memory costs ~24× a copy into memory
 * already touched (each new page is a minor page fault, then zero-filled by the kernel). Reading
 * into blocks that come back once released keeps the bytes in touched memory; the reads are the
 * same one copy from the kernel as before.
 *
 * Ownership: the socket reads into the free rest of the current block (`nextReadBuffer`). The
 * bytes of a read become a chunk (`filled`) that holds its block until the batch splitter has
 * passed it (`passed`, applied at the next `lease`/`settle`). Batch bodies cut from chunks are
 * handed out as a `BatchLease` that holds the blocks under its parts until `release`. A block is
 * reused only after the reader moved on from it and every chunk and lease on it was let go; a
 * lease never released keeps its blocks out of reuse for good (the garbage collector takes them
 * with the last view), so forgetting to release costs fresh memory, never someone's bytes.
 */
import * as Batch from "./Batch.js"

/** The body of one batch as views (usually one, two when it straddles blocks or reads). */
export interface BatchLease {
  readonly parts: ReadonlyArray<Uint8Array>
  /**
   * The parts are the holder's for good: memory nobody reuses (e.g. Node's own chunk per read).
   * When false, the parts are valid only until `release`.
   */
  readonly owned: boolean
  /** Lets the memory under the parts be reused; the parts must not be read afterwards. Idempotent. */
  readonly release: () => void
}

interface Block {
  readonly bytes: Uint8Array
  /** The reader's current block, chunks the splitter still refers to, and unreleased leases. */
  refs: number
  /** Bytes read into it so far (reads fill a block from the front). */
  filled: number
}

const noop = () => {}

/**
 * One buffer of its own holding the lease's bytes, the lease released: a copy, or the part itself
 * when it is owned and alone. For bytes that are kept (decoded into views, handed out).
 */
export const copyOut = (lease: BatchLease): Uint8Array => {
  if (lease.owned) return Batch.concat(lease.parts)
  const out = Batch.copy(lease.parts)
  lease.release()
  return out
}

/** A lease on memory that is never reused. */
export const owned = (parts: ReadonlyArray<Uint8Array>): BatchLease => ({ parts, owned: true, release: noop })

export class ReadMemory {
  /** Bytes per block (default 256 KiB: a few batches of 64 KiB per block, reads of up to that). */
  readonly blockSize: number
  /** The smallest read worth issuing: below this much room left, the reader moves to another block. */
  readonly minRead: number
  /** Free blocks kept for reuse, at most; more are left to the garbage collector. */
  readonly maxFree: number
  /** Blocks allocated so far (fresh memory), for tests and diagnostics. */
  allocated = 0
  private readonly free: Array<Block> = []
  private readonly blocks = new WeakMap<ArrayBufferLike, Block>()
  private current: Block | undefined
  private readonly passing: Array<Uint8Array> = []

  constructor(options?: {
    readonly blockSize?: number | undefined
    readonly minRead?: number | undefined
    readonly maxFree?: number | undefined
  }) {
    this.blockSize = options?.blockSize ?? 256 * 1024
    this.minRead = Math.min(this.blockSize, options?.minRead ?? 16 * 1024)
    this.maxFree = options?.maxFree ?? 8
  }

  /** The buffer for the socket's next read: the free rest of the current block, or a new block. */
  readonly nextReadBuffer = (): Uint8Array => {
    const current = this.current
    if (current !== undefined && current.bytes.length - current.filled >= this.minRead) {
      return current.bytes.subarray(current.filled)
    }
    const next = this.take()
    next.refs = 1
    this.current = next
    if (current !== undefined) this.unref(current)
    return next.bytes
  }

  /** The `n` bytes the socket just read into `buffer` (from `nextReadBuffer`), as a chunk holding its block. */
  readonly filled = (n: number, buffer: Uint8Array): Uint8Array => {
    const block = this.blocks.get(buffer.buffer)
    // An empty chunk holds nothing (settle skips empty chunks too).
    if (block !== undefined && n > 0) {
      block.filled = buffer.byteOffset + n
      block.refs++
    }
    return buffer.subarray(0, n)
  }

  /** The splitter no longer refers to `chunk` (applied at the next `lease` or `settle`). */
  readonly passed = (chunk: Uint8Array): void => {
    this.passing.push(chunk)
  }

  /** Holds the blocks under `parts` until the lease is released, then applies what was passed. */
  lease(parts: ReadonlyArray<Uint8Array>): BatchLease {
    const held: Array<Block> = []
    for (const part of parts) {
      const block = this.blocks.get(part.buffer)
      if (block !== undefined && !held.includes(block)) {
        block.refs++
        held.push(block)
      }
    }
    this.settle()
    let released = false
    return {
      parts,
      owned: false,
      release: () => {
        if (released) return
        released = true
        for (const block of held) this.unref(block)
      }
    }
  }

  /** Lets go of the chunks the splitter passed. */
  settle(): void {
    for (const chunk of this.passing) {
      const block = this.blocks.get(chunk.buffer)
      if (block !== undefined && chunk.length > 0) this.unref(block)
    }
    this.passing.length = 0
  }

  /** Free blocks waiting for reuse (for tests). */
  get freeBlocks(): number {
    return this.free.length
  }

  private take(): Block {
    const reused = this.free.pop()
    if (reused !== undefined) return reused
    // allocUnsafeSlow: a block of its own, never a slice of Node's shared pool.
    const bytes = new Uint8Array(Buffer.allocUnsafeSlow(this.blockSize).buffer)
    const block: Block = { bytes, refs: 0, filled: 0 }
    this.blocks.set(bytes.buffer, block)
    this.allocated++
    return block
  }

  private unref(block: Block): void {
    if (--block.refs > 0) return
    block.filled = 0
    if (this.free.length < this.maxFree) this.free.push(block)
    else this.blocks.delete(block.bytes.buffer)
  }
}
