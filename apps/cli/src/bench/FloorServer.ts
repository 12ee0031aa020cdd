/**
 * The floor of a Node WebSocket robot, for the bench's Python-client
 * comparison (`PythonClient`): a bare `ws` server (the library under chiral
 * serve's WebSocket transport, with its settings: no compression, no
 * text) that answers every obs_request with the same bytes, one
 * obs_response captured from a running chiral serve, and metadata with an
 * empty map; it decodes everything else (the client's actions) and drops
 * it. No Effect, no sensors, no handlers, no copy: what a get_obs takes
 * from a Node robot whose own work takes no time, on the same machine in
 * the same run. Whatever chiral serve takes beyond it is chiral's.
 *
 * Run as a child process: `node FloorServer.js PORT REPLY_FILE`, listening
 * on 127.0.0.1:PORT; it exits on SIGTERM or SIGINT.
 */
import { decodeFrame, encodeFrame } from "@chiral/protocol"
import { Result } from "effect"
import * as Fs from "node:fs"
import { WebSocketServer } from "ws"

const [portArgument, replyFile] = process.argv.slice(2)
const port = Number(portArgument)
if (!Number.isInteger(port) || port <= 0 || replyFile === undefined) {
  process.stderr.write("usage: node FloorServer.js PORT REPLY_FILE (an obs_response frame, as chiral serve sent it)\n")
  process.exit(2)
}

const reply = Fs.readFileSync(replyFile)
const captured = decodeFrame(reply)
if (Result.isFailure(captured) || captured.success.type !== "obs_response") {
  process.stderr.write(`${replyFile}: not an obs_response frame\n`)
  process.exit(2)
}
const metadata = encodeFrame({ type: "metadata_response", data: {} })

const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false })
server.on("connection", (ws) => {
  ws.on("message", (data: Buffer, isBinary) => {
    if (!isBinary) return
    const message = decodeFrame(data)
    if (Result.isFailure(message)) return
    if (message.success.type === "obs_request") ws.send(reply, { binary: true, compress: false })
    else if (message.success.type === "metadata") ws.send(metadata, { binary: true, compress: false })
  })
  ws.on("error", () => ws.terminate())
})
// Nothing to finish: the bench stops it between runs, the client gone.
const stop = () => process.exit(0)
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
