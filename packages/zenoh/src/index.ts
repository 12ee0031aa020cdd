/**
 * @chiral/zenoh — a Zenoh 1.x (protocol 0x09) peer over TCP, in TypeScript.
 *
 * Effect edge: `Zenoh.listen` / `Zenoh.connect` give scoped sessions whose subscribers are
 * Streams. Pure codec modules (no Effect inside) are exported for tools and tests.
 */
export * as Batch from "./Batch.js"
export * as Extension from "./Extension.js"
export * as Fragmenter from "./Fragmenter.js"
export * as Handshake from "./Handshake.js"
export * as KeyExpr from "./KeyExpr.js"
export * as NetworkMessage from "./NetworkMessage.js"
export * as TransportMessage from "./TransportMessage.js"
export * as ZBuf from "./ZBuf.js"
export * as Zenoh from "./Zenoh.js"
export * as ZenohBody from "./ZenohBody.js"
export * as ZenohConfig from "./ZenohConfig.js"
export * as ZenohId from "./ZenohId.js"
export * as Zint from "./Zint.js"
export * from "./ZenohError.js"
export type { Connection, ConnectOptions, Endpoint, Listener, ListenOptions } from "./Zenoh.js"
export { ZenohConnection, ZenohListener } from "./Zenoh.js"
export type { PeerEvent, PeerInfo, PeerSamples, PutOptions, Sample, Session, SubscriberOptions } from "./Session.js"
