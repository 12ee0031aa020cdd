// A policy process stopped (SIGSTOP) while actions wait, on virtual time
// (TestClock) over the in-memory transport, with PolicyClient's own
// dispatcher: the stop is a clock whose sleeps that would end while the
// process is stopped end when it continues, as a stopped process's timers do.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Ref } from "effect"
import { TestClock } from "effect/testing"
import { type Handlers, PolicyClient, PolicyServer } from "../src/index.js"
import * as Robot from "@chiral/testing/Robot"
import * as Pair from "@chiral/testing/Pair"
import { advance } from "@chiral/testing/VirtualTime"
import { drops } from "@chiral/testing/Drops"

const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]

/** The test robot, saying in order each action it applied (`a<v>`, v its first value) and when (virtual ms). */
const eventRobot = Effect.gen(function*() {
  const recorder = yield* Robot.makeRecorder
  const events = yield* Ref.make<ReadonlyArray<readonly [string, number]>>([])
  const robot = Robot.handlers(recorder)
  const handlers: Handlers<never, PolicyServer.PolicyServer> = {
    ...robot,
    applyAction: (action, context) =>
      Effect.andThen(
        Effect.flatMap(Clock.currentTimeMillis, (at) => Ref.update(events, (list) => [...list, [`a${action.data[0]}`, at] as const])),
        robot.applyAction!(action, context)
      )
  }
  const server = yield* PolicyServer.make({ cameras: Robot.cameras, proprios: Robot.proprios, coalesceActions: false, handlers })
  return { server, events: Ref.get(events) }
})

/**
 * The test clock, as a process stopped from `from` to `to` (virtual ms) sees
 * it: a sleep that would end in between ends at `to`.
 */
const stoppedBetween = (from: number, to: number) =>
  Clock.clockWith((base) => {
    const clock: Clock.Clock = Object.create(base)
    Object.defineProperty(clock, "sleep", {
      value: (duration: Duration.Duration) => {
        const now = base.currentTimeMillisUnsafe()
        const end = now + Duration.toMillis(duration)
        return base.sleep(end >= from && end < to ? Duration.millis(to - now) : duration)
      }
    })
    return Effect.succeed(clock)
  })

describe("a stalled dispatcher (fiber dispatcher, TestClock)", () => {
  it.effect("the trial: the process stopped 3 s while 25 actions wait: its late tick drops them (stalled), counted and said once; nothing planned before the stop is applied after it; the next put goes", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const { events, server } = yield* eventRobot
      // camera times of 0 say "no frame": start the clock at 1 s; the process stops at 1.45 s until 4.45 s
      yield* TestClock.adjust(1000)
      const stopped = yield* stoppedBetween(1450, 4450)
      yield* Effect.gen(function*() {
        const client = yield* PolicyClient.make({ quiet: true })
        yield* Effect.andThen(server.updateImage("wrist", new Uint8Array(72)), server.updateImage("scene", new Uint8Array(18)))
        yield* client.getObs
        yield* client.putActions(Array.from({ length: 30 }, (_, i) => row(i)))
        yield* client.startActionDispatch(10)
        // ticks at 1.0, …, 1.4 s send 0..4; the tick of 1.5 s runs at 4.45 s, the grid's current one (4.4 s) at once
        yield* advance(3500)
        const seen = yield* events
        assert.deepStrictEqual(seen.map(([event]) => event), ["a0", "a1", "a2", "a3", "a4"])
        assert.strictEqual(yield* client.pendingActions, 0)
        assert.deepStrictEqual(yield* client.droppedActions, drops({ stalled: 25 }))
        // a chunk computed at once from the observation the stop left as the latest (1.0 s) is as stale: dropped
        yield* client.putActions([50, 51].map(row))
        assert.strictEqual((yield* client.droppedActions).stalled, 27)
        // one planned from an observation after the stop goes at the next ticks
        yield* Effect.andThen(server.updateImage("wrist", new Uint8Array(72)), server.updateImage("scene", new Uint8Array(18)))
        yield* client.getObs
        yield* client.putActions([100, 101].map(row))
        yield* advance(300)
        assert.deepStrictEqual((yield* events).slice(5), [["a100", 4600], ["a101", 4700]])
        assert.strictEqual((yield* client.droppedActions).stalled, 27)
      }).pipe(Effect.provideService(Clock.Clock, stopped), Effect.scoped, Effect.provide(logs.layer))
      const said = logs.lines.filter((line) => line.includes("did not run"))
      assert.deepStrictEqual(said, [25, 2].map((n) =>
        "Warn: chiral: action dispatch on this thread did not run for over 1 s (this process was stopped, or this " +
        `thread blocked or starved of CPU): ${n} actions planned before it dropped (waiting, or put since from an ` +
        "older observation; counted in droppedActions().stalled); actions planned after it go on"
      ))

    }).pipe(Effect.provide(Pair.memory())))

  it.effect("a stop under 1 s drops nothing: the queue goes on, one action per tick", () =>
    Effect.gen(function*() {
      const { events, server } = yield* eventRobot
      yield* TestClock.adjust(1000)
      const stopped = yield* stoppedBetween(1450, 2330)
      yield* Effect.gen(function*() {
        const client = yield* PolicyClient.make({ quiet: true })
        yield* Effect.andThen(server.updateImage("wrist", new Uint8Array(72)), server.updateImage("scene", new Uint8Array(18)))
        yield* client.getObs
        yield* client.putActions(Array.from({ length: 10 }, (_, i) => row(i)))
        yield* client.startActionDispatch(10)
        yield* advance(1800)
        // 0..4 on the grid; 5 at the late tick (2.33 s), then 6.. from 2.4 s on
        assert.deepStrictEqual((yield* events).map(([event, at]) => `${event}@${at}`), [
          "a0@1000", "a1@1100", "a2@1200", "a3@1300", "a4@1400", "a5@2330", "a6@2400", "a7@2500", "a8@2600", "a9@2700"
        ])
        assert.strictEqual((yield* client.droppedActions).stalled, 0)
      }).pipe(Effect.provideService(Clock.Clock, stopped), Effect.scoped)
    }).pipe(Effect.provide(Pair.memory())))
})
