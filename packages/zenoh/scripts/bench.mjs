// Throughput of large PUTs between two sessions over loopback TCP (run `npx tsc -b` first).
//   npx node packages/zenoh/scripts/bench.mjs [--size BYTES] [--count N] [--batch BYTES]
//     one process: listener subscribes, connector publishes (both share one event loop)
//   npx node packages/zenoh/scripts/bench.mjs sub <port> [--count N]   # listener, in its own process
//   npx node packages/zenoh/scripts/bench.mjs pub <port> [--size BYTES] [--count N]
// Prints MB/s (1 MB = 2^20 bytes) from the first sample to the last, so connection setup is excluded.
import { Effect, Fiber, Stream } from "effect"
import { Zenoh } from "../dist/index.js"

const args = process.argv.slice(2)
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? Number(args[i + 1]) : fallback
}
const size = flag("size", 17 * 1024 * 1024)
const count = flag("count", 20)
const batchSize = flag("batch", 65535)
const mode = args[0] === "sub" || args[0] === "pub" ? args[0] : "both"
const port = mode === "both" ? 0 : Number(args[1])
const MB = 1024 * 1024

const receive = (session, n) =>
  Effect.gen(function*() {
    const samples = yield* session.declareSubscriber("bench/**")
    let first = 0
    let bytes = 0
    let received = 0
    yield* samples.pipe(
      Stream.take(n),
      Stream.runForEach((s) =>
        Effect.sync(() => {
          if (received === 0) first = performance.now()
          received++
          if (received > 1) bytes += s.payload.length
          if (s.payload[0] !== (received - 1) % 256 || s.payload[s.payload.length - 1] !== 7) {
            throw new Error(`sample ${received} corrupted`)
          }
        })
      )
    )
    const seconds = (performance.now() - first) / 1000
    return { received, mbPerSecond: bytes / MB / seconds, seconds }
  })

const send = (session, n) =>
  Effect.gen(function*() {
    yield* session.awaitSubscribers("bench/data")
    const payload = new Uint8Array(size)
    payload[size - 1] = 7
    const start = performance.now()
    for (let i = 0; i < n; i++) {
      payload[0] = i % 256
      yield* session.put("bench/data", payload)
    }
    return (performance.now() - start) / 1000
  })

const program = Effect.gen(function*() {
  if (mode === "sub") {
    const listener = yield* Zenoh.listen({ host: "127.0.0.1", port, batchSize })
    console.log(`listening on ${listener.address.port}`)
    const r = yield* receive(listener, count)
    console.log(`received ${r.received} × ${size} bytes: ${r.mbPerSecond.toFixed(0)} MB/s (after the first sample)`)
  } else if (mode === "pub") {
    const conn = yield* Zenoh.connect({ host: "127.0.0.1", port, batchSize })
    const seconds = yield* send(conn, count)
    console.log(`sent ${count} × ${size} bytes in ${seconds.toFixed(3)} s: ${(count * size / MB / seconds).toFixed(0)} MB/s`)
    yield* Effect.sleep(200)
  } else {
    const listener = yield* Zenoh.listen({ host: "127.0.0.1", port: 0, batchSize })
    const conn = yield* Zenoh.connect({ host: "127.0.0.1", port: listener.address.port, batchSize })
    const receiving = yield* Effect.forkChild(receive(listener, count), { startImmediately: true })
    yield* send(conn, count)
    const r = yield* Fiber.join(receiving)
    console.log(`in one process: ${count} × ${size} bytes, ${r.mbPerSecond.toFixed(0)} MB/s (after the first sample)`)
  }
}).pipe(Effect.scoped)

await Effect.runPromise(program)
