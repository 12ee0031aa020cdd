/**
 * @chiral/websocket: chiral over WebSocket (port 8765, as the references).
 *
 * - `WebSocketTransport`: `layerServer` (the `ServerTransport` on `ws` through
 *   @effect/platform-node) and `layerClient` (the `ClientTransport`).
 * - `WebSocketClient`: our RFC 6455 `ws://` client, which reads each message
 *   into one buffer with its chiral payload 8-byte aligned.
 * - `SharedWriter`: one socket written from two threads through a lock in
 *   shared memory (the policy's thread and the action dispatcher's).
 *
 * The action dispatcher's worker (`ActionDispatchWorker`) implements
 * @chiral/core's `OffThreadDispatch` contract.
 */
export * as WebSocketTransport from "./WebSocketTransport.js"
export * as WebSocketClient from "./WebSocketClient.js"
export * as SharedWriter from "./SharedWriter.js"
