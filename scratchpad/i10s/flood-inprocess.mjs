// Fairness under flood, in one process, measured in flood frames rather than
// milliseconds (so the machine's load matters less): for each getObs of a
// well-behaved client, how many of a raw client's apply_action frames the
// server applied while that getObs was in flight.
// node scratchpad/i10s/flood-inprocess.mjs [flood=100000]
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import { Effect, Layer } from "effect"
import { ClientTransport, PolicyClient, PolicyServer, ServerTransport } from "../../packages/core/dist/index.js"
import { WebSocketTransport } from "../../packages/websocket/dist/index.js"
import { encodeFrame } from "../../packages/protocol/dist/index.js"

const floodCount = Number(process.argv[2] ?? 100_000)
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
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))] }

const layer = Layer.unwrap(Effect.map(ServerTransport, (s) => Layer.succeed(ClientTransport, WebSocketTransport.makeClient(s.address)))).pipe(
  Layer.provideMerge(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })))

await Effect.runPromise(Effect.gen(function*() {
  let applied = 0
  const server = yield* PolicyServer.make({
    cameras: [{ name: "cam_0", width: 320, height: 240 }],
    handlers: { reset: Effect.die("unused"), applyAction: () => Effect.sync(() => { applied++ }) }
  })
  const client = yield* PolicyClient.make({ quiet: true })
  for (let i = 0; i < 20; i++) yield* client.getObs
  const quiet = []
  for (let i = 0; i < 3000; i++) { const t = performance.now(); yield* client.getObs; quiet.push(performance.now() - t) }
  console.log(`getObs without flood: p50 ${pct(quiet, .5).toFixed(1)} ms p99 ${pct(quiet, .99).toFixed(1)} ms`)
  const port = Number(new URL(server.address).port)
  const raw = yield* Effect.promise(() => rawConnect(port))
  const t0 = performance.now(), cpu0 = process.threadCpuUsage()
  raw.write(floodBytes)
  let last = applied, maxGap = 0, turns = 0
  const turn = () => { maxGap = Math.max(maxGap, applied - last); last = applied; turns++; if (applied < floodCount) setTimeout(turn, 0) }
  setTimeout(turn, 0)
  const during = [], frames = []
  while (process.env.NOOBS && applied < floodCount) yield* Effect.sleep(5)
  while (applied < floodCount) {
    const a = applied, t = performance.now()
    yield* client.getObs
    if (applied < floodCount) { during.push(performance.now() - t); frames.push(applied - a) }
  }
  const total = performance.now() - t0
  { const c = process.threadCpuUsage(cpu0); console.log(`main thread CPU during the flood: ${((c.user + c.system) / 1000).toFixed(0)} ms`) }
  console.log(`flood ${floodCount} applied in ${total.toFixed(0)} ms; ${during.length} getObs completed during it`)
  if (during.length) console.log(`getObs during flood: p50 ${pct(during, .5).toFixed(1)} ms p99 ${pct(during, .99).toFixed(1)} ms; flood frames applied per getObs: p50 ${pct(frames, .5)} max ${Math.max(...frames)}`)
  console.log(`event loop timer turns during flood: ${turns}; most flood frames applied between two turns: ${maxGap}`)
  raw.destroy()
}).pipe(Effect.scoped, Effect.provide(layer)))
