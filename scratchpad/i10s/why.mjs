// The Why scenarios of issue 10 that are on the server's side, against any
// `chiral serve` (so main's and this branch's can be compared):
//   node scratchpad/i10s/why.mjs <path/to/apps/cli/bin/chiral.js> <scenario> [port] [-- extra serve flags]
// scenarios:
//   stale [freezeSeconds=10]  client dispatching at 10 Hz, serve frozen with SIGSTOP, then resumed:
//                             how many actions were applied with an observation more than 1 s old
//   stalled [n=200]           n raw clients stop in the middle of a frame: how many are still open, over time
//   frozen-client             a client process is SIGSTOPped: when does the server drop it
//   nan                       the field frame's [NaN, +Inf, -Inf, …] action: applied or not
//   two-drivers               two clients send actions: whose are applied
// The client side is this worktree's (the same PolicyClient as main's).
import { spawn } from "node:child_process"
import * as Crypto from "node:crypto"
import * as fs from "node:fs"
import * as Net from "node:net"
import { Effect, Layer } from "effect"
import { ClientTransport, PolicyClient } from "../../packages/core/dist/index.js"
import { WebSocketTransport } from "../../packages/websocket/dist/index.js"
import { encodeFrame } from "../../packages/protocol/dist/index.js"

const dashes = process.argv.indexOf("--")
const args = dashes < 0 ? process.argv.slice(2) : process.argv.slice(2, dashes)
const extra = dashes < 0 ? [] : process.argv.slice(dashes + 1)
const [chiral, scenario, portArg, param] = args
const port = Number(portArg ?? 23111)
const nowSeconds = () => Number(process.hrtime.bigint()) / 1e9
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const startServe = async (flags = []) => {
  const child = spawn(process.execPath, [chiral, "serve", "--host", "127.0.0.1", "--port", String(port), "--cameras", "2", "--size", "64x48", ...flags, ...extra], { stdio: ["ignore", "pipe", "pipe"] })
  const out = { stdout: [], stderr: [], child }
  let partial = ""
  child.stdout.on("data", (d) => {
    const at = nowSeconds()
    partial += d
    const lines = partial.split("\n")
    partial = lines.pop()
    for (const line of lines) out.stdout.push({ at, line })
  })
  let errText = ""
  child.stderr.on("data", (d) => {
    errText += d
    const lines = errText.split("\n")
    errText = lines.pop()
    for (const line of lines) out.stderr.push({ at: nowSeconds(), line })
  })
  while (!out.stderr.some((l) => l.line.includes("listening on"))) await sleep(20)
  return out
}

const client = (uri = `ws://127.0.0.1:${port}`) => Layer.succeed(ClientTransport, WebSocketTransport.makeClient(uri))
const row = (v) => [v, 0, 0, 0, 0, 0, 0]

const rawConnect = () => new Promise((resolve, reject) => {
  const socket = Net.connect({ host: "127.0.0.1", port })
  socket.once("error", reject)
  socket.once("connect", () => socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Crypto.randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`))
  let head = ""
  const onData = (chunk) => { head += chunk.toString("latin1"); if (head.includes("\r\n\r\n")) { socket.off("data", onData); resolve(socket) } }
  socket.on("data", onData)
})
const wsFrame = (payload, declared = payload.byteLength) => {
  const head = declared < 126 ? Buffer.from([0x82, 0x80 | declared]) : Buffer.from([0x82, 0x80 | 126, declared >> 8, declared & 255])
  return Buffer.concat([head, Buffer.alloc(4), Buffer.from(payload)])
}

const scenarios = {
  async stale() {
    const freeze = Number(param ?? 10)
    const serve = await startServe(["--log-actions", "--fps", "30"])
    let frozeAt = 0, resumedAt = 0
    await Effect.runPromise(Effect.gen(function*() {
      const c = yield* PolicyClient.make({ quiet: true })
      yield* c.getObs
      yield* c.startObsStream(30)
      yield* c.putActions(Array.from({ length: 2000 }, (_, i) => row(i)))
      yield* c.startActionDispatch(10)
      yield* Effect.sleep(3000)
      frozeAt = nowSeconds()
      serve.child.kill("SIGSTOP")
      yield* Effect.sleep(freeze * 1000)
      serve.child.kill("SIGCONT")
      resumedAt = nowSeconds()
      yield* Effect.sleep(3000)
    }).pipe(Effect.scoped, Effect.provide(client())))
    serve.child.kill("SIGINT")
    const applied = serve.stdout.map(({ at, line }) => {
      const { obs_timestamps } = JSON.parse(line)
      return { at, age: at - Math.max(...Object.values(obs_timestamps)) }
    })
    const stale = applied.filter((a) => a.age > 1)
    const burst = applied.filter((a) => a.at >= resumedAt && a.at < resumedAt + 0.3)
    console.log(`freeze ${freeze} s: ${applied.length} actions applied in all; ${stale.length} applied more than 1 s after their observation (oldest ${Math.max(0, ...stale.map((a) => a.age)).toFixed(1)} s); ${burst.length} applied within 300 ms of the resume`)
    for (const { line } of serve.stderr.filter((l) => /stale|refused/.test(l.line))) console.log(`  server: ${line}`)
    void frozeAt
  },

  async stalled() {
    const n = Number(param ?? 200)
    const serve = await startServe(["--fps", "0"])
    const sockets = await Promise.all(Array.from({ length: n }, () => rawConnect()))
    let closed = 0
    for (const s of sockets) { s.on("close", () => closed++); s.on("error", () => {}); s.write(wsFrame(new Uint8Array(100), 1000)) }
    const t0 = nowSeconds()
    const marks = [10, 20, 30, 40, 45]
    for (const mark of marks) {
      while (nowSeconds() - t0 < mark && closed < n) await sleep(100)
      console.log(`after ${mark} s: ${n - closed} of ${n} mid-frame connections still open`)
      if (closed === n) { console.log(`all closed after ${(nowSeconds() - t0).toFixed(1)} s`); break }
    }
    for (const s of sockets) s.destroy()
    serve.child.kill("SIGINT")
  },

  async "frozen-client"() {
    const serve = await startServe(["--fps", "0"])
    const script = `import { Effect, Layer } from "effect"
import { ClientTransport, PolicyClient } from "${new URL("../../packages/core/dist/index.js", import.meta.url).href}"
import { WebSocketTransport } from "${new URL("../../packages/websocket/dist/index.js", import.meta.url).href}"
await Effect.runPromise(Effect.gen(function*() { const c = yield* PolicyClient.make({ quiet: true }); yield* c.getObs; console.log("ready"); yield* Effect.never }).pipe(Effect.scoped, Effect.provide(Layer.succeed(ClientTransport, WebSocketTransport.makeClient("ws://127.0.0.1:${port}")))))`
    fs.writeFileSync(new URL(`./.frozen-client-${port}.mjs`, import.meta.url), script)
    const child = spawn(process.execPath, [new URL(`./.frozen-client-${port}.mjs`, import.meta.url).pathname], { stdio: ["ignore", "pipe", "inherit"], cwd: process.cwd() })
    await new Promise((r) => child.stdout.once("data", r))
    child.kill("SIGSTOP")
    const t0 = nowSeconds()
    const dropped = () => serve.stderr.find((l) => l.at > t0 && /keepalive|connection closed|connection lost/.test(l.line))
    while (!dropped() && nowSeconds() - t0 < 60) await sleep(100)
    const d = dropped()
    console.log(d ? `frozen client dropped by the server after ${(d.at - t0).toFixed(1)} s: ${d.line}` : "frozen client still connected after 60 s")
    child.kill("SIGKILL")
    serve.child.kill("SIGINT")
  },

  async nan() {
    const serve = await startServe(["--fps", "0", "--log-actions"])
    const raw = await rawConnect()
    const frame = fs.readFileSync(new URL("../../packages/protocol/test/fixtures/field/apply_action_nonfinite.bin", import.meta.url))
    raw.write(wsFrame(frame))
    raw.write(wsFrame(encodeFrame({ type: "apply_action", action: { dtype: "float32", shape: [7], data: Float32Array.of(9, 0, 0, 0, 0, 0, 0) }, obsTimestamps: {} })))
    while (serve.stdout.length === 0) await sleep(20)
    await sleep(200)
    console.log(`applied: ${serve.stdout.map((l) => l.line).join(" | ")}`)
    for (const { line } of serve.stderr.filter((l) => /refused|invalid/.test(l.line))) console.log(`  server: ${line}`)
    raw.destroy()
    serve.child.kill("SIGINT")
  },

  async "two-drivers"() {
    const serve = await startServe(["--fps", "0", "--log-actions"])
    const a = await rawConnect(), b = await rawConnect()
    const act = (v) => wsFrame(encodeFrame({ type: "apply_action", action: { dtype: "float32", shape: [7], data: Float32Array.of(v, 0, 0, 0, 0, 0, 0) }, obsTimestamps: {} }))
    for (let i = 0; i < 5; i++) { a.write(act(100 + i)); await sleep(20); b.write(act(200 + i)); await sleep(20) }
    await sleep(300)
    const firsts = serve.stdout.map((l) => JSON.parse(l.line).action[0])
    console.log(`applied from client A: ${firsts.filter((v) => v < 200).length} of 5, from client B: ${firsts.filter((v) => v >= 200).length} of 5`)
    for (const { line } of serve.stderr.filter((l) => /control|refused/.test(l.line))) console.log(`  server: ${line}`)
    a.destroy(); b.destroy()
    serve.child.kill("SIGINT")
  }
}

await scenarios[scenario]()
process.exit(0)
