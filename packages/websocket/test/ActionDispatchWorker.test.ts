// PolicyClient over a WebSocket connection with its action dispatcher on a
// worker thread (ActionDispatchWorker, writing to the connection's socket
// through a SharedWriter): the shared dispatcher contract, and what a reset
// does to the actions queued there, and a stop of the policy process.
import { describe } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { ClientTransport, ServerTransport } from "@chiral/core"
import { WebSocketTransport } from "../src/index.js"
import { chunkModesContract, dispatchContract, resetContract, stallContract } from "@chiral/testing/DispatchContract"

const webSocket = (thread: "worker" | "main") =>
  Layer.unwrap(
    Effect.map(ServerTransport, (server) =>
      Layer.succeed(ClientTransport, WebSocketTransport.makeClient(server.address, { thread })))
  ).pipe(Layer.provideMerge(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })))

describe("WebSocket client: off-thread action dispatch", () => {
  dispatchContract(webSocket)
  chunkModesContract(webSocket)
  resetContract(webSocket)
  stallContract(webSocket)
})
