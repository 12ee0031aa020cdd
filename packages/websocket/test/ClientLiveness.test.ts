// The WebSocket client over real sockets when the server goes silent or goes
// away: what every transport owes PolicyClient (@chiral/testing/LivenessContract:
// a frozen server noticed, reconnection after a server is replaced, actions
// that never outlive their connection, with the dispatcher on a worker thread
// and on the main thread), noticed here by pings with a silence timeout (a
// frozen server is a relay that holds all traffic); and a pause of the
// client's own thread, which is not the server's silence. Every wait is on a
// condition (a count, a state, an exit); the test's own timeout is the only clock.
import { describe, it } from "@effect/vitest"
import { Effect, Queue } from "effect"
import { createRequire } from "node:module"
import { Worker } from "node:worker_threads"
import { clientLivenessContract } from "@chiral/testing/LivenessContract"
import { WebSocketClient, WebSocketTransport } from "../src/index.js"

clientLivenessContract({
  name: "WebSocket",
  server: WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0 }),
  // a ping every 0.1 s, answered within 0.2 s; the patient client's every 0.3 s, within 0.6 s
  clientVia: (port, { patient, thread }) =>
    WebSocketTransport.makeClient(
      `ws://127.0.0.1:${port}`,
      patient === true ? { thread, pingInterval: 300, pingTimeout: 600 } : { thread, pingInterval: 100, pingTimeout: 200 }
    ),
  silence: "sent nothing for 0.2 s after a ping",
  heldActions: "delivered"
})

describe("WebSocket client liveness", () => {
  it.live("a pause of the client's own thread is not taken for the server's silence", () =>
    Effect.gen(function*() {
      // The server runs on a thread of its own and answers the chosen ping
      // only once this thread is blocked: the answer waits in the socket while
      // the timeout expires, and must be read before the timeout is judged.
      const blocked = new Int32Array(new SharedArrayBuffer(4))
      const holdAt = 3
      const server = yield* Effect.acquireRelease(
        Effect.sync(() =>
          new Worker(
            `
            const { parentPort, workerData } = require("node:worker_threads")
            const { WebSocketServer } = require(workerData.ws)
            const blocked = new Int32Array(workerData.blocked)
            const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, autoPong: false })
            let pings = 0
            wss.on("connection", (ws) => {
              ws.on("ping", async (data) => {
                const n = ++pings
                if (n === workerData.holdAt) {
                  parentPort.postMessage({ t: "hold" })
                  const wait = Atomics.waitAsync(blocked, 0, 0)
                  if (wait.async) await wait.value
                }
                ws.pong(data)
                parentPort.postMessage({ t: "ping", n })
              })
            })
            wss.on("listening", () => parentPort.postMessage({ t: "port", port: wss.address().port }))
            `,
            { eval: true, workerData: { ws: createRequire(import.meta.url).resolve("ws"), blocked: blocked.buffer, holdAt } }
          )
        ),
        (worker) => Effect.promise(() => worker.terminate())
      )
      const events = yield* Queue.unbounded<
        { readonly t: string; readonly n?: number; readonly port?: number; readonly why?: string }
      >()
      server.on("message", (message) => Queue.offerUnsafe(events, message))
      const next = (t: string) =>
        Effect.gen(function*() {
          for (;;) {
            const event = yield* Queue.take(events)
            if (event.t === "closed") return yield* Effect.die(new Error(`the client closed: ${event.why}`))
            if (event.t === t) return event
          }
        })
      const { port } = yield* next("port")
      yield* Effect.acquireRelease(
        Effect.callback<WebSocketClient.ClientSocket>((resume) => {
          const socket: WebSocketClient.ClientSocket = WebSocketClient.connect({
            host: "127.0.0.1",
            port: port!,
            path: "/",
            hostHeader: "127.0.0.1",
            openTimeoutMillis: 5000,
            pingIntervalMillis: 50,
            // a second: the server's thread can wait that long for a core on a busy machine
            pingTimeoutMillis: 1000
          }, {
            onOpen: () => resume(Effect.succeed(socket)),
            onMessage: () => {},
            onClose: (code, _reason, error) => Queue.offerUnsafe(events, { t: "closed", why: `${code} ${error?.message ?? ""}` })
          })
        }),
        (socket) => Effect.sync(() => socket.destroy())
      )
      yield* next("hold")
      // Blocked well past interval + timeout; the server answers meanwhile.
      yield* Effect.sync(() => {
        Atomics.store(blocked, 0, 1)
        Atomics.notify(blocked, 0)
        const end = performance.now() + 1500
        while (performance.now() < end) {
          // busy, as a policy computing
        }
      })
      // Three more pings answered after the pause, the connection open all along.
      for (;;) {
        const event = yield* next("ping")
        if (event.n! >= holdAt + 3) break
      }
    }))
})
