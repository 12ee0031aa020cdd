// How long decodeFrame takes for one apply_action, warm (back to back) and
// cold (one every 100 ms, as at 10 Hz).   node scratchpad/i15m/decode-cold.mjs
import { decodeFrame, encodeFrame, Tensor } from "@chiral/protocol"
const ts = {}
for (let i = 0; i < 8; i++) ts[`cam_${i}`] = 1764680000.123 + i
const frame = encodeFrame({ type: "apply_action", action: Tensor.make("float32", [7], new Float32Array(7).fill(0.5)), obsTimestamps: ts })
console.log("frame bytes", frame.byteLength)
const q = (xs, p) => { xs = [...xs].sort((a, b) => a - b); return xs[Math.min(xs.length - 1, Math.floor(p * xs.length))].toFixed(4) }
const time = () => { const t = performance.now(); const r = decodeFrame(frame); const d = performance.now() - t; if (r._tag !== "Success") throw new Error(String(r.failure)); return d }
const warm = []
for (let i = 0; i < 20000; i++) warm.push(time())
console.log("warm ms p50", q(warm, 0.5), "p99", q(warm, 0.99))
const cold = []
for (let i = 0; i < 30; i++) { await new Promise((r) => setTimeout(r, 100)); cold.push(time()) }
console.log("cold (100 ms apart) ms p50", q(cold, 0.5), "p99", q(cold, 0.99), "max", q(cold, 1))
