// A plain policy speaking WebSocket by hand against chiral bench's own robot process
// (apps/cli/dist/bench/Server.js): requests at 30 Hz on its main thread, read with exact-sized
// reads into reused memory (no decoding); actions from a worker writing pre-built masked WebSocket
// frames to the socket's fd. Tells the robot's share of the server-seen jitter from the policy's.
// usage: node rawws.mjs [actionHz=10] [seconds=10]
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads"
import { encodeFrame, Tensor } from "@chiral/protocol"
const now = () => Number(process.hrtime.bigint()) / 1e6
if (!isMainThread) {
  const { fd, hz, frames, origin } = workerData
  const sleeper = new Int32Array(new SharedArrayBuffer(4))
  const period = 1000 / hz
  const sends = []
  let k = 0
  const next = () => {
    if (k >= frames.length) { parentPort.postMessage(sends); return }
    const due = origin + k * period
    setTimeout(() => {
      const rest = due - now()
      if (rest > 0.12) Atomics.wait(sleeper, 0, 0, rest - 0.1)
      while (now() < due) {}
      const msg = Buffer.from(frames[k])
      let off = 0
      while (off < msg.length) { try { off += Fs.writeSync(fd, msg, off) } catch (e) { if (e.code !== "EAGAIN") throw e } }
      sends.push([k, now()]); k++; next()
    }, Math.max(0, Math.floor(due - now() - 2)))
  }
  next()
} else {
  const hz = Number(process.argv[2] ?? 10), secs = Number(process.argv[3] ?? 10)
  const here = Path.dirname(new URL(import.meta.url).pathname)
  const child = spawn(process.execPath, [Path.join(here, "../../apps/cli/dist/bench/Server.js"), JSON.stringify({ protocol: "websocket", host: "127.0.0.1", cameras: 8, width: 640, height: 480, depth: true, fps: 30 })], { stdio: ["pipe", "pipe", "inherit"] })
  let buf = ""; const waiters = []
  child.stdout.on("data", (c) => { buf += c; let i; while ((i = buf.indexOf("\n")) >= 0) { const l = buf.slice(0, i); buf = buf.slice(i + 1); if (l.startsWith("{")) { const m = JSON.parse(l); const w = waiters.findIndex((x) => x.key in m); if (w >= 0) waiters.splice(w, 1)[0].r(m[x = Object.keys(m)[0]]) } } })
  var x
  const next = (key) => new Promise((r) => waiters.push({ key, r }))
  const ready = await next("ready")
  // a WebSocket client by hand: upgrade, then frames read with exact-sized reads into reused memory
  const Net = await import("node:net")
  const port = Number(new URL(ready.address).port)
  const target = Buffer.allocUnsafeSlow(32 << 20)
  const head = Buffer.alloc(14)
  let state = "http", need = 0, have = 0, len = 0, fin = false, msgBytes = 0, done
  let http = ""
  const httpBuf = Buffer.alloc(1024)
  const socket = Net.connect({ port, host: "127.0.0.1", onread: {
    buffer: () => state === "http" ? httpBuf : state === "payload" ? target.subarray(msgBytes + have, msgBytes + len) : head.subarray(have, need),
    callback: (n) => {
      if (state === "http") { http += httpBuf.subarray(0, n).toString("latin1"); if (http.includes("\r\n\r\n")) { state = "h2"; need = 2; have = 0; opened() } return true }
      have += n
      if (have < need && state !== "payload") return true
      if (state === "h2") { fin = (head[0] & 0x80) !== 0; const l = head[1] & 0x7f; if (l < 126) { len = l; state = "payload"; have = 0 } else { need = 2 + (l === 126 ? 2 : 8); state = "ext" } }
      else if (state === "ext") { len = need === 4 ? head.readUInt16BE(2) : Number(head.readBigUInt64BE(2)); state = "payload"; have = 0 }
      else if (state === "payload" && have >= len) { msgBytes += len; state = "h2"; need = 2; have = 0; if (fin) { msgBytes = 0; const d = done; done = undefined; d?.() } return true }
      if (state === "payload" && len === 0) { state = "h2"; need = 2; have = 0; if (fin) { msgBytes = 0; const d = done; done = undefined; d?.() } }
      return true
    } } })
  socket.setNoDelay(true)
  let opened
  await new Promise((r) => { opened = r; socket.once("connect", () => socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)) })
  const reqPayload = Buffer.from(encodeFrame({ type: "obs_request" }))
  const reqFrame = Buffer.concat([Buffer.from([0x82, 0x80 | reqPayload.length]), Buffer.alloc(4), reqPayload])
  const trip = () => new Promise((r) => { done = r; socket.write(reqFrame) })
  for (let i = 0; i < 300; i++) await trip() // warm the server
  let streaming = true, obs = 0
  const stream = (async () => { const p = 1000 / 30; let due = now(); while (streaming) { await trip(); obs++; due += p; const w = due - now(); if (w > 0) await new Promise((r) => setTimeout(r, w)); else due = now() } })()
  await new Promise((r) => setTimeout(r, 500))
  const count = Math.floor(secs * hz)
  const frames = []
  for (let k = 0; k < count; k++) {
    const payload = Buffer.from(encodeFrame({ type: "apply_action", action: Tensor.make("float32", [7], new Float32Array([k, 0, 0, 0, 0, 0, 0])), obsTimestamps: {} }))
    const head = payload.length < 126 ? Buffer.from([0x82, 0x80 | payload.length]) : Buffer.from([0x82, 0x80 | 126, payload.length >> 8, payload.length & 255])
    frames.push(new Uint8Array(Buffer.concat([head, Buffer.alloc(4), payload])))
  }
  child.stdin.write("arrivals\n"); await next("arrivals")
  const origin = now() + 400
  const w = new Worker(new URL(import.meta.url), { workerData: { fd: socket._handle.fd, hz, frames, origin } })
  const sends = await new Promise((r) => w.once("message", r))
  streaming = false; await stream
  await new Promise((r) => setTimeout(r, 300))
  child.stdin.write("arrivals\n")
  const arrivals = await next("arrivals")
  child.stdin.end(); socket.destroy(); w.terminate()
  const period = 1000 / hz
  const jit = (xs) => { const j = xs.map(([k, t]) => Math.abs(t - (origin + k * period))).sort((a, b) => a - b); const q = (p) => j[Math.min(j.length - 1, Math.ceil(p * j.length) - 1)]; return `p50 ${q(0.5).toFixed(2)} p99 ${q(0.99).toFixed(2)} max ${j[j.length - 1]?.toFixed(2)} (n ${j.length})` }
  console.log(`raw-ws policy ${hz} Hz, obs ${(obs / (secs + 0.85)).toFixed(1)} Hz: arrived ${jit(arrivals)}; sent ${jit(sends)}`)
  setTimeout(() => process.exit(0), 200)
}
