import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Queue, Scope, Stream } from "effect"
import { ClientTransport, MemoryTransport, PolicyClient, ServerTransport } from "@chiral/core"
import { ReceivePool } from "@chiral/protocol"
import * as Recycling from "@chiral/testing/Recycling"
import { fitReason } from "../src/CloseFrame.js"
import { WebSocketTransport } from "../src/index.js"
import * as RawWebSocket from "@chiral/testing/RawWebSocket"
import * as Lookup from "@chiral/testing/Lookup"
import * as Pair from "@chiral/testing/Pair"
import * as Robot from "@chiral/testing/Robot"
import * as NodeWS from "@effect/platform-node/NodeWS"

const echo = ServerTransport.use((server) =>
  server.serve((connection) =>
    connection.frames.pipe(Stream.runForEach((frame) => connection.send([frame.subarray(0, 1), frame.subarray(1)])))
  )
)

const roundTrip = Effect.gen(function*() {
  const client = yield* ClientTransport
  const connection = yield* client.connect
  const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => i & 0xff)
  yield* connection.send(Uint8Array.of(1, 2, 3))
  yield* connection.send([Uint8Array.of(4), new Uint8Array(0), Uint8Array.of(5, 6)])
  yield* connection.send(big)
  const frames = yield* connection.frames.pipe(Stream.take(3), Stream.runCollect)
  assert.deepStrictEqual(Array.from(frames[0]!), [1, 2, 3])
  assert.deepStrictEqual(Array.from(frames[1]!), [4, 5, 6])
  assert.strictEqual(frames[2]!.byteLength, big.byteLength)
  assert.isTrue(frames[2]!.every((b, i) => b === (i & 0xff)))
}).pipe(Effect.scoped)

describe("Transport", () => {
  for (const fragmentParts of [true, false]) {
    it.live(`WebSocket: frames and multi-part frames round-trip as single messages (fragmentParts: ${fragmentParts})`, () =>
      Effect.gen(function*() {
        const server = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0, fragmentParts })
        yield* Effect.forkScoped(echo.pipe(Effect.provideService(ServerTransport, server)))
        yield* roundTrip.pipe(Effect.provide(WebSocketTransport.layerClient(server.address)))
      }).pipe(Effect.scoped))
  }

  it.live("memory: frames and multi-part frames round-trip", () =>
    Effect.gen(function*() {
      yield* Effect.forkScoped(echo)
      yield* Effect.yieldNow
      yield* roundTrip
    }).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer())))

  it.live("WebSocket: nobody listening is Unavailable", () =>
    Effect.gen(function*() {
      const exit = yield* ClientTransport.use((c) => c.connect).pipe(
        Effect.scoped,
        Effect.provide(WebSocketTransport.layerClient("ws://127.0.0.1:1")),
        Effect.exit
      )
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = exit.cause.reasons[0]
        assert.strictEqual(error?._tag, "Fail")
        if (error?._tag === "Fail") assert.strictEqual(error.error.reason, "Unavailable")
      }
    }))

  it.live("WebSocket: interrupting serve closes client connections", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0 })
      const serving = yield* Effect.forkScoped(echo.pipe(Effect.provideService(ServerTransport, server)))
      const client = WebSocketTransport.makeClient(server.address)
      const connection = yield* client.connect
      yield* connection.send(Uint8Array.of(9))
      const received = yield* Queue.unbounded<Uint8Array>()
      const reading = yield* Effect.forkScoped(connection.frames.pipe(Stream.runForEach((frame) => Queue.offer(received, frame))))
      // the echo proves the connection is served; then the server stops
      assert.deepStrictEqual(Array.from(yield* Queue.take(received)), [9])
      yield* Fiber.interrupt(serving)
      // the client's frames end: the server closed the connection
      yield* Fiber.join(reading)
      assert.strictEqual(yield* Queue.size(received), 0)
    }).pipe(Effect.scoped))
})

describe("WebSocket shutdown", () => {
  it.live("the server closes a connection with 1000 when its handler is done, 1001 (going away) when it stops serving", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0 })
      // Done with a client after its first frame; the others are served until the server stops.
      const serving = yield* Effect.forkScoped(server.serve((connection) => Stream.runDrain(Stream.take(connection.frames, 1))))
      const closeCode = (ws: NodeWS.WebSocket) =>
        Effect.callback<number>((resume) => void ws.once("close", (code) => resume(Effect.succeed(code))))
      const open = (ws: NodeWS.WebSocket) => Effect.callback<void>((resume) => void ws.once("open", () => resume(Effect.void)))
      const done = new NodeWS.WebSocket(server.address)
      const served = new NodeWS.WebSocket(server.address)
      yield* Effect.addFinalizer(() => Effect.sync(() => [done, served].forEach((ws) => ws.terminate())))
      yield* open(done)
      yield* open(served)
      const doneClosed = yield* Effect.forkScoped(closeCode(done))
      const servedClosed = yield* Effect.forkScoped(closeCode(served))
      done.send(Uint8Array.of(1))
      assert.strictEqual(yield* Fiber.join(doneClosed), 1000)
      yield* Fiber.interrupt(serving)
      assert.strictEqual(yield* Fiber.join(servedClosed), 1001)
    }).pipe(Effect.scoped))

  it.live("a handler's Connection.close is the close its client sees: the code, and the reason cut to 123 bytes between characters", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0 })
      const long = `chiral: reset failed: ${"ß€😀".repeat(40)}`
      // Closes a client after its first frame, with the reason that frame names.
      yield* Effect.forkScoped(server.serve((connection) =>
        Stream.runForEach(Stream.take(connection.frames, 1), (frame) =>
          connection.close!(frame[0] === 1 ? 1011 : frame[0] === 2 ? 1008 : 1005, frame[0] === 1 ? long : "short"))
      ))
      const closed = (payload: number) =>
        Effect.acquireRelease(
          Effect.sync(() => new NodeWS.WebSocket(server.address)),
          (ws) => Effect.sync(() => ws.terminate())
        ).pipe(
          Effect.flatMap((ws) =>
            Effect.callback<readonly [number, Buffer]>((resume) => {
              ws.once("open", () => ws.send(Uint8Array.of(payload)))
              ws.once("close", (code, reason) => resume(Effect.succeed([code, reason])))
            })
          )
        )
      const [code, reason] = yield* closed(1)
      assert.strictEqual(code, 1011)
      assert.isAtMost(reason.byteLength, 123)
      // `ws` fails a close whose reason is not valid UTF-8 (1007): this one is whole characters.
      assert.strictEqual(reason.toString(), fitReason(long))
      assert.isTrue(long.startsWith(reason.toString().slice(0, -1)))
      assert.deepStrictEqual((yield* closed(2)).map(String), ["1008", "short"])
      // 1005 says no code was sent; it cannot be sent: 1011 instead
      assert.deepStrictEqual((yield* closed(3)).map(String), ["1011", "short"])
    }).pipe(Effect.scoped))

  it.live("a peer that never answers the close handshake does not hold the server open", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0, closeGraceMillis: 50 }).pipe(
        Scope.provide(scope)
      )
      yield* Effect.forkIn(echo.pipe(Effect.provideService(ServerTransport, server)), scope)
      // reads nothing, so it never answers the server's close frame
      yield* RawWebSocket.connect(server.address)
      yield* Effect.sleep(20)
      // without the grace period this would wait for ws's 30 s close timeout (and the test's 5 s limit)
      yield* Scope.close(scope, Exit.void)
      const refused = yield* ClientTransport.use((c) => c.connect).pipe(
        Effect.scoped,
        Effect.provide(WebSocketTransport.layerClient(server.address)),
        Effect.flip
      )
      assert.strictEqual(refused.reason, "Unavailable")
    }).pipe(Effect.scoped))

  it.live("a client connecting while the server shuts down is refused before the upgrade (503), not left unserved", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0, closeGraceMillis: 60_000 }).pipe(
        Scope.provide(scope)
      )
      const served = yield* Queue.unbounded<string>()
      yield* Effect.forkIn(
        server.serve((connection) => Effect.andThen(Queue.offer(served, connection.id), Effect.never)),
        scope
      )
      // reads nothing, so it never answers the close frame: shutdown waits out its grace period
      const first = yield* RawWebSocket.connect(server.address)
      yield* Queue.take(served)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      // shutdown has begun once the server sends `first` its close frame
      yield* Effect.callback<void>((resume) => {
        first.socket.once("data", () => resume(Effect.void))
        first.socket.resume()
      })
      // the listener is still open during the grace period; a newcomer is closed without being served
      const late = yield* RawWebSocket.upgradeStatus(server.address)
      assert.strictEqual(late, 503)
      assert.strictEqual(yield* Queue.size(served), 0)
      first.socket.destroy()
      yield* Fiber.join(closing)
    }).pipe(Effect.scoped))
})

describe("WebSocket client with receiveBuffers", () => {
  /** Our server on a free port and a client receiving with `receiveBuffers`. */
  const recycling = (receiveBuffers: WebSocketTransport.ClientOptions["receiveBuffers"]) =>
    Layer.unwrap(
      Effect.map(
        ServerTransport,
        (server) => Layer.succeed(ClientTransport, WebSocketTransport.makeClient(server.address, { receiveBuffers }))
      )
    ).pipe(Layer.provideMerge(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })))

  const pool = new ReceivePool({ maxFree: 2 })

  it.live("\"recycled\": a held observation stays whole while later ones' memory is recycled", () =>
    Effect.gen(function*() {
      const { show } = yield* Recycling.startRobot
      const client = yield* PolicyClient.make({ quiet: true })
      yield* Recycling.heldObservationStaysWhole(client, show)
      assert.isAtLeast(pool.stats().reused, 3, "later observations arrived in recycled memory")
      assert.isAtMost(pool.stats().free, 2)
    }).pipe(Effect.scoped, Effect.provide(recycling(pool))))

  it.live("\"fresh\" (default): nothing is lent", () =>
    Recycling.freshObservationIsNotLent.pipe(Effect.scoped, Effect.provide(recycling(undefined))))
})

describe("WebSocket client: host names that do not resolve (a scripted resolver, not the machine's DNS)", () => {
  const attempt = (uri: string, options: WebSocketTransport.ClientOptions) =>
    Effect.flip(Effect.scoped(WebSocketTransport.makeClient(uri, options).connect))

  for (const thread of ["worker", "main"] as const) {
    it.live(`ws:// (dispatcher thread ${thread}): ENOTFOUND is InvalidAddress naming the host; EAI_AGAIN is Unavailable, also naming it`, () =>
      Effect.gen(function*() {
        const missing = Lookup.scripted("ENOTFOUND")
        const error = yield* attempt("ws://robto.local:8765", { thread, lookup: missing.lookup })
        assert.deepStrictEqual(missing.asked, ["robto.local"])
        assert.strictEqual(error.reason, "InvalidAddress")
        assert.deepStrictEqual(error.unresolved, { host: "robto.local", code: "ENOTFOUND" })
        assert.strictEqual(error.message, `InvalidAddress (ws://robto.local:8765): cannot resolve host "robto.local" (ENOTFOUND)`)

        const later = yield* attempt("ws://robot.local:8765/?token=secret", { thread, lookup: Lookup.scripted("EAI_AGAIN").lookup })
        assert.strictEqual(later.reason, "Unavailable")
        assert.deepStrictEqual(later.unresolved, { host: "robot.local", code: "EAI_AGAIN" })
        assert.strictEqual(later.address, "ws://robot.local:8765/?token=***")
        assert.include(later.detail, `cannot resolve host "robot.local" (EAI_AGAIN`)
      }))
  }

  it.live("ws://: a resolver that gives no answer before the open timeout is named too (ETIMEOUT), not taken for a TCP timeout", () =>
    Effect.gen(function*() {
      const error = yield* attempt("ws://robot.local:8765", { lookup: Lookup.scripted("never").lookup, openTimeoutMillis: 100 })
      assert.strictEqual(error.reason, "Unavailable")
      assert.deepStrictEqual(error.unresolved, { host: "robot.local", code: "ETIMEOUT" })
      assert.strictEqual(error.detail, `cannot resolve host "robot.local" (ETIMEOUT: no answer from the resolver within 0.1 s)`)
    }))

  it.live("wss://: ENOTFOUND is InvalidAddress naming the host", () =>
    Effect.gen(function*() {
      const error = yield* attempt("wss://robto.local:8765", { lookup: Lookup.scripted("ENOTFOUND").lookup })
      assert.strictEqual(error.reason, "InvalidAddress")
      assert.deepStrictEqual(error.unresolved, { host: "robto.local", code: "ENOTFOUND" })
    }))

  it.live("a name that resolves to nobody listening is still Unavailable, without unresolved", () =>
    Effect.gen(function*() {
      const error = yield* attempt("ws://robot.local:1", { lookup: Lookup.scripted("127.0.0.1").lookup })
      assert.strictEqual(error.reason, "Unavailable")
      assert.isUndefined(error.unresolved)
    }))

  it.live("PolicyClient: ENOTFOUND fails the first connection at once; EAI_AGAIN is retried, warned about once, until the name resolves", () =>
    Effect.gen(function*() {
      const missing = Lookup.scripted("ENOTFOUND")
      // (without the fix, this waited for the openTimeout and said Unavailable)
      const error = yield* Effect.flip(
        PolicyClient.make({ quiet: true, openTimeout: "20 seconds" }).pipe(
          Effect.provide(WebSocketTransport.layerClient("ws://robto.local:8765", { lookup: missing.lookup }))
        )
      )
      assert.strictEqual(error.message, `InvalidAddress (ws://robto.local:8765): cannot resolve host "robto.local" (ENOTFOUND)`)
      assert.strictEqual(missing.asked.length, 1)

      const server = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0 })
      yield* Pair.startServerOnly().pipe(Effect.provideService(ServerTransport, server))
      const port = new URL(server.address).port
      const logs = yield* Robot.captureLogs
      const booting = Lookup.scripted("EAI_AGAIN", "EAI_AGAIN", "EAI_AGAIN", "127.0.0.1")
      const client = yield* PolicyClient.make({ quiet: true }).pipe(
        Effect.provide(WebSocketTransport.layerClient(`ws://robot.local:${port}`, { lookup: booting.lookup })),
        Effect.provide(logs.layer)
      )
      assert.strictEqual((yield* client.getObs).cameras.length, 2)
      assert.strictEqual(booting.asked.length, 4)
      assert.deepStrictEqual(logs.lines.filter((line) => line.includes("resolve")), [
        `Warn: chiral: ws://robot.local:${port}: cannot resolve host "robot.local" (EAI_AGAIN: a temporary failure: the resolver could not answer now); trying again`
      ])
    }).pipe(Effect.scoped))
})
