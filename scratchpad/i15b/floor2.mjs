// Floor variants: bare ws server; BUSY=pre|post spins 0.1 ms before/after the send.
import { WebSocketServer, WebSocket } from "ws"
import { unpack } from "msgpackr"
const [upstream, port, mode] = [process.argv[2], Number(process.argv[3]), process.argv[4] ?? "none"]
const ask = (type) => new Promise((res) => {
  const ws = new WebSocket(upstream)
  ws.on("open", () => { const h = Buffer.from([0x81, 0xa4, ...Buffer.from("type"), 0xa0 + type.length, ...Buffer.from(type)]); const b = Buffer.alloc(4 + h.length); b.writeUInt32LE(h.length); h.copy(b, 4); ws.send(b) })
  ws.on("message", (d) => { ws.close(); res(d) })
})
const spin = (ms) => { const end = performance.now() + ms; while (performance.now() < end); }
const meta = await ask("metadata"), obs = await ask("obs_request")
const wss = new WebSocketServer({ port, host: "127.0.0.1", perMessageDeflate: false, maxPayload: 0 })
wss.on("connection", (ws) => { ws.on("message", (d) => {
  const len = d.readUInt32LE(0); const h = unpack(d.subarray(4, 4 + len))
  if (h.type === "obs_request") { if (mode === "pre") spin(0.1); ws.send(obs); if (mode === "post") spin(0.1); if (mode === "postimm") setImmediate(() => spin(0.1)) }
  else if (h.type === "metadata") ws.send(meta)
}) })
