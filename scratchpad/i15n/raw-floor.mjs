// A WebSocket "server" on a bare net.Server: the upgrade, the client's masked
// frames, and every obs_request answered with REPLY_FILE's bytes in one
// prebuilt frame, one write. Is ws (the floor) what makes a Node robot slower
// than the Python reference for a Python client, or is it Node itself?
// usage: node raw-floor.mjs PORT REPLY_FILE
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import { decodeFrame, encodeFrame } from "../../packages/protocol/dist/index.js"

const [port, replyFile] = process.argv.slice(2)
const reply = Fs.readFileSync(replyFile)
const frameOf = (payload) => {
  const n = payload.length
  const head = n < 126 ? Buffer.from([0x82, n]) : n < 65536 ? Buffer.from([0x82, 126, n >> 8, n & 255]) : (() => {
    const h = Buffer.alloc(10); h[0] = 0x82; h[1] = 127; h.writeBigUInt64BE(BigInt(n), 2); return h
  })()
  return Buffer.concat([head, payload])
}
const replyFrame = frameOf(reply)
const metadataFrame = frameOf(Buffer.from(encodeFrame({ type: "metadata_response", data: {} })))

Net.createServer({ noDelay: true }, (socket) => {
  let upgraded = false
  let pending = Buffer.alloc(0)
  socket.on("error", () => socket.destroy())
  socket.on("data", (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    if (!upgraded) {
      const end = pending.indexOf("\r\n\r\n")
      if (end < 0) return
      const key = /sec-websocket-key:\s*(\S+)/i.exec(pending.subarray(0, end).toString())[1]
      const accept = Crypto.createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64")
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
      upgraded = true
      pending = pending.subarray(end + 4)
    }
    while (pending.length >= 2) {
      const op = pending[0] & 15
      let len = pending[1] & 127
      let at = 2
      if (len === 126) { if (pending.length < 4) return; len = pending.readUInt16BE(2); at = 4 }
      else if (len === 127) { if (pending.length < 10) return; len = Number(pending.readBigUInt64BE(2)); at = 10 }
      if (pending.length < at + 4 + len) return
      const mask = pending.subarray(at, at + 4)
      const payload = Buffer.from(pending.subarray(at + 4, at + 4 + len))
      for (let i = 0; i < len; i++) payload[i] ^= mask[i & 3]
      pending = pending.subarray(at + 4 + len)
      if (op === 8) { socket.end(Buffer.from([0x88, 0])); return }
      if (op !== 2) continue
      const message = decodeFrame(payload)
      if (message._tag !== "Success") continue
      if (message.success.type === "obs_request") socket.write(replyFrame)
      else if (message.success.type === "metadata") socket.write(metadataFrame)
    }
  })
}).listen(Number(port), "127.0.0.1")
const stop = () => process.exit(0)
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
