/**
 * Lending a received frame's memory to its readers, and taking it back once
 * they are provably done with it.
 *
 * A transport that receives into recycled memory (`ReceivePool`) lends each
 * frame out (`lend`). From then on every view over the frame's ArrayBuffer
 * that the library hands out is tracked: the frame itself, and each tensor
 * `decodeFrame` makes as a view into it (`track`; tensors it copies are not
 * over the frame). When all of them have been garbage-collected, the memory is
 * moved out of the frame's ArrayBuffer with `ArrayBuffer.prototype.transfer`
 * (no copy) and given to `release`, to receive a later message into.
 *
 * The contract for readers (`lend`'s callers document it to their users): an
 * observation's arrays stay valid, unchanged, for as long as any of them (or
 * anything holding one, the observation) is reachable. What a reader builds
 * itself over the same memory (`subarray`, `new Float32Array(t.data.buffer,
 * …)`, `Buffer.from(t.data.buffer, …)`) does not count: once the library's
 * arrays are all collected, the transfer detaches the ArrayBuffer, and such a
 * view reads as empty (length 0), never as another message's bytes. Native
 * work still in flight on such a view (an asynchronous write) could see the
 * next message: keep one of the library's arrays until it is done, or copy
 * (`slice()`). JavaScript cannot tell a reader's own views from nothing, so
 * this contract is why recycling is an option of the transports, off by
 * default (`receiveBuffers: "recycled"`).
 *
 * How long memory stays lent depends on the collector: a view is known to be
 * gone only after a full collection (mark-compact) has found it unreachable
 * and its finalization callback has run; V8's young-generation collections
 * (scavenges) keep every object a FinalizationRegistry watches. Until then
 * the transport receives into fresh memory. With fresh memory V8 starts a
 * full collection for every 64 MB or so of new ArrayBuffers; recycled memory
 * is not new, so left alone V8 collects rarely, lent memory comes back in
 * large bursts, and the pool runs dry in between (measured: 8 cameras
 * 640x480 + depth, a pool of 4–16, still a fresh buffer for a third of the
 * observations). So once `collectAfter` bytes (at least 64 MiB) have been
 * lent with none coming back, the lending asks for a collection the way a
 * fresh allocation would: it allocates an ArrayBuffer as large as the memory
 * lent out and drops it at once. It is resizable, so V8 maps it itself
 * (untouched pages, no page faults, whatever the process's malloc settings),
 * and it counts as external memory until the collection it brings about.
 * How much new memory starts a collection depends on the process's V8
 * settings (the `chiral` command grows the heap 4× between collections,
 * `--heap-growing-percent=300`, where V8's default often grows it 1.1–2×), so
 * an announcement that brought no memory back is followed by one twice as
 * large, up to 8× the memory lent out and at most 1 GiB (address space,
 * never touched). The scale is kept once memory comes back: what it takes
 * depends on the V8 settings, which do not change, and a larger announcement
 * than needed only brings the collection that is asked for. 1 GiB stays well
 * below half of V8's old-generation limit on a 2 GiB heap, where a jump in
 * external memory makes V8 collect at once, on the main thread, instead of
 * incrementally.
 */
import { isDetached, type Transferable2024 } from "./ReceivePool.js"

/** One lent ArrayBuffer: how many tracked views over it are alive, and where its memory goes after them. */
export class Lease {
  live = 0
  readonly buffer: ArrayBuffer
  /** The buffer's size when lent, bytes (a detached buffer reads 0). */
  readonly bytes: number
  readonly release: (memory: ArrayBuffer) => void
  constructor(buffer: ArrayBuffer, release: (memory: ArrayBuffer) => void) {
    this.buffer = buffer
    this.bytes = buffer.byteLength
    this.release = release
  }
}

/** No collection is asked for below this much lent memory: V8's own step for new external memory. */
const minCollectAfter = 64 * 1024 * 1024
/** The smallest announcement that starts a full collection in the configurations measured (Node 24, with and without `--external-memory-accounted-in-global-limit`). */
const minAnnounced = 128 * 1024 * 1024

/** How many times the memory lent out an announcement may be, after announcements that brought nothing back. */
const maxAnnounceScale = 8
/** The largest announcement, bytes: address space reserved, never touched. */
const maxAnnounced = 1024 * 1024 * 1024

/** An ArrayBuffer of `bytes` that V8 maps itself and nobody touches (see the module's comment); false when there was no address space for it. */
const announce = (bytes: number): boolean => {
  try {
    void new (ArrayBuffer as unknown as new(length: number, options: { maxByteLength: number }) => ArrayBuffer)(bytes, {
      maxByteLength: bytes
    })
    return true
  } catch {
    return false
  }
}

/** What tells `Lending` that a tracked view was collected: a FinalizationRegistry, or a test's hand-driven stand-in. */
export interface Watcher {
  readonly register: (view: object, lease: Lease) => void
}

export class Lending {
  private readonly leases = new WeakMap<ArrayBuffer, Lease>()
  private readonly watcher: Watcher
  /** Memory moved out and released, and leases ended on a buffer somebody else had detached. */
  released = 0
  lost = 0
  /** Collections asked for (see the module's comment), counting announcements that found no address space. */
  collectionsAsked = 0
  private announced = 0
  /** The next announcement is this many times the memory lent out; doubled after one that brought nothing back. */
  private announceScale = 1
  private askedSinceReturn = false
  /** Bytes lent and not back yet, and lent since memory last came back. */
  private outstanding = 0
  private sinceReturn = 0

  constructor(watch: (collected: (lease: Lease) => void) => Watcher = (collected) => new FinalizationRegistry(collected)) {
    this.watcher = watch((lease) => this.collected(lease))
  }

  /**
   * Lends out `frame`, a view over an ArrayBuffer nobody else holds (fresh
   * from a `ReceivePool`, say): `release` gets its memory once `frame` and
   * every view `track`ed over the same ArrayBuffer have been collected.
   * False (and nothing tracked) when the frame is over a SharedArrayBuffer or
   * an already lent ArrayBuffer. `collectAfter`: ask for a collection once
   * this many bytes (at least 64 MiB) have been lent with none coming back
   * (`ReceivePool.collectAfter`); absent: never.
   */
  lend(frame: Uint8Array, release: (memory: ArrayBuffer) => void, collectAfter?: number): boolean {
    const buffer = frame.buffer
    if (!(buffer instanceof ArrayBuffer) || this.leases.has(buffer)) return false
    const lease = new Lease(buffer, release)
    this.leases.set(buffer, lease)
    this.watch(frame, lease)
    this.outstanding += lease.bytes
    this.sinceReturn += lease.bytes
    if (collectAfter !== undefined && this.sinceReturn >= Math.max(collectAfter, minCollectAfter)) this.askForCollection()
    return true
  }

  private askForCollection() {
    this.sinceReturn = 0
    if (this.askedSinceReturn) this.announceScale = Math.min(maxAnnounceScale, this.announceScale * 2)
    this.askedSinceReturn = true
    this.collectionsAsked++
    this.announced = Math.min(maxAnnounced, Math.max(minAnnounced, this.outstanding * this.announceScale))
    // No address space for it: ask smaller next time; the pool merely misses more meanwhile.
    if (!announce(this.announced)) this.announceScale = Math.max(1, this.announceScale / 2)
  }

  /** The size of the last announcement (see the module's comment), bytes; 0 before the first. */
  get lastAnnounced(): number {
    return this.announced
  }

  /** Whether views over `buffer` are to be tracked (one look-up per frame rather than per view). */
  isLent(buffer: ArrayBufferLike): boolean {
    return buffer instanceof ArrayBuffer && this.leases.has(buffer)
  }

  /** Counts `view` as a reader of its lent ArrayBuffer, if that is lent; the memory stays lent while it lives. */
  track(view: ArrayBufferView): void {
    const lease = view.buffer instanceof ArrayBuffer ? this.leases.get(view.buffer) : undefined
    if (lease !== undefined) this.watch(view, lease)
  }

  private watch(view: object, lease: Lease) {
    lease.live++
    this.watcher.register(view, lease)
  }

  /** A tracked view was collected; after the last one the memory moves out and is released. */
  private collected(lease: Lease) {
    if (--lease.live > 0) return
    this.leases.delete(lease.buffer)
    this.outstanding -= lease.bytes
    // Moved or transferred by somebody else (postMessage with a transfer list): theirs now.
    if (isDetached(lease.buffer)) {
      this.lost++
      return
    }
    const memory = (lease.buffer as ArrayBuffer & Transferable2024).transfer()
    this.released++
    this.sinceReturn = 0
    this.askedSinceReturn = false
    try {
      lease.release(memory)
    } catch {
      // Called from a finalization callback, where a throw would end the
      // process: memory that cannot be recycled is simply left to the collector.
    }
  }
}

/**
 * The lending that `decodeFrame` consults: transports lend their frames here.
 * One per thread even when several copies of this package are loaded (two
 * versions installed side by side): a transport lending through one copy and
 * a decoder tracking through another would otherwise miss each other, and
 * memory would be recycled under views nobody counted.
 */
export const lending: Lending = ((globalThis as Record<symbol, Lending | undefined>)[Symbol.for("@chiral/protocol/lending")] ??=
  new Lending())
