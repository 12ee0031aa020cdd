/**
 * chiral over WebSocket, as one namespace: the server (`WebSocketServer`:
 * `layerServer`, `makeServer`) and the client (`WebSocketClientTransport`:
 * `layerClient`, `makeClient`).
 */
export * from "./WebSocketServer.js"
export * from "./WebSocketClientTransport.js"
