/**
 * The raw-TCP baseline: a plain `node:net` server that answers every request
 * byte with `bytes` bytes, and a client that times request sent → all bytes
 * received into one fresh buffer. No framing, no decoding: the floor any
 * protocol over loopback TCP in Node stands on.
 *
 * The client is the fastest receive Node offers rather than the most common
 * one: the socket reads (`onread`) straight into the destination buffer, so
 * the only copy is the kernel's. The usual `'data'` events would add a 64 KiB
 * allocation and a copy per chunk and make the baseline about twice as slow;
 * a ratio against it would flatter us. For the same reason it runs in an
 * isolate of its own (a worker thread): interleaved with the measured client
 * on one heap, it would pay for that client's garbage collections.
 */
import * as Net from "node:net"
import { Worker } from "node:worker_threads"
import { Effect, type Scope } from "effect"
import type { RawClientReply } from "./RawTcpClient.js"


/** Listens on `host`:0; every byte received asks for one `bytes`-byte answer. */
export const serve = (bytes: number, host = "127.0.0.1"): Effect.Effect<number, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Net.Server, Error>((resume) => {
      const payload = Buffer.allocUnsafeSlow(bytes)
      for (let i = 0; i < bytes; i++) payload[i] = (i * 31) & 255
      const sockets = new Set<Net.Socket>()
      const server = Net.createServer((socket) => {
        sockets.add(socket)
        socket.setNoDelay(true)
        socket.on("data", (chunk: Buffer) => {
          for (let i = 0; i < chunk.length; i++) socket.write(payload)
        })
        socket.on("error", () => socket.destroy())
        socket.on("close", () => sockets.delete(socket))
      })
      server.on("close", () => {
        for (const socket of sockets) socket.destroy()
      })
      server.once("error", (error) => resume(Effect.fail(error)))
      server.listen(0, host, () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.emit("close")
      })
  ).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

export interface RawClient {
  /** One request: the time in ms from the request byte written to the last answer byte received. */
  readonly roundTrip: Effect.Effect<number, Error>
}

/** The worker entry next to this module in dist/ (under vitest this module is the source). */
const clientScript = (): URL =>
  import.meta.url.endsWith(".ts")
    ? new URL("../../dist/bench/RawClientWorker.js", import.meta.url)
    : new URL("./RawClientWorker.js", import.meta.url)

/**
 * Connects to a `serve`d baseline answering `bytes` bytes per request. The
 * client runs on a worker thread: an isolate of its own, whose heap holds
 * nothing but this socket, so the baseline never pays for garbage the
 * measured client left behind (each isolate collects its own). Only the
 * round trip is timed, on that thread; asking for one is not.
 */
export const connect = (port: number, bytes: number, host = "127.0.0.1"): Effect.Effect<RawClient, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const worker = yield* Effect.acquireRelease(
      Effect.callback<Worker, Error>((resume) => {
        const worker = new Worker(clientScript(), { workerData: { port, bytes, host }, execArgv: [] })
        worker.once("message", (message: RawClientReply) =>
          resume("error" in message ? Effect.fail(new Error(message.error)) : Effect.succeed(worker)))
        worker.once("error", (error) => resume(Effect.fail(error)))
      }),
      (worker) => Effect.promise(() => worker.terminate())
    )
    const roundTrip = Effect.callback<number, Error>((resume) => {
      worker.once("message", (message: RawClientReply) =>
        resume("ms" in message ? Effect.succeed(message.ms) : Effect.fail(new Error("error" in message ? message.error : "?"))))
      worker.postMessage("trip")
    })
    return { roundTrip }
  })

