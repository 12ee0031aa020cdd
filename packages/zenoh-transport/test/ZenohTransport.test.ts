/**
 * PolicyServer ↔ PolicyClient over ZenohTransport on real loopback TCP: the same
 * API as over WebSocket, the references' probing, a 17 MB observation, a server
 * that closes or vanishes, garbage on the request key, key prefixes.
 */
import { decodeFrame, encodeFrame, Tensor } from "@chiral/protocol"
import { type Session, Zenoh, ZenohLinkError } from "@chiral/zenoh"
import { describe, expect, it } from "@effect/vitest"
import * as DiagnosticsChannel from "node:diagnostics_channel"
import * as Net from "node:net"
import { Effect, Exit, Fiber, Layer, Option, Queue, Ref, Result, Schedule, Stream, SubscriptionRef } from "effect"
import {
  ClientTransport,
  type Connection,
  PolicyClient,
  PolicyServer,
  RequestError,
  isResolveCode,
  ServerTransport,
  TransportError
} from "@chiral/core"
import { ZenohTransport } from "../src/index.js"
import { decodeError, encodeError } from "../src/ZenohSessionWorker.js"
import * as Lookup from "@chiral/testing/Lookup"
import { failure } from "@chiral/testing/Exits"
import * as Pair from "@chiral/testing/Pair"
import { relayTo } from "@chiral/testing/Relay"
import * as Recycling from "@chiral/testing/Recycling"
import * as Robot from "@chiral/testing/Robot"

const fast = { probeInterval: 50, probeTimeout: 300 } as const
/**
 * For a raw `connect` that must succeed (a raw connect is not retried): a
 * stall of this process longer than probeTimeout would make it Unavailable.
 * `fast` stays where Unavailable is what the test expects.
 */
const patient = { probeInterval: 50, probeTimeout: 5000 } as const

/** A Zenoh server on a free loopback port and clients that connect to it. */
const zenoh = (
  client: ZenohTransport.ClientOptions = fast,
  server: ZenohTransport.ServerOptions = {}
): Pair.Transports =>
  Layer.unwrap(
    Effect.map(
      ServerTransport,
      (s) => Layer.succeed(ClientTransport, ZenohTransport.makeClient(s.address, client))
    )
  ).pipe(Layer.provideMerge(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0, ...server })))

const listen = Zenoh.listen({ host: "127.0.0.1", port: 0 })
const locatorOf = (listener: Zenoh.Listener) => `tcp/127.0.0.1:${listener.address.port}`
const text = (s: string) => new TextEncoder().encode(s)
const str = (b: Uint8Array) => new TextDecoder().decode(b)
const decodeType = (frame: Uint8Array) => {
  const decoded = decodeFrame(frame)
  return Result.isSuccess(decoded) ? decoded.success.type : `error: ${decoded.failure.message}`
}

/** A stand-in server on a raw session: hands every request to `answer`, publishes what it returns. */
const fakeServer = (
  session: Session,
  answer: (request: Uint8Array, n: number) => Uint8Array | undefined
) =>
  Effect.gen(function*() {
    const seen = yield* Ref.make<ReadonlyArray<Uint8Array>>([])
    const requests = yield* session.declareSubscriber(ZenohTransport.requestKey)
    yield* requests.pipe(
      Stream.runForEach((sample) =>
        Effect.gen(function*() {
          const n = (yield* Ref.updateAndGet(seen, (list) => [...list, sample.payload])).length
          const reply = answer(sample.payload, n)
          if (reply !== undefined) yield* session.put(ZenohTransport.replyKey, reply)
        })
      ),
      Effect.forkScoped
    )
    return seen
  })

describe("ZenohTransport: PolicyServer ↔ PolicyClient", () => {
  it.live("metadata, reset, getObs, step and apply_action with the capture timestamps", () =>
    Effect.gen(function*() {
      const { client, recorder, server } = yield* Pair.startPair()
      expect(server.address).toMatch(/^tcp\/127\.0\.0\.1:\d+$/)
      expect(client.address).toBe(server.address)
      yield* server.updateImage("wrist", new Uint8Array(72).map((_, i) => i))
      yield* server.updateDepth("wrist", new Float32Array(24).fill(0.25))
      yield* server.updateProprio("joint_pos", [0, 1, 2, 3, 4, 5, 6])

      expect(yield* client.getMetadata).toEqual({ action_shape: [7], cameras: ["wrist", "scene"] })
      const { info, obs } = yield* client.reset
      expect(info).toEqual({ episode: 1 })
      expect(obs.extra).toEqual({ source: "reset", episode: 1 })

      const got = yield* client.getObs
      expect(got.extra).toEqual({ source: "get_obs", n: 1 })
      expect(Array.from(got.cameras[0]!.image.data.slice(0, 4) as ArrayLike<number>)).toEqual([0, 1, 2, 3])
      expect(Array.from(got.cameras[0]!.depth!.data.slice(0, 2) as ArrayLike<number>)).toEqual([0.25, 0.25])
      expect(Tensor.toArray(got.proprios[0]!.data)).toEqual([0, 1, 2, 3, 4, 5, 6])

      yield* client.sendAction([0.5, -1, 2, 0, 0, 0, 1])
      const applied = yield* Queue.take(recorder.actions)
      expect(Tensor.toArray(applied.action)).toEqual([0.5, -1, 2, 0, 0, 0, 1])
      expect(applied.context.obsTimestamps).toEqual({
        wrist: got.cameras[0]!.timestamp,
        scene: got.cameras[1]!.timestamp
      })
      expect(applied.context.connection).toContain("chiral/c2s")

      const step = yield* client.step([[1, 2, 3, 4, 5, 6, 7]])
      expect(step).toMatchObject({ reward: 0, terminated: false, truncated: false, info: {} })
      expect((yield* Queue.take(recorder.actions)).action.shape).toEqual([1, 7])
      // the probe's metadata request was answered but never reached the client's API
      expect(yield* server.connections).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(zenoh())))

  it.live("a 17 MB observation (8 cameras 480×640 RGB + float32 depth) arrives intact", () =>
    Effect.gen(function*() {
      const names = Array.from({ length: 8 }, (_, i) => `cam${i}`)
      const server = yield* PolicyServer.make({
        cameras: names.map((name) => ({ name, height: 480, width: 640, channels: 3, hasDepth: true })),
        proprios: [{ name: "joint_pos", size: 7 }],
        handlers: { reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs })), applyAction: () => Effect.void }
      })
      for (let c = 0; c < names.length; c++) {
        yield* server.updateImage(names[c]!, new Uint8Array(480 * 640 * 3).map((_, i) => (i * 7 + c) & 0xff))
        yield* server.updateDepth(names[c]!, new Float32Array(480 * 640).map((_, i) => c + i / 1e6))
      }
      const client = yield* PolicyClient.make({ quiet: true })
      for (let round = 0; round < 2; round++) {
        const obs = yield* client.getObs
        expect(obs.cameras.map((c) => c.name)).toEqual(names)
        let bytes = 0
        for (let c = 0; c < names.length; c++) {
          const camera = obs.cameras[c]!
          const image = camera.image.data as Uint8Array
          const depth = camera.depth!.data as Float32Array
          bytes += image.byteLength + depth.byteLength
          // reassembled where the payload is aligned: the depth map is read in place, not copied
          expect(depth.buffer).toBe(image.buffer)
          expect(image.every((v, i) => v === ((i * 7 + c) & 0xff))).toBe(true)
          expect(depth[0]).toBe(c)
          expect(depth[480 * 640 - 1]).toBeCloseTo(c + (480 * 640 - 1) / 1e6, 5)
        }
        expect(bytes).toBe(8 * 480 * 640 * 7)
      }
    }).pipe(Effect.scoped, Effect.provide(zenoh())))

  it.live("large replies are reassembled into memory the policy's thread sent ahead, sized by the reply before", () =>
    Effect.gen(function*() {
      const width = 320
      const height = 240
      const server = yield* PolicyServer.make({
        cameras: [{ name: "cam", height, width, channels: 3 }],
        proprios: [],
        handlers: { reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs })), applyAction: () => Effect.void }
      })
      const client = yield* PolicyClient.make({ quiet: true })
      const buffers: Array<number> = []
      let used = 0
      for (let round = 0; round < 3; round++) {
        yield* server.updateImage("cam", new Uint8Array(width * height * 3).fill(round + 1))
        const image = (yield* client.getObs).cameras[0]!.image.data as Uint8Array
        expect(image.every((v) => v === round + 1)).toBe(true)
        buffers.push(image.buffer.byteLength)
        if (round === 0) used = image.buffer.byteLength
      }
      // the first into memory of the session thread's own, of the reply's size; the next into what
      // this thread allocated after the one before (SuppliedMemory.nextFor: its size and a sixteenth)
      expect(buffers).toEqual([used, used + Math.ceil(used / 16), used + Math.ceil(used / 16)])
    }).pipe(Effect.scoped, Effect.provide(zenoh())))

  it.live("obs stream and action dispatch together: every action arrives once, in order, stamped", () =>
    Effect.gen(function*() {
      const { client, recorder, server } = yield* Pair.startPair()
      yield* server.updateImage("wrist", new Uint8Array(72))
      yield* client.startObsStream(200)
      yield* client.observations.pipe(Stream.take(1), Stream.runDrain)
      yield* client.putActions(Array.from({ length: 20 }, (_, i) => [i, 0, 0, 0, 0, 0, 0]))
      yield* client.startActionDispatch(250)
      const applied = yield* Stream.fromQueue(recorder.actions).pipe(Stream.take(20), Stream.runCollect)
      expect(applied.map((a) => a.action.data[0])).toEqual(Array.from({ length: 20 }, (_, i) => i))
      for (const a of applied) expect(a.context.obsTimestamps["wrist"]).toBeGreaterThan(0)
      // requests keep their own answers while the stream runs
      const [reset, obs] = yield* Effect.all([client.reset, client.getObs], { concurrency: "unbounded" })
      expect(reset.obs.extra["source"]).toBe("reset")
      expect(obs.extra["source"]).toBe("get_obs")
      expect((yield* Ref.get(recorder.obsRequests)).length).toBeGreaterThan(1)
    }).pipe(Effect.scoped, Effect.provide(zenoh())))

  it.live("closing the server fails the client with a typed error", () =>
    Effect.gen(function*() {
      const serving = yield* Effect.forkChild(Effect.scoped(Effect.andThen(Pair.startServerOnly(), Effect.never)))
      const connection = yield* ClientTransport.use((t) => t.connect)
      const reading = yield* Effect.forkChild(Stream.runDrain(connection.frames))
      const client = yield* PolicyClient.make({ quiet: true })
      yield* client.getMetadata
      yield* client.startObsStream(100)
      yield* Fiber.interrupt(serving)
      yield* client.awaitDisconnect
      expect(failure(yield* Effect.exit(client.getObs))).toMatchObject({ _tag: "RequestError", reason: "Disconnected" })
      // the server said CLOSE: the frames end with Closed
      const error = failure(yield* Fiber.await(reading))
      expect(error).toBeInstanceOf(TransportError)
      expect(error.reason).toBe("Closed")
      expect(error.detail).toContain("closed the session")
    }).pipe(Effect.scoped, Effect.provide(zenoh(patient))))

  it.live("a server that vanishes without a word ends the client's frames with a typed error", () =>
    Effect.gen(function*() {
      const server = yield* ZenohTransport.makeServer({ host: "127.0.0.1", port: 0 })
      yield* Effect.gen(function*() {
        yield* Pair.startServerOnly()
        const relay = yield* relayTo(Number(server.address.split(":").pop()))
        const transport = ZenohTransport.makeClient(`tcp/127.0.0.1:${relay.port}`, patient)
        const connection = yield* transport.connect
        const reading = yield* Effect.forkChild(Stream.runDrain(connection.frames))
        const client = yield* PolicyClient.make({ quiet: true }).pipe(
          Effect.provideService(ClientTransport, transport)
        )
        expect((yield* client.getObs).cameras.length).toBe(2)
        yield* relay.cut()
        const error = failure(yield* Fiber.await(reading))
        expect(error).toMatchObject({ _tag: "TransportError", reason: "Closed" })
        yield* client.awaitDisconnect
        const request = failure(yield* Effect.exit(client.getMetadata))
        expect(request).toBeInstanceOf(RequestError)
        expect(request.reason).toBe("Disconnected")
        expect(failure(yield* Effect.exit(connection.send(Uint8Array.of(1))))).toMatchObject({ reason: "Closed" })
      }).pipe(Effect.provideService(ServerTransport, server))
    }).pipe(Effect.scoped))

  it.live("garbage published on chiral/c2s by another peer is logged and dropped; clients keep working", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const { client, server } = yield* Pair.startPair()
        const peer = yield* Zenoh.connect({ host: "127.0.0.1", port: Number(server.address.split(":").pop()) })
        yield* peer.awaitSubscribers("chiral/c2s")
        yield* peer.put("chiral/c2s", text("[   0] Pub from Pico!"))
        yield* peer.put("chiral/c2s", new Uint8Array(0))
        yield* peer.put("chiral/c2s", encodeFrame({ type: "metadata_response", data: {} }))
        // they travel on the other peer's socket: wait (bounded) until all three were seen
        yield* Effect.sync(() => logs.lines.filter((line) => line.includes("dropped frame")).length).pipe(
          Effect.filterOrFail((n) => n >= 3),
          Effect.retry({ schedule: Schedule.spaced(10), times: 200 }),
          Effect.ignore
        )
        expect((yield* client.getObs).cameras.length).toBe(2)
        expect(yield* client.getMetadata).toMatchObject({ action_shape: [7] })
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const dropped = logs.lines.filter((line) => line.includes("dropped frame from tcp/127.0.0.1:"))
      expect(dropped.length).toBe(3)
      expect(dropped.some((line) => line.includes("a client does not send metadata_response"))).toBe(true)
    }).pipe(Effect.provide(zenoh())))
})

describe("ZenohTransport server", () => {
  it.live("a connection per peer session, answered on its own; a handler that ends closes only its peer; serving again reopens the port", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const server = yield* ZenohTransport.makeServer({ host: "127.0.0.1", port: 0 })
      const ids = yield* Ref.make<ReadonlyArray<string>>([])
      // echoes every frame to its own connection; "bye" ends the handler, "fail" fails it
      const handler = (connection: Connection) =>
        Effect.gen(function*() {
          expect(connection.shared).toBe(false)
          yield* Ref.update(ids, (list) => [...list, connection.id])
          yield* connection.frames.pipe(
            Stream.map(str),
            Stream.takeWhile((frame) => frame !== "bye"),
            Stream.runForEach((frame): Effect.Effect<void, unknown> =>
              frame === "fail" ? Effect.fail("the handler gives up") : connection.send(text(`echo ${frame}`))
            )
          )
        })
      const serving = yield* Effect.forkChild(server.serve(handler).pipe(Effect.provide(logs.layer)))
      const port = Number(server.address.split(":").pop())
      // raw peers, since the probe would be taken for a request here
      const open = Effect.gen(function*() {
        const peer = yield* Zenoh.connect({ host: "127.0.0.1", port })
        const replies = yield* peer.declareSubscriber(ZenohTransport.replyKey)
        yield* peer.awaitSubscribers(ZenohTransport.requestKey)
        return { peer, replies: yield* Stream.toPull(replies) }
      })
      type Peer = { readonly peer: Zenoh.Connection; readonly replies: Effect.Effect<ReadonlyArray<{ readonly payload: Uint8Array }>, unknown> }
      const ask = (session: Peer, frame: string) =>
        session.peer.put(ZenohTransport.requestKey, text(frame)).pipe(
          Effect.andThen(session.replies),
          Effect.map((samples) => samples.map((s) => str(s.payload)))
        )
      const a = yield* open
      const b = yield* open
      expect(yield* ask(a, "a1")).toEqual(["echo a1"])
      // b gets its own answer first: a's never reached it
      expect(yield* ask(b, "b1")).toEqual(["echo b1"])
      expect(yield* ask(a, "a2")).toEqual(["echo a2"])
      const [idA, idB] = yield* Ref.get(ids)
      expect(idA).toContain(a.peer.zid)
      expect(idB).toContain(b.peer.zid)
      // a's handler ends: a's session is closed, b is served on
      yield* a.peer.put(ZenohTransport.requestKey, text("bye"))
      expect(failure(yield* Effect.exit(Effect.timeout(a.peer.closed, 5000)))._tag).toBe("ZenohCloseReceived")
      expect(yield* ask(b, "b2")).toEqual(["echo b2"])
      // a new session from the same client is a new connection
      const a2 = yield* open
      expect(yield* ask(a2, "again")).toEqual(["echo again"])
      expect((yield* Ref.get(ids)).length).toBe(3)
      // a failing handler is logged and closes its peer's session only
      yield* a2.peer.put(ZenohTransport.requestKey, text("fail"))
      expect(failure(yield* Effect.exit(Effect.timeout(a2.peer.closed, 5000)))._tag).toBe("ZenohCloseReceived")
      expect(logs.lines.some((l) => l.includes("the handler gives up") && l.includes(a2.peer.zid))).toBe(true)
      expect(yield* ask(b, "b3")).toEqual(["echo b3"])
      // stopping serve closes the session: the peer is told
      yield* Fiber.interrupt(serving)
      expect(failure(yield* Effect.exit(Effect.timeout(b.peer.closed, 5000)))._tag).toBe("ZenohCloseReceived")
      expect(failure(yield* Effect.exit(b.peer.put("chiral/c2s", text("x"))))._tag).toBe("ZenohCloseReceived")
      // a new serve listens again on the same address
      yield* Effect.forkChild(server.serve(handler))
      const c = yield* open.pipe(Effect.retry({ times: 20, schedule: Schedule.spaced(20) }))
      expect(yield* ask(c, "c1")).toEqual(["echo c1"])
    }).pipe(Effect.scoped))
})

describe("ZenohTransport client: probing", () => {
  it.live("sends metadata every probeInterval until answered, and swallows the answer", () =>
    Effect.gen(function*() {
      const listener = yield* listen
      const metadata = encodeFrame({ type: "metadata" })
      // ignores the first two probes; then answers probes with a marker and echoes anything else
      const seen = yield* fakeServer(listener, (request, n) =>
        Buffer.compare(request, metadata) === 0 ? (n >= 3 ? text(`probe answer ${n}`) : undefined) : request)
      const transport = ZenohTransport.makeClient(locatorOf(listener), { probeInterval: 150, probeTimeout: 5000 })
      expect(transport.waitingMessage).toBe(`chiral: waiting for Zenoh server at ${locatorOf(listener)} …`)
      const connection = yield* transport.connect
      const probes = yield* Ref.get(seen)
      expect(probes.length).toBe(3)
      for (const probe of probes) expect(Array.from(probe)).toEqual(Array.from(metadata))
      yield* connection.send(text("after"))
      yield* connection.send([text("in "), text("parts")])
      const frames = yield* connection.frames.pipe(Stream.take(2), Stream.runCollect)
      expect(frames.map(str)).toEqual(["after", "in parts"])
    }).pipe(Effect.scoped))

  it.live("a server slower than probeInterval answers every probe: the late answers are taken too, the frames start with the user's", () =>
    Effect.gen(function*() {
      const listener = yield* listen
      const metadata = encodeFrame({ type: "metadata" })
      // Answers nothing until it has seen three probes, then all three, in
      // order (a busy server); echoes anything else.
      const requests = yield* listener.declareSubscriber(ZenohTransport.requestKey)
      let probes = 0
      yield* requests.pipe(
        Stream.runForEach((sample) =>
          Effect.gen(function*() {
            if (Buffer.compare(sample.payload, metadata) !== 0) {
              return yield* listener.put(ZenohTransport.replyKey, sample.payload)
            }
            if (++probes !== 3) return
            for (let n = 1; n <= 3; n++) yield* listener.put(ZenohTransport.replyKey, text(`probe answer ${n}`))
          })
        ),
        Effect.forkScoped
      )
      const transport = ZenohTransport.makeClient(locatorOf(listener), { probeInterval: 50, probeTimeout: 5000 })
      const connection = yield* transport.connect
      expect(probes).toBe(3)
      yield* connection.send(text("first request"))
      const frames = yield* connection.frames.pipe(Stream.take(1), Stream.runCollect)
      expect(frames.map(str)).toEqual(["first request"])
    }).pipe(Effect.scoped))

  it.live("an answer that arrived while this process stalled past probeTimeout is read before giving up", () =>
    Effect.gen(function*() {
      const listener = yield* listen
      const metadata = encodeFrame({ type: "metadata" })
      // Answers the first probe after keeping this thread (the client's too)
      // busy past the client's probeTimeout: its wait's timer is due when the
      // thread wakes, before the answer it sent meanwhile is read.
      yield* fakeServer(listener, (request) => {
        if (Buffer.compare(request, metadata) !== 0) return request
        const until = performance.now() + 600
        while (performance.now() < until) { /* a busy machine */ }
        return text("probe answer")
      })
      const transport = ZenohTransport.makeClient(locatorOf(listener), { probeInterval: 50, probeTimeout: 300, thread: "main" })
      const connection = yield* transport.connect
      yield* connection.send(text("after"))
      const frames = yield* connection.frames.pipe(Stream.take(1), Stream.runCollect)
      expect(frames.map(str)).toEqual(["after"])
    }).pipe(Effect.scoped))

  it.live("a Zenoh peer that never answers is Unavailable after probeTimeout; one that starts serving is reached", () =>
    Effect.gen(function*() {
      const listener = yield* listen
      const transport = ZenohTransport.makeClient(locatorOf(listener), fast)
      // no subscriber at all, then a subscriber that does not answer
      const nobody = failure(yield* Effect.exit(Effect.scoped(transport.connect)))
      expect(nobody).toMatchObject({ reason: "Unavailable" })
      expect(nobody.detail).toContain("unanswered")
      yield* fakeServer(listener, () => undefined)
      expect(failure(yield* Effect.exit(Effect.scoped(transport.connect)))).toMatchObject({ reason: "Unavailable" })
      // a PolicyClient keeps retrying until a PolicyServer serves on that session
      const connecting = yield* Effect.forkChild(
        PolicyClient.make({ quiet: true }).pipe(
          Effect.flatMap((client) => client.getMetadata),
          Effect.provideService(ClientTransport, transport)
        )
      )
      yield* Effect.sleep(400)
      const server = yield* ZenohTransport.makeServerOn(listener, { address: locatorOf(listener) })
      yield* PolicyServer.make({
        handlers: {
          getMetadata: Effect.succeed({ late: true }),
          reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs })),
          applyAction: () => Effect.void
        }
      }).pipe(Effect.provideService(ServerTransport, server))
      expect(yield* Fiber.join(connecting)).toEqual({ late: true })
    }).pipe(Effect.scoped))

  it.live("addresses: nobody listening is Unavailable; malformed locators and prefixes are InvalidAddress", () =>
    Effect.gen(function*() {
      const reasonOf = (transport: ClientTransport["Service"]) =>
        Effect.map(Effect.exit(Effect.scoped(transport.connect)), (exit) => failure(exit).reason)
      expect(yield* reasonOf(ZenohTransport.makeClient("tcp/127.0.0.1:1", fast))).toBe("Unavailable")
      for (const bad of ["ws://127.0.0.1:7447", "127.0.0.1:7447", "tcp/127.0.0.1", "udp/127.0.0.1:7447"]) {
        expect(yield* reasonOf(ZenohTransport.makeClient(bad, fast))).toBe("InvalidAddress")
      }
      for (const keyPrefix of ["a/*", "**", "a//b", "/a", "x$*"]) {
        expect(yield* reasonOf(ZenohTransport.makeClient("tcp/127.0.0.1:1", { keyPrefix }))).toBe("InvalidAddress")
        const server = yield* Effect.exit(ZenohTransport.makeServer({ host: "127.0.0.1", port: 0, keyPrefix }))
        expect(failure(server).reason).toBe("InvalidAddress")
      }
      expect(ZenohTransport.keysFor("lab/arm-2")).toEqual({ request: "lab/arm-2/chiral/c2s", reply: "lab/arm-2/chiral/s2c" })
      expect(ZenohTransport.keysFor(undefined)).toEqual({ request: "chiral/c2s", reply: "chiral/s2c" })
    }).pipe(Effect.scoped))
})

describe("ZenohTransport: waiting for a server", () => {
  it.live("starts the session's thread once, not at every attempt, while nobody listens; reaches the server once it is up", () =>
    Effect.gen(function*() {
      // A port that was free a moment ago.
      const port = yield* Effect.scoped(
        Effect.map(ZenohTransport.makeServer({ host: "127.0.0.1", port: 0 }), (s) => Number(s.address.split(":").pop()))
      )
      let threads = 0
      const counted = () => void threads++
      DiagnosticsChannel.subscribe("worker_threads", counted)
      yield* Effect.addFinalizer(() => Effect.sync(() => DiagnosticsChannel.unsubscribe("worker_threads", counted)))
      // patient: the attempts below are refused at once (nobody listens); only the last one probes
      const transport = ZenohTransport.makeClient(`tcp/127.0.0.1:${port}`, patient)
      for (let attempt = 0; attempt < 4; attempt++) {
        const refused = failure(yield* Effect.exit(Effect.scoped(transport.connect)))
        expect(refused.reason).toBe("Unavailable")
        expect(refused.detail).toContain(`connect on 127.0.0.1:${port} failed`)
      }
      expect(threads).toBe(1)
      const server = yield* ZenohTransport.makeServer({ host: "127.0.0.1", port })
      yield* PolicyServer.make({
        handlers: { reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs })), applyAction: () => Effect.void }
      }).pipe(Effect.provideService(ServerTransport, server))
      yield* Effect.scoped(transport.connect)
      expect(threads).toBeGreaterThan(1)
    }).pipe(Effect.scoped))
})

describe("ZenohTransport: the wrong protocol", () => {
  it.live("a WebSocket (HTTP) server at the address is InvalidAddress, saying so, not a server to wait for", () =>
    Effect.gen(function*() {
      const http = Net.createServer((socket) => {
        socket.on("error", () => {})
        socket.once("data", () => socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"))
      })
      yield* Effect.acquireRelease(
        Effect.promise(() => new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve))),
        () => Effect.sync(() => http.close())
      )
      const port = (http.address() as Net.AddressInfo).port
      const error = failure(yield* Effect.exit(Effect.scoped(ZenohTransport.makeClient(`tcp/127.0.0.1:${port}`, fast).connect)))
      expect(error.reason).toBe("InvalidAddress")
      expect(error.detail).toContain("a web or WebSocket server, not a Zenoh peer (a chiral WebSocket server is reached at ws://host:port)")
    }).pipe(Effect.scoped))
})

describe("ZenohTransport: key prefixes", () => {
  it.live("two chiral pairs share one listening session on different prefixes; other keys get no answer", () =>
    Effect.gen(function*() {
      const listener = yield* listen
      const address = locatorOf(listener)
      const robots = ["lab/a", "lab/b"]
      const recorders = yield* Effect.forEach(robots, (keyPrefix) =>
        Effect.gen(function*() {
          const recorder = yield* Robot.makeRecorder
          const transport = yield* ZenohTransport.makeServerOn(listener, { address, keyPrefix })
          yield* PolicyServer.make({
            cameras: Robot.cameras,
            handlers: {
              ...Robot.handlers(recorder),
              getMetadata: Effect.succeed({ robot: keyPrefix })
            }
          }).pipe(Effect.provideService(ServerTransport, transport))
          return recorder
        }))
      const clients = yield* Effect.forEach(robots, (keyPrefix) =>
        PolicyClient.make({ quiet: true }).pipe(
          Effect.provideService(ClientTransport, ZenohTransport.makeClient(address, { ...fast, keyPrefix }))
        ))
      for (let i = 0; i < 2; i++) {
        expect(yield* clients[i]!.getMetadata).toEqual({ robot: robots[i] })
        yield* clients[i]!.reset
        yield* clients[i]!.sendAction([i, 0, 0, 0, 0, 0, 0])
      }
      for (let i = 0; i < 2; i++) {
        expect(yield* Ref.get(recorders[i]!.resets)).toBe(1)
        const applied = yield* Queue.take(recorders[i]!.actions)
        expect(applied.action.data[0]).toBe(i)
        expect(applied.context.connection).toContain(`${robots[i]}/chiral/c2s`)
        expect(Option.isNone(yield* Queue.poll(recorders[i]!.actions))).toBe(true)
      }
      for (const keyPrefix of [undefined, "lab/c", "lab"]) {
        const exit = yield* Effect.exit(Effect.scoped(ZenohTransport.makeClient(address, { ...fast, keyPrefix }).connect))
        expect(failure(exit)).toMatchObject({ reason: "Unavailable" })
      }
      expect(Exit.isSuccess(yield* Effect.exit(clients[0]!.getObs))).toBe(true)
      expect(yield* SubscriptionRef.get(clients[1]!.dispatched)).toBe(1)
    }).pipe(Effect.scoped))

  it.live("the request and reply keys are the references' unless a prefix is given", () =>
    Effect.gen(function*() {
      // a raw session plays the reference client: it subscribes chiral/s2c and publishes chiral/c2s
      const server = yield* ServerTransport
      yield* Pair.startServerOnly()
      const peer = yield* Zenoh.connect({ host: "127.0.0.1", port: Number(server.address.split(":").pop()) })
      const replies = yield* peer.declareSubscriber("chiral/s2c")
      yield* peer.awaitSubscribers("chiral/c2s")
      yield* peer.put("chiral/c2s", encodeFrame({ type: "metadata" }))
      const reply = yield* replies.pipe(Stream.runHead, Effect.map(Option.getOrThrow))
      expect(reply.keyExpr).toBe("chiral/s2c")
      expect(decodeType(reply.payload)).toBe("metadata_response")
    }).pipe(Effect.scoped, Effect.provide(zenoh())))
})

describe("ZenohTransport client with receiveBuffers", () => {
  for (const sessionThread of ["worker", "main"] as const) {
    it.live(`"recycled", session on the ${sessionThread} thread: a held observation stays whole while later ones' memory is recycled`, () =>
      Effect.gen(function*() {
        const { show } = yield* Recycling.startRobot
        const client = yield* PolicyClient.make({ quiet: true })
        yield* Recycling.heldObservationStaysWhole(client, show)
      }).pipe(Effect.scoped, Effect.provide(zenoh({ ...fast, sessionThread, receiveBuffers: "recycled" }))))
  }

  it.live("\"fresh\" (default): nothing is lent", () =>
    Recycling.freshObservationIsNotLent.pipe(Effect.scoped, Effect.provide(zenoh())))
})

describe("ZenohTransport client: host names that do not resolve", () => {
  const attempt = (locator: string, options: ZenohTransport.ClientOptions) =>
    Effect.flip(Effect.scoped(ZenohTransport.makeClient(locator, { ...fast, ...options }).connect))

  for (const sessionThread of ["worker", "main"] as const) {
    it.live(`a scripted resolver (session on the ${sessionThread} thread): ENOTFOUND is InvalidAddress naming the host; EAI_AGAIN Unavailable, also naming it`, () =>
      Effect.gen(function*() {
        const missing = Lookup.scripted("ENOTFOUND")
        const error = yield* attempt("tcp/robto:7447", { sessionThread, lookup: missing.lookup })
        expect(missing.asked).toEqual(["robto"])
        expect(error.reason).toBe("InvalidAddress")
        expect(error.unresolved).toEqual({ host: "robto", code: "ENOTFOUND" })
        expect(error.message).toBe(`InvalidAddress (tcp/robto:7447): cannot resolve host "robto" (ENOTFOUND)`)
        const later = yield* attempt("tcp/robot.local:7447", { sessionThread, lookup: Lookup.scripted("EAI_AGAIN").lookup })
        expect(later.reason).toBe("Unavailable")
        expect(later.unresolved).toEqual({ host: "robot.local", code: "EAI_AGAIN" })
        const silent = yield* attempt("tcp/robot.local:7447", { sessionThread, lookup: Lookup.scripted("never").lookup, handshakeTimeout: 100 })
        expect(silent.detail).toBe(`cannot resolve host "robot.local" (ETIMEOUT: no answer from the resolver within 100 ms)`)
      }))
  }

  it.live("the system resolver, on the session's thread: the resolver's answer crosses the thread (the reserved .invalid never resolves)", () =>
    Effect.gen(function*() {
      const error = yield* attempt("tcp/nosuchhost.invalid:7447", {})
      // ENOTFOUND where a DNS server answers; EAI_AGAIN (or a timeout) where none can be reached
      expect(error.unresolved?.host).toBe("nosuchhost.invalid")
      expect(isResolveCode(error.unresolved?.code)).toBe(true)
      expect(error.detail).toContain(`cannot resolve host "nosuchhost.invalid" (${error.unresolved?.code}`)
      const crossed = decodeError(encodeError(new ZenohLinkError({ peer: "robto:7447", operation: "connect", reason: "getaddrinfo EAI_AGAIN robto", code: "EAI_AGAIN" })))
      expect(crossed).toMatchObject({ _tag: "ZenohLinkError", code: "EAI_AGAIN" })
    }))

  it.live("PolicyClient: ENOTFOUND fails the first connection at once; EAI_AGAIN is retried, warned about once, until the name resolves", () =>
    Effect.gen(function*() {
      const missing = Lookup.scripted("ENOTFOUND")
      // (without the fix, this waited for the openTimeout and said Unavailable)
      const error = yield* Effect.flip(
        PolicyClient.make({ quiet: true, openTimeout: "20 seconds" }).pipe(
          Effect.provide(ZenohTransport.layerClient("tcp/robto:7447", { ...fast, lookup: missing.lookup }))
        )
      )
      expect(error.message).toBe(`InvalidAddress (tcp/robto:7447): cannot resolve host "robto" (ENOTFOUND)`)
      expect(missing.asked.length).toBe(1)

      const server = yield* ZenohTransport.makeServer({ host: "127.0.0.1", port: 0 })
      yield* Pair.startServerOnly().pipe(Effect.provideService(ServerTransport, server))
      const port = server.address.split(":").pop()
      const logs = yield* Robot.captureLogs
      const booting = Lookup.scripted("EAI_AGAIN", "EAI_AGAIN", "EAI_AGAIN", "127.0.0.1")
      const client = yield* PolicyClient.make({ quiet: true }).pipe(
        Effect.provide(ZenohTransport.layerClient(`tcp/robot.local:${port}`, { ...fast, lookup: booting.lookup })),
        Effect.provide(logs.layer)
      )
      expect((yield* client.getObs).cameras.length).toBe(2)
      expect(booting.asked.length).toBe(4)
      expect(logs.lines.filter((line) => line.includes("resolve"))).toEqual([
        `Warn: chiral: tcp/robot.local:${port}: cannot resolve host "robot.local" (EAI_AGAIN: a temporary failure: the resolver could not answer now); trying again`
      ])
    }).pipe(Effect.scoped))
})
