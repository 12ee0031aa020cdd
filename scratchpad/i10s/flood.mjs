// Fairness under flood (issue 10, point 8): one raw client writes N apply_action
// frames as fast as it can, while a PolicyClient on another connection keeps
// requesting observations. Prints the getObs latencies before and during the
// flood, and how long the server took to work through the flood.
// Runs on dist/ (npx tsc -b first):  node scratchpad/i10s/flood.mjs [flood=100000] [port=23101]
import { spawn } from "node:child_process"
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import { Effect, Layer } from "effect"
import { ClientTransport, PolicyClient } from "../../packages/core/dist/index.js"
import { WebSocketTransport } from "../../packages/websocket/dist/index.js"
import { encodeFrame } from "../../packages/protocol/dist/index.js"

const floodCount = Number(process.argv[2] ?? 100_000)
const port = Number(process.argv[3] ?? 23101)
const extra = process.argv.slice(4)

const server = spawn(process.execPath, [...(process.env.ELD ? ["--import", new URL("./eld.mjs", import.meta.url).pathname] : []), ...(process.env.PROF ? ["--cpu-prof", "--cpu-prof-dir=scratchpad/out"] : []), ...(process.env.NODEFLAGS ? process.env.NODEFLAGS.split(" ") : []), "apps/cli/bin/chiral.js", "serve", "--host", "127.0.0.1", "--port", String(port), "--cameras", "2", "--size", process.env.SIZE ?? "320x240", ...extra], { stdio: ["ignore", process.env.NODEFLAGS ? "pipe" : "ignore", "pipe"] })
server.stderr.on("data", (d) => { if (String(d).startsWith("ELD")) process.stdout.write(String(d)) })
if (process.env.NODEFLAGS) server.stdout?.on("data", (d) => process.stdout.write(String(d)))
let serverLog = ""
await new Promise((resolve) => server.stderr.on("data", (d) => { serverLog += d; if (serverLog.includes("listening")) resolve() }))

const wsFrame = (payload) => {
  // FIN+binary, masked with key 0 (valid, and no per-byte work here)
  const n = payload.byteLength
  const head = n < 126 ? Buffer.from([0x82, 0x80 | n]) : Buffer.from([0x82, 0x80 | 126, n >> 8, n & 255])
  return Buffer.concat([head, Buffer.alloc(4), payload])
}
const action = encodeFrame({ type: "apply_action", action: { dtype: "float32", shape: [7], data: new Float32Array(7) }, obsTimestamps: { cam_0: 1 } })
const one = wsFrame(Buffer.from(action))
const metadataProbe = wsFrame(Buffer.from(encodeFrame({ type: "metadata" })))
const floodBytes = Buffer.concat(Array.from({ length: floodCount }, () => one))

const rawConnect = () => new Promise((resolve, reject) => {
  const socket = Net.connect({ host: "127.0.0.1", port })
  socket.once("error", reject)
  socket.once("connect", () => socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Crypto.randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`))
  let head = ""
  const onData = (chunk) => { head += chunk.toString("latin1"); if (head.includes("\r\n\r\n")) { socket.off("data", onData); resolve(socket) } }
  socket.on("data", onData)
})

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))] }
const summary = (xs) => `n=${xs.length} p50=${pct(xs, 0.5).toFixed(1)} ms p99=${pct(xs, 0.99).toFixed(1)} ms max=${Math.max(...xs).toFixed(1)} ms`

const layer = Layer.succeed(ClientTransport, WebSocketTransport.makeClient(`ws://127.0.0.1:${port}`))
await Effect.runPromise(Effect.gen(function*() {
  const client = yield* PolicyClient.make({ quiet: true })
  for (let i = 0; i < 20; i++) yield* client.getObs
  const quiet = []
  for (let i = 0; i < Number(process.env.QUIET ?? 2000); i++) { const t = performance.now(); yield* client.getObs; quiet.push(performance.now() - t) }
  console.log(`getObs, no flood:      ${summary(quiet)}`)

  const raw = yield* Effect.promise(rawConnect)
  let floodDone = false
  raw.on("data", () => { floodDone = true }) // the metadata answer: every action before it was processed
  const t0 = performance.now()
  let floodMs = 0
  raw.on("data", () => { if (floodMs === 0) floodMs = performance.now() - t0 })
  raw.write(floodBytes)
  raw.write(metadataProbe)
  const during = []
  while (!floodDone) { const t = performance.now(); yield* client.getObs; if (!floodDone) during.push(performance.now() - t) }
  console.log(`flood of ${floodCount} apply_action processed in ${floodMs.toFixed(0)} ms`)
  console.log(`getObs during flood:   ${during.length ? summary(during) : "none completed during the flood"}`)
  raw.destroy()
}).pipe(Effect.scoped, Effect.provide(layer)))
server.kill("SIGINT")
await new Promise((r) => server.once("exit", r))
