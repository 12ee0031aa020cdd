import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ClientTransport, type Connection, MemoryTransport, PolicyClient, PolicyServer, ServerTransport, TransportError } from "@chiral/core"
import { decodeFrame, encodeFrame, Tensor } from "@chiral/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Exit, Logger, Queue, Ref, Result, Schedule, Scope, Stream, SubscriptionRef } from "effect"
import * as Episode from "../src/Episode.js"
import * as Recorder from "../src/Recorder.js"
import * as RecordingProxy from "../src/RecordingProxy.js"

// Live fibers and worker threads on a loaded 2-core machine: generous.
const liveTimeout = 60_000

const metadata = { robot: "proxied", action_shape: [1, 3] }

/** A robot on `server` until `scope` closes; the first value of every action it applies goes to `applied`. */
const startRobot = (server: ServerTransport["Service"], applied: Ref.Ref<ReadonlyArray<number>>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const api = yield* PolicyServer.make({
      cameras: [{ name: "front", height: 2, width: 2 }],
      handlers: {
        getMetadata: Effect.succeed(metadata),
        reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs, info: {} })),
        applyAction: (action) => Ref.update(applied, (a) => [...a, (action.data as Float32Array)[0]!])
      }
    }).pipe(Effect.provideService(ServerTransport, server), Scope.provide(scope))
    yield* api.updateImage("front", new Uint8Array(2 * 2 * 3))
    return scope
  })

const action = (value: number) =>
  encodeFrame({ type: "apply_action", action: Tensor.make("float32", [3], Float32Array.of(value, 0, 0)), obsTimestamps: {} })

const typeOf = (frame: Uint8Array) => {
  const decoded = decodeFrame(frame)
  return Result.isSuccess(decoded) ? decoded.success.type : "undecodable"
}

/** A bare client connection (ours checks nothing and never reconnects): what it receives, and when it ends. */
const rawClient = (client: ClientTransport["Service"]) =>
  Effect.gen(function*() {
    // Retried until the proxy serves (it is started in a fiber of its own).
    const connection = yield* Effect.retry(client.connect, { schedule: Schedule.spaced(5), times: 1000 })
    const received = yield* Queue.unbounded<string>()
    const ended = yield* Deferred.make<void>()
    yield* connection.frames.pipe(
      Stream.runForEach((frame) => Queue.offer(received, typeOf(frame))),
      Effect.ignore,
      Effect.andThen(Deferred.succeed(ended, undefined)),
      Effect.forkScoped
    )
    return { connection, received, ended }
  })

/** Waits for a condition (never for a time). */
const until = (check: Effect.Effect<boolean>) =>
  check.pipe(Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(5) }), Effect.asVoid)

const logLines = () => {
  const lines: Array<string> = []
  const logger = Logger.make<unknown, void>(({ logLevel, message }) => {
    lines.push(`${logLevel.toUpperCase()} ${(Array.isArray(message) ? message : [message]).map(String).join(" ")}`)
  })
  return { lines, layer: Logger.layer([logger]) }
}

/** `transport` with its connection attempts counted: started, and failed. */
const counted = (transport: ClientTransport["Service"]) => {
  const attempts = { started: 0, failed: 0 }
  const service = ClientTransport.of({
    address: transport.address,
    connect: Effect.suspend(() => {
      attempts.started++
      return transport.connect.pipe(Effect.tapError(() => Effect.sync(() => attempts.failed++)))
    })
  })
  return { attempts, service }
}

/** `server` with the frames its connections' readers have taken counted, for all connections together. */
const pulled = (server: ServerTransport["Service"]) => {
  const taken = { frames: 0 }
  const service = ServerTransport.of({
    address: server.address,
    serve: (handler) =>
      server.serve((connection: Connection) =>
        handler({ ...connection, frames: Stream.tap(connection.frames, () => Effect.sync(() => taken.frames++)) })
      )
  })
  return { taken, service }
}

/** `server` with a `close` on its connections that notes the code and reason it was given (before the usual close). */
const closable = (server: ServerTransport["Service"]) => {
  const closes: Array<readonly [number, string]> = []
  const service = ServerTransport.of({
    address: server.address,
    serve: (handler) =>
      server.serve((connection: Connection) =>
        handler({ ...connection, close: (code, reason) => Effect.sync(() => void closes.push([code, reason])) })
      )
  })
  return { closes, service }
}

const runProxy = (
  proxyServer: ServerTransport["Service"],
  robotClient: ClientTransport["Service"],
  options: RecordingProxy.ProxyOptions = {}
) =>
  RecordingProxy.run(options).pipe(
    Effect.provideService(ServerTransport, proxyServer),
    Effect.provideService(ClientTransport, robotClient),
    Effect.forkScoped
  )

/** A robot that applies what it gets, behind a proxy whose robot connections open once `gate` is done; a raw client of the proxy. */
const gatedPassage = (options: RecordingProxy.ProxyOptions) =>
  Effect.gen(function*() {
    const robotNet = MemoryTransport.make({ address: "memory://robot" })
    const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
    const applied = yield* Ref.make<ReadonlyArray<number>>([])
    yield* startRobot(robotNet.server, applied)
    const gate = yield* Deferred.make<void>()
    const slow = ClientTransport.of({ address: robotNet.client.address, connect: Effect.andThen(Deferred.await(gate), robotNet.client.connect) })
    const proxy = pulled(proxyNet.server)
    yield* runProxy(proxy.service, slow, { upstreamTimeout: "1 hour", ...options })
    const client = yield* rawClient(proxyNet.client)
    return { applied, gate, proxy, client }
  })

describe("RecordingProxy", () => {
  it.live("while no robot answers, a client's connection is held, not forwarded to: a robot that starts meanwhile answers its requests but never gets its actions", () => {
    const log = logLines()
    return Effect.gen(function*() {
      const robotNet = MemoryTransport.make({ address: "memory://robot" })
      const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
      const upstream = counted(robotNet.client)
      // However young the action when the robot comes up: it was sent while no robot answered.
      yield* runProxy(proxyNet.server, upstream.service, { upstreamTimeout: "1 hour", maxHeldActionAge: "1 hour" })

      const early = yield* rawClient(proxyNet.client)
      yield* early.connection.send(action(1))
      yield* early.connection.send(encodeFrame({ type: "metadata" }))
      yield* until(Effect.sync(() => upstream.attempts.failed >= 1))
      // The robot comes up while the proxy keeps trying for this client.
      const applied = yield* Ref.make<ReadonlyArray<number>>([])
      yield* startRobot(robotNet.server, applied)
      assert.strictEqual(yield* Queue.take(early.received), "metadata_response")
      yield* early.connection.send(action(2))
      yield* until(Effect.map(Ref.get(applied), (a) => a.length > 0))
      assert.deepStrictEqual(yield* Ref.get(applied), [2], "the action sent while no robot answered was dropped")
      assert.isTrue(log.lines.some((l) => l.startsWith("WARN") && l.includes("dropped 1 action it sent before its robot connection was open")), log.lines.join("\n"))
    }).pipe(Effect.scoped, Effect.provide(log.layer))
  }, liveTimeout)

  it.live("while no robot answers, a client's connection is ended after upstreamTimeout, with one WARN per outage", () => {
    const log = logLines()
    return Effect.gen(function*() {
      const robotNet = MemoryTransport.make({ address: "memory://robot" })
      const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
      // Short, though it also bounds next's robot connection below: with the robot serving, that connection
      // opens in the step that starts the timeout, before its timer is set, so no stall can run it out.
      yield* runProxy(proxyNet.server, robotNet.client, { upstreamTimeout: "50 millis" })
      for (let i = 0; i < 2; i++) {
        const client = yield* rawClient(proxyNet.client)
        yield* Effect.ignore(client.connection.send(action(1)))
        yield* Deferred.await(client.ended)
        assert.strictEqual(yield* Queue.size(client.received), 0)
      }
      const warnings = log.lines.filter((l) => l.startsWith("WARN") && l.includes("no robot at memory://robot"))
      assert.strictEqual(warnings.length, 1, log.lines.join("\n"))
      assert.include(warnings[0], "no server is serving, for 50ms")
      assert.include(warnings[0], "1 frame it sent was not forwarded (1 action)")

      const applied = yield* Ref.make<ReadonlyArray<number>>([])
      yield* startRobot(robotNet.server, applied)
      const next = yield* rawClient(proxyNet.client)
      yield* next.connection.send(action(2))
      yield* until(Effect.map(Ref.get(applied), (a) => a.length > 0))
      assert.deepStrictEqual(yield* Ref.get(applied), [2])
      assert.isTrue(log.lines.some((l) => l.startsWith("INFO") && l.includes("memory://robot answers again (2 client connections ended meanwhile)")), log.lines.join("\n"))
    }).pipe(Effect.scoped, Effect.provide(log.layer))
  }, liveTimeout)

  it.live("a lost robot connection ends the client connection through it (a WARN says so); the restarted robot never gets what was sent on it", () => {
    const log = logLines()
    return Effect.gen(function*() {
      const robotNet = MemoryTransport.make({ address: "memory://robot" })
      const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
      yield* runProxy(proxyNet.server, robotNet.client, { upstreamTimeout: "1 hour" })
      const first = yield* Ref.make<ReadonlyArray<number>>([])
      const robot = yield* startRobot(robotNet.server, first)

      const client = yield* rawClient(proxyNet.client)
      yield* client.connection.send(action(1))
      yield* until(Effect.map(Ref.get(first), (a) => a.length > 0))
      yield* Scope.close(robot, Exit.void)
      yield* Deferred.await(client.ended)
      assert.isTrue(
        log.lines.some((l) =>
          l.startsWith("WARN") && l.includes("lost the robot connection of memory://proxy ← client 1") &&
          l.endsWith("all it sent was forwarded (the robot may not have read the last of it)")
        ),
        log.lines.join("\n")
      )
      // Sends on the ended connection go nowhere: it is closed.
      const late = yield* Effect.exit(client.connection.send(action(3)))
      assert.isTrue(Exit.isFailure(late))

      const second = yield* Ref.make<ReadonlyArray<number>>([])
      yield* startRobot(robotNet.server, second)
      const again = yield* rawClient(proxyNet.client)
      yield* again.connection.send(action(4))
      yield* until(Effect.map(Ref.get(second), (a) => a.length > 0))
      assert.deepStrictEqual(yield* Ref.get(second), [4])
      assert.deepStrictEqual(yield* Ref.get(first), [1])
    }).pipe(Effect.scoped, Effect.provide(log.layer))
  }, liveTimeout)

  it.live("a PolicyClient through the proxy notices the robot's loss, reconnects by itself, and what it sends before the robot is back is never applied", () =>
    Effect.gen(function*() {
      const robotNet = MemoryTransport.make({ address: "memory://robot" })
      const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
      yield* runProxy(proxyNet.server, robotNet.client, { upstreamTimeout: "1 hour" })
      const first = yield* Ref.make<ReadonlyArray<number>>([])
      const robot = yield* startRobot(robotNet.server, first)
      const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, proxyNet.client))
      yield* client.sendAction([1, 0, 0])
      yield* until(Effect.map(Ref.get(first), (a) => a.length > 0))

      yield* Scope.close(robot, Exit.void)
      // Lost, and connected again: to the proxy, which holds it until a robot answers.
      yield* until(Effect.map(SubscriptionRef.get(client.reconnects), (n) => n >= 1))
      yield* client.sendAction([3, 0, 0])
      const second = yield* Ref.make<ReadonlyArray<number>>([])
      yield* startRobot(robotNet.server, second)
      assert.deepStrictEqual(yield* client.getMetadata, metadata)
      yield* client.sendAction([2, 0, 0])
      yield* until(Effect.map(Ref.get(second), (a) => a.length > 0))
      assert.deepStrictEqual(yield* Ref.get(second), [2])
      assert.deepStrictEqual(yield* Ref.get(first), [1])
    }).pipe(Effect.scoped), liveTimeout)

  it.live("while the robot connection opens, requests wait and are answered in order; of the actions only the newest waits, the older are dropped and counted", () => {
    const log = logLines()
    return Effect.gen(function*() {
      const { applied, client, gate, proxy } = yield* gatedPassage({ maxHeldActionAge: "1 hour" })
      yield* client.connection.send(action(6))
      yield* client.connection.send(action(7))
      yield* client.connection.send(encodeFrame({ type: "metadata" }))
      yield* client.connection.send(encodeFrame({ type: "obs_request" }))
      // The proxy has taken all four (each is handled before the next is taken).
      yield* until(Effect.sync(() => proxy.taken.frames >= 4))
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* Queue.take(client.received), "metadata_response")
      assert.strictEqual(yield* Queue.take(client.received), "obs_response")
      // Sent before the requests, so applied before they were answered.
      assert.deepStrictEqual(yield* Ref.get(applied), [7], "the newest action waited; the one before it was dropped")
      yield* client.connection.send(action(8))
      yield* until(Effect.map(Ref.get(applied), (a) => a.length > 1))
      assert.deepStrictEqual(yield* Ref.get(applied), [7, 8])
      assert.isTrue(
        log.lines.some((l) => l.startsWith("WARN") && l.includes("dropped 1 action it sent before its robot connection was open")),
        log.lines.join("\n")
      )
    }).pipe(Effect.scoped, Effect.provide(log.layer))
  }, liveTimeout)

  it.live("an action that waited maxHeldActionAge or longer for the robot connection is dropped, not forwarded late", () => {
    const log = logLines()
    return Effect.gen(function*() {
      const { applied, client, gate, proxy } = yield* gatedPassage({ maxHeldActionAge: "5 millis" })
      yield* client.connection.send(action(7))
      yield* client.connection.send(encodeFrame({ type: "metadata" }))
      // The metadata request is taken only once the action has been held (one frame at a time).
      yield* until(Effect.sync(() => proxy.taken.frames >= 2))
      const held = yield* Clock.currentTimeMillis
      // A condition on the clock, not a wait of a set time: the action is now older than allowed.
      yield* until(Effect.map(Clock.currentTimeMillis, (t) => t - held >= 10))
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* Queue.take(client.received), "metadata_response")
      yield* client.connection.send(action(8))
      yield* until(Effect.map(Ref.get(applied), (a) => a.length > 0))
      assert.deepStrictEqual(yield* Ref.get(applied), [8], "the action that waited too long was dropped")
      assert.isTrue(
        log.lines.some((l) =>
          l.startsWith("WARN") &&
          l.includes("dropped 1 action it sent before its robot connection was open (only the newest may wait for it, less than 5ms, and only while the robot answers)")
        ),
        log.lines.join("\n")
      )
    }).pipe(Effect.scoped, Effect.provide(log.layer))
  }, liveTimeout)

  it("heldTooLong: an action waits less than maxHeldActionAge, and never one sent while no robot answered", () => {
    assert.isFalse(RecordingProxy.heldTooLong(1000, 1099, 100, false))
    assert.isTrue(RecordingProxy.heldTooLong(1000, 1100, 100, false), "at the limit")
    assert.isTrue(RecordingProxy.heldTooLong(1000, 1000, 0, false), "0 drops every action")
    assert.isTrue(RecordingProxy.heldTooLong(1000, 1001, 100, true))
  })

  it.live("an action held as the robot comes back from an outage is dropped, though the robot answered this client at once", () => {
    const log = logLines()
    return Effect.gen(function*() {
      const robotNet = MemoryTransport.make({ address: "memory://robot" })
      const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
      const applied = yield* Ref.make<ReadonlyArray<number>>([])
      const robot = { up: false, gate: yield* Deferred.make<void>() }
      const upstream = ClientTransport.of({
        address: robotNet.client.address,
        connect: Effect.suspend(() =>
          robot.up
            ? Effect.andThen(Deferred.await(robot.gate), robotNet.client.connect)
            : Effect.fail(new TransportError({ reason: "Unavailable", address: "memory://robot", detail: "down" }))
        )
      })
      const proxy = pulled(proxyNet.server)
      // upstreamTimeout also bounds next's robot connection, which waits for the gate the test opens once the
      // proxy has taken next's frames: longer than any stall of this process (seconds, on a busy machine).
      // It is also how long the outage's client waits to be turned away.
      yield* runProxy(proxy.service, upstream, { upstreamTimeout: "4 seconds", maxHeldActionAge: "1 hour" })
      // Turned away while no robot answers: the outage.
      const early = yield* rawClient(proxyNet.client)
      yield* Deferred.await(early.ended)
      yield* startRobot(robotNet.server, applied)
      robot.up = true
      // The next client acts at once, as one turned away in the outage and reconnecting would.
      const next = yield* rawClient(proxyNet.client)
      const before = proxy.taken.frames
      yield* next.connection.send(action(5))
      yield* next.connection.send(encodeFrame({ type: "metadata" }))
      yield* until(Effect.sync(() => proxy.taken.frames >= before + 2))
      yield* Deferred.succeed(robot.gate, undefined)
      assert.strictEqual(yield* Queue.take(next.received), "metadata_response")
      yield* next.connection.send(action(6))
      yield* until(Effect.map(Ref.get(applied), (a) => a.length > 0))
      assert.deepStrictEqual(yield* Ref.get(applied), [6], "the action sent as the outage ended was dropped")
      assert.isTrue(log.lines.some((l) => l.startsWith("WARN") && l.includes("dropped 1 action it sent before")), log.lines.join("\n"))
    }).pipe(Effect.scoped, Effect.provide(log.layer))
  }, liveTimeout)

  it.live("a robot that refuses the proxy (HTTP 401: its token) refuses the client too (1008), saying so, not \"no robot answers\"", () => {
    const log = logLines()
    return Effect.gen(function*() {
      const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
      const refusing = ClientTransport.of({
        address: "memory://robot",
        connect: Effect.fail(
          new TransportError({ reason: "Refused", address: "memory://robot", detail: "the server requires an access token (HTTP 401)" })
        )
      })
      const proxy = closable(proxyNet.server)
      yield* runProxy(proxy.service, refusing, { upstreamTimeout: "1 hour" })
      yield* rawClient(proxyNet.client)
      yield* until(Effect.sync(() => proxy.closes.length > 0))
      assert.deepStrictEqual(proxy.closes, [[1008, "chiral record: the robot refused the proxy's connection"]])
      assert.isTrue(
        log.lines.some((l) =>
          l.startsWith("WARN") &&
          l.includes("the robot at memory://robot refused the proxy's connection (Refused (memory://robot): the server requires an access token (HTTP 401))") &&
          l.endsWith("until the robot lets the proxy in")
        ),
        log.lines.join("\n")
      )
    }).pipe(Effect.scoped, Effect.provide(log.layer))
  }, liveTimeout)

  it.live("a robot that never answers holds a client's connection for upstreamTimeout at most", () => {
    const log = logLines()
    return Effect.gen(function*() {
      const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
      const silent = ClientTransport.of({ address: "memory://silent", connect: Effect.never })
      yield* runProxy(proxyNet.server, silent, { upstreamTimeout: "50 millis" })
      const client = yield* rawClient(proxyNet.client)
      yield* Deferred.await(client.ended)
      assert.isTrue(
        log.lines.some((l) => l.startsWith("WARN") && l.includes("no robot at memory://silent (no answer within")),
        log.lines.join("\n")
      )
    }).pipe(Effect.scoped, Effect.provide(log.layer))
  }, liveTimeout)

  it.live("recording, the robot's metadata is recorded though the client never asks for it; the client's answers stay its own", () =>
    Effect.gen(function*() {
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "chiral-proxy-")), "metadata.mcap")
      const robotNet = MemoryTransport.make({ address: "memory://robot" })
      const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
      const applied = yield* Ref.make<ReadonlyArray<number>>([])
      yield* startRobot(robotNet.server, applied)
      const scope = yield* Scope.make()
      const recorder = yield* Recorder.make({ path: file }).pipe(Scope.provide(scope))
      yield* runProxy(proxyNet.server, robotNet.client, { recorder }).pipe(Scope.provide(scope))

      const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, proxyNet.client))
      const obs = yield* client.getObs
      assert.deepStrictEqual(obs.cameras.map((c) => c.name), ["front"])
      yield* client.sendAction([5, 0, 0])
      yield* until(Effect.map(Ref.get(applied), (a) => a.length > 0))
      // The proxy's metadata answer, obs_request, its answer, the action.
      yield* until(Effect.sync(() => recorder.stats().offered >= 4))
      yield* Scope.close(scope, Exit.void)

      const episode = yield* Episode.open(file)
      assert.deepStrictEqual(episode.metadata, metadata)
      assert.deepStrictEqual(episode.actions.map((a) => a.values), [[5, 0, 0]])
      assert.strictEqual(episode.observations.length, 1)
    }).pipe(Effect.scoped), liveTimeout)

  it.live("where the transport can say why, the client's connection is closed with 1013 while no robot answers, 1011 when its robot connection is lost", () =>
    Effect.gen(function*() {
      const robotNet = MemoryTransport.make({ address: "memory://robot" })
      const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
      const proxy = closable(proxyNet.server)
      // Short: with the robot serving, client's robot connection opens before the timeout's timer is set (see above).
      yield* runProxy(proxy.service, robotNet.client, { upstreamTimeout: "50 millis" })
      const early = yield* rawClient(proxyNet.client)
      yield* Deferred.await(early.ended)
      assert.deepStrictEqual(proxy.closes, [[1013, "chiral record: no robot answers"]])

      const applied = yield* Ref.make<ReadonlyArray<number>>([])
      const robot = yield* startRobot(robotNet.server, applied)
      const client = yield* rawClient(proxyNet.client)
      yield* client.connection.send(action(1))
      yield* until(Effect.map(Ref.get(applied), (a) => a.length > 0))
      yield* Scope.close(robot, Exit.void)
      yield* Deferred.await(client.ended)
      assert.deepStrictEqual(proxy.closes[1], [1011, "chiral record: the robot connection was lost"])
    }).pipe(Effect.scoped), liveTimeout)
})
