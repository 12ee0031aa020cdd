// Does the server keep anything per applied action? Floods 100k apply_action
// frames N times at an in-process PolicyServer and prints the heap after a full GC.
// node --expose-gc scratchpad/i10s/leak.mjs [rounds=3] [flood=100000]
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import { Effect, Layer } from "effect"
import { PolicyServer } from "../../packages/core/dist/index.js"
import { WebSocketTransport } from "../../packages/websocket/dist/index.js"
import { encodeFrame } from "../../packages/protocol/dist/index.js"

const rounds = Number(process.argv[2] ?? 3), floodCount = Number(process.argv[3] ?? 100_000)
const wsFrame = (payload) => {
  const n = payload.byteLength
  const head = n < 126 ? Buffer.from([0x82, 0x80 | n]) : Buffer.from([0x82, 0x80 | 126, n >> 8, n & 255])
  return Buffer.concat([head, Buffer.alloc(4), payload])
}
const one = wsFrame(Buffer.from(encodeFrame({ type: "apply_action", action: { dtype: "float32", shape: [7], data: new Float32Array(7) }, obsTimestamps: { cam_0: 1 } })))
const floodBytes = Buffer.concat(Array.from({ length: floodCount }, () => one))
const rawConnect = (port) => new Promise((resolve, reject) => {
  const socket = Net.connect({ host: "127.0.0.1", port })
  socket.once("error", reject)
  socket.once("connect", () => socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Crypto.randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`))
  let head = ""
  const onData = (chunk) => { head += chunk.toString("latin1"); if (head.includes("\r\n\r\n")) { socket.off("data", onData); resolve(socket) } }
  socket.on("data", onData)
})
const heap = () => { global.gc(); global.gc(); return (process.memoryUsage().heapUsed / 1e6).toFixed(1) }
await Effect.runPromise(Effect.gen(function*() {
  let applied = 0
  const server = yield* PolicyServer.make({
    cameras: [{ name: "cam_0", width: 64, height: 48 }],
    handlers: { reset: Effect.die("unused"), applyAction: () => Effect.sync(() => { applied++ }) }
  })
  const port = Number(new URL(server.address).port)
  console.log(`heap before: ${heap()} MB`)
  for (let r = 0; r < rounds; r++) {
    const raw = yield* Effect.promise(() => rawConnect(port))
    const target = applied + floodCount
    raw.write(floodBytes)
    while (applied < target) yield* Effect.sleep(20)
    console.log(`after flood ${r + 1} (connection open): ${heap()} MB`)
    raw.destroy()
    yield* Effect.sleep(200)
    console.log(`after flood ${r + 1} (closed): ${heap()} MB`)
  }
}).pipe(Effect.scoped, Effect.provide(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })), Effect.provide(Layer.empty)))
