// Preload for the bench's server: hrtime of every small ws message (actions), written at exit to $APROBE.
import { createRequire } from "node:module"
import fs from "node:fs"
if (process.argv.some((a) => a.includes("bench/Server"))) {
  const require = createRequire(new URL("../../packages/websocket/package.json", import.meta.url))
  const WS = require("ws")
  const t = []
  const gcs = []
  const { PerformanceObserver } = await import("node:perf_hooks")
  const off = Number(process.hrtime.bigint()) / 1e6 - performance.now()
  new PerformanceObserver((l) => { for (const e of l.getEntries()) gcs.push([e.startTime + off, e.duration, e.detail?.kind]) }).observe({ entryTypes: ["gc"] })
  const emit = WS.prototype.emit
  WS.prototype.emit = function (ev, d, ...a) { if (ev === "message" && d.length < 4096 && d.length > 100) t.push(Number(process.hrtime.bigint()) / 1e6); return emit.call(this, ev, d, ...a) }
  const dump = () => { fs.writeFileSync(process.env.APROBE, JSON.stringify({ msg: t, applied: globalThis.__arr ?? [], ...(globalThis.__mk ?? {}), gcs })) }
  process.on("exit", dump); process.on("SIGTERM", () => { dump(); process.exit(0) }); process.on("SIGINT", () => { dump(); process.exit(0) })
}
