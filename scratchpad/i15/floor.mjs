// The floor for a Node server: `ws` alone (no Effect), answering obs_request with a freshly
// encoded observation of the same small robot (2 cameras 64×48 RGB + float32 depth, two
// 7-vectors) and dropping apply_action after decoding it. Usage: node floor.mjs PORT [cached]
// ("cached": the same encoded bytes every time, no encode).
import { WebSocketServer } from "ws"
import { decodeFrame, encodeFrameParts } from "@chiral/protocol"
const [port, mode] = process.argv.slice(2)
const W = 64, H = 48
const cam = (i) => ({
  name: `cam_${i}`, timestamp: 0, intrinsics: Float64Array.of(60, 0, 32, 0, 60, 24, 0, 0, 1),
  extrinsics: new Float64Array(16),
  image: { dtype: "uint8", shape: [H, W, 3], data: new Uint8Array(W * H * 3).fill(i) },
  depth: { dtype: "float32", shape: [H, W], data: new Float32Array(W * H).fill(1) }
})
const obs = () => ({
  timestamp: performance.now() / 1000, cameras: [cam(0), cam(1)],
  proprios: ["joint_pos", "joint_vel"].map((name) => ({ name, data: { dtype: "float32", shape: [7], data: new Float32Array(7) } })), extra: {}
})
const join = (parts) => Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)))
const cached = join(encodeFrameParts({ type: "obs_response", obs: obs() }))
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(port), perMessageDeflate: false })
wss.on("connection", (ws) => ws.on("message", (data) => {
  const m = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
  if (m._tag === "Failure") return
  const t = m.success.type
  if (t === "metadata") ws.send(join(encodeFrameParts({ type: "metadata_response", data: { action_shape: [1, 7] } })))
  else if (t === "obs_request") ws.send(mode === "cached" ? cached : join(encodeFrameParts({ type: "obs_response", obs: obs() })))
}))
