/**
 * Issue 11's scenarios over real loopback sockets: several clients on one
 * Zenoh server with the references' fixed keys are isolated from each other
 * (their own answers, never another's; a slow handler or a frozen client
 * delays nobody else), a client's session outlives a blocked JavaScript
 * thread while a frozen one is still dropped by its lease. Every wait is on a
 * condition (an answer, a count, a log line), never on elapsed time.
 */
import { encodeFrame, decodeFrame } from "@chiral/protocol"
import { Zenoh } from "@chiral/zenoh"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Ref, Result, Schedule, Stream } from "effect"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { ClientTransport, PolicyClient, PolicyServer } from "@chiral/core"
import { ZenohTransport } from "../src/index.js"
import { failure } from "@chiral/testing/Exits"
import { relayTo } from "@chiral/testing/Relay"

const fast = { probeInterval: 50, probeTimeout: 2000 } as const

const serverLayer = ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 })

const clientAt = (address: string, options: ZenohTransport.ClientOptions & PolicyClient.PolicyClientOptions = {}) =>
  PolicyClient.make({ quiet: true, ...options }).pipe(
    Effect.provideService(ClientTransport, ZenohTransport.makeClient(address, { ...fast, ...options }))
  )

const portOf = (address: string) => Number(address.split(":").pop())

interface CameraConfig {
  readonly name: string
  readonly height: number
  readonly width: number
  readonly channels: number
  readonly hasDepth?: boolean
}

/**
 * A server whose getObs tags every observation with its number `n`; `hold`
 * makes the next getObs wait until it is released.
 */
const taggedServer = (cameras: ReadonlyArray<CameraConfig>) =>
  Effect.gen(function*() {
    const count = yield* Ref.make(0)
    let held: Deferred.Deferred<void> | undefined
    const server = yield* PolicyServer.make({
      cameras,
      handlers: {
        reset: Effect.die("unused"),
        applyAction: () => Effect.void,
        getObs: Effect.gen(function*() {
          const n = yield* Ref.updateAndGet(count, (k) => k + 1)
          const gate = held
          held = undefined
          if (gate !== undefined) yield* Deferred.await(gate)
          return yield* PolicyServer.makeObs({ extra: { n } })
        })
      }
    })
    for (const c of cameras) {
      yield* server.updateImage(c.name, new Uint8Array(c.height * c.width * c.channels).fill(7), { copy: false })
      if (c.hasDepth === true) yield* server.updateDepth(c.name, new Float32Array(c.height * c.width).fill(1.5), { copy: false })
    }
    const hold = Effect.sync(() => {
      const gate = Deferred.makeUnsafe<void>()
      held = gate
      return Deferred.succeed(gate, undefined)
    })
    return { server, count: Ref.get(count), hold }
  })

const smallCamera = [{ name: "cam", height: 4, width: 6, channels: 3 }] as const
/** 8 cameras 480×640 RGB + float32 depth: 17 MB, more than the sockets between two peers hold. */
const eightCameras = Array.from({ length: 8 }, (_, i) => ({
  name: `cam_${i}`,
  height: 480,
  width: 640,
  channels: 3,
  hasDepth: true
}))

const waitUntil = (condition: Effect.Effect<boolean>) =>
  Effect.repeat(condition, { until: (ok) => ok, schedule: Schedule.spaced(10) })

describe("Zenoh: answers reach the client that asked", () => {
  it.live("two clients on the fixed keys, 50 sequential getObs each: each gets its own answers, none twice", () =>
    Effect.gen(function*() {
      const { count, server } = yield* taggedServer(smallCamera)
      const clients = [yield* clientAt(server.address), yield* clientAt(server.address)]
      const seen = yield* Effect.forEach(clients, (client) =>
        Effect.gen(function*() {
          const ns: Array<number> = []
          for (let i = 0; i < 50; i++) {
            const before = yield* count
            const obs = yield* client.getObs
            const n = obs.extra["n"] as number
            // made for this request: after it was sent, not an older one
            assert.isAbove(n, before)
            ns.push(n)
          }
          return ns
        }), { concurrency: "unbounded" })
      const [a, b] = seen
      assert.strictEqual(new Set([...a!, ...b!]).size, 100, "an observation reached both clients")
      assert.strictEqual(yield* count, 100)
    }).pipe(Effect.scoped, Effect.provide(serverLayer)))

  it.live("reference clients (raw sessions on chiral/c2s and chiral/s2c) each receive only the answers to their own requests", () =>
    Effect.gen(function*() {
      const { count, server } = yield* taggedServer(smallCamera)
      const port = portOf(server.address)
      const peers = yield* Effect.forEach([0, 1], () =>
        Effect.gen(function*() {
          const session = yield* Zenoh.connect({ host: "127.0.0.1", port })
          const replies = yield* Stream.toPull(yield* session.declareSubscriber("chiral/s2c", { capacity: 64 }))
          yield* session.awaitSubscribers("chiral/c2s")
          return { session, replies }
        }))
      const request = encodeFrame({ type: "obs_request" })
      for (let round = 0; round < 10; round++) {
        // both ask at once; each must get exactly one answer, its own
        for (const peer of peers) yield* peer.session.put("chiral/c2s", request)
        const answers = yield* Effect.forEach(peers, (peer) => peer.replies)
        const ns = answers.map((chunk) => {
          assert.strictEqual(chunk.length, 1)
          const decoded = decodeFrame(chunk[0]!.payload)
          assert.isTrue(Result.isSuccess(decoded))
          const message = Result.getOrThrow(decoded)
          assert.strictEqual(message.type, "obs_response")
          return message.type === "obs_response" ? message.obs.extra["n"] as number : -1
        })
        assert.notStrictEqual(ns[0], ns[1])
      }
      assert.strictEqual(yield* count, 20)
    }).pipe(Effect.scoped, Effect.provide(serverLayer)))
})

describe("Zenoh: one client never slows another", () => {
  it.live("a handler still working for one client does not delay another client's getObs", () =>
    Effect.gen(function*() {
      const { count, hold, server } = yield* taggedServer(smallCamera)
      const a = yield* clientAt(server.address)
      const b = yield* clientAt(server.address)
      const release = yield* hold
      const asking = yield* Effect.forkChild(a.getObs)
      yield* waitUntil(Effect.map(count, (n) => n === 1))
      // a's request is in its handler, held: b is answered meanwhile
      const obs = yield* b.getObs
      assert.strictEqual(obs.extra["n"], 2)
      assert.isUndefined(asking.pollUnsafe())
      yield* release
      assert.strictEqual((yield* Fiber.join(asking)).extra["n"], 1)
    }).pipe(Effect.scoped, Effect.provide(serverLayer)))

  it.live("a request its handler cannot answer ends that client's session only: it fails at once, others are served", () =>
    Effect.gen(function*() {
      let calls = 0
      const server = yield* PolicyServer.make({
        cameras: smallCamera,
        handlers: {
          reset: Effect.die("unused"),
          applyAction: () => Effect.void,
          // the first getObs fails: the server cannot answer it
          getObs: Effect.suspend(() => ++calls === 1 ? Effect.fail("camera unplugged") : PolicyServer.makeObs())
        }
      })
      const a = yield* clientAt(server.address, { requestTimeout: 60_000 })
      const b = yield* clientAt(server.address)
      const error = failure(yield* Effect.exit(a.getObs))
      assert.strictEqual(error.reason, "Disconnected")
      assert.strictEqual((yield* b.getObs).cameras.length, 1)
    }).pipe(Effect.scoped, Effect.provide(serverLayer)))

  it.live("a client frozen while receiving 17 MB observations holds up nobody; its session stays until its lease", () =>
    Effect.gen(function*() {
      const { server } = yield* taggedServer(eightCameras)
      const relay = yield* relayTo(portOf(server.address))
      // a's lease is long: the server cannot drop it during the test, so b is served beside it
      const a = yield* clientAt(`tcp/127.0.0.1:${relay.port}`, { lease: 120_000 })
      const b = yield* clientAt(server.address)
      yield* a.getObs
      const before = yield* server.connections
      // a keeps asking; its relay freezes while answers are on their way
      const asking = yield* Effect.forkChild(Effect.forever(a.getObs))
      yield* relay.hold()
      for (let i = 0; i < 5; i++) assert.strictEqual((yield* b.getObs).cameras.length, 8)
      // a was not dropped: it is still a connection of the server
      assert.strictEqual(yield* server.connections, before)
      yield* Fiber.interrupt(asking)
    }).pipe(Effect.scoped, Effect.provide(serverLayer)), 120_000)

  it.live("a frozen client is still dropped by its lease", () =>
    Effect.gen(function*() {
      const { server } = yield* taggedServer(smallCamera)
      const relay = yield* relayTo(portOf(server.address))
      const a = yield* clientAt(`tcp/127.0.0.1:${relay.port}`, { lease: 1000 })
      yield* a.getObs
      const connected = yield* server.connections
      assert.isAtLeast(connected, 1)
      yield* relay.hold()
      // its session and its dispatcher's: both gone once silent for their lease
      yield* waitUntil(Effect.map(server.connections, (n) => n === 0))
    }).pipe(Effect.scoped, Effect.provide(serverLayer)))
})

/** A chiral server on Zenoh in a child process (the build): prints its address, serves until killed. */
const childServer = Effect.acquireRelease(
  Effect.callback<{ readonly address: string; readonly kill: () => void }, Error>((resume) => {
    const script = `
      import { Effect } from "effect"
      import { PolicyServer, ServerTransport } from "@chiral/core"
      import { ZenohTransport } from "@chiral/zenoh-transport"
      Effect.runFork(Effect.gen(function*() {
        const server = yield* PolicyServer.make({
          cameras: [{ name: "cam", height: 4, width: 6, channels: 3 }],
          handlers: { getMetadata: Effect.succeed({ up: true }), reset: Effect.die("unused"), applyAction: () => Effect.void }
        })
        console.log(server.address)
        return yield* Effect.never
      }).pipe(Effect.scoped, Effect.provide(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 }))))
    `
    const cwd = fileURLToPath(new URL("..", import.meta.url))
    const child = execFile(process.execPath, ["--input-type=module", "--eval", script], { cwd, killSignal: "SIGKILL" })
    let out = ""
    child.stdout!.on("data", (chunk) => {
      out += chunk
      const line = /^(tcp\/\S+)$/m.exec(out)
      if (line !== null) resume(Effect.succeed({ address: line[1]!, kill: () => void child.kill("SIGKILL") }))
    })
    child.once("exit", (code) => resume(Effect.fail(new Error(`the server process exited (${code})`))))
    return Effect.sync(() => child.kill("SIGKILL"))
  }),
  (server) => Effect.sync(server.kill)
)

/** Blocks this thread (as a long synchronous inference does). */
const blockThread = (millis: number) =>
  Effect.sync(() => {
    const cell = new Int32Array(new SharedArrayBuffer(4))
    const until = Date.now() + millis
    while (Date.now() < until) Atomics.wait(cell, 0, 0, until - Date.now())
  })

describe("Zenoh: the session survives a busy policy", () => {
  it.live("a client whose thread is blocked for 4 of its leases keeps its session; on this thread it would lose it", () =>
    Effect.gen(function*() {
      const { address } = yield* childServer
      const lease = 1500
      const kept = yield* clientAt(address, { lease })
      const lost = yield* clientAt(address, { lease, sessionThread: "main" })
      assert.deepStrictEqual(yield* kept.getMetadata, { up: true })
      assert.deepStrictEqual(yield* lost.getMetadata, { up: true })
      yield* blockThread(4 * lease)
      assert.deepStrictEqual(yield* kept.getMetadata, { up: true })
      assert.strictEqual((yield* kept.getObs).cameras.length, 1)
      // the session on this thread was dropped by the server meanwhile
      const exit = yield* Effect.exit(Effect.andThen(lost.awaitDisconnect, lost.getMetadata))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(Cause.pretty(Exit.isFailure(exit) ? exit.cause : Cause.empty), "Disconnected")
    }).pipe(Effect.scoped), 60_000)
})
