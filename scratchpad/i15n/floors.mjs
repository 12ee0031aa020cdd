// The Python reference client (latency_client.py, 30 Hz) against: the Python
// reference server, chiral serve, the ws floor, and the raw floor (no ws), in
// alternating rounds, each server fresh and run twice (from start, warmed).
// usage: node floors.mjs [rounds] [seconds]   (PYTHONPATH, CHIRAL_REFERENCE_PYTHON as for npm run bench)
import { execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import { WebSocket } from "ws"
import { encodeFrame } from "../../packages/protocol/dist/index.js"

const root = new URL("../../", import.meta.url).pathname
const python = process.env.CHIRAL_REFERENCE_PYTHON ?? "python3"
const rounds = Number(process.argv[2] ?? 2)
const seconds = Number(process.argv[3] ?? 10)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
let nextPort = 19100
const replyFile = "/tmp/i15n-reply.bin"

const only = process.env.SERVERS?.split(",")
const servers = Object.fromEntries(Object.entries({
  "python": (port) => [python, [`${root}apps/cli/src/bench/python/reference_server.py`, "--port", port]],
  "chiral": (port) => [process.execPath, [`${root}apps/cli/bin/chiral.js`, "serve", "--host", "127.0.0.1", "--port", port, "--cameras", "2", "--size", "64x48", "--depth"]],
  "ws floor": (port) => [process.execPath, [`${root}apps/cli/dist/bench/FloorServer.js`, port, replyFile]],
  "raw floor": (port) => [process.execPath, [`${root}scratchpad/i15n/raw-floor.mjs`, port, replyFile]]
}).filter(([name]) => only === undefined || only.includes(name)))
const accepting = async (port) => {
  for (;;) {
    const ok = await new Promise((r) => { const s = Net.connect(port, "127.0.0.1"); s.once("connect", () => { s.destroy(); r(true) }); s.once("error", () => r(false)) })
    if (ok) return
    await sleep(100)
  }
}
const capture = (port) => new Promise((resolve) => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`)
  ws.on("open", () => ws.send(encodeFrame({ type: "obs_request" })))
  ws.on("message", (d) => { ws.close(); resolve(new Uint8Array(d)) })
})
const client = (port) => {
  const out = execFileSync(python, [`${root}apps/cli/src/bench/python/latency_client.py`, `ws://127.0.0.1:${port}`, "--seconds", String(seconds)])
  return JSON.parse(out.toString().trim().split("\n").pop())
}
const results = {}
for (let r = 0; r < rounds; r++) {
  for (const name of Object.keys(servers)) {
    const port = String(nextPort++)
    const [cmd, args] = servers[name](port)
    // STAMP=1: the Node servers run with stamp-hook.mjs (their own request → reply write time)
    const env = process.env.STAMP === undefined ? process.env : {
      ...process.env,
      NODE_OPTIONS: `--import=${root}scratchpad/i15n/${process.env.HOOK ?? "stamp-hook.mjs"}`,
      STAMP_NAME: `round ${r + 1} ${name}`,
      STAMP_OUT: "/tmp/i15n-stamps.txt"
    }
    const child = spawn(cmd, args, { stdio: "ignore", env })
    await accepting(Number(port))
    await sleep(500)
    const runs = [client(port), client(port)]
    if (name === "chiral" || name === "python") {
      const bytes = await capture(Number(port))
      console.log(`${name} reply ${bytes.length} bytes`)
      if (name === "chiral") Fs.writeFileSync(replyFile, bytes)
    }
    child.kill("SIGTERM")
    await new Promise((r) => child.once("exit", r))
    for (const [i, run] of runs.entries()) {
      const key = `${name} ${i === 0 ? "from start" : "warmed"}`
      ;(results[key] ??= []).push(run.p50_ms)
      console.log(`round ${r + 1}  ${key.padEnd(22)} p50 ${run.p50_ms}  p99 ${run.p99_ms}`)
    }
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
for (const [key, xs] of Object.entries(results)) console.log(`${key.padEnd(24)} median p50 ${median(xs)}  (${xs.join(", ")})`)
