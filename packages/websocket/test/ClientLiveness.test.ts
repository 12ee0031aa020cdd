// The WebSocket client over real sockets when the server goes silent or goes
// away: pings with a silence timeout (a frozen server is a relay that holds
// all traffic), reconnection after a server restart, and actions that never
// outlive their connection, with the dispatcher on a worker thread and on
// the main thread. Every wait is on a condition (a count, a state, an exit);
// the test's own timeout is the only clock.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Queue, Ref, Schedule, Scope, Stream, SubscriptionRef } from "effect"
import { createRequire } from "node:module"
import { Worker } from "node:worker_threads"
import { ClientTransport, PolicyClient, ServerTransport } from "@chiral/core"
import { WebSocketClient, WebSocketTransport } from "../src/index.js"
import { takeActions } from "@chiral/testing/DispatchContract"
import { failure } from "@chiral/testing/Exits"
import * as Pair from "@chiral/testing/Pair"
import { relayTo } from "@chiral/testing/Relay"
import * as Robot from "@chiral/testing/Robot"

const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]
const portOf = (address: string) => Number(address.split(":").pop())

/** Waits until `check` holds, looking whenever `ref` changes. */
const until = <A>(ref: SubscriptionRef.SubscriptionRef<A>, check: (a: A) => boolean) =>
  SubscriptionRef.changes(ref).pipe(Stream.filter(check), Stream.runHead, Effect.asVoid)

/** Waits (polling, bounded by the test's timeout) until `check` holds. */
const eventually = (check: Effect.Effect<boolean>) =>
  check.pipe(Effect.filterOrFail((ok) => ok), Effect.retry({ schedule: Schedule.spaced(5) }), Effect.orDie)

/** The test robot on a WebSocket server of its own scope (closing it is the server going away). */
const serveRobot = (recorder: Robot.Recorder, port = 0) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const transport = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port }).pipe(Scope.provide(scope))
    const { server } = yield* Pair.startServerOnlyWith(recorder).pipe(
      Effect.provideService(ServerTransport, transport),
      Scope.provide(scope)
    )
    return { scope, server, port: portOf(transport.address) }
  })

const fast = { pingInterval: 100, pingTimeout: 200 } as const

for (const thread of ["worker", "main"] as const) {
  describe(`WebSocket client liveness, dispatcher on the ${thread} thread`, () => {
    it.live("a frozen server is noticed: the waiting request and later ones fail with Disconnected, the dispatcher stops, queued actions are dropped", () =>
      Effect.gen(function*() {
        const logs = yield* Robot.captureLogs
        yield* Effect.gen(function*() {
          const recorder = yield* Robot.makeRecorder
          const robot = yield* serveRobot(recorder)
          const relay = yield* relayTo(robot.port)
          const client = yield* PolicyClient.make({ quiet: true, reconnect: false }).pipe(
            Effect.provideService(
              ClientTransport,
              WebSocketTransport.makeClient(`ws://127.0.0.1:${relay.port}`, { thread, ...fast })
            )
          )
          yield* client.getObs
          const total = 1000
          yield* client.putActions(Array.from({ length: total }, (_, i) => row(i)))
          yield* client.startActionDispatch(100)
          assert.deepStrictEqual(yield* takeActions(recorder.actions, 3), [0, 1, 2])

          yield* relay.hold()
          // waits for an answer that cannot come; fails once the silence is noticed, long before its 30 s timeout
          const waiting = yield* Effect.exit(client.getObs)
          const error = failure(waiting)
          assert.strictEqual(error._tag, "RequestError")
          assert.strictEqual(error.reason, "Disconnected")
          assert.include(error.detail, "sent nothing for 0.2 s after a ping")
          assert.strictEqual(yield* SubscriptionRef.get(client.connectionState), "closed")
          assert.strictEqual(failure(yield* Effect.exit(client.getMetadata)).reason, "Disconnected")
          assert.strictEqual(failure(yield* Effect.exit(client.putActions([row(-1)]))).reason, "Disconnected")

          // every action was either handed to the connection before it was given up, or dropped
          yield* eventually(Effect.map(
            Effect.all([SubscriptionRef.get(client.dispatched), Effect.map(client.droppedActions, (d) => d.disconnected)]),
            ([sent, dropped]) => sent + dropped === total
          ))
          const sent = yield* SubscriptionRef.get(client.dispatched)
          assert.isAbove((yield* client.droppedActions).disconnected, 0)
          assert.strictEqual(yield* client.pendingActions, 0)

          // The server resumes: what was written to the dead connection (held
          // in the relay as in a frozen server's kernel buffers) arrives, the
          // connection ends, and nothing else ever comes.
          yield* relay.release()
          assert.deepStrictEqual(
            yield* takeActions(recorder.actions, sent - 3),
            Array.from({ length: sent - 3 }, (_, i) => i + 3)
          )
          yield* eventually(Effect.map(robot.server.connections, (n) => n === 0))
          assert.isTrue(Option.isNone(yield* Queue.poll(recorder.actions)))
        }).pipe(Effect.scoped, Effect.provide(logs.layer))
        const stopped = logs.lines.filter((l) => l.includes("action dispatch") && l.includes("stopped"))
        assert.strictEqual(stopped.length, 1, logs.lines.join("\n"))
        assert.include(stopped[0], thread === "worker" ? "on its worker thread" : "on this thread")
        assert.include(stopped[0], "sent nothing for 0.2 s after a ping")
        assert.match(stopped[0]!, /; \d+ queued actions dropped$/)
      }))

    it.live("when the server is replaced the client reconnects by itself; the obs stream and the dispatcher carry on, old actions never reach the new server", () =>
      Effect.gen(function*() {
        // The client reaches the server through a relay, which sends new
        // connections to the second server before the first one closes: the
        // client's reconnection cannot land on the first one while it shuts down.
        const before = yield* Robot.makeRecorder
        const first = yield* serveRobot(before)
        const relay = yield* relayTo(first.port)
        const client = yield* PolicyClient.make({ quiet: true }).pipe(
          Effect.provideService(ClientTransport, WebSocketTransport.makeClient(`ws://127.0.0.1:${relay.port}`, { thread, ...fast }))
        )
        const total = 1000
        yield* client.putActions(Array.from({ length: total }, (_, i) => row(i)))
        yield* client.startActionDispatch(50)
        yield* client.startObsStream(50)
        assert.deepStrictEqual(yield* takeActions(before.actions, 3), [0, 1, 2])

        const after = yield* Robot.makeRecorder
        const second = yield* serveRobot(after)
        yield* relay.hold()
        yield* relay.retarget(second.port)
        yield* Scope.close(first.scope, Exit.void)
        yield* relay.cut()
        yield* client.awaitDisconnect
        // nothing can be queued for a later connection
        assert.strictEqual(failure(yield* Effect.exit(client.putActions([row(-1)]))).reason, "Disconnected")
        assert.strictEqual(failure(yield* Effect.exit(client.getObs)).reason, "Disconnected")
        yield* eventually(Effect.map(
          Effect.all([SubscriptionRef.get(client.dispatched), Effect.map(client.droppedActions, (d) => d.disconnected)]),
          ([sent, dropped]) => sent + dropped === total
        ))
        const sentBefore = yield* SubscriptionRef.get(client.dispatched)

        yield* relay.release()
        yield* until(client.connectionState, (s) => s === "connected")
        assert.strictEqual(yield* SubscriptionRef.get(client.reconnects), 1)
        yield* client.putActions([5000, 5001, 5002].map(row))
        // the dispatcher runs on the new connection at its rate: only the new actions arrive there
        assert.deepStrictEqual(yield* takeActions(after.actions, 3), [5000, 5001, 5002])
        yield* until(client.dispatched, (n) => n === sentBefore + 3)
        // the obs stream asks the new server
        yield* eventually(Effect.map(Ref.get(after.obsRequests), (requests) => requests.length >= 3))
        yield* Scope.close(second.scope, Exit.void)
      }).pipe(Effect.scoped))
  })
}

describe("WebSocket client liveness", () => {
  it.live("an obs stream whose requests timed out while the server was frozen carries on after the reconnection", () =>
    Effect.gen(function*() {
      const recorder = yield* Robot.makeRecorder
      const robot = yield* serveRobot(recorder)
      const relay = yield* relayTo(robot.port)
      const client = yield* PolicyClient.make({ quiet: true, requestTimeout: 200 }).pipe(
        Effect.provideService(
          ClientTransport,
          WebSocketTransport.makeClient(`ws://127.0.0.1:${relay.port}`, { pingInterval: 300, pingTimeout: 600 })
        )
      )
      yield* client.startObsStream(20)
      yield* client.observations.pipe(Stream.take(2), Stream.runDrain)
      // frozen for longer than a request's timeout, until the client gives the connection up
      yield* relay.hold()
      yield* until(client.connectionState, (s) => s === "reconnecting")
      yield* relay.release()
      yield* until(client.connectionState, (s) => s === "connected")
      const before = (yield* Ref.get(recorder.obsRequests)).length
      yield* eventually(Effect.map(Ref.get(recorder.obsRequests), (requests) => requests.length >= before + 3))
    }).pipe(Effect.scoped))


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
            pingTimeoutMillis: 200
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
        const end = performance.now() + 600
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
