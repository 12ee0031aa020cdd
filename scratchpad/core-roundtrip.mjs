// Rough round-trip check: 8 cameras 480x640 RGB + float32 depth over loopback WebSocket.
import { Effect, Layer } from "effect"
import { ClientTransport, PolicyClient, PolicyServer, ServerTransport, WebSocketTransport } from "../packages/core/dist/index.js"

const cams = Array.from({ length: Number(process.env.CAMS ?? 8) }, (_, i) => ({ name: `cam_${i}`, height: 480, width: 640, channels: 3, hasDepth: true }))
const transports = Layer.unwrap(Effect.map(ServerTransport, (s) => Layer.succeed(ClientTransport, WebSocketTransport.makeClient(s.address))))
  .pipe(Layer.provideMerge(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })))

const program = Effect.gen(function*() {
  const server = yield* PolicyServer.make({ cameras: cams, proprios: [{ name: "joint_pos", size: 7 }], handlers: { reset: Effect.die("x"), applyAction: () => Effect.void } })
  for (const c of cams) {
    yield* server.updateImage(c.name, new Uint8Array(480 * 640 * 3).fill(7), { copy: false })
    yield* server.updateDepth(c.name, new Float32Array(480 * 640).fill(1.5), { copy: false })
  }
  const client = yield* PolicyClient.make({ quiet: true })
  const times = []
  for (let i = 0; i < 150; i++) {
    const t0 = performance.now()
    yield* client.getObs
    times.push(performance.now() - t0)
  }
  times.sort((a, b) => a - b)
  const p = (q) => times[Math.floor(q * (times.length - 1))].toFixed(2)
  console.log(`cams=${cams.length} round trip ms: p50 ${p(0.5)} p90 ${p(0.9)} max ${p(1)}`)
})
Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(transports))).catch((e) => { console.error(e); process.exit(1) })
