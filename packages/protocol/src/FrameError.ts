import { Schema } from "effect"

/**
 * Something is wrong with a frame: `field` is the path inside the header
 * (`cameras[0].image_size`, `header_len`, `payload`…), `reason` says what.
 * Decoding returns it as a failure; encoding throws it for values that cannot
 * be framed (a programming error on the caller's side).
 */
export class FrameError extends Schema.TaggedError<FrameError>()("FrameError", {
  field: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.field}: ${this.reason}`
  }
}
