// Preload (node --import): per request (small chunk read → next large write
// handed to the kernel), the server-side time (ms) and this process's minor
// page faults in between; on SIGTERM, p50 and faults/request per bin of 100
// requests, appended to $STAMP_OUT.
import * as Fs from "node:fs"
import * as Net from "node:net"
const proto = Net.Socket.prototype
const push = proto.push
const rows = []
let t0 = 0, f0 = 0
const faults = () => process.resourceUsage().minorPageFault
proto.push = function(chunk, encoding) {
  if (chunk != null && chunk.length < 200) { t0 = performance.now(); f0 = faults() }
  return push.call(this, chunk, encoding)
}
const write = proto._write
const writev = proto._writev
const done = (bytes) => {
  if (bytes > 20000 && t0 > 0) { rows.push([performance.now() - t0, faults() - f0]); t0 = 0 }
}
proto._write = function(data, encoding, cb) { const r = write.call(this, data, encoding, cb); done(data.length); return r }
proto._writev = function(chunks, cb) { const r = writev.call(this, chunks, cb); done(chunks.reduce((n, c) => n + (c.chunk ?? c).length, 0)); return r }
process.prependListener("SIGTERM", () => {
  const p50 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const bins = []
  for (let i = 0; i < rows.length; i += 100) {
    const b = rows.slice(i, i + 100)
    bins.push(`${p50(b.map((r) => r[0])).toFixed(3)}/${(b.reduce((n, r) => n + r[1], 0) / b.length).toFixed(1)}`)
  }
  const all = rows.map((r) => r[0])
  Fs.appendFileSync(process.env.STAMP_OUT ?? "/tmp/warm.txt",
    `${process.env.STAMP_NAME ?? ""} n ${rows.length} p50 ${p50(all)?.toFixed(3)} | bins p50/faults: ${bins.join(" ")}\n`)
})
