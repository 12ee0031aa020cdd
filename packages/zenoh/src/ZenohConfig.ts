/**
 * Session settings shared by listeners and connectors, with the defaults a Zenoh 1.x peer uses.
 */
import { Duration, Result } from "effect"
import * as Batch from "./Batch.js"
import { ZenohConfigError } from "./ZenohError.js"
import * as ZenohId from "./ZenohId.js"

export interface ZenohConfig {
  /** Our Zenoh id (bytes, or the hex form). Default: 16 random bytes. */
  readonly zid?: Uint8Array | string | undefined
  /** Batch size to announce, length prefix included; the smaller of both peers' wins. Default 65535. */
  readonly batchSize?: number | undefined
  /** Lease announced to peers; they drop us after this much silence. Default 10 s. */
  readonly lease?: Duration.Input | undefined
  /** Send KEEP_ALIVE after this long without sending anything. Default lease / 4. */
  readonly keepAlive?: Duration.Input | undefined
  /** Time allowed for the INIT/OPEN exchange (and for the TCP connect). Default 10 s. */
  readonly handshakeTimeout?: Duration.Input | undefined
  /**
   * Largest fragmented message we reassemble, in bytes; a larger one ends the peer's session
   * (`ZenohReassemblyError`, and CLOSE INVALID to the peer). Default 1 GiB, Rust Zenoh's
   * `transport.link.rx.max_message_size`.
   */
  readonly maxMessageSize?: number | undefined
  /** Time allowed to flush a CLOSE and queued data when closing. Default 1 s. */
  readonly closeTimeout?: Duration.Input | undefined
  /**
   * Time a remote dropped for an error (its lease expired, its link failed, it sent something
   * invalid) is given to take what was queued for it, then the CLOSE, before its socket is
   * destroyed: a peer that stopped reading must not hold it for the whole `closeTimeout`.
   * Default 100 ms.
   */
  readonly errorCloseTimeout?: Duration.Input | undefined
  /**
   * Where a fragmented sample's payload should start, modulo 8, given its first bytes: the
   * reassembly buffer is placed accordingly, so that a payload holding aligned data (typed
   * arrays) can be read in place. Default: no preference.
   */
  readonly payloadAlignment?: ((payloadHead: Uint8Array) => number) | undefined
  /**
   * Where fragmented messages are reassembled. Default: fresh memory per
   * message (not zero-filled: every byte of a message is written before it is
   * handed out). Either way a session that connects reads its socket into
   * reused memory rather than a fresh chunk per read (see `Link`).
   */
  readonly receiveMemory?: ReceiveMemory | undefined
}

/**
 * Memory for reassembled messages, e.g. a pool that recycles it (chiral's
 * `ReceivePool` is one). The session writes every byte of a message it hands
 * out, but not the bytes around it in the buffer (the alignment lead, unused
 * capacity), which may hold an earlier message's bytes.
 */
export interface ReceiveMemory {
  /** `size` bytes at offset 0 of an ArrayBuffer nobody else holds; contents unspecified. */
  readonly take: (size: number) => Uint8Array
  /** A buffer from `take` that the session outgrew or abandoned before handing it to anybody: reusable. */
  readonly put: (buffer: ArrayBuffer) => void
}

export interface Resolved {
  readonly zid: Uint8Array
  readonly batchSize: number
  readonly leaseMillis: number
  readonly keepAliveMillis: number
  readonly handshakeTimeoutMillis: number
  readonly maxMessageSize: number
  readonly closeTimeoutMillis: number
  readonly errorCloseTimeoutMillis: number
  readonly payloadAlignment: ((payloadHead: Uint8Array) => number) | undefined
  readonly receiveMemory: ReceiveMemory | undefined
}

export const DEFAULT_LEASE_MILLIS = 10_000
/** Rust Zenoh's default `transport.link.rx.max_message_size`: 1 GiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024 * 1024
/** Below this a FRAGMENT header plus some payload no longer fits a batch sensibly. */
export const MIN_BATCH_SIZE = 64

const millis = (
  field: string,
  input: Duration.Input | undefined,
  fallback: number
): Result.Result<number, ZenohConfigError> => {
  if (input === undefined) return Result.succeed(fallback)
  let ms: number
  try {
    ms = Duration.toMillis(input)
  } catch {
    return Result.fail(new ZenohConfigError({ field, reason: "not a duration" }))
  }
  if (!Number.isFinite(ms) || ms <= 0) {
    return Result.fail(new ZenohConfigError({ field, reason: `must be a positive finite duration, got ${ms} ms` }))
  }
  return Result.succeed(ms)
}

export const resolve = (config: ZenohConfig): Result.Result<Resolved, ZenohConfigError> =>
  Result.gen(function*() {
    let zid: Uint8Array
    if (config.zid === undefined) zid = ZenohId.random()
    else if (typeof config.zid === "string") {
      const parsed = ZenohId.fromString(config.zid)
      if (parsed === undefined) {
        return yield* Result.fail(new ZenohConfigError({ field: "zid", reason: "expected 1–32 hex digits, not all zero" }))
      }
      zid = parsed
    } else {
      if (config.zid.length < 1 || config.zid.length > 16 || config.zid.every((b) => b === 0)) {
        return yield* Result.fail(new ZenohConfigError({ field: "zid", reason: "expected 1–16 bytes, not all zero" }))
      }
      zid = config.zid
    }
    const batchSize = config.batchSize ?? Batch.MAX_BATCH_SIZE
    if (!Number.isInteger(batchSize) || batchSize < MIN_BATCH_SIZE || batchSize > Batch.MAX_BATCH_SIZE) {
      return yield* Result.fail(
        new ZenohConfigError({
          field: "batchSize",
          reason: `must be an integer in [${MIN_BATCH_SIZE}, ${Batch.MAX_BATCH_SIZE}], got ${batchSize}`
        })
      )
    }
    const leaseMillis = yield* millis("lease", config.lease, DEFAULT_LEASE_MILLIS)
    const keepAliveMillis = yield* millis("keepAlive", config.keepAlive, leaseMillis / 4)
    const handshakeTimeoutMillis = yield* millis("handshakeTimeout", config.handshakeTimeout, 10_000)
    const closeTimeoutMillis = yield* millis("closeTimeout", config.closeTimeout, 1_000)
    const errorCloseTimeoutMillis = yield* millis("errorCloseTimeout", config.errorCloseTimeout, 100)
    const maxMessageSize = config.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE
    if (!Number.isSafeInteger(maxMessageSize) || maxMessageSize < 1) {
      return yield* Result.fail(
        new ZenohConfigError({ field: "maxMessageSize", reason: `must be a positive integer, got ${maxMessageSize}` })
      )
    }
    return {
      zid,
      batchSize,
      leaseMillis,
      keepAliveMillis,
      handshakeTimeoutMillis,
      maxMessageSize,
      closeTimeoutMillis,
      errorCloseTimeoutMillis,
      payloadAlignment: config.payloadAlignment,
      receiveMemory: config.receiveMemory
    }
  })
