/**
 * Worker entry of the raw-TCP baseline's client (see `RawTcp.connect`): one
 * round trip per "trip" message, answered with its time in ms. Imports no
 * Effect, so its heap stays next to empty.
 */
import { parentPort, workerData } from "node:worker_threads"
import { type RawClientReply, startClient } from "./RawTcpClient.js"

const port = parentPort!
const post = (reply: RawClientReply) => port.postMessage(reply)
const client = startClient(workerData as { port: number; bytes: number; host: string }, (error) =>
  post(error === undefined ? { ready: true } : { error: error.message }))
port.on("message", () =>
  client.roundTrip((error, ms) => post(error === undefined ? { ms } : { error: error.message })))
