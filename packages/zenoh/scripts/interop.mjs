// Interop driver for a live Zenoh peer (e.g. zenoh-pico's z_sub / z_pub examples).
// Runs on the built package (npx tsc -b first):
//   npx node packages/zenoh/scripts/interop.mjs <listen|connect> <tcp/host:port> <sub|pub> <key>
//     [--size BYTES] [--count N] [--interval MS] [--seconds S] [--batch BYTES]
// sub: prints every sample (key, size, head) and checks large payloads: all 0x01 (z_pub_thr)
//      or byte j = (j*31 + i) & 0xff.
// pub: waits for a matching subscriber, then publishes --count payloads: short strings, or
//      --size bytes of an ASCII pattern.
import { Effect, Stream } from "effect"
import { Zenoh } from "../dist/index.js"

const [role, locator, what, key, ...rest] = process.argv.slice(2)
const flag = (name, fallback) => {
  const i = rest.indexOf(`--${name}`)
  return i >= 0 ? Number(rest[i + 1]) : fallback
}
const size = flag("size", 0)
const count = flag("count", 5)
const interval = flag("interval", 500)
const seconds = flag("seconds", 30)
const batch = flag("batch", 65535)
const endpoint = Zenoh.parseLocator(locator ?? "")
if (!endpoint || !["listen", "connect"].includes(role) || !["sub", "pub"].includes(what) || !key) {
  console.error("usage: interop.mjs <listen|connect> <tcp/host:port> <sub|pub> <key> [--size N] [--count N] [--interval MS] [--seconds S] [--batch B]")
  process.exit(2)
}

const ascii = (n, i) => {
  const out = new Uint8Array(n)
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
  for (let j = 0; j < n; j++) out[j] = alphabet.charCodeAt((j + i) % alphabet.length)
  return out
}
const t0 = Date.now()
const log = (...args) => console.log(`[ts +${((Date.now() - t0) / 1000).toFixed(3)}s]`, ...args)

const program = Effect.gen(function*() {
  const options = { ...endpoint, batchSize: batch }
  const session = role === "listen" ? yield* Zenoh.listen(options) : yield* Zenoh.connect(options)
  log(`${role === "listen" ? "listening on" : "connected to"} ${locator} as ${session.zid}`, role === "connect" ? `peer ${session.peer.zid} (${session.peer.whatami}, batch ${session.peer.batchSize})` : "")
  yield* session.peerEvents.pipe(
    Stream.runForEach((e) => Effect.sync(() => log(e._tag, e.peer?.zid ?? e.address, e.peer ? `batch ${e.peer.batchSize}` : "", e.error?.message ?? ""))),
    Effect.forkScoped
  )
  if (what === "sub") {
    const samples = yield* session.declareSubscriber(key)
    log(`subscribed to ${key}`)
    let n = 0
    yield* samples.pipe(
      Stream.take(count),
      Stream.runForEach((s) =>
        Effect.sync(() => {
          n++
          const head = new TextDecoder().decode(s.payload.subarray(0, 40))
          const big = s.payload.length > 1000
          const ones = big && s.payload.every((b) => b === 1)
          const i = s.payload[0]
          const pattern = big && s.payload.every((b, j) => b === ((j * 31 + i) & 0xff))
          const check = ones ? " (all bytes 0x01)" : pattern ? ` (byte j = (j*31+${i}) & 0xff: verified)` : ""
          log(`sample #${n} key=${s.keyExpr} bytes=${s.payload.length} from=${s.source} head=${JSON.stringify(head)}${check}`)
        })
      )
    )
  } else {
    log(`waiting for a subscriber of ${key}`)
    yield* session.awaitSubscribers(key)
    log(`subscriber present`)
    for (let i = 0; i < count; i++) {
      const payload = size > 0 ? ascii(size, i) : new TextEncoder().encode(`[${String(i).padStart(4)}] Pub from TS!`)
      const start = performance.now()
      yield* session.put(key, payload)
      log(`put #${i} key=${key} bytes=${payload.length} (${(performance.now() - start).toFixed(1)} ms)`)
      yield* Effect.sleep(interval)
    }
  }
}).pipe(
  Effect.scoped,
  Effect.timeout(seconds * 1000),
  Effect.catch((e) => Effect.sync(() => log("ended:", e._tag ?? "", e.message ?? String(e))))
)

await Effect.runPromise(program)
log("done")
