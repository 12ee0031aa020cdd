// --import probe: per request, ms from the socket's 'data' to each mark in the server (dist patched with globalThis.__mark) and to the reply's write.
import net from "node:net"
let t0; let marks = {}; const rows = []
globalThis.__mark = (name) => { if (t0 !== undefined && !(name in marks)) marks[name] = performance.now() - t0 }
const emit = net.Socket.prototype.emit
net.Socket.prototype.emit = function (ev, ...a) { if (ev === "data") { t0 = performance.now(); marks = {} } return emit.call(this, ev, ...a) }
for (const m of ["_writev", "_write"]) {
  const orig = net.Socket.prototype[m]
  net.Socket.prototype[m] = function (...a) { if (t0 !== undefined && "encoded" in marks) { marks.write = performance.now() - t0; rows.push(marks); t0 = undefined } return orig.apply(this, a) }
}
process.on("SIGTERM", () => {
  const r = rows.slice(20); const keys = Object.keys(r[0] ?? {})
  const p50 = (k) => { const s = r.map((x) => x[k]).filter((x) => x !== undefined).sort((a, b) => a - b); return s[Math.floor(s.length / 2)]?.toFixed(3) }
  process.stderr.write(`probe2 n=${r.length}: ` + keys.map((k) => `${k} ${p50(k)}`).join("  ") + " (p50 ms since data)\n"); process.exit(0)
})
