/**
 * Recycling of one sensor field's buffers (a camera's image, or its depth),
 * so that a robot writing frames with the default `copy: true` does not
 * allocate fresh memory per frame: on machines where touching new memory is
 * slow (page faults; `npm run bench` prints the machine's figures), a fresh
 * 9.2 MB buffer per camera per frame costs many times the copy into it.
 *
 * Lifetime: a buffer is reused only once it is provably unread, i.e. all of
 *  - a newer frame has replaced it (it is retired);
 *  - every lease on it has been released — the server's own replies lease the
 *    frame they encode until the transport has taken the bytes
 *    (`SensorState.makeObsLeased`, released with its scope);
 *  - it never escaped: a frame handed out without a lease (`makeObs`,
 *    `snapshot`, a user's `getObs`) may be kept for ever, so its buffers are
 *    never recycled; neither is a caller's own buffer (`copy: false`), nor a
 *    leased one whose reply's send was interrupted (its bytes may still be
 *    on their way to the kernel).
 * The trade-off: only the server's own observation path recycles; anything
 * that keeps frames costs what it did before (one fresh buffer per update),
 * never a frame overwritten under its reader. One spare per field is kept.
 */
import type { TensorData } from "@chiral/protocol"

/** One buffer of the field and what still reads it. */
export class Slot {
  leases = 0
  escaped = false
  retired = false
  readonly data: TensorData
  constructor(data: TensorData) {
    this.data = data
  }
}

export class SensorBuffers {
  private spare: TensorData | undefined
  /** The slot of the field's current data. */
  private current: Slot

  constructor(initial: TensorData, owned: boolean) {
    this.current = new Slot(initial)
    this.current.escaped = !owned
  }

  /** A buffer for the next frame, to be overwritten whole: the spare when it fits, else a fresh one. */
  readonly target = (make: (count: number) => TensorData) => (count: number): TensorData => {
    const spare = this.spare
    this.spare = undefined
    return spare !== undefined && spare.length === count ? spare : make(count)
  }

  /** The new frame's data is current; `owned`: it is one of ours (a copy), not the caller's buffer. */
  install(data: TensorData, owned: boolean): void {
    if (data === this.current.data) return
    const previous = this.current
    this.current = new Slot(data)
    this.current.escaped = !owned
    previous.retired = true
    this.free(previous)
  }

  /** The current data is handed out without a lease: never recycle it. */
  escape(): void {
    this.current.escaped = true
  }

  /**
   * Leases the current data; the returned function ends the lease (once).
   * `mayStillBeRead`: the reader stopped waiting without knowing it is done,
   * e.g. a reply whose send was interrupted while the transport or the kernel
   * may still hold its bytes: the data then escapes, never to be recycled.
   */
  lease(): (mayStillBeRead?: boolean) => void {
    const slot = this.current
    slot.leases++
    let released = false
    return (mayStillBeRead = false) => {
      if (released) return
      released = true
      slot.leases--
      if (mayStillBeRead) slot.escaped = true
      this.free(slot)
    }
  }

  private free(slot: Slot): void {
    if (slot.retired && slot.leases === 0 && !slot.escaped) this.spare = slot.data
  }
}
