import { Result } from "effect"
import { decode } from "./FrameDecoder.js"
import { type Dialect, encodeContiguous, encodeParts } from "./FrameEncoder.js"
import { FrameError } from "./FrameError.js"
import type { Message } from "./Message.js"

export type { Dialect } from "./FrameEncoder.js"

/** Bounds that keep a hostile frame from costing more than it is worth. */
export interface DecodeLimits {
  /** Largest msgpack header accepted (default 1 MiB). */
  readonly maxHeaderBytes: number
  /** Deepest nesting of msgpack arrays/maps in the header (default 64). */
  readonly maxDepth: number
  /** Largest whole frame accepted (default: no limit beyond the buffer itself). */
  readonly maxFrameBytes: number
}

export const defaultDecodeLimits: DecodeLimits = {
  maxHeaderBytes: 1024 * 1024,
  maxDepth: 64,
  maxFrameBytes: Number.POSITIVE_INFINITY
}

/**
 * Which reference's layout to write. "python" (default): Python key order, every
 * float field as float64. "cpp": C++ key order (type, timestamp, extra, cameras,
 * proprios, …), integral doubles as ints, reward as float32. `action` and
 * `step_response` exist only in C++ and default to "cpp".
 */
export interface EncodeOptions {
  readonly dialect?: Dialect | undefined
}

/**
 * The frame as [length prefix + header, ...payload views]: tensor bytes are not
 * copied (actions and proprios that are not float32 are converted first, as the
 * references do). Concatenated, the parts equal `encodeFrame(message)`.
 * Throws FrameError if the message is inconsistent (shape vs data, K not 3×3,
 * duplicate camera names…): that is a bug in the caller, not a wire condition.
 */
export const encodeFrameParts = (message: Message, options?: EncodeOptions): ReadonlyArray<Uint8Array> =>
  encodeParts(message, options?.dialect)

/** One contiguous frame (one copy of the payload). Throws like {@link encodeFrameParts}. */
export const encodeFrame = (message: Message, options?: EncodeOptions): Uint8Array =>
  encodeContiguous(message, options?.dialect)

/**
 * Where a frame should start, modulo 8, for its payload (at `4 + header_len`) to
 * be 8-byte aligned, given at least its first 4 bytes (0 when fewer are known).
 * A receiver that places frames there gets every tensor from `decodeFrame` as a
 * view; a misaligned float32 or float64 tensor is copied.
 */
export const frameAlignment = (head: Uint8Array): number => {
  if (head.byteLength < 4) return 0
  const headerLen = (head[0]! | (head[1]! << 8) | (head[2]! << 16) | (head[3]! << 24)) >>> 0
  return (8 - ((4 + headerLen) % 8)) % 8
}

/**
 * Decodes one frame. Never throws. Every offset, size, shape and dtype is
 * checked against the frame before payload bytes are touched. Tensors are
 * views into `frame` where the bytes are aligned (otherwise copied once), so
 * they alias it: do not reuse the buffer while the message lives. A frame lent
 * out by its receiver (`FrameLease`) has each such view tracked, so that its
 * memory is recycled only once they are all collected.
 */
export const decodeFrame = (frame: Uint8Array, limits?: Partial<DecodeLimits>): Result.Result<Message, FrameError> => {
  try {
    return Result.succeed(decode(frame, limits === undefined ? defaultDecodeLimits : { ...defaultDecodeLimits, ...limits }))
  } catch (e) {
    if (e instanceof FrameError) return Result.fail(e)
    // Not expected; still a failure value, never an exception, for whoever feeds us bytes.
    return Result.fail(new FrameError({ field: "frame", reason: `undecodable: ${e instanceof Error ? e.message : String(e)}` }))
  }
}
