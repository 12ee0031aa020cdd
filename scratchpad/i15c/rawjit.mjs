// Raw replica of chiral bench's stream phase: a plain node:net robot (17.2 MB per request,
// a 30 Hz sensor copy, stamps 9-byte action ticks) and a plain policy (requests at OBS_HZ on
// its main thread, reads into one reused buffer; ticks at ACTION_HZ from a worker writing to
// the same fd). Prints the arrivals' |jitter| p50/p99/max as the robot stamped them.
// usage: node rawjit.mjs [actionHz=10] [seconds=10] [obsHz=30]
import * as Net from "node:net"
import * as Fs from "node:fs"
import { fork } from "node:child_process"
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads"
const BYTES = 17207000
const now = () => Number(process.hrtime.bigint()) / 1e6
const role = process.argv[2]
if (!isMainThread) {
  // tick worker: precise timer as PreciseTimer.at, write to the socket's fd
  const { fd, hz, count, origin } = workerData
  const sleeper = new Int32Array(new SharedArrayBuffer(4))
  const period = 1000 / hz
  const sends = []
  let k = 0
  const next = () => {
    if (k >= count) { parentPort.postMessage(sends); return }
    const due = origin + k * period
    setTimeout(() => {
      const rest = due - now()
      if (rest > 0.12) Atomics.wait(sleeper, 0, 0, rest - 0.1)
      while (now() < due) {}
      const msg = Buffer.alloc(5); msg[0] = 2; msg.writeUInt32LE(k, 1)
      for (;;) { try { Fs.writeSync(fd, msg); break } catch (e) { if (e.code !== "EAGAIN") throw e } }
      sends.push([k, now()])
      k++
      next()
    }, Math.max(0, Math.floor(due - now() - 2)))
  }
  next()
} else if (role === "server") {
  const payloads = [Buffer.allocUnsafeSlow(BYTES), Buffer.allocUnsafeSlow(BYTES)]
  const source = Buffer.allocUnsafeSlow(BYTES); source.fill(7)
  let which = 0
  setInterval(() => { which ^= 1; payloads[which].set(source) }, 1000 / 30)
  const arrivals = []
  const server = Net.createServer((s) => {
    s.setNoDelay(true)
    let pend = Buffer.alloc(0)
    s.on("data", (chunk) => {
      const t = now()
      pend = pend.length ? Buffer.concat([pend, chunk]) : chunk
      let i = 0
      while (i < pend.length) {
        if (pend[i] === 1) { s.write(payloads[which]); i++ }
        else if (pend[i] === 2) { if (pend.length - i < 5) break; arrivals.push([pend.readUInt32LE(i + 1), t]); i += 5 }
        else throw new Error("bad byte " + pend[i])
      }
      pend = pend.subarray(i)
    })
    s.on("error", () => {})
  })
  server.listen(0, "127.0.0.1", () => process.send({ port: server.address().port }))
  process.on("message", (m) => { if (m === "arrivals") process.send({ arrivals }) ; if (m === "exit") process.exit(0) })
} else {
  const hz = Number(process.argv[2] ?? 10), secs = Number(process.argv[3] ?? 10), obsHz = Number(process.argv[4] ?? 30)
  const child = fork(new URL(import.meta.url).pathname, ["server"])
  const port = await new Promise((r) => child.once("message", (m) => r(m.port)))
  const target = Buffer.allocUnsafeSlow(BYTES); const spill = Buffer.allocUnsafeSlow(65536)
  let received = BYTES, done
  const socket = Net.connect({ port, host: "127.0.0.1", onread: {
    buffer: () => received < BYTES ? target.subarray(received) : spill,
    callback: (n, buf) => { received += n; if (received >= BYTES && done) { const d = done; done = undefined; d() } return true } } })
  socket.setNoDelay(true)
  await new Promise((r) => socket.once("connect", r))
  const trip = () => new Promise((r) => { received = 0; done = r; socket.write(Buffer.from([1])) })
  // stream at obsHz like startObsStream: request, await, sleep the rest of the period
  let streaming = true, obs = 0
  const streamOrigin = now(); const stream = (async () => { const p = 1000 / obsHz; let due = streamOrigin; while (streaming) { await trip(); obs++; due += p; const w = due - now(); if (w > 0) await new Promise((r) => setTimeout(r, w)); else due = now() } })()
  await new Promise((r) => setTimeout(r, 500))
  const count = Math.floor(secs * hz)
  const PH = process.env.PHASE; const origin = PH === undefined ? now() + 50 : streamOrigin + Math.ceil((now() + 300 - streamOrigin) / (1000 / obsHz)) * (1000 / obsHz) + Number(PH)
  const w = new Worker(new URL(import.meta.url), { workerData: { fd: socket._handle.fd, hz, count, origin } })
  const sends = await new Promise((r) => w.once("message", r))
  streaming = false; await stream
  await new Promise((r) => setTimeout(r, 300))
  child.send("arrivals")
  const arrivals = await new Promise((r) => child.once("message", (m) => r(m.arrivals)))
  child.send("exit")
  const period = 1000 / hz
  const jit = (xs) => { const j = xs.map(([k, t]) => Math.abs(t - (origin + k * period))).sort((a, b) => a - b); const q = (p) => j[Math.min(j.length - 1, Math.ceil(p * j.length) - 1)]; return `p50 ${q(0.5).toFixed(2)} p99 ${q(0.99).toFixed(2)} max ${j[j.length - 1].toFixed(2)} (n ${j.length})` }
  console.log(`raw ${hz} Hz, obs ${(obs / (secs + 0.85)).toFixed(1)} Hz: arrived ${jit(arrivals)}; sent ${jit(sends)}`)
  socket.destroy(); w.terminate()
}
