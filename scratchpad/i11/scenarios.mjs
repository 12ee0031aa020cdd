// Issue 11's scenarios over Zenoh (and WebSocket for comparison), measured on real loopback
// sockets. Runs on the built packages of the tree it sits in (npx tsc -b first):
//   ./node_modules/.bin/node scratchpad/i11/scenarios.mjs <scenario> [zenoh|websocket]
// scenarios: crossed (two clients, 50 sequential getObs each: stale / crossed answers)
//            frozen  (a client frozen while receiving 17 MB observations; another one's getObs)
//            slow    (a 3 s handler for one client; another client's first getObs)
//            blocked [seconds=30] (this thread blocked; the server in a child process)
//            huge    (one 294 MB observation: 1 camera 7000x6000 RGB + float32 depth)
//            bad     (bad sessions on the server's port: log lines; a corrupted client session: its error)
import { Cause, Effect, Exit, Fiber, Layer, Logger, Ref, Stream } from "effect"
import { spawn } from "node:child_process"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"
import { ClientTransport, PolicyClient, PolicyServer, ServerTransport } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { ZenohTransport } from "@chiral/zenoh-transport"

const [scenario = "crossed", protocol = "zenoh", arg] = process.argv.slice(2)
const root = fileURLToPath(new URL("../../", import.meta.url))

const serverLayer = () =>
  protocol === "zenoh"
    ? ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 })
    : WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })
const clientFor = (address) =>
  protocol === "zenoh"
    ? ZenohTransport.makeClient(address, { sessionThread: process.env.SESSION_THREAD })
    : WebSocketTransport.makeClient(address)
const clientAt = (address, options = {}) =>
  PolicyClient.make({ quiet: true, ...options }).pipe(Effect.provideService(ClientTransport, clientFor(address)))

const eightCams = Array.from({ length: 8 }, (_, i) => ({ name: `cam_${i}`, height: 480, width: 640, channels: 3, hasDepth: true }))
const smallCam = [{ name: "cam", height: 48, width: 64, channels: 3 }]

/** A server whose getObs tags each observation with its number and the time it was made. */
const taggedServer = (cameras, options = {}) =>
  Effect.gen(function*() {
    const count = yield* Ref.make(0)
    let slowNext = false
    const server = yield* PolicyServer.make({
      cameras,
      handlers: {
        reset: Effect.die("unused"),
        applyAction: () => Effect.void,
        getObs: Effect.gen(function*() {
          const n = yield* Ref.updateAndGet(count, (k) => k + 1)
          if (slowNext) {
            slowNext = false
            yield* Effect.sleep(options.slowMillis ?? 3000)
          }
          const api = yield* PolicyServer.PolicyServer
          return yield* api.makeObs({ extra: { n, at: performance.now() } })
        })
      }
    })
    for (const c of cameras) {
      yield* server.updateImage(c.name, new Uint8Array(c.height * c.width * c.channels).fill(7), { copy: false })
      if (c.hasDepth) yield* server.updateDepth(c.name, new Float32Array(c.height * c.width).fill(1.5), { copy: false })
    }
    return { server, count: Ref.get(count), slowNext: () => (slowNext = true) }
  })

/** A TCP relay whose connections can be frozen (nothing forwarded, nothing read: a SIGSTOPped peer). */
const relayTo = (port) =>
  Effect.acquireRelease(
    Effect.callback((resume) => {
      const pairs = []
      const server = Net.createServer((inbound) => {
        const outbound = Net.connect({ host: "127.0.0.1", port })
        for (const s of [inbound, outbound]) s.on("error", () => {})
        inbound.pipe(outbound)
        outbound.pipe(inbound)
        pairs.push([inbound, outbound])
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, pairs, port: server.address().port })))
    }),
    ({ pairs, server }) => Effect.sync(() => {
      for (const p of pairs) for (const s of p) s.destroy()
      server.close()
    })
  ).pipe(Effect.map((relay) => ({
    port: relay.port,
    freeze: () => {
      for (const [inbound, outbound] of relay.pairs) {
        inbound.unpipe(outbound)
        outbound.unpipe(inbound)
        inbound.pause()
        outbound.pause()
      }
    }
  })))

const pct = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * (s.length - 1)))]
}

// ── crossed ─────────────────────────────────────────────────────────────────────

const crossed = Effect.gen(function*() {
  const { server } = yield* taggedServer(smallCam)
  const clients = [yield* clientAt(server.address), yield* clientAt(server.address)]
  const results = yield* Effect.forEach(clients, (client) =>
    Effect.gen(function*() {
      const got = []
      for (let i = 0; i < 50; i++) {
        const sent = performance.now()
        const obs = yield* client.getObs
        got.push({ n: obs.extra.n, stale: obs.extra.at < sent })
      }
      return got
    }), { concurrency: "unbounded" })
  const [a, b] = results
  const inA = new Set(a.map((x) => x.n))
  const both = b.filter((x) => inA.has(x.n)).length
  const stale = results.map((r) => r.filter((x) => x.stale).length)
  const distinct = new Set([...a, ...b].map((x) => x.n)).size
  console.log(`${protocol} crossed: client A ${stale[0]}/50 stale, client B ${stale[1]}/50 stale; ${both} observations delivered to both; ${distinct} distinct of 100`)
})

// ── frozen ──────────────────────────────────────────────────────────────────────

const frozen = Effect.gen(function*() {
  const { server } = yield* taggedServer(eightCams)
  const port = Number(server.address.split(":").pop())
  const relay = yield* relayTo(port)
  const viaRelay = protocol === "zenoh" ? `tcp/127.0.0.1:${relay.port}` : `ws://127.0.0.1:${relay.port}`
  const a = yield* clientAt(viaRelay, { requestTimeout: 5000 })
  const b = yield* clientAt(server.address, { requestTimeout: 5000 })
  for (let i = 0; i < 3; i++) yield* a.getObs
  // a keeps asking; its relay freezes while an answer is on its way
  yield* Effect.forkChild(Effect.forever(Effect.ignore(a.getObs)))
  yield* Effect.sleep(30)
  relay.freeze()
  const times = []
  let failed = 0
  const t0 = performance.now()
  while (performance.now() - t0 < 12_000) {
    const start = performance.now()
    const exit = yield* Effect.exit(b.getObs)
    const ms = performance.now() - start
    if (Exit.isSuccess(exit)) times.push(ms)
    else {
      failed++
      console.log(`  B getObs failed after ${ms.toFixed(0)} ms: ${Cause.squash(exit.cause).message}`)
    }
  }
  console.log(`${protocol} frozen: while A is frozen, B got ${times.length} of ${times.length + failed} answers in 12 s; latency p50 ${pct(times, 0.5).toFixed(0)} ms, max ${Math.max(...times).toFixed(0)} ms`)
})

// ── slow ────────────────────────────────────────────────────────────────────────

const slow = Effect.gen(function*() {
  const { server, count, slowNext } = yield* taggedServer(smallCam)
  const a = yield* clientAt(server.address)
  const b = yield* clientAt(server.address)
  const before = yield* count
  slowNext()
  const fa = yield* Effect.forkChild(a.getObs)
  while ((yield* count) === before) yield* Effect.sleep(1)
  const t0 = performance.now()
  yield* b.getObs
  const ms = performance.now() - t0
  yield* Fiber.join(fa)
  console.log(`${protocol} slow: with a 3 s handler running for A, B's first getObs took ${ms.toFixed(0)} ms`)
})

// ── blocked ─────────────────────────────────────────────────────────────────────

const childServer = Effect.acquireRelease(
  Effect.callback((resume) => {
    const child = spawn(process.execPath, [
      `${root}apps/cli/bin/chiral.js`, "serve", "--protocol", protocol, "--host", "127.0.0.1", "--port", "0",
      "--cameras", "1", "--size", "64x48"
    ], { stdio: ["ignore", "ignore", "pipe"] })
    let err = ""
    child.stderr.on("data", (d) => {
      err += d
      const m = /listening on (\S+)/.exec(err)
      if (m) resume(Effect.succeed({ child, address: m[1] }))
    })
  }),
  ({ child }) => Effect.sync(() => child.kill())
)

const blocked = Effect.gen(function*() {
  const seconds = Number(arg ?? 30)
  const { address } = yield* childServer
  const client = yield* clientAt(address, { requestTimeout: 10_000 })
  yield* client.getMetadata
  const until = Date.now() + seconds * 1000
  const cell = new Int32Array(new SharedArrayBuffer(4))
  while (Date.now() < until) Atomics.wait(cell, 0, 0, until - Date.now())
  const results = []
  for (const [name, request] of [["getMetadata", client.getMetadata], ["getObs", client.getObs]]) {
    const exit = yield* Effect.exit(request)
    results.push(`${name} ${Exit.isSuccess(exit) ? "ok" : `failed: ${Cause.squash(exit.cause).message}`}`)
  }
  console.log(`${protocol} blocked: after a ${seconds} s block of the client's thread: ${results.join("; ")}`)
})

// ── huge ────────────────────────────────────────────────────────────────────────

const huge = Effect.gen(function*() {
  const { server } = yield* taggedServer([{ name: "big", height: 6000, width: 7000, channels: 3, hasDepth: true }])
  const client = yield* clientAt(server.address, { requestTimeout: 120_000 })
  const t0 = performance.now()
  const exit = yield* Effect.exit(client.getObs)
  const ms = performance.now() - t0
  if (Exit.isSuccess(exit)) {
    const c = exit.value.cameras[0]
    const bytes = c.image.data.byteLength + c.depth.data.byteLength
    console.log(`${protocol} huge: ${(bytes / 1e6).toFixed(0)} MB observation received in ${ms.toFixed(0)} ms`)
  } else console.log(`${protocol} huge: failed after ${ms.toFixed(0)} ms: ${Cause.squash(exit.cause).message}`)
})

// ── bad ─────────────────────────────────────────────────────────────────────────

/** Sends `bytes` on a fresh TCP connection and waits until the server closes it. */
const sendRaw = (port, bytes) =>
  Effect.callback((resume) => {
    const s = Net.connect({ host: "127.0.0.1", port }, () => s.write(bytes))
    s.on("error", () => {})
    s.on("data", () => {})
    s.on("close", () => resume(Effect.void))
    setTimeout(() => s.destroy(), 3000)
  })

/** A relay that corrupts the bytes going one way after the first `after` bytes. */
const corruptingRelay = (port, after, direction) =>
  Effect.acquireRelease(
    Effect.callback((resume) => {
      const sockets = []
      const server = Net.createServer((inbound) => {
        const outbound = Net.connect({ host: "127.0.0.1", port })
        let passed = 0
        for (const s of [inbound, outbound]) s.on("error", () => {})
        const corrupt = (d) => {
          const out = Buffer.from(d)
          for (let i = 0; i < out.length; i++, passed++) if (passed >= after && passed % 7 === 3) out[i] ^= 0x5a
          return out
        }
        inbound.on("data", (d) => outbound.write(direction === "client→server" ? corrupt(d) : d))
        outbound.on("data", (d) => inbound.write(direction === "server→client" ? corrupt(d) : d))
        inbound.on("close", () => outbound.destroy())
        outbound.on("close", () => inbound.destroy())
        sockets.push(inbound, outbound)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets, port: server.address().port })))
    }),
    ({ server, sockets }) => Effect.sync(() => {
      for (const s of sockets) s.destroy()
      server.close()
    })
  )

const logLines = []
const captureLogger = Logger.layer([
  Logger.make((o) => logLines.push(`${o.logLevel}: ${Array.isArray(o.message) ? o.message.join(" ") : o.message}`))
])

const bad = Effect.gen(function*() {
  const { server } = yield* taggedServer(smallCam)
  const port = Number(server.address.split(":").pop())
  const garbage = Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
  // an INIT-Syn of another protocol version
  const version = Buffer.from([0x15, 0x00, 0x81, 0x08, 0xf1, ...Array.from({ length: 16 }, (_, i) => i + 1), 0x27, 0x01])
  for (let i = 0; i < 5; i++) yield* sendRaw(port, garbage)
  for (let i = 0; i < 5; i++) yield* sendRaw(port, version)
  yield* Effect.sleep(200)
  const logged = logLines.filter((l) => /Zenoh|zenoh/.test(l))
  console.log(`${protocol} bad: 10 bad connections (5 HTTP requests, 5 INITs of version 8) → ${logged.length} log lines`)
  for (const l of new Set(logged.map((l) => l.replace(/\d+\.\d+\.\d+\.\d+:\d+/g, "<addr>")))) console.log(`  ${l}`)
  // clients whose session the network corrupts after the handshake, in either direction
  for (const [direction, after] of [["server→client", 60], ["server→client", 200], ["client→server", 60], ["client→server", 200]]) {
    logLines.length = 0
    const relay = yield* corruptingRelay(port, after, direction)
    const exit = yield* Effect.exit(Effect.gen(function*() {
      const client = yield* clientAt(`tcp/127.0.0.1:${relay.port}`, { requestTimeout: 5000 }).pipe(
        Effect.timeoutOrElse({ duration: 10_000, orElse: () => Effect.fail(new Error(`no server at tcp/127.0.0.1:${relay.port} after 10 s`)) })
      )
      for (let i = 0; i < 5; i++) yield* client.getObs
      return "5 getObs answered"
    }).pipe(Effect.scoped))
    console.log(`${protocol} bad: a client whose session is corrupted (${direction} after ${after} bytes) says: ${Exit.isSuccess(exit) ? exit.value : Cause.squash(exit.cause).message}`)
    for (const l of logLines.filter((l) => /Zenoh|zenoh/.test(l))) console.log(`  server: ${l}`)
  }
})

const scenarios = { crossed, frozen, slow, blocked, huge, bad }
const program = scenarios[scenario]
if (program === undefined) {
  console.error(`unknown scenario ${scenario}: ${Object.keys(scenarios).join(", ")}`)
  process.exit(2)
}
const needsServerLayer = scenario !== "blocked"
const run = (needsServerLayer
  ? program.pipe(Effect.scoped, Effect.provide(serverLayer()))
  : program.pipe(Effect.scoped)).pipe(Effect.provide(scenario === "bad" ? captureLogger : Layer.empty))
const exit = await Effect.runPromiseExit(run)
if (Exit.isFailure(exit)) console.error(Cause.pretty(exit.cause))
process.exit(0)
