// Shows V8 giving the young generation back: chiral serve idle, its new space printed every 5 s (WARM=1: warmed at listen first).
import * as Net from "node:net"
import * as V8 from "node:v8"
const emit = Net.Server.prototype.emit
const ns = () => { const s = V8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space"); return `size ${s.space_size >> 10}K used ${s.space_used_size >> 10}K phys ${s.physical_space_size >> 10}K faults ${process.resourceUsage().minorPageFault}` }
let done = false
Net.Server.prototype.emit = function(event, ...args) {
  if (event === "listening" && !done) {
    done = true
    process.stderr.write(`listen: ${ns()}\n`)
    if (process.env.WARM === "1") {
      let sink = 0
      const total = V8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space").space_size
      for (let n = 0; n < total; n += 1024) { const a = new Array(126); a[0] = n; sink += a.length }
      process.stderr.write(`warmed: ${ns()}\n`)
    }
    setInterval(() => process.stderr.write(`${(performance.now() / 1000).toFixed(0)} s: ${ns()}\n`), 5000).unref()
  }
  return emit.call(this, event, ...args)
}
