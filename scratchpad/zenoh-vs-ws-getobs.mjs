// getObs round trip, 8 cameras 480x640 RGB uint8 + float32 depth (17.2 MB per observation),
// PolicyServer ↔ PolicyClient in one process over loopback: Zenoh vs WebSocket.
// Runs on dist/ (npx tsc -b first):  npx node scratchpad/zenoh-vs-ws-getobs.mjs [requests=30] [rounds=3]
// Rounds alternate between the transports so load from other processes hits both alike.
import { Effect, Layer } from "effect"
import {
  ClientTransport,
  PolicyClient,
  PolicyServer,
  ServerTransport,
  WebSocketTransport,
  ZenohTransport
} from "../packages/core/dist/index.js"

const requests = Number(process.argv[2] ?? 30)
const rounds = Number(process.argv[3] ?? 3)
const cams = Array.from({ length: 8 }, (_, i) => ({ name: `cam_${i}`, height: 480, width: 640, channels: 3, hasDepth: true }))

const pair = (name) => {
  const server = name === "zenoh"
    ? ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 })
    : WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })
  const client = (address) => name === "zenoh" ? ZenohTransport.makeClient(address) : WebSocketTransport.makeClient(address)
  return Layer.unwrap(Effect.map(ServerTransport, (s) => Layer.succeed(ClientTransport, client(s.address)))).pipe(
    Layer.provideMerge(server)
  )
}

const measure = (name) =>
  Effect.gen(function*() {
    const server = yield* PolicyServer.make({
      cameras: cams,
      proprios: [{ name: "joint_pos", size: 7 }],
      handlers: { reset: Effect.die("unused"), applyAction: () => Effect.void }
    })
    for (const c of cams) {
      yield* server.updateImage(c.name, new Uint8Array(480 * 640 * 3).fill(7), { copy: false })
      yield* server.updateDepth(c.name, new Float32Array(480 * 640).fill(1.5), { copy: false })
    }
    const client = yield* PolicyClient.make({ quiet: true })
    for (let i = 0; i < 3; i++) yield* client.getObs // warm-up
    const times = []
    for (let i = 0; i < requests; i++) {
      const t0 = performance.now()
      yield* client.getObs
      times.push(performance.now() - t0)
    }
    return times
  }).pipe(Effect.scoped, Effect.provide(pair(name)))

const pct = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(q * (s.length - 1))]
}

const program = Effect.gen(function*() {
  const all = { zenoh: [], websocket: [] }
  for (let r = 0; r < rounds; r++) {
    for (const name of r % 2 === 0 ? ["zenoh", "websocket"] : ["websocket", "zenoh"]) {
      const times = yield* measure(name)
      all[name].push(...times)
      console.log(`round ${r + 1} ${name.padEnd(9)} p50 ${pct(times, 0.5).toFixed(2)} ms  p90 ${pct(times, 0.9).toFixed(2)} ms`)
    }
  }
  const z = pct(all.zenoh, 0.5)
  const w = pct(all.websocket, 0.5)
  console.log(
    `8 cams 480x640 RGB+depth (17.2 MB) getObs p50 over ${all.zenoh.length} requests each: ` +
      `zenoh ${z.toFixed(2)} ms (p90 ${pct(all.zenoh, 0.9).toFixed(2)}), websocket ${w.toFixed(2)} ms ` +
      `(p90 ${pct(all.websocket, 0.9).toFixed(2)}); zenoh/websocket = ${(z / w).toFixed(2)}`
  )
})

Effect.runPromise(program).catch((e) => {
  console.error(e)
  process.exit(1)
})
