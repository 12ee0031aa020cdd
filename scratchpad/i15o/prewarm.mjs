// Sends N obs_requests back to back to ws://127.0.0.1:PORT and waits for each reply (warms a fresh server's request path).
import { WebSocket } from "ws"
import { encodeFrame } from "../../packages/protocol/dist/index.js"
const [port, n] = [process.argv[2], Number(process.argv[3] ?? 600)]
const ws = new WebSocket(`ws://127.0.0.1:${port}`)
const req = encodeFrame({ type: "obs_request" })
let left = n
ws.on("open", () => ws.send(req))
ws.on("message", () => { if (--left > 0) ws.send(req); else ws.close() })
ws.on("close", () => process.exit(0))
