// Preload (node --import) for a chiral serve whose dist has globalThis.__stamp(i)
// calls (add-stamps.py: 1 ws message event, 2 inline handler, 3 decoded,
// 6 observed, 4 encoded, 5 ws.send called): per stage p50/p90 (ms) from a
// small chunk read to the next large write handed to the kernel, on SIGTERM
// to $STAMP_OUT.
import * as Fs from "node:fs"
import * as Net from "node:net"
const proto = Net.Socket.prototype
const push = proto.push
const rows = []
let cur
globalThis.__stamp = (i) => { if (cur !== undefined) cur[i] = performance.now() }
proto.push = function(chunk, encoding) {
  if (chunk != null && chunk.length < 200) cur = [performance.now()]
  return push.call(this, chunk, encoding)
}
const write = proto._write
const writev = proto._writev
const done = (bytes) => {
  if (bytes > 20000 && cur !== undefined) { cur[7] = performance.now(); rows.push(cur); cur = undefined }
}
proto._write = function(data, encoding, cb) { const r = write.call(this, data, encoding, cb); done(data.length); return r }
proto._writev = function(chunks, cb) { const r = writev.call(this, chunks, cb); done(chunks.reduce((n, c) => n + (c.chunk ?? c).length, 0)); return r }
const order = [[0, "read"], [1, "ws message"], [2, "inline handler"], [3, "decoded"], [6, "observed"], [4, "encoded"], [5, "ws.send"], [7, "written"]]
process.prependListener("SIGTERM", () => {
  const q = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]?.toFixed(3) }
  const lines = [`${process.env.STAMP_NAME ?? ""}: ${rows.length} replies; read → written p50 ${q(rows.map((r) => r[7] - r[0]), 0.5)} p90 ${q(rows.map((r) => r[7] - r[0]), 0.9)}`]
  const pairs = new Map()
  for (const r of rows) {
    const present = order.filter(([i]) => r[i] !== undefined)
    for (let k = 1; k < present.length; k++) {
      const key = `${present[k - 1][1]} → ${present[k][1]}`
      if (!pairs.has(key)) pairs.set(key, [])
      pairs.get(key).push(r[present[k][0]] - r[present[k - 1][0]])
    }
  }
  for (const [key, d] of pairs) if (d.length > rows.length / 2) lines.push(`  ${key}: p50 ${q(d, 0.5)} p90 ${q(d, 0.9)}`)
  Fs.appendFileSync(process.env.STAMP_OUT ?? "/tmp/stages.txt", lines.join("\n") + "\n")
})
