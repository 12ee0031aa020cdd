/**
 * Fresh memory for the session thread's large replies, allocated on the
 * policy's thread and sent ahead (transferred) to where replies are
 * reassembled: the Zenoh client's default, fresh receive buffers.
 *
 * Why not allocate on the session thread itself: glibc serves a worker
 * thread from an arena of its own, made of heaps of at most 64 MiB, and
 * unmaps a heap (all but the arena's first) whenever it falls empty, so a
 * 17.2 MB reply reassembled there often landed in pages the kernel had just
 * mapped afresh. Measured (`chiral bench --protocol zenoh`, 8 cameras 640×480
 * + depth, 10 s runs on the 2-core machine of issue 15, 5 alternating rounds,
 * both with `retainFreedBuffers`): 8–761 minor page faults per observation in
 * the client (median 356) reassembling there, 7–608 (median 22) into memory
 * from the policy's thread; what remained was the main heap's own trimming,
 * which `reserveHeapFor` (called before each supply) ends: 8–16 in every
 * run since (the README's performance section).
 * Memory allocated on the main thread goes back to the main heap wherever it
 * is freed.
 *
 * Each buffer is still fresh, never reused: the policy keeps every reply it
 * receives for as long as it likes, as with memory allocated here.
 */
import { uninitialized } from "@chiral/protocol"
import type { ZenohConfig } from "@chiral/zenoh"

/**
 * Buffers waiting on the session thread, at most; and how many reassemblies
 * a waiting buffer may be passed over (a size no longer coming) before it is
 * dropped.
 */
export const maxSpare = 3

/**
 * A spare buffer serves a request of at least this fraction of its size, so
 * that a small reply never holds a large buffer (a reply is posted with the
 * whole buffer it was reassembled in).
 */
const minUse = 7 / 8

/**
 * Room a supplied buffer has beyond the reply it was sized by (headers and
 * alignment vary by a few bytes): 64 KiB, or a sixteenth of a smaller reply
 * (well within `minUse`).
 */
const headroomFor = (used: number): number => Math.min(64 * 1024, Math.ceil(used / 16))

interface Spare {
  readonly buffer: ArrayBuffer
  passedOver: number
}

/** On the session thread: the reassembler's memory, from the buffers the policy's thread supplied. */
export class SuppliedMemory implements ZenohConfig.ReceiveMemory {
  private spare: Array<Spare> = []
  /** Requests served from a supplied buffer, and those allocated here for want of one. */
  supplied = 0
  local = 0

  /** A buffer from the policy's thread (the oldest goes once `maxSpare` wait). */
  supply(buffer: ArrayBuffer): void {
    this.spare.push({ buffer, passedOver: 0 })
    if (this.spare.length > maxSpare) this.spare.shift()
  }

  /** The smallest supplied buffer that fits `size`; the others are passed over, and dropped after `maxSpare` times. */
  take(size: number): Uint8Array {
    let best: Spare | undefined
    for (const s of this.spare) {
      const fits = s.buffer.byteLength >= size && size >= s.buffer.byteLength * minUse
      if (fits && (best === undefined || s.buffer.byteLength < best.buffer.byteLength)) best = s
    }
    this.spare = this.spare.filter((s) => s !== best && ++s.passedOver < maxSpare)
    if (best === undefined) {
      this.local++
      return new Uint8Array(uninitialized(size))
    }
    this.supplied++
    return new Uint8Array(best.buffer, 0, size)
  }

  /** A buffer outgrown before anybody saw it: freed (it is fresh memory, not a pool's). */
  put(_buffer: ArrayBuffer): void {}

  /** Buffers waiting now. */
  get waiting(): number {
    return this.spare.length
  }
}

/**
 * On the policy's thread: the buffer to send ahead after a large reply that
 * took `used` bytes of its buffer (its offset plus its length), for the next
 * reply, which is likely of the same size, with room for a few bytes more.
 * Not zero-filled: the reassembler writes every byte it hands on.
 */
export const nextFor = (used: number): ArrayBuffer => uninitialized(used + headroomFor(used))
