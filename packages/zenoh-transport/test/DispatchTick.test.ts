// One tick of the Zenoh dispatcher worker (makeTick): every action it takes
// from the plan is counted exactly once, dispatched or unsent, whatever ends
// its put. The policy's thread adds the unsent ones to what it reports
// dropped when the connection goes; one counted nowhere made the liveness
// contract's accounting (dispatched + dropped = put) wait forever. The put is
// scripted, so each outcome is reached on purpose, never by timing.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Fiber } from "effect"
import { ZenohLinkError } from "@chiral/zenoh"
import { ActionPlan } from "@chiral/core/ActionPlan"
import { type Counts, type FromWorker, makeTick, TickClock } from "../src/ZenohDispatchWorker.js"

/** A tick over a plan holding one action, with `put` in place of the session's. */
const tickWith = (put: Effect.Effect<void, ZenohLinkError>, sessionEnded: boolean) =>
  Effect.gen(function*() {
    const plan = new ActionPlan(8)
    plan.setPeriod(0.1)
    plan.put({ actions: [{ shape: [1, 2], data: new Float32Array([0.5, -0.5]) }], mode: "append" }, 0)
    const counts: Counts = { dispatched: 0, unsent: 0 }
    const posted: Array<FromWorker> = []
    const tick = makeTick({
      session: { put: () => put },
      key: "chiral/c2s",
      plan,
      clock: new TickClock(yield* Clock.clockWith(Effect.succeed)),
      observed: () => ({}),
      silence: () => undefined,
      post: (message) => void posted.push(message),
      counts,
      sessionEnded: () => sessionEnded
    })
    return { tick, plan, counts, posted }
  })

const dispatchedReports = (posted: ReadonlyArray<FromWorker>) => posted.filter((m) => m.t === "dispatched").length

const linkError = new ZenohLinkError({ peer: "127.0.0.1:7447", operation: "write", reason: "write ECONNRESET" })

describe("Zenoh dispatcher tick: each action taken is counted once", () => {
  it.live("a put that completes: dispatched, and reported", () =>
    Effect.gen(function*() {
      const { counts, plan, posted, tick } = yield* tickWith(Effect.void, false)
      yield* tick
      assert.strictEqual(plan.size, 0)
      assert.deepStrictEqual(counts, { dispatched: 1, unsent: 0 })
      assert.strictEqual(dispatchedReports(posted), 1)
    }))

  it.live("a put that fails: unsent, not reported sent", () =>
    Effect.gen(function*() {
      const { counts, posted, tick } = yield* tickWith(Effect.fail(linkError), false)
      yield* Effect.flip(tick)
      assert.deepStrictEqual(counts, { dispatched: 0, unsent: 1 })
      assert.strictEqual(dispatchedReports(posted), 0)
    }))

  it.live("a put still waiting when the session's end interrupts the loop: unsent", () =>
    Effect.gen(function*() {
      const { counts, plan, posted, tick } = yield* tickWith(Effect.never, true)
      const fiber = yield* Effect.forkChild(tick, { startImmediately: true })
      // the action has left the plan: the tick waits on its put
      assert.strictEqual(plan.size, 0)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(counts, { dispatched: 0, unsent: 1 })
      assert.strictEqual(dispatchedReports(posted), 0)
    }))

  it.live("a put still waiting when the loop is stopped on a live session: it was queued on the link, dispatched", () =>
    Effect.gen(function*() {
      const { counts, plan, posted, tick } = yield* tickWith(Effect.never, false)
      const fiber = yield* Effect.forkChild(tick, { startImmediately: true })
      assert.strictEqual(plan.size, 0)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(counts, { dispatched: 1, unsent: 0 })
      assert.strictEqual(dispatchedReports(posted), 1)
    }))
})
