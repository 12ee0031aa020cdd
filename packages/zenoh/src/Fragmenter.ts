/**
 * Cutting one serialized network message into FRAGMENT batches, and putting it back together.
 *
 * Sending: the message is given as parts (e.g. a PUSH prefix and the payload slices); every batch
 * becomes a small header (length prefix + FRAGMENT header, cut from one shared allocation) followed
 * by views of the parts — the payload is never copied. The first fragment carries the `first`
 * marker (patch ≥ 1 receivers discard messages without it); `M` is set on all but the last.
 *
 * Receiving: `Reassembler` collects pieces into one buffer sized from a hint when the first piece
 * tells the total (PUSH+PUT prefix), growing by doubling otherwise, and refuses to grow beyond its
 * limit.
 */
import * as Batch from "./Batch.js"
import * as TransportMessage from "./TransportMessage.js"
import type { ReceiveMemory } from "./ZenohConfig.js"
import { ZenohReassemblyError } from "./ZenohError.js"
import * as Zint from "./Zint.js"

export interface FragmentOptions {
  readonly batchSize: number
  readonly reliable: boolean
  /** SN of the first fragment; the following ones count up modulo `snModulus`. */
  readonly firstSn: number
  readonly snModulus: number
}

export interface Fragmented {
  /** Buffers to write in order (headers and payload views interleaved). */
  readonly chunks: Array<Uint8Array>
  /** Number of FRAGMENT batches (SNs used). */
  readonly count: number
  /** The SN after the last fragment. */
  readonly nextSn: number
}

/** The bytes of `parts` together. */
export const totalLength = (parts: ReadonlyArray<Uint8Array>): number => {
  let n = 0
  for (const p of parts) n += p.length
  return n
}

/** Splits the message made of `parts` into FRAGMENT batches. */
export const fragment = (parts: ReadonlyArray<Uint8Array>, options: FragmentOptions): Fragmented => {
  const total = totalLength(parts)
  const maxBody = Batch.maxBody(options.batchSize)
  // Worst-case header: header byte + SN zint + first marker.
  const maxHeader = 1 + Zint.lengthOf(options.snModulus - 1) + 1
  if (maxBody <= maxHeader) throw new RangeError(`batch size ${options.batchSize} too small to fragment`)
  const estimate = Math.ceil(total / (maxBody - maxHeader)) + 1
  const arena = new Uint8Array(estimate * (Batch.PREFIX_LENGTH + maxHeader))
  let arenaPos = 0
  const chunks: Array<Uint8Array> = []
  let sn = options.firstSn
  let count = 0
  let partIndex = 0
  let partOffset = 0
  let sent = 0
  while (sent < total || count === 0) {
    const first = count === 0
    const headerLength = TransportMessage.fragmentHeaderLength(sn, first)
    const room = maxBody - headerLength
    const pieceLength = Math.min(room, total - sent)
    const more = sent + pieceLength < total
    const start = arenaPos
    Batch.writePrefix(arena, arenaPos, headerLength + pieceLength)
    arenaPos = TransportMessage.writeFragmentHeader(
      arena,
      arenaPos + Batch.PREFIX_LENGTH,
      options.reliable,
      more,
      sn,
      first
    )
    chunks.push(arena.subarray(start, arenaPos))
    let need = pieceLength
    while (need > 0) {
      const part = parts[partIndex]!
      const take = Math.min(need, part.length - partOffset)
      chunks.push(take === part.length ? part : part.subarray(partOffset, partOffset + take))
      need -= take
      partOffset += take
      if (partOffset === part.length) {
        partIndex++
        partOffset = 0
      }
    }
    sent += pieceLength
    count++
    sn = (sn + 1) % options.snModulus
    if (total === 0) break
  }
  return { chunks, count, nextSn: sn }
}

export interface Piece {
  readonly sn: number
  readonly more: boolean
  readonly first: boolean
  readonly drop: boolean
  /** The piece, or its parts when the batch arrived in several reads. */
  readonly payload: Uint8Array | ReadonlyArray<Uint8Array>
}

const partsOf = (payload: Piece["payload"]): ReadonlyArray<Uint8Array> =>
  payload instanceof Uint8Array ? [payload] : payload

/** Below this a message buffer is zero-filled like any: the fill is cheap and no Buffer is made. */
const unzeroedFrom = 4096

/**
 * Puts fragments of one channel back together. `push` returns the whole message once the last
 * piece arrives; it throws `ZenohReassemblyError` when the message would exceed `limit`.
 *
 * Pieces out of sequence, a piece without the `first` marker on an empty buffer (when the peer
 * uses markers) and `drop` markers discard the partial message, as Zenoh peers do.
 */
export class Reassembler {
  readonly limit: number
  readonly markers: boolean
  private readonly sizeHint: ((firstPiece: Uint8Array) => number | undefined) | undefined
  private readonly lead: ((firstPiece: Uint8Array) => number) | undefined
  private readonly memory: ReceiveMemory | undefined
  private buf: Uint8Array | undefined
  /** Where the message starts in `buf`. */
  private base = 0
  private length = 0
  private expectedSn = -1
  private readonly snModulus: number

  constructor(options: {
    readonly limit: number
    /** The peer sends `first` markers (negotiated patch ≥ 1). */
    readonly markers: boolean
    readonly snModulus: number
    /** Total message size guessed from the first piece, to allocate once. */
    readonly sizeHint?: ((firstPiece: Uint8Array) => number | undefined) | undefined
    /**
     * Bytes (0–7) to leave free before the message, from its first piece: where the message
     * starts modulo 8, so that aligned data inside it can be read in place.
     */
    readonly lead?: ((firstPiece: Uint8Array) => number) | undefined
    /**
     * Where messages are reassembled (`ZenohConfig.receiveMemory`); a buffer
     * outgrown or abandoned (never returned by `push`) goes back to it.
     * Default: a fresh buffer per message, not zero-filled (`allocate`).
     */
    readonly memory?: ReceiveMemory | undefined
  }) {
    this.limit = options.limit
    this.markers = options.markers
    this.snModulus = options.snModulus
    this.sizeHint = options.sizeHint
    this.lead = options.lead
    this.memory = options.memory
  }

  /** A message is partially collected. */
  get inProgress(): boolean {
    return this.buf !== undefined
  }

  /** Bytes collected so far. */
  get collected(): number {
    return this.length
  }

  reset(): void {
    if (this.buf !== undefined) this.giveBack(this.buf)
    this.buf = undefined
    this.length = 0
    this.expectedSn = -1
  }

  push(piece: Piece): Uint8Array | undefined {
    if (this.buf !== undefined && piece.sn !== this.expectedSn) this.reset()
    if (piece.drop) {
      this.reset()
      return undefined
    }
    if (this.markers) {
      if (piece.first) this.reset()
      else if (this.buf === undefined) return undefined // tail of a message we never saw start
    }
    const parts = partsOf(piece.payload)
    if (this.buf === undefined) this.start(parts)
    for (const part of parts) this.append(part)
    this.expectedSn = (piece.sn + 1) % this.snModulus
    if (piece.more) return undefined
    const out = this.base === 0 && this.buf!.length === this.length
      ? this.buf!
      : this.buf!.subarray(this.base, this.base + this.length)
    this.buf = undefined
    this.length = 0
    this.expectedSn = -1
    return out
  }

  private start(parts: ReadonlyArray<Uint8Array>): void {
    const firstPiece = parts[0] ?? new Uint8Array(0)
    let pieceLength = 0
    for (const p of parts) pieceLength += p.length
    const hint = this.sizeHint?.(firstPiece)
    if (hint !== undefined && hint > this.limit) {
      throw new ZenohReassemblyError({
        reason: "announced message size exceeds the reassembly limit",
        size: hint,
        limit: this.limit
      })
    }
    const capacity = hint !== undefined && hint >= pieceLength
      ? hint
      : Math.min(this.limit, Math.max(4 * pieceLength, 64 * 1024))
    const lead = Math.min(7, Math.max(0, Math.trunc(this.lead?.(firstPiece) ?? 0)))
    this.buf = this.allocate(lead + capacity)
    this.base = lead
    this.length = 0
  }

  /**
   * Where a message is collected. A fresh one is not zero-filled (`allocUnsafeSlow`): every byte
   * `push` returns was written by `append`, and for a 17 MB message the zero-fill cost about as
   * much as the copies into it. Bytes around the message (the alignment lead, capacity a size
   * hint over-announced) are unspecified, as under any `Buffer.allocUnsafe`.
   */
  private allocate(size: number): Uint8Array {
    if (this.memory !== undefined) return this.memory.take(size)
    return size < unzeroedFrom ? new Uint8Array(size) : new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size)
  }

  /** A buffer nobody but this reassembler has seen. */
  private giveBack(buf: Uint8Array) {
    if (this.memory !== undefined && buf.buffer instanceof ArrayBuffer) this.memory.put(buf.buffer)
  }

  private append(bytes: Uint8Array): void {
    const need = this.length + bytes.length
    if (need > this.limit) {
      const size = need
      this.reset()
      throw new ZenohReassemblyError({ reason: "message exceeds the reassembly limit", size, limit: this.limit })
    }
    if (this.base + need > this.buf!.length) {
      let capacity = (this.buf!.length - this.base) * 2
      while (capacity < need) capacity *= 2
      const next = this.allocate(this.base + Math.min(capacity, this.limit))
      next.set(this.buf!.subarray(this.base, this.base + this.length), this.base)
      this.giveBack(this.buf!)
      this.buf = next
    }
    this.buf!.set(bytes, this.base + this.length)
    this.length = need
  }
}
