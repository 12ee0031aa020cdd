export * from "./Transport.js"
export * from "./TransportError.js"
export * as WebSocketTransport from "./WebSocketTransport.js"
export * as MemoryTransport from "./MemoryTransport.js"
