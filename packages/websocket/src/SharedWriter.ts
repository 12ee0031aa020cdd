/**
 * One connected socket written by two threads: the policy's thread (requests)
 * and the action dispatcher's (actions).
 *
 * Why: the connection lives on the policy's thread, where replies cost no
 * hop between threads (a small round trip is a fraction of a millisecond),
 * while actions must leave on time whatever that thread is doing (collecting
 * 17 MB observations, running the policy). The dispatcher therefore writes
 * its frames to the socket's file descriptor itself, with `write(2)`.
 *
 * A lock in shared memory makes each frame one uninterrupted run of bytes on
 * the stream: its holder writes one whole frame, finishing what the kernel
 * took only in part, before it lets go. The thread with an event loop never
 * blocks on it (`tryLock`, `writeSome`: it retries from a timer, see
 * `WebSocketClient`); the dispatcher's thread, which has nothing else to do,
 * waits (`write`). `close`, called before the descriptor is closed, ends all
 * writing: the number could name another file a moment later.
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

/** How long a blocking `write` waits for room in the socket's send buffer before giving up. */
export const stallMillis = 10_000
/** How long `close` waits for a write in progress (one `write(2)` call) to let go of the lock. */
const closeWaitMillis = 100

export class ClosedError extends Error {
  constructor() {
    super("connection is closed")
  }
}

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

  /** Takes the lock if it is free. */
  tryLock(): boolean {
    return Atomics.compareExchange(this.state, lockSlot, 0, 1) === 0
  }

  unlock(): void {
    Atomics.store(this.state, lockSlot, 0)
    Atomics.notify(this.state, lockSlot, 1)
  }

  /**
   * One `write(2)` of `bytes` from `at`, the lock held: how many bytes the
   * kernel took (0 when its buffer is full), or why nothing more can be written.
   */
  writeSome(bytes: Uint8Array, at: number): number | Error {
    if (this.isClosed) return new ClosedError()
    try {
      return Fs.writeSync(this.handle.fd, bytes, at, bytes.byteLength - at)
    } catch (cause) {
      return (cause as NodeJS.ErrnoException).code === "EAGAIN" ? 0 : cause as Error
    }
  }

  /**
   * Writes all of `bytes`, waiting for the lock and for room in the socket's
   * buffer (up to `stallMillis`): for a thread that may block.
   */
  write(bytes: Uint8Array): Error | undefined {
    while (!this.tryLock()) {
      if (this.isClosed) return new ClosedError()
      Atomics.wait(this.state, lockSlot, 1, 1)
    }
    try {
      let at = 0
      let deadline = 0
      while (at < bytes.byteLength) {
        const written = this.writeSome(bytes, at)
        if (written instanceof Error) return written
        at += written
        if (written > 0) continue
        const now = performance.now()
        if (deadline === 0) deadline = now + stallMillis
        else if (now > deadline) return new Error(`the peer has not read for ${stallMillis / 1000} s`)
        Atomics.wait(this.state, sleepSlot, 0, 1)
      }
      return undefined
    } finally {
      this.unlock()
    }
  }

  /**
   * No write starts after this returns. A write in progress on another
   * thread is one system call, waited for; a blocking `write` waiting for
   * room sees the close within a millisecond and gives up.
   */
  close(): void {
    Atomics.store(this.state, closedSlot, 1)
    const deadline = performance.now() + closeWaitMillis
    // A holder that never lets go was terminated mid-write and writes no more.
    while (!this.tryLock() && performance.now() < deadline) Atomics.wait(this.state, lockSlot, 1, 1)
    this.unlock()
  }
}
