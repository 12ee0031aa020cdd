// Preload (--import) into a server process: gaps of a 1 ms interval timer above
// 3 ms, each with the main thread's CPU time inside it (a gap full of CPU is a
// block of work; a gap without is the process waiting for a core), printed at exit.
const gaps = []
let last = performance.now(), lastCpu = process.threadCpuUsage()
setInterval(() => {
  const now = performance.now(), cpu = process.threadCpuUsage()
  const wall = now - last, used = (cpu.user + cpu.system - lastCpu.user - lastCpu.system) / 1000
  if (wall > 3 && now > 3000) gaps.push([wall, used])
  last = now; lastCpu = cpu
}, 1).unref()
let reported = false
const report = () => {
  if (reported) return; reported = true
  const g = gaps.sort((a, b) => b[0] - a[0])
  const busy = g.filter(([w, c]) => c > 0.7 * w)
  process.stderr.write(`ELD gaps>3ms: ${g.length} (${busy.length} mostly CPU); largest wall/cpu ms: ${g.slice(0, 10).map(([w, c]) => `${w.toFixed(1)}/${c.toFixed(1)}`).join(" ")}\n`)
}
process.on("SIGINT", () => { report(); process.exit(0) })
process.on("exit", report)
