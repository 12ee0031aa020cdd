import { Tensor } from "@chiral/protocol"
import { decodeFrame } from "@chiral/protocol"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Ref, References, Result, Schedule, Stream, SubscriptionRef } from "effect"
import { ClientTransport, PolicyClient, PolicyServer } from "@chiral/core"
import { failure } from "@chiral/testing/Exits"
import * as Frames from "@chiral/testing/Frames"
import * as Pair from "@chiral/testing/Pair"
import * as RawWebSocket from "@chiral/testing/RawWebSocket"
import * as Robot from "@chiral/testing/Robot"
import * as NodeWS from "@effect/platform-node/NodeWS"
import { WebSocketTransport } from "../src/index.js"

/** Waits (real time, bounded) until the server has exactly `n` connections. */
const awaitConnections = (server: PolicyServer.PolicyServerApi, n: number) =>
  server.connections.pipe(
    Effect.filterOrFail((count) => count === n),
    Effect.retry({ schedule: Schedule.spaced(5), times: 400 })
  )

const decodeType = (frame: Uint8Array) => {
  const decoded = decodeFrame(frame)
  return Result.isSuccess(decoded) ? decoded.success.type : `error: ${decoded.failure.message}`
}

for (const [name, transports] of Pair.transports) {
  describe(`PolicyServer robustness over ${name}`, () => {
    it.live("malformed frames are logged with their reason and dropped; that client and others keep working", () =>
      Effect.gen(function*() {
        const logs = yield* Robot.captureLogs
        yield* Effect.gen(function*() {
          const { client } = yield* Pair.startPair()
          yield* client.startObsStream(200)
          const raw = yield* ClientTransport.use((t) => t.connect)
          const bad = Frames.badFrames()
          expect(bad.length).toBeGreaterThan(20)
          for (const frame of bad) yield* raw.send(frame.bytes)
          yield* raw.send(Uint8Array.of(1, 2, 3))
          // a response type is not something a client may send
          yield* raw.send(Frames.vector("metadata_response"))
          yield* raw.send(Frames.metadataRequest)
          const reply = yield* raw.frames.pipe(Stream.take(1), Stream.runCollect)
          expect(decodeType(reply[0]!)).toBe("metadata_response")
          // the well-behaved client was never disturbed
          const obs = yield* client.getObs
          expect(obs.cameras.length).toBe(2)
          expect(yield* client.getMetadata).toMatchObject({ action_shape: [7] })
        }).pipe(Effect.scoped, Effect.provide(logs.layer))
        const dropped = logs.lines.filter((line) => line.includes("dropped frame from"))
        expect(dropped.length).toBe(Frames.badFrames().length + 2)
        expect(dropped.some((line) => line.includes("header_len"))).toBe(true)
        expect(dropped.some((line) => line.includes("a client does not send metadata_response"))).toBe(true)
      }).pipe(Effect.provide(transports)))

    it.live("a request the handler cannot answer closes that connection: the client fails fast, others carry on", () =>
      Effect.gen(function*() {
        const logs = yield* Robot.captureLogs
        yield* Effect.gen(function*() {
          yield* PolicyServer.make({
            cameras: Robot.cameras,
            handlers: {
              reset: Effect.fail("the robot is on fire"),
              applyAction: () => Effect.void
            }
          })
          const doomed = yield* PolicyClient.make({ quiet: true })
          const other = yield* PolicyClient.make({ quiet: true })
          const exit = yield* Effect.exit(doomed.reset)
          expect(failure(exit)).toMatchObject({ _tag: "RequestError", reason: "Disconnected", request: "reset" })
          // WebSocket says why (the close's code and reason); memory connections just end
          expect(failure(exit).message).toBe(
            name === "websocket"
              ? "reset: Disconnected (closed by the server: 1011 chiral: reset failed: the robot is on fire)"
              : "reset: Disconnected (closed by the server)"
          )
          expect((yield* other.getObs).cameras.length).toBe(2)
        }).pipe(Effect.scoped, Effect.provide(logs.layer))
        expect(logs.lines.some((l) => l.includes("cannot answer reset") && l.includes("the robot is on fire"))).toBe(
          true
        )
      }).pipe(Effect.provide(transports)))

    it.live("golden request vectors from the references are answered with frames that decode", () =>
      Effect.gen(function*() {
        const { recorder } = yield* Pair.startServerOnly()
        const raw = yield* ClientTransport.use((t) => t.connect)
        const requests = [
          ["metadata_request", "metadata_response"],
          ["reset_request", "reset_response"],
          ["obs_request", "obs_response"],
          ["cpp_metadata_request", "metadata_response"],
          ["cpp_reset_request", "reset_response"],
          ["cpp_action", "step_response"]
        ] as const
        for (const [request] of requests) yield* raw.send(Frames.vector(request))
        const replies = yield* raw.frames.pipe(Stream.take(requests.length), Stream.runCollect)
        expect(replies.map(decodeType)).toEqual(requests.map(([, reply]) => reply))

        const cppAction = yield* Stream.fromQueue(recorder.actions).pipe(Stream.take(1), Stream.runCollect)
        const cpp = Frames.description("cpp_action") as { action: { shape: Array<number>; data: Array<number> } }
        expect(cppAction[0]!.action.shape).toEqual(cpp.action.shape)
        expect(Tensor.toArray(cppAction[0]!.action)).toEqual(cpp.action.data)

        const actions = ["apply_action", "apply_action_no_timestamps", "apply_action_2d", "apply_action_from_float64"]
        for (const name of actions) yield* raw.send(Frames.vector(name))
        const applied = yield* Stream.fromQueue(recorder.actions).pipe(Stream.take(actions.length), Stream.runCollect)
        actions.forEach((name, i) => {
          const expected = Frames.description(name) as {
            action: { dtype: string; shape: Array<number>; data: Array<number> }
            obs_timestamps: Record<string, number>
          }
          expect(applied[i]!.action.dtype).toBe(expected.action.dtype)
          expect(applied[i]!.action.shape).toEqual(expected.action.shape)
          expect(Tensor.toArray(applied[i]!.action)).toEqual(expected.action.data)
          expect(applied[i]!.context.obsTimestamps).toEqual(expected.obs_timestamps)
        })
      }).pipe(Effect.scoped, Effect.provide(transports)))
  })
}

/** A robot whose reset fails ("e-stop pressed") and whose onConnect refuses ("busy") once `refusing` is set. */
const failingRobot = Effect.gen(function*() {
  const refusing = yield* Ref.make(false)
  const server = yield* PolicyServer.make({
    cameras: Robot.cameras,
    handlers: {
      reset: Effect.fail(new Error("e-stop pressed")),
      applyAction: () => Effect.void,
      onConnect: () => Effect.flatMap(Ref.get(refusing), (refuse) => refuse ? Effect.fail(new Error("busy")) : Effect.void)
    }
  })
  return { refusing, server }
})

describe("PolicyServer robustness over real sockets", () => {
  it.live("a client is told why its connection is closed: 1011 and the failed request's error, 1008 when onConnect refuses it", () =>
    Effect.gen(function*() {
      const { refusing, server } = yield* failingRobot
      /** The close a `ws` client (as the Python reference's `websockets`, a client that checks the frame) gets after sending `frames`. */
      const closeAfter = (frames: ReadonlyArray<Uint8Array>) =>
        Effect.acquireRelease(Effect.sync(() => new NodeWS.WebSocket(server.address)), (ws) => Effect.sync(() => ws.terminate())).pipe(
          Effect.flatMap((ws) =>
            Effect.callback<readonly [number, string]>((resume) => {
              ws.once("open", () => frames.forEach((frame) => ws.send(frame)))
              ws.once("close", (code, reason) => resume(Effect.succeed([code, reason.toString()])))
            })
          )
        )
      expect(yield* closeAfter([Frames.vector("reset_request")])).toEqual([1011, "chiral: reset failed: e-stop pressed"])
      yield* Ref.set(refusing, true)
      expect(yield* closeAfter([])).toEqual([1008, "chiral: refused by the robot's onConnect: busy"])
    }).pipe(Effect.scoped, Effect.provide(Pair.webSocket)))

  for (const thread of ["worker", "main"] as const) {
    it.live(`PolicyClient's errors and its reconnection line quote the server's close: a failed reset, a refusing onConnect (thread: ${thread})`, () =>
      Effect.gen(function*() {
        const logs = yield* Robot.captureLogs
        const { refusing, server } = yield* failingRobot
        const transport = Layer.succeed(ClientTransport, WebSocketTransport.makeClient(server.address, { thread }))
        yield* Effect.gen(function*() {
          const client = yield* PolicyClient.make({ quiet: true })
          const reset = failure(yield* Effect.exit(client.reset))
          expect(reset).toMatchObject({ reason: "Disconnected", detail: "closed by the server: 1011 chiral: reset failed: e-stop pressed" })
          expect(reset.message).toBe("reset: Disconnected (closed by the server: 1011 chiral: reset failed: e-stop pressed)")
          // logged before the client reconnects
          yield* SubscriptionRef.changes(client.reconnects).pipe(Stream.takeUntil((n) => n >= 1), Stream.runDrain)
        }).pipe(Effect.scoped, Effect.provide(transport), Effect.provide(logs.layer))
        expect(logs.lines).toContainEqual(expect.stringContaining(
          `chiral: ${server.address}: closed by the server: 1011 chiral: reset failed: e-stop pressed; reconnecting`
        ))
        yield* Ref.set(refusing, true)
        const refused = yield* Effect.gen(function*() {
          const client = yield* PolicyClient.make({ quiet: true, reconnect: false })
          return failure(yield* Effect.exit(client.getMetadata))
        }).pipe(Effect.scoped, Effect.provide(transport))
        expect(refused.message).toBe("metadata: Disconnected (closed by the server: 1008 chiral: refused by the robot's onConnect: busy)")
      }).pipe(Effect.scoped, Effect.provide(Pair.webSocket)))
  }

  it.live("a client reset while its replies wait to be sent is one line at info, the connection lost, without a stack", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const { id } = yield* Effect.gen(function*() {
        const recorder = yield* Robot.makeRecorder
        const big = { name: "big", height: 480, width: 640, channels: 3, hasDepth: true }
        const server = yield* PolicyServer.make({ cameras: [big], handlers: Robot.handlers(recorder) })
        const raw = yield* RawWebSocket.connect(server.address)
        const id = `${server.address} ← 127.0.0.1:${raw.socket.localPort}`
        // ~2.1 MB per answer, never read: far more than the socket buffers hold, so a send is waiting
        for (let i = 0; i < 40; i++) raw.sendFrame(Frames.obsRequest)
        yield* Ref.get(recorder.obsRequests).pipe(
          Effect.filterOrFail((served) => served.length >= 2),
          Effect.retry({ schedule: Schedule.spaced(5), times: 400 })
        )
        // as a process killed with unread data in its socket: a reset, not a close
        raw.socket.resetAndDestroy()
        const ended = (line: string) => line.includes(`connection lost: Closed (${id})`) || line.includes("connection ended")
        yield* Effect.sync(() => logs.lines.some(ended)).pipe(
          Effect.filterOrFail((found) => found),
          Effect.retry({ schedule: Schedule.spaced(5), times: 400 })
        )
        return { id }
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const lines = logs.lines.filter((line) => line.includes(id))
      expect(lines.filter((line) => !line.startsWith("Info"))).toEqual([])
      expect(lines.filter((line) => line.includes("connection lost"))).toHaveLength(1)
      expect(lines.some((line) => line.includes("\n"))).toBe(false)
    }).pipe(Effect.scoped, Effect.provide(Pair.webSocket)))

  it.live("a client the robot refuses: the refusal said once on each side, in one line, repeats at debug; its admission said with their count", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      /** Waits (real time, bounded) until a line satisfies `check`. */
      const logged = (check: (line: string) => boolean) =>
        Effect.sync(() => logs.lines.some(check)).pipe(
          Effect.filterOrFail((found) => found),
          Effect.retry({ schedule: Schedule.spaced(10), times: 1000 })
        )
      const { server } = yield* Effect.gen(function*() {
        const { refusing, server } = yield* failingRobot
        yield* Ref.set(refusing, true)
        const transport = Layer.succeed(ClientTransport, WebSocketTransport.makeClient(server.address, { thread: "main" }))
        const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provide(transport))
        yield* logged((line) => line.includes("(4 refusals of 127.0.0.1 since it was last let in)"))
        yield* Ref.set(refusing, false)
        // its first answer on a connection is how the client knows it was let in
        yield* client.getMetadata.pipe(Effect.retry({ schedule: Schedule.spaced(10), times: 1000 }))
        yield* logged((line) => line.includes("accepted by the server after"))
        return { server }
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const reason = "chiral: refused by the robot's onConnect: busy"
      const warnings = logs.lines.filter((line) => line.startsWith("Warn"))
      expect(warnings).toHaveLength(2)
      // the robot: the refusal and why, once, with neither a stack nor an opening line
      expect(warnings[0]).toMatch(
        /^Warn: chiral: onConnect refused ws:\/\/127\.0\.0\.1:\d+ ← 127\.0\.0\.1:\d+: busy; closing it \(the same refusal of 127\.0\.0\.1 again is logged at debug level\)$/
      )
      // the client: the server's close, once
      expect(warnings[1]).toBe(
        `Warn: chiral: ${server.address}: closed by the server: 1008 ${reason}; reconnecting on the schedule, as from a server that is down (the same refusal again is logged at debug level)`
      )
      const opened = logs.lines.filter((line) => line.includes("connection opened"))
      expect(opened).toHaveLength(1)
      const refusals = Number(/after (\d+) refusals$/.exec(opened[0]!)?.[1])
      expect(refusals).toBeGreaterThanOrEqual(4)
      expect(logs.lines).toContainEqual(expect.stringMatching(
        new RegExp(`^Info: chiral: ${server.address}: accepted by the server after ${refusals} refusals in [\\d.]+ s$`)
      ))
    }).pipe(Effect.scoped, Effect.provide(Pair.webSocket), Effect.provideService(References.MinimumLogLevel, "Debug")))

  it.live("a client vanishing mid-frame harms no one", () =>
    Effect.gen(function*() {
      const { server } = yield* Pair.startServerOnly()
      const client = yield* PolicyClient.make({ quiet: true })
      yield* awaitConnections(server, 1)
      yield* Effect.gen(function*() {
        const raw = yield* RawWebSocket.connect(server.address)
        yield* awaitConnections(server, 2)
        // announce 100 000 bytes, deliver 100, vanish
        raw.sendFrame(new Uint8Array(100), { declaredLength: 100_000 })
      }).pipe(Effect.scoped)
      yield* awaitConnections(server, 1)
      expect((yield* client.getObs).cameras.length).toBe(2)
    }).pipe(Effect.scoped, Effect.provide(Pair.webSocket)))

  it.live("a client that never reads slows only itself: others and sensor writers keep going", () =>
    Effect.gen(function*() {
      const recorder = yield* Robot.makeRecorder
      const big = { name: "big", height: 480, width: 640, channels: 3, hasDepth: true }
      const server = yield* PolicyServer.make({ cameras: [big], handlers: Robot.handlers(recorder) })
      const raw = yield* RawWebSocket.connect(server.address)
      // ~2.1 MB per answer: 40 of them are far more than the socket buffers hold
      for (let i = 0; i < 40; i++) raw.sendFrame(Frames.obsRequest)
      const client = yield* PolicyClient.make({ quiet: true, requestTimeout: "5 seconds" })
      const image = new Uint8Array(480 * 640 * 3)
      for (let i = 0; i < 20; i++) {
        image.fill(i)
        yield* server.updateImage("big", image)
        const obs = yield* client.getObs
        expect(obs.cameras[0]!.image.data[0]).toBe(i)
      }
      // the stalled client got only what its socket buffers could take
      const served = (yield* Ref.get(recorder.obsRequests)).length
      expect(served).toBeGreaterThanOrEqual(20)
      expect(served).toBeLessThan(60)
    }).pipe(Effect.scoped, Effect.provide(Pair.webSocket)))
})
