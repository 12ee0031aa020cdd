// Preload (node --import): for every socket, the time from a small chunk read
// (a request: < 200 bytes) to the next large write handed to the kernel
// (> 20 KB: the observation), ms; printed as p50/p90/p99 on SIGTERM to
// $STAMP_OUT. Same hook for chiral serve and the ws floor, so their server
// sides compare on equal terms.
import * as Fs from "node:fs"
import * as Net from "node:net"
const proto = Net.Socket.prototype
const push = proto.push
const lat = []
let lastIn = 0
proto.push = function(chunk, encoding) {
  if (chunk != null && chunk.length < 200) lastIn = performance.now()
  return push.call(this, chunk, encoding)
}
const write = proto._write
const writev = proto._writev
const done = (bytes) => {
  if (bytes > 20000 && lastIn > 0) { lat.push(performance.now() - lastIn); lastIn = 0 }
}
proto._write = function(data, encoding, cb) {
  const r = write.call(this, data, encoding, cb)
  done(data.length)
  return r
}
proto._writev = function(chunks, cb) {
  const r = writev.call(this, chunks, cb)
  done(chunks.reduce((n, c) => n + (c.chunk ?? c).length, 0))
  return r
}
process.prependListener("SIGTERM", () => {
  const s = [...lat].sort((a, b) => a - b)
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))]?.toFixed(3)
  Fs.appendFileSync(process.env.STAMP_OUT ?? "/tmp/stamps.txt",
    `${process.env.STAMP_NAME ?? process.argv[2]} n ${s.length} p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)}\n`)
})
