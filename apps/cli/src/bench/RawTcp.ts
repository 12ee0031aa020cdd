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
 * a ratio against it would flatter us.
 */
import * as Net from "node:net"
import { Effect, type Scope } from "effect"

/** A buffer of `size` bytes whose contents are never read (no zero-fill). */
const scratch = (size: number): Uint8Array => Buffer.allocUnsafeSlow(size)

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

/** Connects to a `serve`d baseline answering `bytes` bytes per request. */
export const connect = (port: number, bytes: number, host = "127.0.0.1"): Effect.Effect<RawClient, Error, Scope.Scope> =>
  Effect.gen(function*() {
    let target = scratch(1)
    let received = bytes
    let done: ((error?: Error) => void) | undefined
    const spill = scratch(64 * 1024)
    const socket = yield* Effect.acquireRelease(
      Effect.callback<Net.Socket, Error>((resume) => {
        const socket = Net.connect({
          host,
          port,
          onread: {
            // Where the next read lands: the rest of the current answer, or a spill
            // buffer between answers (never empty: a zero-length read buffer fails).
            buffer: () => (received < bytes ? target.subarray(received) : spill),
            callback: (n, buffer) => {
              // A read that landed in the spill buffer (the first of an answer) is copied over.
              if (buffer === spill && received < bytes) target.set(spill.subarray(0, Math.min(n, bytes - received)), received)
              received += n
              if (received >= bytes && done !== undefined) {
                const finish = done
                done = undefined
                finish()
              }
              return true
            }
          }
        })
        socket.setNoDelay(true)
        socket.once("connect", () => resume(Effect.succeed(socket)))
        socket.once("error", (error) => {
          const finish = done
          done = undefined
          if (finish !== undefined) finish(error)
          else resume(Effect.fail(error))
        })
      }),
      (socket) => Effect.sync(() => socket.destroy())
    )
    const roundTrip = Effect.callback<number, Error>((resume) => {
      target = scratch(bytes)
      received = 0
      const start = performance.now()
      done = (error) => resume(error === undefined ? Effect.succeed(performance.now() - start) : Effect.fail(error))
      socket.write(request)
    })
    return { roundTrip }
  })

const request = new Uint8Array([1])
