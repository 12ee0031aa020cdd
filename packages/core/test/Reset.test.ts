// PolicyClient.reset and the actions planned before it, on virtual time
// (TestClock) over the in-memory transport, with PolicyClient's own
// dispatcher: nothing planned before a reset reaches the robot after it.
// The robot records what it did in order: each action applied, each reset.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Ref, SubscriptionRef } from "effect"
import { TestClock } from "effect/testing"
import { Observation } from "@chiral/protocol"
import { type Handlers, PolicyClient, PolicyServer } from "../src/index.js"
import * as Robot from "@chiral/testing/Robot"
import * as Pair from "@chiral/testing/Pair"
import { advance, settle } from "@chiral/testing/VirtualTime"
import { drops } from "@chiral/testing/Drops"

const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]

/**
 * The test robot, saying in order what it did: `a<v>` for each action applied
 * (v its first value), `reset` when a reset begins. Its reset waits for `hold`
 * (each time) when given one.
 */
const eventRobot = (options: { readonly hold?: Effect.Effect<void>; readonly metadata?: Record<string, unknown> } = {}) =>
  Effect.gen(function*() {
    const recorder = yield* Robot.makeRecorder
    const events = yield* Ref.make<ReadonlyArray<string>>([])
    const say = (event: string) => Ref.update(events, (list) => [...list, event])
    const robot = Robot.handlers(recorder)
    const handlers: Handlers<never, PolicyServer.PolicyServer> = {
      ...robot,
      ...(options.metadata === undefined ? {} : { getMetadata: Effect.succeed(options.metadata) }),
      reset: Effect.andThen(say("reset"), Effect.andThen(options.hold ?? Effect.void, robot.reset!)),
      applyAction: (action, context) => Effect.andThen(say(`a${action.data[0]}`), robot.applyAction!(action, context))
    }
    const server = yield* PolicyServer.make({
      cameras: Robot.cameras,
      proprios: Robot.proprios,
      coalesceActions: false,
      handlers
    })
    return { server, events: Ref.get(events) }
  })

/** A new frame on every camera now (virtual time): the next observation is later than the last. */
const newFrames = (server: PolicyServer.PolicyServerApi) =>
  Effect.andThen(server.updateImage("wrist", new Uint8Array(72)), server.updateImage("scene", new Uint8Array(18)))

const afterReset = (events: ReadonlyArray<string>) => events.slice(events.lastIndexOf("reset") + 1)

describe("reset: nothing planned before it is sent after it (fiber dispatcher, TestClock)", () => {
  it.effect("the trial: 30 actions at 10 Hz, reset after 1 s: the 20 still queued are dropped, counted and logged once, never applied after the reset; latestObs is the reset's", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const { events, server } = yield* eventRobot()
        const client = yield* PolicyClient.make({ quiet: true })
        // camera times of 0 say "no frame": start the clock at 1 s
        yield* TestClock.adjust(1000)
        yield* newFrames(server)
        yield* client.getObs
        yield* client.putActions(Array.from({ length: 30 }, (_, i) => row(i)))
        yield* client.startActionDispatch(10)
        // ticks at 0, 100, …, 900 ms: actions 0..9 sent; the reset comes before the tick at 1 s
        yield* advance(950)
        assert.strictEqual(yield* client.pendingActions, 20)
        yield* newFrames(server)
        const { obs } = yield* client.reset
        // the reset's observation is the latest, before anything else comes
        const latest = yield* SubscriptionRef.get(client.latestObs)
        assert.isTrue(Option.isSome(latest))
        assert.strictEqual(Option.getOrThrow(latest), obs)
        assert.strictEqual(obs.extra?.["source"], "reset")
        // the dispatcher goes on: 3 s later the robot has applied nothing planned before the reset
        yield* advance(3000)
        const seen = yield* events
        assert.deepStrictEqual(seen, [...Array.from({ length: 10 }, (_, i) => `a${i}`), "reset"])
        assert.strictEqual(yield* client.pendingActions, 0)
        assert.deepStrictEqual(yield* client.droppedActions, drops({ reset: 20 }))
        // a chunk planned after the reset goes
        yield* client.putActions([100, 101].map(row))
        yield* advance(300)
        assert.deepStrictEqual(afterReset(yield* events), ["a100", "a101"])
        // a reset with nothing queued drops nothing and says nothing
        yield* client.reset
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const said = logs.lines.filter((line) => line.includes("planned before the reset"))
      assert.deepStrictEqual(said, ["Info: chiral: reset: 20 queued actions dropped: planned before the reset"])
    }).pipe(Effect.provide(Pair.memory())))

  it.effect("while a reset is under way every action is dropped (step: Stale); after it, a chunk stamped before its observation is dropped, one stamped with it or unstamped goes", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const release = yield* Deferred.make<void>()
        const { events, server } = yield* eventRobot({ hold: Deferred.await(release) })
        const client = yield* PolicyClient.make({ quiet: true })
        yield* TestClock.adjust(1000)
        yield* newFrames(server)
        const before = yield* client.getObs
        yield* client.startActionDispatch(10)
        yield* advance(50)
        const resetting = yield* Effect.forkChild(client.reset, { startImmediately: true })
        yield* advance(10)
        assert.deepStrictEqual(yield* events, ["reset"])

        // the robot is resetting: the policy's chunks come from the episode before
        yield* client.putActions([1, 2].map(row))
        yield* client.putActions([3].map(row), { obsTimestamps: Observation.timestamps(before) })
        yield* client.putActions([4].map(row), { mode: "time-aligned", obsTimestamps: Observation.timestamps(before) })
        yield* client.putAction(row(5))
        yield* client.sendAction(row(6))
        // (forked: a step that were sent would wait behind the reset)
        const stepping = yield* Effect.forkChild(Effect.flip(client.step([row(7)])), { startImmediately: true })
        yield* settle
        const step = stepping.pollUnsafe()
        assert.isTrue(step !== undefined && Exit.isSuccess(step), "a step during the reset is refused at once")
        assert.strictEqual(Exit.isSuccess(step!) && step.value.reason, "Stale")
        assert.strictEqual(
          Exit.isSuccess(step!) && step.value.detail,
          "planned before the reset: a reset is under way, its observation not yet arrived"
        )
        assert.strictEqual(yield* client.pendingActions, 0)
        assert.strictEqual((yield* client.droppedActions).reset, 6)

        yield* advance(500)
        yield* newFrames(server)
        yield* Deferred.succeed(release, undefined)
        yield* advance(10)
        const { obs } = yield* Fiber.join(resetting)
        // after the reply: a chunk from the episode before, put with its timestamps, is dropped
        yield* client.putActions([8].map(row), { obsTimestamps: Observation.timestamps(before) })
        assert.strictEqual((yield* client.droppedActions).reset, 7)
        // one from the reset's observation, or unstamped (it carries the latest's: the reset's), goes
        yield* client.putActions([9].map(row), { obsTimestamps: Observation.timestamps(obs) })
        yield* client.putActions([10].map(row))
        yield* client.sendAction(row(11))
        yield* advance(300)
        assert.deepStrictEqual(yield* events, ["reset", "a11", "a9", "a10"])
        assert.strictEqual((yield* client.droppedActions).reset, 7)
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const said = logs.lines.filter((line) => line.includes("planned before the reset"))
      // once per reset: the first refusal during it says why, the one after the reply is counted only
      assert.deepStrictEqual(said, [
        "Warn: chiral: 2 actions dropped, planned before the reset (a reset is under way, its observation not yet arrived). " +
        "Further ones are counted in droppedActions().reset"
      ])
    }).pipe(Effect.provide(Pair.memory())))

  it.effect("a reset interrupted (its caller gave up) closes the fence: a put afterwards is queued", () =>
    Effect.gen(function*() {
      const { events, server } = yield* eventRobot({ hold: Effect.never })
      const client = yield* PolicyClient.make({ quiet: true })
      yield* TestClock.adjust(1000)
      yield* newFrames(server)
      yield* client.getObs
      const resetting = yield* Effect.forkChild(client.reset, { startImmediately: true })
      yield* settle
      assert.deepStrictEqual(yield* events, ["reset"])
      yield* Fiber.interrupt(resetting)
      yield* client.putActions([1].map(row))
      assert.strictEqual(yield* client.pendingActions, 1)
      assert.strictEqual((yield* client.droppedActions).reset, 0)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("a reset that times out closes the fence with its call (the robot's silence guards what follows)", () =>
    Effect.gen(function*() {
      const { events, server } = yield* eventRobot({ hold: Effect.never })
      const client = yield* PolicyClient.make({ quiet: true, resetTimeout: "1 second" })
      yield* TestClock.adjust(1000)
      yield* newFrames(server)
      yield* client.getObs
      yield* client.startActionDispatch(10)
      const failed = yield* Effect.forkChild(Effect.flip(client.reset), { startImmediately: true })
      yield* advance(1000)
      assert.strictEqual((yield* Fiber.join(failed)).reason, "Timeout")
      // the call is over: a put is queued, not dropped as planned before the reset
      yield* client.putActions([1].map(row))
      assert.strictEqual(yield* client.pendingActions, 1)
      // but the robot has left the reset unanswered beyond maxRobotSilence (1 s): its tick drops it
      yield* advance(150)
      assert.deepStrictEqual(yield* events, ["reset"])
      assert.deepStrictEqual(yield* Effect.map(client.droppedActions, (d) => [d.reset, d.robotSilent]), [0, 1])
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))
})
