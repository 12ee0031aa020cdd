// getObs round trips, 8 cameras 480x640 RGB + float32 depth (17.2 MB), over Zenoh with the
// client's session on a worker thread or on the main thread (server in the same process).
//   ./node_modules/.bin/node scratchpad/i11/getobs.mjs [requests=40] [rounds=2]
import { Effect } from "effect"
import { PerformanceObserver } from "node:perf_hooks"

let gcMillis = 0
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcMillis += entry.duration
}).observe({ entryTypes: ["gc"] })
import { ClientTransport, PolicyClient, PolicyServer, ServerTransport } from "@chiral/core"
import { ZenohTransport } from "@chiral/zenoh-transport"

const requests = Number(process.argv[2] ?? 40)
const rounds = Number(process.argv[3] ?? 2)
const cams = Array.from({ length: 8 }, (_, i) => ({ name: `cam_${i}`, height: 480, width: 640, channels: 3, hasDepth: true }))
const pct = (xs, q) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))]

const measure = (sessionThread) =>
  Effect.gen(function*() {
    const server = yield* PolicyServer.make({ cameras: cams, handlers: { reset: Effect.die("unused"), applyAction: () => Effect.void } })
    for (const c of cams) {
      yield* server.updateImage(c.name, new Uint8Array(480 * 640 * 3).fill(7), { copy: false })
      yield* server.updateDepth(c.name, new Float32Array(480 * 640).fill(1.5), { copy: false })
    }
    const client = yield* PolicyClient.make({ quiet: true }).pipe(
      Effect.provideService(ClientTransport, ZenohTransport.makeClient(server.address, { sessionThread }))
    )
    for (let i = 0; i < 3; i++) yield* client.getObs
    const times = []
    const cpu0 = process.cpuUsage()
    const gc0 = gcMillis
    for (let i = 0; i < requests; i++) {
      const t0 = performance.now()
      yield* client.getObs
      times.push(performance.now() - t0)
    }
    const cpu = process.cpuUsage(cpu0)
    times.cpuPerRequest = (cpu.user + cpu.system) / 1000 / requests
    times.gcPerRequest = (gcMillis - gc0) / requests
    return times
  }).pipe(Effect.scoped, Effect.provide(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 })))

for (let r = 0; r < rounds; r++) {
  for (const thread of process.env.ONLY ? [process.env.ONLY] : r % 2 === 0 ? ["worker", "main"] : ["main", "worker"]) {
    const times = await Effect.runPromise(measure(thread))
    console.log(`session on ${thread.padEnd(6)} getObs p50 ${pct(times, 0.5).toFixed(1)} ms  p90 ${pct(times, 0.9).toFixed(1)} ms  cpu ${times.cpuPerRequest.toFixed(1)} ms per request (all threads), main-thread gc ${times.gcPerRequest.toFixed(1)} ms`)
  }
}
process.exit(0)
