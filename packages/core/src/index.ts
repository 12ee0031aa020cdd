/**
 * @chiral/core: chiral's domain and its transport seam.
 *
 * - Robot side: `PolicyServer` (handlers as effects, sensor state per camera
 *   and proprio in Refs), and its robot-safety gate on every action
 *   (`ActionGate`: `ActionSpec` validation, the `ActionGuard` stale-action
 *   guard, single controller, the `Watchdog`).
 * - Policy side: `PolicyClient`, made of its concerns: `ClientConnection`
 *   (connecting, retrying, loss, reconnection on a `Schedule`), `RequestSlot`
 *   (one request in flight, replies matched by order), `ObservationStream`
 *   (latest observation and the fixed-rate request loop), `ActionDispatcher`
 *   (the action queue and its fixed-rate dispatch; queued actions never
 *   outlive their connection).
 * - The seam: `ServerTransport` and `ClientTransport` (frames in, frames out),
 *   and `OffThreadDispatch`/`DispatchControl`, the contract of an action
 *   dispatcher a transport runs on a thread of its own. Implementations live
 *   in their own packages (`@chiral/websocket`, `@chiral/zenoh-transport`);
 *   `MemoryTransport` here is for tests and in-process pairs.
 *
 * Worker threads import the dispatch kit by subpath (`@chiral/core/ActionFrame`,
 * `/PreciseTimer`, `/ThreadPriority`, `/DispatchControl`) so that they do not
 * load this index and the whole of Effect.
 */
export * from "./Transport.js"
export * as ClientConnection from "./ClientConnection.js"
export * as RobotClock from "./RobotClock.js"
export * from "./TransportError.js"
export * as MemoryTransport from "./MemoryTransport.js"
export * as CloseReason from "./CloseReason.js"

export * as CameraConfig from "./CameraConfig.js"
export * as ProprioConfig from "./ProprioConfig.js"
export * as CameraState from "./CameraState.js"
export * as ProprioState from "./ProprioState.js"
export type { MatrixInput } from "./Matrix.js"
export type { SensorInput, WriteOptions } from "./SensorData.js"
export { ConfigError, SensorError } from "./SensorError.js"

export type { ActionContext, ActionTimeout, ConnectionInfo, Handlers, ResetResult, StepResult } from "./Handlers.js"
export * as PolicyServer from "./PolicyServer.js"
export * as ActionSpec from "./ActionSpec.js"
export * as ActionGuard from "./ActionGuard.js"
export * as ActionGate from "./ActionGate.js"
export { ActionRefused } from "./ActionGate.js"
export type { ActionStats, DropReason } from "./ActionStats.js"
export * as Watchdog from "./Watchdog.js"

export type { Action, ActionChunk } from "./Action.js"
export * as ActionQueue from "./ActionQueue.js"
export * as ActionPlan from "./ActionPlan.js"
export * as RefillSignal from "./RefillSignal.js"
export type { ActionTiming, ClientDrops } from "./ActionDispatcher.js"
export { RequestError } from "./RequestError.js"
export * as PolicyClient from "./PolicyClient.js"
export * as Cadence from "./Cadence.js"
export * as Evaluation from "./Evaluation.js"
export * as EvaluationResult from "./EvaluationResult.js"
export * as EvaluationProgress from "./EvaluationProgress.js"

export * as OffThreadDispatch from "./OffThreadDispatch.js"
export * as DispatchControl from "./DispatchControl.js"
export * as ActionFrame from "./ActionFrame.js"
export * as PreciseTimer from "./PreciseTimer.js"
export * as ThreadPriority from "./ThreadPriority.js"
