/**
 * Fresh memory for the session thread's large replies, allocated on the
 * policy's thread and sent ahead (transferred) to where replies are
 * reassembled: the Zenoh client's default, fresh receive buffers.
 *
 * Why not allocate on the session thread itself: glibc serves a worker
 * thread from an arena of its own, made of heaps of at most 64 MiB that are
 * unmapped whenever they fall empty, so a 17.2 MB reply reassembled there
 * often landed in pages the kernel had just mapped afresh, its faults taken
 * by whichever thread first wrote them. Measured (`chiral bench --protocol
 * zenoh`, 8 cameras 640×480 + depth, 6 s runs on the 2-core machine of issue
 * 15): 7–1790 minor page faults per observation in the client, by run; with
 * every thread served from the main heap (`MALLOC_ARENA_MAX=1`) and that
 * heap's freed memory kept (`retainFreedBuffers`), 7 in 3 of 3. Memory
 * allocated on the main thread stays the main heap's wherever it is freed.
 *
 * Each buffer is still fresh, never reused: the policy keeps every reply it
 * receives for as long as it likes, as with memory allocated here.
 */
import { uninitialized } from "@chiral/protocol"
import type { ZenohConfig } from "@chiral/zenoh"

/** Buffers waiting on the session thread, at most (one per reply in flight, and one). */
export const maxSpare = 3

/**
 * A spare buffer serves a request of at least this fraction of its size, so
 * that a small reply never holds a large buffer (a reply is posted with the
 * whole buffer it was reassembled in).
 */
const minUse = 7 / 8

/** On the session thread: the reassembler's memory, from the buffers the policy's thread supplied. */
export class SuppliedMemory implements ZenohConfig.ReceiveMemory {
  private readonly spare: Array<ArrayBuffer> = []
  /** Requests served from a supplied buffer, and those allocated here for want of one. */
  supplied = 0
  local = 0

  /** A buffer from the policy's thread (the oldest goes once `maxSpare` wait). */
  supply(buffer: ArrayBuffer): void {
    this.spare.push(buffer)
    if (this.spare.length > maxSpare) this.spare.shift()
  }

  take(size: number): Uint8Array {
    const at = this.spare.findIndex((b) => b.byteLength >= size && size >= b.byteLength * minUse)
    if (at < 0) {
      this.local++
      return new Uint8Array(uninitialized(size))
    }
    this.supplied++
    const [buffer] = this.spare.splice(at, 1)
    return new Uint8Array(buffer!, 0, size)
  }

  /** A buffer outgrown before anybody saw it: freed (it is fresh memory, not a pool's). */
  put(_buffer: ArrayBuffer): void {}
}

/**
 * On the policy's thread: the buffer to send ahead after a large reply of
 * `replyBuffer` bytes arrived, for the next one (replies of a robot keep
 * their size). Not zero-filled: the reassembler writes every byte it hands on.
 */
export const nextFor = (replyBuffer: ArrayBuffer): ArrayBuffer => uninitialized(replyBuffer.byteLength)
