// PolicyClient's own dispatcher with the chunk modes, on virtual time
// (TestClock) over the in-memory transport: a time-aligned chunk's actions
// reach the robot on their ticks, stamped with their observation, late ones
// dropped; each action's timing says how old that observation was; the
// refill signal wakes a policy loop before the queue runs dry.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Queue, Ref, Stream } from "effect"
import { TestClock } from "effect/testing"
import { ActionPlan, type ActionTiming, CameraState, PolicyClient, PolicyServer } from "../src/index.js"
import * as Pair from "@chiral/testing/Pair"
import { advance, settle } from "@chiral/testing/VirtualTime"
import * as Robot from "@chiral/testing/Robot"

const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]
const drain = (recorder: Robot.Recorder) =>
  Effect.map(Queue.clear(recorder.actions), (all) => all.map((a) => [a.at, Number(a.action.data[0]), a.context.obsTimestamps] as const))

describe("chunk modes through PolicyClient (fiber dispatcher, TestClock)", () => {
  it.effect("time-aligned: late actions dropped, the rest on their ticks, stamped with their observation; timings give its age", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      const timings = yield* Queue.unbounded<ActionTiming>()
      yield* client.actionTimings.pipe(Stream.runForEach((t) => Queue.offer(timings, t)), Effect.forkScoped({ startImmediately: true }))
      yield* TestClock.adjust(1000)
      yield* client.startActionDispatch(10)
      yield* settle
      yield* advance(30)
      // the policy's observation was taken at 0.8 s; its chunk arrives at 1.03 s
      const stamp = { wrist: 0.79, scene: 0.8 }
      yield* client.putActions([0, 1, 2, 3, 4, 5].map(row), { mode: "time-aligned", obsTimestamps: stamp })
      // slots (due ± 50 ms): 0 → 0.8, 1 → 0.9 and 2 → 1.0 have passed or their tick (1.0) has gone
      yield* advance(600)
      const sent = yield* drain(recorder)
      assert.deepStrictEqual(sent.map(([at, v]) => [at, v]), [[1100, 3], [1200, 4], [1300, 5]])
      for (const [, , obsTimestamps] of sent) assert.deepStrictEqual(obsTimestamps, stamp)
      assert.deepStrictEqual(yield* client.droppedActions, { late: 3, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0, disconnected: 0, earlierConnection: 0, reset: 0 })
      const timed = yield* Queue.clear(timings)
      assert.deepStrictEqual(timed.map((t) => [t.count, Math.round(t.age! * 1000)]), [[1, 300], [2, 400], [3, 500]])
      assert.strictEqual(yield* client.refill.pending, 0)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  for (const shift of [-1000, 1000]) {
    it.effect(`a robot clock ${shift < 0 ? "1000 s behind" : "1000 s ahead of"} this machine's: time-aligned actions still go on their ticks, ages count from arrival`, () =>
      Effect.gen(function*() {
        const recorder = yield* Robot.makeRecorder
        const robot = Robot.handlers(recorder)
        // The robot's cameras stamp on their own machine's monotonic clock.
        const server = yield* PolicyServer.make({
          cameras: Robot.cameras,
          proprios: Robot.proprios,
          handlers: {
            ...robot,
            getObs: Effect.map(robot.getObs!, (obs) => ({
              ...obs,
              cameras: obs.cameras.map((camera) => ({ ...camera, timestamp: camera.timestamp + shift }))
            }))
          }
        })
        const client = yield* PolicyClient.make({ quiet: true })
        const timings = yield* Queue.unbounded<ActionTiming>()
        yield* client.actionTimings.pipe(Stream.runForEach((t) => Queue.offer(timings, t)), Effect.forkScoped({ startImmediately: true }))
        // this machine's clock at 2000 s, the robot's at 1000 or 3000 s
        yield* TestClock.adjust(2_000_000)
        yield* client.startActionDispatch(10)
        yield* settle
        // an observation taken at 2000 s (its camera says 2000 + shift), its chunk put 30 ms later
        yield* server.updateImage("wrist", new Uint8Array(72))
        const obs = yield* client.getObs
        yield* advance(30)
        const obsTimestamps = Object.fromEntries(obs.cameras.map((camera) => [camera.name, camera.timestamp]))
        yield* client.putActions([0, 1, 2, 3].map(row), { mode: "time-aligned", obsTimestamps })
        yield* advance(400)
        // action 0's slot (2000 ± 0.05 s) has had its tick: 1, 2, 3 go 0.1, 0.2, 0.3 s later, stamped as the robot gave them
        const sent = yield* drain(recorder)
        assert.deepStrictEqual(sent.map(([at, v]) => [at - 2_000_000, v]), [[100, 1], [200, 2], [300, 3]])
        for (const [, , stamp] of sent) assert.deepStrictEqual(stamp, obsTimestamps)
        assert.strictEqual((yield* client.droppedActions).late, 1)
        const ages = (yield* Queue.clear(timings)).map((t) => Math.round(t.age! * 1000))
        assert.deepStrictEqual(ages, [100, 200, 300])
      }).pipe(Effect.scoped, Effect.provide(Pair.memory())))
  }

  it.effect("a chunk put without timestamps carries the latest observation's at the put, not a later one's: the server's max action age bounds how long a plan runs", () =>
    Effect.gen(function*() {
      const { client, recorder, server } = yield* Pair.startPair()
      const image = new Uint8Array(72)
      yield* TestClock.adjust(1000)
      yield* server.updateImage("wrist", image)
      const before = yield* client.getObs
      yield* client.putActions([0, 1, 2].map(row))
      // a newer observation arrives while the plan waits
      yield* advance(50)
      yield* server.updateImage("wrist", image)
      const later = yield* client.getObs
      assert.notDeepEqual(later.cameras.map((c) => c.timestamp), before.cameras.map((c) => c.timestamp))
      yield* client.startActionDispatch(10)
      yield* advance(300)
      const stamps = (yield* drain(recorder)).map(([, , stamp]) => stamp)
      const planned = Object.fromEntries(before.cameras.map((camera) => [camera.name, camera.timestamp]))
      assert.deepStrictEqual(stamps, [planned, planned, planned])
      // sendAction goes at once: the latest observation's
      yield* client.sendAction(row(9))
      yield* settle
      const [[, , sentNow]] = yield* drain(recorder)
      assert.deepStrictEqual(sentNow, Object.fromEntries(later.cameras.map((camera) => [camera.name, camera.timestamp])))
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("blend by time: a newer chunk merges with the older one's waiting actions, on the dispatcher's ticks", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      const now = yield* CameraState.captureTime
      yield* client.putActions([0, 10, 20, 30].map(row), { mode: ActionPlan.blend(0), obsTimestamps: { wrist: now } })
      yield* client.startActionDispatch(10)
      yield* settle
      yield* advance(140)
      // observed at 0.1 s, arriving at 0.14 s: its first action is for slot 0.05–0.15, whose tick
      // (0.1) has gone: the next tick drops it
      yield* client.putActions([100, 110, 120, 130].map(row), { mode: ActionPlan.blend(0), obsTimestamps: { wrist: now + 0.1 } })
      yield* advance(500)
      // m = 0: plain means where both predicted a slot
      assert.deepStrictEqual((yield* drain(recorder)).map(([at, v]) => [at, v]), [[0, 0], [100, 10], [200, 65], [300, 75], [400, 130]])
      assert.strictEqual((yield* client.droppedActions).late, 1)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("the refill signal starts each inference while actions still wait: one action on every tick, none missed", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      const calls = yield* Ref.make<ReadonlyArray<number>>([])
      // a policy that takes 250 ms (2.5 ticks) per chunk of 6, asked when fewer than 4 wait
      const policy = Effect.gen(function*() {
        for (let next = 0; next < 30; next += 6) {
          yield* client.refill.awaitBelow(4)
          const at = yield* Clock.currentTimeMillis
          yield* Ref.update(calls, (all) => [...all, at])
          yield* Effect.sleep(250)
          yield* client.putActions([0, 1, 2, 3, 4, 5].map((i) => row(next + i)))
        }
      })
      yield* Effect.forkScoped(policy)
      yield* settle
      yield* advance(250)
      yield* client.startActionDispatch(10)
      // the first tick's action reaches the robot before time moves on (it is applied at the end of the server's turn)
      yield* settle
      yield* advance(3000)
      const sent = yield* drain(recorder)
      assert.deepStrictEqual(sent.map(([, v]) => v), Array.from({ length: 30 }, (_, i) => i))
      // after the first chunk, every tick sent an action: 250 ms, 350 ms, …
      assert.deepStrictEqual(sent.map(([at]) => at), Array.from({ length: 30 }, (_, i) => 250 + 100 * i))
      // asked at 0 (empty), then each time the count fell to 3
      assert.deepStrictEqual(yield* Ref.get(calls), [0, 450, 1050, 1650, 2250])
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))
})
