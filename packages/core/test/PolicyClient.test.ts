import { type Observation, Tensor } from "@chiral/protocol"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Queue, Stream, SubscriptionRef } from "effect"
import { PolicyClient, PolicyServer, RequestError } from "../src/index.js"
import * as Pair from "@chiral/testing/Pair"

for (const [name, transports] of Pair.transports) {
  describe(`PolicyServer ↔ PolicyClient over ${name}`, () => {
    it.live("metadata, reset, getObs, step and apply_action", () =>
      Effect.gen(function*() {
        const { client, recorder, server } = yield* Pair.startPair()
        yield* server.updateImage("wrist", new Uint8Array(72).map((_, i) => i))
        yield* server.updateDepth("wrist", new Float32Array(24).fill(0.5))
        yield* server.updateProprio("joint_pos", [0, 1, 2, 3, 4, 5, 6])

        expect(yield* client.getMetadata).toEqual({ action_shape: [7], cameras: ["wrist", "scene"] })

        const { info, obs } = yield* client.reset
        expect(info).toEqual({ episode: 1 })
        expect(obs.extra).toEqual({ source: "reset", episode: 1 })
        expect(Option.getOrThrow(yield* SubscriptionRef.get(client.latestObs))).toBe(obs)

        const got = yield* client.getObs
        expect(got.extra).toEqual({ source: "get_obs", n: 1 })
        const wrist = got.cameras[0]!
        expect(wrist.name).toBe("wrist")
        expect(wrist.image.shape).toEqual([4, 6, 3])
        expect(Array.from(wrist.image.data.slice(0, 4) as ArrayLike<number>)).toEqual([0, 1, 2, 3])
        expect(Array.from(wrist.depth!.data.slice(0, 2) as ArrayLike<number>)).toEqual([0.5, 0.5])
        expect(got.cameras[1]!.depth).toBeNull()
        expect(Tensor.toArray(got.proprios[0]!.data)).toEqual([0, 1, 2, 3, 4, 5, 6])

        yield* client.sendAction([0.5, -1, 2, 0, 0, 0, 1])
        const applied = yield* Queue.take(recorder.actions)
        expect(applied.action.dtype).toBe("float32")
        expect(applied.action.shape).toEqual([7])
        expect(Tensor.toArray(applied.action)).toEqual([0.5, -1, 2, 0, 0, 0, 1])
        expect(applied.context.obsTimestamps).toEqual({ wrist: wrist.timestamp, scene: got.cameras[1]!.timestamp })

        const step = yield* client.step([[1, 2, 3, 4, 5, 6, 7]])
        expect(step).toMatchObject({ reward: 0, terminated: false, truncated: false, info: {} })
        expect(step.obs.cameras.map((c) => c.name)).toEqual(["wrist", "scene"])
        const stepped = yield* Queue.take(recorder.actions)
        expect(stepped.action.shape).toEqual([1, 7])
        expect(yield* SubscriptionRef.get(client.dispatched)).toBe(1)
      }).pipe(Effect.scoped, Effect.provide(transports)))

    it.live("getObs and reset during a running obs stream each get their own answer", () =>
      Effect.gen(function*() {
        const { client } = yield* Pair.startPair()
        yield* client.startObsStream(500)
        type Answer = { readonly kind: string; readonly obs: Observation; readonly info: unknown }
        const results = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, i) => i),
          (i): Effect.Effect<Answer, RequestError> =>
            i % 2 === 0
              ? Effect.map(client.reset, ({ info, obs }) => ({ kind: "reset", obs, info }))
              : Effect.map(client.getObs, (obs) => ({ kind: "get_obs", obs, info: undefined })),
          { concurrency: "unbounded" }
        )
        for (const result of results) {
          expect(result.obs.extra["source"]).toBe(result.kind)
          if (result.kind === "reset") expect(result.info).toEqual({ episode: result.obs.extra["episode"] })
        }
        const episodes = results.filter((r) => r.kind === "reset").map((r) => r.obs.extra["episode"])
        expect(new Set(episodes).size).toBe(10)
        // the stream kept going and fed latestObs
        const streamed = yield* client.observations.pipe(Stream.take(2), Stream.runCollect)
        expect(streamed.length).toBe(2)
      }).pipe(Effect.scoped, Effect.provide(transports)))

    it.live("closing the server fails the client's requests with a typed error", () =>
      Effect.gen(function*() {
        const serving = yield* Effect.forkChild(
          Effect.scoped(Effect.andThen(Pair.startServerOnly(), Effect.never))
        )
        yield* Effect.sleep(10)
        const client = yield* PolicyClient.make({ quiet: true })
        yield* client.getMetadata
        yield* client.startObsStream(100)
        yield* Fiber.interrupt(serving)
        yield* client.awaitDisconnect
        const exit = yield* Effect.exit(client.getObs)
        expect(Exit.isFailure(exit)).toBe(true)
        const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
        expect(error?._tag === "Fail" && error.error).toBeInstanceOf(RequestError)
        expect(error?._tag === "Fail" && error.error.reason).toBe("Disconnected")
      }).pipe(Effect.scoped, Effect.provide(transports)))
  })
}

describe("PolicyClient on real sockets", () => {
  it.live("dispatch and obs stream together: every action arrives once, in order, stamped with a real capture time", () =>
    Effect.gen(function*() {
      // at 250 Hz beside a 200 Hz stream in one process, two actions may arrive together: this test sees each
      const { client, recorder, server } = yield* Pair.startPair({ coalesceActions: false })
      yield* server.updateImage("wrist", new Uint8Array(72))
      yield* client.startObsStream(200)
      // wait for the stream's first observation so every action carries timestamps
      yield* client.observations.pipe(Stream.take(1), Stream.runDrain)
      yield* client.putActions(Array.from({ length: 30 }, (_, i) => [i, 0, 0, 0, 0, 0, 0]))
      yield* client.startActionDispatch(250)
      const applied = yield* Stream.fromQueue(recorder.actions).pipe(Stream.take(30), Stream.runCollect)
      expect(applied.map((a) => a.action.data[0])).toEqual(Array.from({ length: 30 }, (_, i) => i))
      for (const a of applied) expect(a.context.obsTimestamps["wrist"]).toBeGreaterThan(0)
      expect(yield* client.pendingActions).toBe(0)
      // the dispatcher's worker reports its sends asynchronously: wait for the count, then check it stops there
      yield* SubscriptionRef.changes(client.dispatched).pipe(Stream.filter((n) => n >= 30), Stream.take(1), Stream.runDrain)
      expect(yield* SubscriptionRef.get(client.dispatched)).toBe(30)
    }).pipe(Effect.scoped, Effect.provide(Pair.webSocket)))

  it.live("an action with a value that is not finite as float32 is refused before it is queued or sent", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      const refusal = (effect: Effect.Effect<void, RequestError>) => Effect.flip(effect)
      const nan = yield* refusal(client.putAction([0, Number.NaN, 0, 0, 0, 0, 0]))
      expect(nan).toMatchObject({ _tag: "RequestError", reason: "Malformed", request: "apply_action" })
      expect(nan.detail).toBe("the action: element 1 is NaN: actions must be finite; nothing was queued or sent")
      // finite as a double, infinite as the float32 that travels
      const huge = yield* refusal(client.putActions([[0, 0, 0, 0, 0, 0, 0], [1e39, 0, 0, 0, 0, 0, 0]]))
      expect(huge.detail).toBe("action 1: element 0 is Infinity: actions must be finite; nothing was queued or sent")
      const sent = yield* refusal(client.sendAction(Tensor.make("float64", [7], Float64Array.of(0, 0, 0, -Infinity, 0, 0, 0))))
      expect(sent.detail).toContain("element 3 is -Infinity")
      const step = yield* refusal(Effect.asVoid(client.step([[0, 0, 0, 0, 0, 0, Number.NaN]])))
      expect(step).toMatchObject({ reason: "Malformed", request: "action" })
      expect(step.detail).toContain("element 6 is NaN: actions must be finite; the chunk was not sent")
      expect(yield* client.pendingActions).toBe(0)
      // nothing of the refused chunk went: the next action is the first the robot applies
      yield* client.sendAction([7, 0, 0, 0, 0, 0, 0])
      expect(Tensor.toArray((yield* Queue.take(recorder.actions)).action)).toEqual([7, 0, 0, 0, 0, 0, 0])
      expect(yield* Queue.size(recorder.actions)).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(Pair.webSocket)))

  it.live("a ragged action chunk is a typed error, not a crash", () =>
    Effect.gen(function*() {
      const { client } = yield* Pair.startPair()
      const error = yield* Effect.flip(client.step([[1, 2], [3]]))
      expect(error).toMatchObject({ _tag: "RequestError", reason: "Malformed", request: "action" })
      expect((yield* client.getObs).cameras.length).toBe(2)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))
})

describe("PolicyClient decode limits", () => {
  /** A server whose metadata is `data` (an observation for reset, nothing else). */
  const serveMetadata = (data: Record<string, unknown>) =>
    PolicyServer.make({
      cameras: [{ name: "cam_0", width: 4, height: 2 }],
      handlers: {
        getMetadata: Effect.succeed(data),
        reset: Effect.flatMap(PolicyServer.PolicyServer, (s) => s.makeObs()).pipe(Effect.map((obs) => ({ obs }))),
        applyAction: () => Effect.void
      }
    })

  it.live("by default a client takes what a reference server may send: a 2 MiB metadata map, 500 levels of nesting (the Python packer stops at 511)", () =>
    Effect.gen(function*() {
      let nested: unknown = 1
      for (let i = 0; i < 500; i++) nested = [nested]
      const description = "x".repeat(2 * 1024 * 1024)
      yield* serveMetadata({ robot_description: description, nested })
      const client = yield* PolicyClient.make({ quiet: true })
      const metadata = yield* client.getMetadata
      expect((metadata["robot_description"] as string).length).toBe(description.length)
      let depth = 0
      for (let v = metadata["nested"]; Array.isArray(v); v = v[0]) depth++
      expect(depth).toBe(500)
    }).pipe(Effect.scoped, Effect.provide(Pair.webSocket)))

  it.live("decodeLimits lower them: an answer beyond is a Malformed error naming the limit, and the client carries on", () =>
    Effect.gen(function*() {
      yield* serveMetadata({ robot_description: "x".repeat(2 * 1024 * 1024) })
      const client = yield* PolicyClient.make({ quiet: true, decodeLimits: { maxHeaderBytes: 1024 * 1024 } })
      const error = yield* Effect.flip(client.getMetadata)
      expect(error).toMatchObject({ _tag: "RequestError", reason: "Malformed", request: "metadata" })
      expect(error.detail).toMatch(/^header_len: \d+ bytes, more than the 1048576-byte header limit$/)
      expect((yield* client.reset).obs.cameras.length).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))
})
