// --import probe: time from a socket's 'data' (a request read) to the next write on it (the reply), in ms.
import net from "node:net"
const t0 = new WeakMap(); const spans = []
const emit = net.Socket.prototype.emit
net.Socket.prototype.emit = function (ev, ...a) { if (ev === "data") t0.set(this, performance.now()); return emit.call(this, ev, ...a) }
for (const m of ["_writev", "_write"]) {
  const orig = net.Socket.prototype[m]
  net.Socket.prototype[m] = function (...a) { const t = t0.get(this); if (t !== undefined) { spans.push(performance.now() - t); t0.delete(this) } return orig.apply(this, a) }
}
const report = () => { const s = spans.slice(20).sort((a, b) => a - b); const q = (f) => s[Math.floor(f * s.length)]?.toFixed(3); process.stderr.write(`probe: data→write n=${s.length} p50 ${q(.5)} p90 ${q(.9)} p99 ${q(.99)} ms\n`) }
process.on("SIGTERM", () => { report(); process.exit(0) })
