/**
 * @chiral/protocol: the chiral wire codec, byte-identical to the Python and C++
 * references. Pure and synchronous; decoding never throws.
 */
export { CameraFrame } from "./CameraFrame.js"
export { describeMessage, type DescribeOptions, stringifyDescription } from "./Describe.js"
export { Dtype, halfToNumber, numberToHalf, type TensorData, type TypedArrayConstructor } from "./Dtype.js"
export {
  decodeFrame,
  type DecodeLimits,
  defaultDecodeLimits,
  type Dialect,
  encodeFrame,
  encodeFrameParts,
  type EncodeOptions,
  frameAlignment
} from "./Frame.js"
export { FrameError } from "./FrameError.js"
export { nonFiniteText, reviveNonFinite, stringifyJson } from "./Json.js"
export {
  type ApplyAction,
  type LegacyAction,
  Message,
  type MessageType,
  type MetadataRequest,
  type MetadataResponse,
  messageTypes,
  type ObsRequest,
  type ObsResponse,
  type ObsTimestamps,
  type ResetRequest,
  type ResetResponse,
  type StepResponse,
  type UserMap
} from "./Message.js"
export { Observation } from "./Observation.js"
export { Proprio } from "./Proprio.js"
export { Tensor, TensorError } from "./Tensor.js"
export { Lease, Lending, lending, type Watcher } from "./FrameLease.js"
export { freshMessage, reserveHeapFor, retainFreedBuffers, uninitialized, warmYoungGeneration } from "./Allocate.js"
export { collectAfter, ReceivePool, type ReceivePoolOptions, type ReceivePoolStats } from "./ReceivePool.js"
