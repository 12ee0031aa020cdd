/**
 * @chiral/core: the robot-side PolicyServer and the policy-side PolicyClient,
 * over a transport chosen by Layer (WebSocket, in-memory; Zenoh later).
 */
export * from "./Transport.js"
export * from "./TransportError.js"
export * as WebSocketTransport from "./WebSocketTransport.js"
export * as ZenohTransport from "./ZenohTransport.js"
export * as MemoryTransport from "./MemoryTransport.js"

export * as CameraConfig from "./CameraConfig.js"
export * as ProprioConfig from "./ProprioConfig.js"
export * as CameraState from "./CameraState.js"
export * as ProprioState from "./ProprioState.js"
export type { MatrixInput } from "./Matrix.js"
export type { SensorInput, WriteOptions } from "./SensorData.js"
export { ConfigError, SensorError } from "./SensorError.js"

export type { ActionContext, Handlers, ResetResult, StepResult } from "./Handlers.js"
export * as PolicyServer from "./PolicyServer.js"

export type { Action, ActionChunk } from "./Action.js"
export * as ActionQueue from "./ActionQueue.js"
export { RequestError } from "./RequestError.js"
export * as PolicyClient from "./PolicyClient.js"
export * as Cadence from "./Cadence.js"
