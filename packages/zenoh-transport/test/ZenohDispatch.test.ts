// PolicyClient over Zenoh with its action dispatcher on a worker thread
// (ZenohDispatch): the worker's own session publishes the actions on the
// request key, the server takes them like any other frame. The same behaviour
// as the in-process dispatcher over real loopback sessions, ticks that do not
// wait for a blocked main thread, a stop of the policy process, and a worker
// that ends with the client's scope. No timed assertions beyond order and
// counts. The worker is the built JavaScript: run `npx tsc -b` first.
import { type PeerEvent, Zenoh } from "@chiral/zenoh"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Schedule, Stream, SubscriptionRef } from "effect"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { ClientTransport, PolicyClient, ServerTransport, TransportError } from "@chiral/core"
import * as CameraState from "@chiral/core/CameraState"
import { ZenohTransport } from "../src/index.js"
import { failure } from "@chiral/testing/Exits"
import * as Pair from "@chiral/testing/Pair"
import * as Robot from "@chiral/testing/Robot"
import { relayTo } from "@chiral/testing/Relay"
import { chunkModesContract, dispatchContract, row, stallContract, takeActions } from "@chiral/testing/DispatchContract"

const fast = { probeInterval: 50, probeTimeout: 1000 } as const
/** For a raw `connect` (not retried, unlike PolicyClient's): a stall of this process longer than probeTimeout would fail it. */
const patient = { probeInterval: 50, probeTimeout: 5000 } as const

/** A Zenoh server on a free loopback port, and clients with their dispatcher on `thread`. */
const zenoh = (thread: "worker" | "main", keyPrefix?: string) =>
  Layer.unwrap(
    Effect.map(ServerTransport, (server) =>
      Layer.succeed(ClientTransport, ZenohTransport.makeClient(server.address, { ...fast, thread, keyPrefix })))
  ).pipe(Layer.provideMerge(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0, keyPrefix })))

/** The test robot on a Zenoh server of its own, reached through a relay (which can cut one session). */
const robotBehindRelay = Effect.gen(function*() {
  const server = yield* ZenohTransport.makeServer({ host: "127.0.0.1", port: 0 })
  yield* Pair.startServerOnly().pipe(Effect.provideService(ServerTransport, server))
  return { relay: yield* relayTo(Number(server.address.split(":").pop())) }
})

describe("Zenoh client: off-thread action dispatch", () => {
  dispatchContract((thread) => zenoh(thread))
  chunkModesContract((thread) => zenoh(thread))
  stallContract((thread) => zenoh(thread))

  it.live("the connection carries a dispatcher unless thread is main", () =>
    Effect.gen(function*() {
      const server = yield* ServerTransport
      yield* Pair.startServerOnly()
      const worker = yield* ZenohTransport.makeClient(server.address, patient).connect
      assert.isDefined((worker as { dispatch?: unknown }).dispatch)
      const main = yield* ZenohTransport.makeClient(server.address, { ...patient, thread: "main" }).connect
      assert.isUndefined((main as { dispatch?: unknown }).dispatch)
    }).pipe(Effect.scoped, Effect.provide(zenoh("main"))))

  it.live("N actions at 50 Hz all arrive, in order, stamped with the latest observation's camera timestamps (on prefixed keys)", () =>
    Effect.gen(function*() {
      const { client, recorder, server } = yield* Pair.startPair()
      yield* server.updateImage("wrist", new Uint8Array(72))
      yield* client.getObs
      yield* server.updateImage("wrist", new Uint8Array(72).fill(1))
      const obs = yield* client.getObs
      const n = 25
      yield* client.putActions(Array.from({ length: n }, (_, i) => row(i)))
      yield* client.startActionDispatch(50)
      const applied = yield* Stream.fromQueue(recorder.actions).pipe(Stream.take(n), Stream.runCollect)
      assert.deepStrictEqual(applied.map((a) => Number(a.action.data[0])), Array.from({ length: n }, (_, i) => i))
      const stamps = Object.fromEntries(obs.cameras.map((c) => [c.name, c.timestamp]))
      for (const a of applied) {
        assert.deepStrictEqual(a.action.shape, [7])
        assert.deepStrictEqual(a.context.obsTimestamps, stamps)
        assert.include(a.context.connection, "lab/arm-2/chiral/c2s")
      }
      assert.strictEqual(yield* client.pendingActions, 0)
    }).pipe(Effect.scoped, Effect.provide(zenoh("worker", "lab/arm-2"))))

  it.live("closing the client's scope closes the worker's session: the server sees both peers say CLOSE", () =>
    Effect.gen(function*() {
      const listener = yield* Zenoh.listen({ host: "127.0.0.1", port: 0 })
      const address = `tcp/127.0.0.1:${listener.address.port}`
      const server = yield* ZenohTransport.makeServerOn(listener, { address })
      const { recorder } = yield* Pair.startServerOnly().pipe(Effect.provideService(ServerTransport, server))
      const events = yield* listener.peerEvents.pipe(
        Stream.take(4),
        Stream.runCollect,
        Effect.forkChild({ startImmediately: true })
      )
      yield* Effect.gen(function*() {
        const client = yield* PolicyClient.make({ quiet: true }).pipe(
          Effect.provideService(ClientTransport, ZenohTransport.makeClient(address, fast))
        )
        // the client's session and the dispatcher's
        assert.strictEqual((yield* listener.peers).length, 2)
        yield* client.putActions([1, 2].map(row))
        yield* client.startActionDispatch(100)
        assert.deepStrictEqual(yield* takeActions(recorder.actions, 2), [1, 2])
      }).pipe(Effect.scoped)
      const seen: ReadonlyArray<PeerEvent> = yield* Fiber.join(events).pipe(Effect.timeout(30_000))
      assert.deepStrictEqual(seen.map((e) => e._tag), ["PeerConnected", "PeerConnected", "PeerDisconnected", "PeerDisconnected"])
      for (const e of seen) {
        if (e._tag === "PeerDisconnected") assert.strictEqual(e.error?._tag, "ZenohCloseReceived")
      }
      assert.strictEqual((yield* listener.peers).length, 0)
    }).pipe(Effect.scoped))

  it.live("a dispatcher whose session is lost ends the connection", () =>
    Effect.gen(function*() {
      const { relay } = yield* robotBehindRelay
      const transport = ZenohTransport.makeClient(`tcp/127.0.0.1:${relay.port}`, patient)
      const connection = yield* transport.connect
      const reading = yield* Effect.forkChild(Stream.runDrain(connection.frames))
      // the client's session came first, the dispatcher's second: cut only that one
      assert.strictEqual(yield* relay.connections, 2)
      yield* relay.cut(1)
      const error = failure(yield* Fiber.await(reading).pipe(Effect.timeout(30_000)))
      assert.instanceOf(error, TransportError)
      assert.strictEqual(error.reason, "Closed")
      assert.include(error.detail, "action dispatcher")
    }).pipe(Effect.scoped))

  it.live("what the worker's plan dropped before its session ended stays counted after it", () =>
    Effect.gen(function*() {
      const { relay } = yield* robotBehindRelay
      const client = yield* PolicyClient.make({ quiet: true, reconnect: false }).pipe(
        Effect.provideService(ClientTransport, ZenohTransport.makeClient(`tcp/127.0.0.1:${relay.port}`, fast))
      )
      // a chunk from an observation 350 ms old, time-aligned at 10 Hz: the slots of its first four have ended
      const started = yield* CameraState.captureTime
      yield* CameraState.captureTime.pipe(
        Effect.repeat({ until: (now) => now >= started + 0.4, schedule: Schedule.spaced("20 millis") })
      )
      yield* client.startActionDispatch(10)
      const t0 = (yield* CameraState.captureTime) - 0.35
      yield* client.putActions(Array.from({ length: 100 }, (_, i) => row(i)), { mode: "time-aligned", obsTimestamps: { wrist: t0 } })
      const late = yield* Effect.map(client.droppedActions, (d) => d.late).pipe(
        Effect.repeat({ until: (n) => n >= 4, schedule: Schedule.spaced("10 millis") })
      )
      // the client's session came first, the dispatcher's second: cut only that one, which ends first
      yield* relay.cut(1)
      yield* client.awaitDisconnect
      // once what the worker still held is counted dropped, its earlier drops are still there
      const after = yield* client.droppedActions.pipe(
        Effect.repeat({ until: (d) => d.disconnected > 0, schedule: Schedule.spaced("10 millis") })
      )
      assert.isAtLeast(after.late, late)
    }).pipe(Effect.scoped))

  it.live("a lost connection: what the worker held is dropped, counted and logged, never sent later; the client reconnects and dispatches again", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const server = yield* ZenohTransport.makeServer({ host: "127.0.0.1", port: 0 })
        const { recorder } = yield* Pair.startServerOnly().pipe(Effect.provideService(ServerTransport, server))
        const relay = yield* relayTo(Number(server.address.split(":").pop()))
        const client = yield* PolicyClient.make({ quiet: true }).pipe(
          Effect.provideService(ClientTransport, ZenohTransport.makeClient(`tcp/127.0.0.1:${relay.port}`, fast))
        )
        const total = 1000
        yield* client.putActions(Array.from({ length: total }, (_, i) => row(i)))
        yield* client.startActionDispatch(50)
        assert.deepStrictEqual(yield* takeActions(recorder.actions, 3), [0, 1, 2])
        yield* relay.cut()
        // every action was either sent before the loss or dropped
        yield* Effect.all([SubscriptionRef.get(client.dispatched), Effect.map(client.droppedActions, (d) => d.disconnected)]).pipe(
          Effect.filterOrFail(([sent, dropped]) => sent + dropped === total && dropped > 0),
          Effect.retry({ schedule: Schedule.spaced(10) }),
          Effect.orDie
        )
        yield* SubscriptionRef.changes(client.connectionState).pipe(
          Stream.filter((state) => state === "connected"),
          Stream.take(1),
          Stream.runDrain
        )
        yield* client.putActions([5000, 5001].map(row))
        // whatever of the old connection was still in flight comes first; nothing of it after the new ones
        const later: Array<number> = []
        while (later.at(-1) !== 5001) later.push(...(yield* takeActions(recorder.actions, 1)))
        assert.deepStrictEqual(later.filter((v) => v >= 1000), [5000, 5001])
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const stopped = logs.lines.filter((l) => l.includes("action dispatch on its worker thread stopped"))
      assert.strictEqual(stopped.length, 1, logs.lines.join("\n"))
      assert.match(stopped[0]!, /; \d+ queued actions dropped; dispatch resumes at 50 Hz on the next connection$/)
    }))

  it.live("a process whose client scope closes exits on its own: the worker leaves nothing behind", () =>
    Effect.gen(function*() {
      // Against the build (dist/), in a child process: it prints what arrived
      // and whether the dispatcher was on a worker, then must end by itself.
      const script = `
        import { Effect, Queue } from "effect"
        import { ClientTransport, PolicyClient, PolicyServer, ServerTransport } from "@chiral/core"
        import { ZenohTransport } from "@chiral/zenoh-transport"
        const program = Effect.gen(function*() {
          const arrived = yield* Queue.unbounded()
          const server = yield* ZenohTransport.makeServer({ host: "127.0.0.1", port: 0 })
          // every action applied as read: at 100 Hz two may arrive together on a busy machine
          yield* PolicyServer.make({
            coalesceActions: false,
            handlers: {
              reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs })),
              applyAction: (action) => Queue.offer(arrived, action.data[0])
            }
          }).pipe(Effect.provideService(ServerTransport, server))
          let offThread = false
          const transport = ZenohTransport.makeClient(server.address)
          const watched = { ...transport, connect: Effect.tap(transport.connect, (c) => Effect.sync(() => { offThread = c.dispatch !== undefined })) }
          yield* Effect.gen(function*() {
            const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, watched))
            yield* client.putActions([[1], [2], [3]])
            yield* client.startActionDispatch(100)
            const got = []
            for (let i = 0; i < 3; i++) got.push(yield* Queue.take(arrived))
            console.log(JSON.stringify({ got, offThread }))
          }).pipe(Effect.scoped)
        }).pipe(Effect.scoped)
        Effect.runFork(program)
      `
      const cwd = fileURLToPath(new URL("..", import.meta.url))
      const started = performance.now()
      const outcome = yield* Effect.callback<{ readonly error: Error | null; readonly stdout: string; readonly stderr: string }>(
        (resume) => {
          const child = execFile(
            process.execPath,
            ["--input-type=module", "--eval", script],
            { cwd, timeout: 20_000, killSignal: "SIGKILL" },
            (error, stdout, stderr) => resume(Effect.succeed({ error, stdout, stderr }))
          )
          return Effect.sync(() => child.kill("SIGKILL"))
        }
      )
      assert.isNull(outcome.error, `${outcome.error?.message}\n${outcome.stderr}`)
      // the server's connection log lines go to stdout too
      const report = outcome.stdout.split("\n").find((line) => line.startsWith("{\"got\""))
      assert.isDefined(report, outcome.stdout)
      assert.deepStrictEqual(JSON.parse(report!), { got: [1, 2, 3], offThread: true })
      assert.isBelow(performance.now() - started, 20_000)
    }), 30_000)
})
