// A minimal ws client doing what client_latency.py does: obs_request → reply, one
// apply_action, at --hz; prints get_obs p50/p90/p99 (ms). Usage: node nodeclient.mjs URI [hz] [seconds]
import WebSocket from "ws"
import { encodeFrame } from "@chiral/protocol"
const [uri, hz = "30", secs = "10"] = process.argv.slice(2)
const ws = new WebSocket(uri, { perMessageDeflate: false })
await new Promise((r) => ws.once("open", r))
const req = encodeFrame({ type: "obs_request" })
const act = encodeFrame({ type: "apply_action", action: { dtype: "float32", shape: [1, 7], data: new Float32Array(7) }, obsTimestamps: {} })
const lat = []
const end = performance.now() + Number(secs) * 1000
let next = performance.now()
while (performance.now() < end) {
  const t0 = performance.now()
  ws.send(req)
  await new Promise((r) => ws.once("message", r))
  lat.push(performance.now() - t0)
  ws.send(act)
  next += 1000 / Number(hz)
  await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())))
}
lat.sort((a, b) => a - b)
const q = (f) => lat[Math.min(lat.length - 1, Math.floor(f * lat.length))].toFixed(3)
console.log(JSON.stringify({ n: lat.length, p50_ms: q(0.5), p90_ms: q(0.9), p99_ms: q(0.99) }))
ws.close()
