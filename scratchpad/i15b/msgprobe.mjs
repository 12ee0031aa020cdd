// Preload: time from ws 'message' event to the next ws.send on the same socket.
import { createRequire } from "node:module"
const require = createRequire(new URL("../../packages/websocket/package.json", import.meta.url))
const WS = require("ws")
const t = new WeakMap(); const lat = []
const emit = WS.prototype.emit
WS.prototype.emit = function (ev, ...a) { if (ev === "message") t.set(this, performance.now()); return emit.call(this, ev, ...a) }
const send = WS.prototype.send
WS.prototype.send = function (d, ...a) { const s = t.get(this); if (s !== undefined) { lat.push(performance.now() - s); t.delete(this) } return send.call(this, d, ...a) }
process.on("SIGINT", () => { lat.sort((a, b) => a - b); const q = (p) => lat[Math.floor(p * (lat.length - 1))]?.toFixed(3); console.error(`msg→send n=${lat.length} p50 ${q(.5)} p90 ${q(.9)} p99 ${q(.99)} ms`); process.exit(0) })
