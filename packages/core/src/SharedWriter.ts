/**
 * One connected socket written by two threads: the policy's thread (requests)
 * and the action dispatcher's (actions).
 *
 * Why: the connection lives on the policy's thread, where replies cost no
 * hop between threads (a small round trip is a fraction of a millisecond),
 * while actions must leave on time whatever that thread is doing (collecting
 * 17 MB observations, running the policy). The dispatcher therefore writes
 * its frames to the socket's file descriptor itself.
 *
 * Every write of either thread goes through here: a lock in shared memory
 * makes each frame one uninterrupted run of bytes on the stream (a write the
 * kernel takes only in part is finished before the lock is released), and
 * `close` — called before the descriptor is closed — guarantees that no
 * thread writes to it afterwards (the number could already name another
 * file). Writes are synchronous `write(2)` calls of small frames; when the
 * socket's send buffer is full the writer sleeps a millisecond at a time, up
 * to `stallMillis`, then gives up.
 */
import * as Fs from "node:fs"

/** What another thread needs to write to the same socket (structured-cloneable). */
export interface SharedWriterHandle {
  readonly fd: number
  /** Int32 slots: lock (0 free, 1 held), closed (0/1), a slot to sleep on. */
  readonly state: SharedArrayBuffer
}

const lockSlot = 0
const closedSlot = 1
const sleepSlot = 2

/** How long a write waits for room in the socket's send buffer before giving up. */
export const stallMillis = 10_000

export class SharedWriter {
  readonly handle: SharedWriterHandle
  private readonly state: Int32Array

  constructor(handle: SharedWriterHandle) {
    this.handle = handle
    this.state = new Int32Array(handle.state)
  }

  static create(fd: number): SharedWriter {
    return new SharedWriter({ fd, state: new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT) })
  }

  get isClosed(): boolean {
    return Atomics.load(this.state, closedSlot) === 1
  }

  /** Writes all of `bytes`, or returns why it could not (the stream is then unusable). */
  write(bytes: Uint8Array): Error | undefined {
    this.lock()
    try {
      if (Atomics.load(this.state, closedSlot) === 1) return new Error("connection is closed")
      let at = 0
      let deadline = 0
      while (at < bytes.byteLength) {
        try {
          at += Fs.writeSync(this.handle.fd, bytes, at, bytes.byteLength - at)
        } catch (cause) {
          if ((cause as NodeJS.ErrnoException).code !== "EAGAIN") return cause as Error
          const now = performance.now()
          if (deadline === 0) deadline = now + stallMillis
          else if (now > deadline) return new Error(`the peer has not read for ${stallMillis / 1000} s`)
          Atomics.wait(this.state, sleepSlot, 0, 1)
        }
      }
      return undefined
    } finally {
      this.unlock()
    }
  }

  /** No write starts after this returns; one in progress on another thread is waited for. */
  close(): void {
    this.lock()
    Atomics.store(this.state, closedSlot, 1)
    this.unlock()
  }

  private lock() {
    // A holder that has not let go long after its own deadline has died
    // (a terminated thread runs no `finally`): take the lock over.
    let deadline = 0
    while (Atomics.compareExchange(this.state, lockSlot, 0, 1) !== 0) {
      const now = performance.now()
      if (deadline === 0) deadline = now + stallMillis + 1000
      else if (now > deadline) return
      Atomics.wait(this.state, lockSlot, 1, 1)
    }
  }

  private unlock() {
    Atomics.store(this.state, lockSlot, 0)
    Atomics.notify(this.state, lockSlot, 1)
  }
}
