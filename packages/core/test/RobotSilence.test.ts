// A robot that leaves a request unanswered: the actions due once it has been
// silent beyond the client's maxRobotSilence are dropped, not sent, until it
// answers. As plain logic (ActionPlan with a silence cell), and end to end on
// TestClock over the in-memory transport (the dispatcher on the client's fiber;
// the workers' path is DispatchContract's, over real sockets).
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, Queue, Scope, Stream, SubscriptionRef } from "effect"
import { encodeFrame, Observation } from "@chiral/protocol"
import { TestClock } from "effect/testing"
import { ActionPlan, type Rows } from "../src/ActionPlan.js"
import * as RobotSilence from "../src/RobotSilence.js"
import { type Connection, type Handlers, MemoryTransport, PolicyClient, PolicyServer } from "../src/index.js"
import * as RequestSlot from "../src/RequestSlot.js"
import * as SilenceReport from "../src/SilenceReport.js"
import * as Pair from "@chiral/testing/Pair"
import * as Robot from "@chiral/testing/Robot"

const row = (v: number): Rows => ({ shape: [1], data: Float32Array.from([v]) })

describe("RobotSilence", () => {
  it("a request sets when the robot was asked (the oldest unanswered one); any answer clears it and says how long it took", () => {
    const silence = RobotSilence.make(1)
    assert.isFalse(RobotSilence.isSilent(silence.cell, 100))
    silence.asked(10)
    silence.asked(10.5)
    assert.isFalse(RobotSilence.isSilent(silence.cell, 11))
    assert.isTrue(RobotSilence.isSilent(silence.cell, 11.01))
    assert.strictEqual(silence.answered(12), 2)
    assert.isFalse(RobotSilence.isSilent(silence.cell, 100))
    assert.strictEqual(silence.answered(13), 0)
    assert.strictEqual(RobotSilence.limitOf(silence.cell), 1)
  })

  it("ActionPlan: the action due while the robot is silent beyond its limit is taken and dropped (robotSilent), not sent", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    plan.put({ actions: [0, 1, 2, 3, 4].map(row), mode: "append" }, 0)
    const silence = RobotSilence.make(1)
    silence.asked(0.05)
    assert.strictEqual(plan.take(0.1, 0.1, silence.cell)?.action.data[0], 0)
    assert.strictEqual(plan.take(1.05, 1.05, silence.cell)?.action.data[0], 1)
    // 1.1 s after the request: silent
    assert.isUndefined(plan.take(1.15, 1.15, silence.cell))
    assert.isUndefined(plan.take(1.25, 1.25, silence.cell))
    assert.deepStrictEqual(plan.dropped, { late: 0, replaced: 0, overflow: 0, robotSilent: 2, stalled: 0 })
    assert.strictEqual(plan.size, 1)
    silence.answered(1.26)
    // a dropped action was taken: the next waits half a period, as after one sent
    assert.isUndefined(plan.take(1.28, 1.28, silence.cell))
    assert.strictEqual(plan.take(1.35, 1.35, silence.cell)?.action.data[0], 4)
    assert.strictEqual(plan.dropped.robotSilent, 2)
  })
})

/** Lets the fibers woken at this instant run. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 8; i++) yield* Effect.yieldNow
})

/** Moves the TestClock to `millis` in 10 ms steps. */
const advanceTo = (millis: number) =>
  Effect.gen(function*() {
    yield* settle
    while ((yield* Clock.currentTimeMillis) < millis) {
      yield* TestClock.adjust(10)
      yield* settle
    }
  })

/**
 * A robot whose second getObs (asked at 1 s) answers at 3.95 s, a client
 * dispatching 100 actions at 10 Hz from 0 s that sends one action itself at
 * 2.5 s and puts two more at 4.5 s: what the robot received, what was
 * dropped, and what was logged.
 */
const silentRobotRun = (client: PolicyClient.PolicyClientOptions) =>
  Effect.gen(function*() {
    const logs = yield* Robot.captureLogs
    const run = yield* Effect.gen(function*() {
      const { client: policy, recorder } = yield* Pair.startPair({
        obsDelayMillis: (n) => (n === 2 ? 2950 : 0),
        client
      })
      yield* policy.getObs
      yield* policy.putActions(Array.from({ length: 100 }, (_, i) => [i]))
      yield* policy.startActionDispatch(10)
      yield* advanceTo(1000)
      const unanswered = yield* Effect.forkChild(policy.getObs)
      yield* advanceTo(2500)
      yield* policy.sendAction([500])
      yield* advanceTo(4500)
      yield* Fiber.join(unanswered)
      yield* policy.putActions([[600], [601]])
      yield* advanceTo(5000)
      yield* policy.stopActionDispatch
      const received = (yield* Queue.clear(recorder.actions)).map((a) => Number(a.action.data[0]))
      return { received, dropped: yield* policy.droppedActions, sent: yield* SubscriptionRef.get(policy.dispatched) }
    }).pipe(Effect.scoped, Effect.provide(logs.layer))
    return { ...run, lines: logs.lines }
  }).pipe(Effect.provide(MemoryTransport.layer()))

describe("PolicyClient: a silent robot, on TestClock", () => {
  it.effect("by default (1 s), the actions due from 1 s after the unanswered request until its answer are dropped, a send too; what still waits then is dropped; said twice", () =>
    Effect.gen(function*() {
      const { dropped, lines, received, sent } = yield* silentRobotRun({})
      // ticks every 100 ms: 0–2.0 s sent (21), 2.1–3.9 s dropped (19), the send at 2.5 s
      // dropped, the 60 left at 3.95 s dropped; the chunk put after is sent
      assert.strictEqual(dropped.robotSilent, 19 + 1 + 60)
      assert.deepStrictEqual(received, [...Array.from({ length: 21 }, (_, i) => i), 600, 601])
      assert.strictEqual(sent, received.length)
      const said = lines.filter((l) => l.includes("the robot"))
      assert.deepStrictEqual(said, [
        "Warn: chiral: nothing has come from the robot for over 1 s while a request waits (its process stopped, its loop blocked, a reset under way, or this process's thread paused): the actions due are dropped, not sent, until it answers (counted in droppedActions().robotSilent)",
        "Warn: chiral: the robot answered again after 2.95 s; 20 actions due meanwhile were dropped, and 60 actions still waiting, planned before it"
      ])
    }))

  it.effect("maxRobotSilence: false sends every action, as the references do", () =>
    Effect.gen(function*() {
      const { dropped, lines, received } = yield* silentRobotRun({ maxRobotSilence: false })
      assert.strictEqual(dropped.robotSilent, 0)
      // the send at 2.5 s goes out between ticks 25 and 26, the chunk put at 4.5 s after the 46th
      assert.deepStrictEqual(received, [
        ...Array.from({ length: 26 }, (_, i) => i),
        500,
        ...Array.from({ length: 25 }, (_, i) => 26 + i)
      ])
      assert.isFalse(lines.some((l) => l.includes("the robot")))
    }))

  it.effect("a limit that is not longer than 0 is refused", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(PolicyClient.make({ quiet: true, maxRobotSilence: 0 }))
      assert.isTrue(exit._tag === "Failure")
    }).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer())))
})

describe("RequestSlot and the silence cell", () => {
  it.effect("a request arms it; a frame that does not answer it (another client's reply, a late one) re-arms it from then; its answer clears it", () =>
    Effect.gen(function*() {
      const robot = RobotSilence.make(1)
      const answeredAfter: Array<number> = []
      const connection: Connection = { id: "test", frames: Stream.never, send: () => Effect.void, close: () => Effect.void }
      const slot = yield* RequestSlot.make(connection, () => undefined, () => Effect.void, {}, {
        robot,
        answered: (silentFor) => Effect.sync(() => void answeredAfter.push(silentFor))
      })
      const asking = yield* Effect.forkChild(slot.request({ type: "obs_request" }, 60_000))
      yield* settle
      assert.strictEqual(RobotSilence.asked(robot.cell), 0)
      yield* TestClock.adjust(1500)
      // not the answer it waits for: the robot is reading, and the request is watched from now
      yield* slot.receive(encodeFrame({ type: "metadata_response", data: {} }))
      assert.strictEqual(RobotSilence.asked(robot.cell), 1.5)
      assert.deepStrictEqual(answeredAfter, [1.5])
      yield* TestClock.adjust(200)
      yield* slot.receive(encodeFrame({ type: "obs_response", obs: Observation.make({ timestamp: 1 }) }))
      assert.isTrue(Number.isNaN(RobotSilence.asked(robot.cell)))
      // 0.2 s: within the limit, not reported
      assert.deepStrictEqual(answeredAfter, [1.5])
      assert.strictEqual((yield* Fiber.join(asking)).type, "obs_response")
    }).pipe(Effect.scoped))
})

describe("SilenceReport", () => {
  it.effect("a worker's report of a drop that arrives while the end of a silence is being said belongs to it: one opening line, exact counts", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const robot = RobotSilence.make(1)
      const report = SilenceReport.make()
      report.attach(robot.cell, true)
      robot.asked(0)
      yield* TestClock.adjust(2000)
      yield* Effect.gen(function*() {
        yield* report.planDropped(1)
        yield* report.planDropped(3)
        let asked = 0
        // the plan's count: 3 when first asked, 4 after the tick that dropped while discarding
        const planTotal = Effect.sync(() => (++asked === 1 ? 3 : 4))
        const discard = Effect.andThen(report.planDropped(4), Effect.succeed(10))
        yield* report.answered(2, planTotal, discard)
        // cleared with it: a late report finds the robot answering
        yield* report.planDropped(5)
      }).pipe(Effect.provide(logs.layer))
      assert.isTrue(Number.isNaN(RobotSilence.asked(robot.cell)))
      assert.deepStrictEqual(logs.lines.map((l) => (l.includes("nothing has come") ? "opened" : l.includes("answered again") ? "ended" : l)), [
        "opened",
        "ended"
      ])
      assert.include(logs.lines[1], "4 actions due meanwhile were dropped, and 10 actions still waiting")
      assert.strictEqual(report.outsidePlans(), 10)
    }))
})

/** A robot whose first legacy step hangs `millis`; the first value of each step it took. */
const robotWhoseFirstStepHangs = (millis: number) =>
  Effect.gen(function*() {
    const steps: Array<number> = []
    const handlers: Handlers<never, PolicyServer.PolicyServer> = {
      ...Robot.handlers(yield* Robot.makeRecorder),
      applyAction: () => Effect.void,
      step: (action) =>
        Effect.gen(function*() {
          steps.push(Number(action.data[0]))
          if (steps.length === 1) yield* Effect.sleep(millis)
          const server = yield* PolicyServer.PolicyServer
          return { obs: yield* server.makeObs(), reward: 0, terminated: false, truncated: false, info: {} }
        })
    }
    yield* PolicyServer.make({ cameras: Robot.cameras, proprios: Robot.proprios, handlers })
    return steps
  })

/**
 * A robot whose first legacy step hangs `millis` (its process stopped), a
 * client whose requests time out after 2 s, its first step sent at 0 s and
 * timed out at 2 s; the first value of each step the robot took.
 */
const firstStepHangs = (millis: number) =>
  Effect.gen(function*() {
    const steps = yield* robotWhoseFirstStepHangs(millis)
    const client = yield* PolicyClient.make({ quiet: true, requestTimeout: "2 seconds" })
    yield* client.getObs
    const first = yield* Effect.forkChild(Effect.flip(client.step([[1, 0, 0, 0, 0, 0, 0]])), { startImmediately: true })
    yield* advanceTo(2000)
    return { client, first, steps }
  })

describe("PolicyClient: a legacy step and a silent robot, on TestClock", () => {
  it.effect("a step that waited for the slot behind one the robot left unanswered is not sent into the silence: Stale; the timed-out one says it may still be applied", () =>
    Effect.gen(function*() {
      // the robot stops (its step handler hangs) at its first step, for 10 s
      const { client, first, steps } = yield* firstStepHangs(10_000)
      const timedOut = yield* Fiber.join(first)
      assert.strictEqual(timedOut.reason, "Timeout")
      assert.include(timedOut.detail, "the step was sent, and a robot that resumes may still apply it")
      // the first step holds the slot until twice its timeout (4 s): the second waits for it
      const second = yield* Effect.forkChild(Effect.flip(client.step([[2, 0, 0, 0, 0, 0, 0]])), { startImmediately: true })
      yield* advanceTo(4100)
      const refused = yield* Fiber.join(second)
      assert.strictEqual(refused.reason, "Stale")
      assert.match(refused.detail ?? "", /^not sent: the robot has answered nothing for 4\.\d s \(maxRobotSilence 1 s\) since an action it left unanswered; anything it answers ends this/)
      yield* advanceTo(12_000)
      assert.deepStrictEqual(steps, [1], "only the first step reached the robot")
    }).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer())))

  it.effect("a step asked for during a silence and sent once the robot answers again is refused: planned before it (Stale)", () =>
    Effect.gen(function*() {
      // the robot stops at its first step for 3 s: longer than the step's timeout (2 s), shorter than the slot's hold (4 s)
      const { client, first, steps } = yield* firstStepHangs(3000)
      assert.strictEqual((yield* Fiber.join(first)).reason, "Timeout")
      // asked for at 2 s, planned on what the policy saw before the robot stopped; it waits for the slot
      const second = yield* Effect.forkChild(Effect.flip(client.step([[2, 0, 0, 0, 0, 0, 0]])), { startImmediately: true })
      yield* advanceTo(3100)
      const refused = yield* Fiber.join(second)
      assert.strictEqual(refused.reason, "Stale")
      assert.match(refused.detail ?? "", /^not sent: asked for before the robot's silence of 3\.0 s ended \(maxRobotSilence 1 s\): planned before it$/)
      // a step asked for after it goes
      yield* client.step([[3, 0, 0, 0, 0, 0, 0]])
      assert.deepStrictEqual(steps, [1, 3])
    }).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer())))

  it.effect("a step whose connection is lost after it went says so: the robot may still apply it", () =>
    Effect.gen(function*() {
      const serving = yield* Scope.make()
      const handlers: Handlers<never, PolicyServer.PolicyServer> = {
        ...Robot.handlers(yield* Robot.makeRecorder),
        applyAction: () => Effect.void,
        step: () => Effect.never
      }
      yield* PolicyServer.make({ cameras: Robot.cameras, proprios: Robot.proprios, handlers }).pipe(Scope.provide(serving))
      const client = yield* PolicyClient.make({ quiet: true, reconnect: false })
      yield* client.getObs
      const stepping = yield* Effect.forkChild(Effect.flip(client.step([[1, 0, 0, 0, 0, 0, 0]])), { startImmediately: true })
      yield* advanceTo(100)
      yield* Scope.close(serving, Exit.void)
      const lost = yield* Fiber.join(stepping)
      assert.strictEqual(lost.reason, "Disconnected")
      assert.include(lost.detail, "the step was sent, and a robot that resumes may still apply it")
    }).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer())))
})

describe("PolicyClient: a legacy step asked for once a silence has ended (TestClock)", () => {
  it.effect("a slow step answered after 3 s, then the next step at once (same TestClock instant): sent, not refused as planned before the silence", () =>
    Effect.gen(function*() {
      const steps = yield* robotWhoseFirstStepHangs(3000)
      const client = yield* PolicyClient.make({ quiet: true, requestTimeout: "10 seconds" })
      yield* client.getObs
      // the policy's loop: step, then step again on its answer
      const loop = yield* Effect.forkChild(
        Effect.gen(function*() {
          yield* client.step([[1, 0, 0, 0, 0, 0, 0]])
          return yield* Effect.flip(client.step([[2, 0, 0, 0, 0, 0, 0]])).pipe(Effect.map((e) => e.detail), Effect.orElseSucceed(() => "ok"))
        }),
        { startImmediately: true }
      )
      yield* advanceTo(3100)
      const outcome = yield* Fiber.join(loop)
      assert.strictEqual(outcome, "ok", `second step refused: ${outcome}`)
      assert.deepStrictEqual(steps, [1, 2])
    }).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer())))
})
