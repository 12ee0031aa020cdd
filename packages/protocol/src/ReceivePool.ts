/**
 * Free receive buffers, kept for reuse, so that a client receiving large
 * observations does not take fresh memory per message. On Linux, glibc hands
 * a freed buffer of many MB back to the kernel and maps a new one for the
 * next allocation; the first write to each of its 4 KiB pages is then a page
 * fault. Measured on a 2-core machine (`scratchpad/i15`): writing a fresh
 * 17.2 MB buffer takes ~2,500 minor faults and 7–48 ms (by load), writing a
 * recycled one ~0.6 ms.
 *
 * The pool only stores and hands out memory; when a buffer may come back is
 * decided by whoever lends it out (`FrameLease`: once every view handed out
 * over it has been collected). A buffer given to `put` must be unreachable
 * by anybody else: never handed out, or moved here with
 * `ArrayBuffer.prototype.transfer` (which detaches every other view over it).
 *
 * Bounded: at most `maxFree` buffers wait here (the oldest goes first, so a
 * change of message size does not pin the old size's buffers for ever);
 * buffers in use are bounded by what their readers hold, as without a pool.
 * Buffers are sized in 64 KiB steps, and a free buffer serves a request up to
 * an eighth (plus a step) smaller than itself, so messages whose size varies a
 * little (headers, alignment) share buffers, and a small message never takes
 * a much larger buffer.
 */
import { uninitialized } from "./Allocate.js"

export interface ReceivePoolOptions {
  /** Free buffers kept, at most. Default 8 (for 17.2 MB observations: up to ~138 MB kept). */
  readonly maxFree?: number | undefined
  /** Requests smaller than this many bytes get fresh memory and are never kept. Default 64 KiB. */
  readonly minBytes?: number | undefined
}

/** Counters since the pool was made. */
export interface ReceivePoolStats {
  /** Requests served from a free buffer. */
  readonly reused: number
  /** Requests (of at least `minBytes`) served with fresh memory. */
  readonly fresh: number
  /** Buffers given back and kept. */
  readonly kept: number
  /** Buffers given back and dropped: the pool was full (the oldest went), or they were detached or too small. */
  readonly dropped: number
  /** Free buffers now. */
  readonly free: number
}

const step = 64 * 1024

const roundUp = (bytes: number): number => Math.ceil(bytes / step) * step

/** The ArrayBuffer API of ES2024 (Node ≥ 22), which the ES2023 library types lack. */
export interface Transferable2024 {
  readonly detached: boolean
  transfer(): ArrayBuffer
}

/** `ReceivePool.collectAfter` for a pool of `maxFree` that is elsewhere (on another thread). */
export const collectAfter = (maxFree: number, bytes: number): number => Math.max(1, Math.floor(maxFree / 2)) * bytes

export const isDetached = (buffer: ArrayBuffer): boolean => (buffer as ArrayBuffer & Transferable2024).detached

export class ReceivePool {
  readonly maxFree: number
  readonly minBytes: number
  private readonly free: Array<ArrayBuffer> = []
  /** Every ArrayBuffer of pooled size this pool handed out or kept (`owns`). */
  private readonly mine = new WeakSet<ArrayBuffer>()
  private counts = { reused: 0, fresh: 0, kept: 0, dropped: 0 }

  constructor(options: ReceivePoolOptions = {}) {
    this.maxFree = Math.max(0, Math.trunc(options.maxFree ?? 8))
    this.minBytes = Math.max(1, Math.trunc(options.minBytes ?? step))
  }

  /**
   * `size` bytes (a view at offset 0 of an ArrayBuffer of at least `size`
   * bytes), exclusively the caller's, contents unspecified: the caller must
   * write every byte it reads back.
   */
  take(size: number): Uint8Array {
    if (size < this.minBytes) return new Uint8Array(uninitialized(size))
    const largest = roundUp(size + size / 8)
    let best = -1
    for (let i = 0; i < this.free.length; i++) {
      const n = this.free[i]!.byteLength
      if (n >= size && n <= largest && (best < 0 || n < this.free[best]!.byteLength)) best = i
    }
    if (best >= 0) {
      this.counts.reused++
      const [buffer] = this.free.splice(best, 1)
      return new Uint8Array(buffer!, 0, size)
    }
    this.counts.fresh++
    const buffer = uninitialized(roundUp(size))
    this.mine.add(buffer)
    return new Uint8Array(buffer, 0, size)
  }

  /**
   * Whether `buffer` is one this pool handed out (at least `minBytes`): a
   * received message in it is in memory of its own, which may be lent out
   * and recycled, unlike one in a socket's read buffer.
   */
  owns(buffer: ArrayBufferLike): boolean {
    return buffer instanceof ArrayBuffer && this.mine.has(buffer)
  }

  /** Keeps `buffer` for reuse; it must be unreachable by anybody else (see the module's comment). */
  readonly put = (buffer: ArrayBuffer): void => {
    if (isDetached(buffer) || buffer.byteLength < this.minBytes || this.maxFree === 0) {
      this.counts.dropped++
      return
    }
    this.free.push(buffer)
    this.mine.add(buffer)
    this.counts.kept++
    if (this.free.length > this.maxFree) {
      this.free.shift()
      this.counts.dropped++
    }
  }

  /**
   * For `Lending.lend`'s `collectAfter`: after half the pool's worth of
   * messages of `bytes` lent with none back, a collection is asked for, so
   * that lent memory comes back before the free buffers run out.
   */
  collectAfter(bytes: number): number {
    return collectAfter(this.maxFree, bytes)
  }

  stats(): ReceivePoolStats {
    return { ...this.counts, free: this.free.length }
  }
}
