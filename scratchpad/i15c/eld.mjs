// --import probe: this thread's event-loop delay (monitorEventLoopDelay, 1 ms resolution) and the
// process's CPU, printed to stderr at exit, for processes whose argv matches ELD_MATCH.
import { monitorEventLoopDelay } from "node:perf_hooks"
import { isMainThread } from "node:worker_threads"
const match = process.env.ELD_MATCH ?? ""
if (isMainThread && process.argv.join(" ").includes(match)) {
  const h = monitorEventLoopDelay({ resolution: 1 }); h.enable()
  const t0 = performance.now(); const c0 = process.cpuUsage()
  const report = () => {
    h.disable(); const c = process.cpuUsage(c0); const s = (performance.now() - t0) / 1000
    process.stderr.write(`ELD ${process.argv[1]?.split("/").pop()} ${process.argv[2] ?? ""}`.slice(0, 60) + `: delay p50 ${(h.percentile(50) / 1e6).toFixed(2)} p99 ${(h.percentile(99) / 1e6).toFixed(2)} max ${(h.max / 1e6).toFixed(2)} ms; cpu ${((c.user + c.system) / 1000 / s).toFixed(0)} ms/s (sys ${(c.system / 1000 / s).toFixed(0)}) over ${s.toFixed(1)} s\n`)
  }
  process.once("exit", report)
  process.once("SIGTERM", () => process.exit(0))
}
