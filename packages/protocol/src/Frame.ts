import { Result } from "effect"
import { FrameError } from "./FrameError.js"
import type { Message } from "./Message.js"

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
export type Dialect = "python" | "cpp"

export interface EncodeOptions {
  readonly dialect?: Dialect | undefined
}

/** One contiguous frame. Throws FrameError if the message is inconsistent (e.g. shape vs data). */
export const encodeFrame = (message: Message, options?: EncodeOptions): Uint8Array => {
  void message
  void options
  throw new FrameError({ field: "frame", reason: "encoder not finished yet" })
}

/**
 * The frame as [length prefix + header, ...payload views]: tensor bytes are not
 * copied. Concatenated, the parts equal `encodeFrame(message)`.
 */
export const encodeFrameParts = (message: Message, options?: EncodeOptions): ReadonlyArray<Uint8Array> => {
  void message
  void options
  throw new FrameError({ field: "frame", reason: "encoder not finished yet" })
}

/**
 * Decodes one frame. Never throws. Tensors are views into `frame` where the
 * bytes are aligned, so they alias it: do not reuse the buffer while they live.
 */
export const decodeFrame = (frame: Uint8Array, limits?: Partial<DecodeLimits>): Result.Result<Message, FrameError> => {
  void frame
  void limits
  return Result.fail(new FrameError({ field: "frame", reason: "decoder not finished yet" }))
}
