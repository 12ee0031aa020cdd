// Cadences on virtual time (TestClock) over the in-memory transport: exact tick
// times, no drift, and dispatch independent of slow observations.
import { describe, expect, it } from "@effect/vitest"
import { decodeFrame, encodeFrame } from "@chiral/protocol"
import { Clock, Console, Effect, Fiber, Queue, Ref, Result, Stream, SubscriptionRef } from "effect"
import { TestClock } from "effect/testing"
import { ClientTransport, MemoryTransport, PolicyClient, PolicyServer, ServerTransport } from "../src/index.js"
import { failure } from "@chiral/testing/Exits"
import * as Pair from "@chiral/testing/Pair"
import * as Robot from "@chiral/testing/Robot"

/** Lets every runnable fiber run (the transport and server are fibers too). */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 8; i++) yield* Effect.yieldNow
})

/**
 * Moves virtual time to `millis` in `step` ms increments, settling in between:
 * TestClock only wakes sleeps already registered when it advances, so work
 * that registers its next sleep asynchronously must get to run first.
 */
const advanceTo = (millis: number, step = 1) =>
  Effect.gen(function*() {
    yield* settle
    let now = yield* Clock.currentTimeMillis
    while (now < millis) {
      yield* TestClock.adjust(Math.min(step, millis - now))
      yield* settle
      now = yield* Clock.currentTimeMillis
    }
  })

const arrivals = (recorder: Robot.Recorder) => Effect.map(Queue.clear(recorder.actions), (all) => all.map((a) => a.at))
const firstValues = (applied: ReadonlyArray<Robot.Applied>) => applied.map((a) => a.action.data[0])

const grid = (count: number, period: number) => Array.from({ length: count }, (_, k) => k * period)

describe("cadence on TestClock", () => {
  it.effect("10 Hz action dispatch: one action per tick, exactly on the 100 ms grid", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      yield* client.putActions(Array.from({ length: 200 }, (_, i) => [i, 0, 0, 0, 0, 0, 0]))
      yield* client.startActionDispatch(10)
      yield* advanceTo(1000)
      expect(yield* arrivals(recorder)).toEqual(grid(11, 100))
      yield* advanceTo(10_000, 10)
      // 10 s later still on the grid: ticks 11..100, no drift
      expect(yield* arrivals(recorder)).toEqual(grid(101, 100).slice(11))
      expect(yield* SubscriptionRef.get(client.dispatched)).toBe(101)
      expect(yield* client.pendingActions).toBe(99)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("30 Hz obs stream: requests on the 33.3 ms grid even though each answer takes 10 ms", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair({ obsDelayMillis: 10 })
      yield* client.startObsStream(30)
      yield* advanceTo(990)
      const times = yield* Ref.get(recorder.obsRequests)
      expect(times.length).toBe(30)
      times.forEach((t, k) => expect(t).toBeCloseTo(k * 1000 / 30, 4))
      yield* advanceTo(9990, 10)
      const later = yield* Ref.get(recorder.obsRequests)
      expect(later.length).toBe(300)
      expect(later[299]).toBeCloseTo(299 * 1000 / 30, 3)
      // every answer reached latestObs
      const latest = yield* SubscriptionRef.get(client.latestObs)
      expect(latest._tag === "Some" && latest.value.extra["n"]).toBe(300)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("dispatch does not wait behind observations: 10 Hz ticks stay on the grid while each obs takes 250 ms", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair({ obsDelayMillis: 250 })
      yield* client.putActions(Array.from({ length: 30 }, () => [0, 0, 0, 0, 0, 0, 0]))
      yield* client.startObsStream(30)
      yield* client.startActionDispatch(10)
      yield* advanceTo(2000)
      expect(yield* arrivals(recorder)).toEqual(grid(21, 100))
      // the obs stream, running behind, asks again as soon as each answer lands
      expect(yield* Ref.get(recorder.obsRequests)).toEqual(grid(9, 250))
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("putActions replace swaps the waiting plan; append extends it", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]
      yield* client.putActions([1, 2, 3, 4, 5].map(row))
      yield* client.startActionDispatch(10)
      yield* advanceTo(100) // 1 and 2 are sent
      yield* client.putActions([10, 11].map(row), { mode: "replace" })
      expect(yield* client.pendingActions).toBe(2)
      yield* client.putActions([12].map(row), { mode: "append" })
      yield* client.putAction(row(13))
      yield* advanceTo(1000)
      expect(firstValues(yield* Queue.clear(recorder.actions))).toEqual([1, 2, 10, 11, 12, 13])
      expect(yield* SubscriptionRef.get(client.dispatched)).toBe(6)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("actions carry the camera timestamps of the latest observation", () =>
    Effect.gen(function*() {
      const { client, recorder, server } = yield* Pair.startPair()
      yield* client.putAction([0, 0, 0, 0, 0, 0, 0])
      yield* client.startActionDispatch(10)
      yield* advanceTo(0)
      yield* TestClock.adjust(1)
      const before = yield* Queue.take(recorder.actions)
      expect(before.context.obsTimestamps).toEqual({})
      yield* TestClock.adjust(499)
      yield* server.updateImage("wrist", new Uint8Array(72))
      yield* client.getObs
      yield* client.putAction([1, 0, 0, 0, 0, 0, 0])
      yield* advanceTo(700)
      const after = yield* Queue.take(recorder.actions)
      expect(after.context.obsTimestamps).toEqual({ wrist: 0.5, scene: 0 })
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("stopping a loop stops its ticks; leaving the scope stops everything", () =>
    Effect.gen(function*() {
      const recorderRef = yield* Ref.make<Robot.Recorder | undefined>(undefined)
      yield* Effect.gen(function*() {
        const { client, recorder } = yield* Pair.startPair()
        yield* Ref.set(recorderRef, recorder)
        yield* client.putActions(Array.from({ length: 100 }, () => [0, 0, 0, 0, 0, 0, 0]))
        yield* client.startActionDispatch(10)
        yield* client.startObsStream(10)
        yield* advanceTo(250)
        yield* client.stopActionDispatch
        yield* advanceTo(1000)
        expect(yield* arrivals(recorder)).toEqual([0, 100, 200])
        expect((yield* Ref.get(recorder.obsRequests)).length).toBe(11)
        yield* client.startActionDispatch(20)
        yield* advanceTo(1100)
        expect(yield* arrivals(recorder)).toEqual([1000, 1050, 1100])
      }).pipe(Effect.scoped)
      const recorder = (yield* Ref.get(recorderRef))!
      const obsBefore = (yield* Ref.get(recorder.obsRequests)).length
      yield* advanceTo(3000, 10)
      expect(yield* arrivals(recorder)).toEqual([])
      expect((yield* Ref.get(recorder.obsRequests)).length).toBe(obsBefore)
    }).pipe(Effect.provide(Pair.memory())))
})

describe("requests on TestClock", () => {
  it.effect("a request times out with a typed error; its late reply is never taken for the next request's", () =>
    Effect.gen(function*() {
      // the first observation takes 1.5 s, later ones are instant
      const { client } = yield* Pair.startPair({
        obsDelayMillis: (n) => n === 1 ? 1500 : 0,
        client: { requestTimeout: 1000 }
      })
      const first = yield* Effect.forkChild(Effect.exit(client.getObs))
      yield* advanceTo(1000, 100)
      expect(failure(yield* Fiber.join(first))).toMatchObject({
        _tag: "RequestError",
        reason: "Timeout",
        request: "obs_request"
      })
      // the second waits for the slot until the first's late answer (n = 1) lands
      // at 1.5 s and is dropped; then it is sent and gets its own answer (n = 2)
      const second = yield* Effect.forkChild(client.getObs)
      yield* advanceTo(1600, 100)
      const obs = yield* Fiber.join(second)
      expect(obs.extra["n"]).toBe(2)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("a reply that never comes holds the slot for twice the timeout, then later requests go through", () =>
    Effect.gen(function*() {
      // like the C++ reference server: answers metadata, silently skips obs_request
      yield* ServerTransport.use((transport) =>
        transport.serve((connection) =>
          connection.frames.pipe(Stream.runForEach((frame) => {
            const decoded = decodeFrame(frame)
            return Result.isSuccess(decoded) && decoded.success.type === "metadata"
              ? connection.send(encodeFrame({ type: "metadata_response", data: { server: "cpp-like" } }))
              : Effect.void
          }))
        )
      ).pipe(Effect.forkScoped({ startImmediately: true }))
      const client = yield* PolicyClient.make({ quiet: true, requestTimeout: 1000 })
      const obs = yield* Effect.forkChild(Effect.exit(client.getObs))
      yield* advanceTo(500, 100)
      // waits for the slot, which is reserved for the missing answer, and times out
      const blocked = yield* Effect.forkChild(Effect.exit(client.getMetadata))
      yield* advanceTo(1000, 100)
      expect(failure(yield* Fiber.join(obs))).toMatchObject({ reason: "Timeout", request: "obs_request" })
      yield* advanceTo(1500, 100)
      expect(failure(yield* Fiber.join(blocked))).toMatchObject({ reason: "Timeout", request: "metadata" })
      // 2 s after it was sent the obs request is given up for lost and the slot frees
      const metadata = yield* Effect.forkChild(client.getMetadata)
      yield* advanceTo(1900, 100)
      expect(metadata.pollUnsafe()).toBeUndefined()
      yield* advanceTo(2000, 100)
      expect(yield* Fiber.join(metadata)).toEqual({ server: "cpp-like" })
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("a shared connection (Zenoh-like) stays open when a request cannot be answered", () =>
    Effect.gen(function*() {
      const memory = MemoryTransport.make()
      const shared = ServerTransport.of({
        address: memory.server.address,
        serve: (handler) => memory.server.serve((connection) => handler({ ...connection, shared: true }))
      })
      const recorder = yield* Robot.makeRecorder
      yield* PolicyServer.make({
        cameras: Robot.cameras,
        handlers: { ...Robot.handlers(recorder), reset: Effect.fail("cannot reset now") }
      }).pipe(Effect.provideService(ServerTransport, shared))
      const client = yield* PolicyClient.make({ quiet: true, requestTimeout: 1000, resetTimeout: 1000 }).pipe(
        Effect.provideService(ClientTransport, memory.client)
      )
      const reset = yield* Effect.forkChild(Effect.exit(client.reset))
      yield* advanceTo(1000, 100)
      expect(failure(yield* Fiber.join(reset))).toMatchObject({ reason: "Timeout", request: "reset" })
      const obs = yield* Effect.forkChild(client.getObs)
      yield* advanceTo(2000, 100)
      expect((yield* Fiber.join(obs)).extra["source"]).toBe("get_obs")
    }).pipe(Effect.scoped))

  it.effect("connecting retries every 100 ms and prints the waiting line once", () =>
    Effect.gen(function*() {
      const printed: Array<string> = []
      const console = { ...globalThis.console, log: (...args: ReadonlyArray<unknown>) => void printed.push(args.join(" ")) }
      const connecting = yield* Effect.forkChild(PolicyClient.make().pipe(Effect.provideService(Console.Console, console)))
      yield* advanceTo(350, 50)
      expect(connecting.pollUnsafe()).toBeUndefined()
      yield* Pair.startServerOnly()
      yield* advanceTo(450, 50)
      const client = yield* Fiber.join(connecting)
      expect((yield* client.getObs).cameras.length).toBe(2)
      expect(printed).toEqual(["chiral: waiting for server at memory://chiral …"])
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))
})
