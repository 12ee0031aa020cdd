// The fiber dispatcher's queue on virtual time (TestClock): time-aligned chunks
// drop what is late instead of sending it late, blends merge by due time, and
// the refill signal fires when the queue falls below its low-water mark.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Ref, Stream } from "effect"
import { TestClock } from "effect/testing"
import { blend } from "../src/ActionPlan.js"
import * as ActionQueue from "../src/ActionQueue.js"
import * as Cadence from "../src/Cadence.js"

const actions = (...firsts: Array<number>) => firsts.map((v) => [v, 0])
const firstOf = (next: Option.Option<{ readonly data: ArrayLike<number | bigint> }>) =>
  Option.isSome(next) ? Number(next.value.data[0]) : undefined

/** Lets forked fibers run up to their next wait. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 8; i++) yield* Effect.yieldNow
})

/**
 * A dispatcher as PolicyClient runs it: one `take` per tick of a 10 Hz grid;
 * records (virtual ms, first value) of each action sent.
 */
const dispatch = (queue: ActionQueue.ActionQueue, sent: Ref.Ref<ReadonlyArray<readonly [number, number]>>) =>
  Effect.gen(function*() {
    const next = yield* queue.take
    if (Option.isNone(next)) return
    const at = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    yield* Ref.update(sent, (all) => [...all, [at, Number(next.value.action.data[0])] as const])
  }).pipe(Effect.repeat(Cadence.fixed("100 millis")))

describe("ActionQueue on TestClock", () => {
  it.effect("append and replace as before: one synchronous step, in order", () =>
    Effect.gen(function*() {
      const queue = yield* ActionQueue.make()
      yield* queue.putAll(actions(1, 2, 3))
      yield* queue.putAll(actions(4), "append")
      assert.strictEqual(firstOf(yield* queue.poll), 1)
      yield* queue.putAll(actions(9, 8), "replace")
      assert.deepStrictEqual([firstOf(yield* queue.poll), firstOf(yield* queue.poll), firstOf(yield* queue.poll)], [9, 8, undefined])
      assert.deepStrictEqual(yield* queue.dropped, { late: 0, replaced: 3, overflow: 0, robotSilent: 0, stalled: 0 })
    }))

  it.effect("a caller polling take when it likes is never judged a stall, however long between two takes", () =>
    Effect.gen(function*() {
      const queue = yield* ActionQueue.make()
      yield* queue.setRate(10)
      yield* queue.putAll([[1], [2], [3]])
      assert.isTrue(Option.isSome(yield* queue.take))
      yield* TestClock.adjust(2000)
      assert.deepStrictEqual(Option.map(yield* queue.take, (d) => d.action.data[0]), Option.some(2))
      assert.strictEqual((yield* queue.dropped).stalled, 0)
    }))

  it.effect("time-aligned: a chunk arriving 260 ms after its observation drops its late actions and sends the rest on their ticks", () =>
    Effect.gen(function*() {
      const queue = yield* ActionQueue.make()
      yield* queue.setRate(10)
      const sent = yield* Ref.make<ReadonlyArray<readonly [number, number]>>([])
      yield* TestClock.adjust("1 second")
      const observed = { cam_0: 0.99, cam_1: 1.0 } // seconds, the capture clock
      yield* TestClock.adjust("260 millis")
      const dispatcher = yield* Effect.forkChild(dispatch(queue, sent))
      // inference took 260 ms: the slots of actions 0, 1 and 2 (due 1.0, 1.1, 1.2; ± 50 ms) have passed
      const late = yield* queue.putAll(actions(0, 1, 2, 3, 4, 5), { mode: "time-aligned", obsTimestamps: observed })
      assert.strictEqual(late, 3)
      yield* settle
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust("100 millis")
        yield* settle
      }
      // ticks at 1.26 (slot 3 is [1.25, 1.35)), 1.36, 1.46; none after: nothing left
      assert.deepStrictEqual(yield* Ref.get(sent), [[1260, 3], [1360, 4], [1460, 5]])
      assert.deepStrictEqual(yield* queue.dropped, { late: 3, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0 })
      yield* Fiber.interrupt(dispatcher)
    }))

  it.effect("time-aligned: an action whose slot passes while it waits (a stalled dispatcher) is dropped, never sent late", () =>
    Effect.gen(function*() {
      const queue = yield* ActionQueue.make()
      yield* queue.setRate(10)
      yield* queue.putAll(actions(0, 1, 2, 3, 4, 5, 6), { mode: "time-aligned", obsTimestamps: { cam: 0 } })
      assert.strictEqual(firstOf(yield* queue.poll), 0)
      // the next tick comes 320 ms later (a 300 ms stall): slots 1, 2 have ended, 3 is [0.25, 0.35)
      yield* TestClock.adjust("320 millis")
      assert.strictEqual(firstOf(yield* queue.poll), 3)
      // too early for slot 4 ([0.35, 0.45)): nothing goes, nothing is dropped
      yield* TestClock.adjust("20 millis")
      assert.isUndefined(firstOf(yield* queue.poll))
      // in slot 4, but within half a period of action 3 (sent at 0.32 s): it waits for the next tick
      yield* TestClock.adjust("20 millis")
      assert.isUndefined(firstOf(yield* queue.poll))
      yield* TestClock.adjust("40 millis")
      assert.strictEqual(firstOf(yield* queue.poll), 4)
      assert.deepStrictEqual((yield* queue.dropped).late, 2)
      assert.strictEqual(yield* queue.size, 2)
    }))

  it.effect("blend by time: a second chunk computed 100 ms later merges with what waits, slot by slot (ACT weights)", () =>
    Effect.gen(function*() {
      const m = 0.1
      const queue = yield* ActionQueue.make()
      yield* queue.setRate(10)
      const sent = yield* Ref.make<ReadonlyArray<readonly [number, number]>>([])
      yield* queue.putAll(actions(0, 10, 20, 30), { mode: blend(m), obsTimestamps: { cam: 0 } })
      const dispatcher = yield* Effect.forkChild(dispatch(queue, sent))
      yield* settle
      yield* TestClock.adjust("130 millis")
      // from the observation at 0.1 s, arriving at 0.13 s: its action 0 is for slot 1, whose tick
      // has gone (with 10): the next tick finds it late and drops it
      yield* queue.putAll(actions(100, 110, 120, 130), { mode: blend(m), obsTimestamps: { cam: 0.1 } })
      for (let i = 0; i < 6; i++) {
        yield* TestClock.adjust("100 millis")
        yield* settle
      }
      const w1 = Math.exp(-m)
      const mean = (a: number, b: number) => Math.fround((a + w1 * b) / (1 + w1))
      assert.deepStrictEqual(yield* Ref.get(sent), [
        [0, 0],
        [100, 10],
        [200, mean(20, 110)],
        [300, mean(30, 120)],
        [400, 130]
      ])
      assert.deepStrictEqual(yield* queue.dropped, { late: 1, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0 })
      yield* Fiber.interrupt(dispatcher)
    }))

  it.effect("refill signal: awaitBelow completes and lowWater emits when the count falls below the mark, not before", () =>
    Effect.gen(function*() {
      const queue = yield* ActionQueue.make()
      const marks = yield* Ref.make<ReadonlyArray<number>>([])
      const watcher = yield* queue.refill.lowWater(3).pipe(
        Stream.runForEach((n) => Ref.update(marks, (all) => [...all, n])),
        Effect.forkChild
      )
      yield* settle
      // empty at the start: below the mark once
      assert.deepStrictEqual(yield* Ref.get(marks), [0])
      yield* queue.putAll(actions(1, 2, 3, 4, 5))
      const waiting = yield* Effect.forkChild(queue.refill.awaitBelow(3))
      yield* settle
      yield* queue.poll
      yield* queue.poll
      yield* settle
      assert.isUndefined(waiting.pollUnsafe(), "3 still wait: not below 3")
      assert.deepStrictEqual(yield* Ref.get(marks), [0])
      yield* queue.poll
      assert.strictEqual(yield* Fiber.join(waiting), 2)
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(marks), [0, 2])
      // staying below emits nothing more; refilled and drained again emits again
      yield* queue.poll
      yield* queue.putAll(actions(6, 7, 8))
      yield* queue.clear
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(marks), [0, 2, 0])
      assert.strictEqual(yield* queue.refill.awaitBelow(1), 0)
      yield* Fiber.interrupt(watcher)
    }))

  it.effect("refill signal drives inference: with a 10 Hz dispatcher and chunks of 5 refilled below 3, the queue never runs dry", () =>
    Effect.gen(function*() {
      const queue = yield* ActionQueue.make()
      const sent = yield* Ref.make<ReadonlyArray<readonly [number, number]>>([])
      const inferences = yield* Ref.make<ReadonlyArray<number>>([])
      // a policy taking 150 ms per chunk, started by the refill signal
      const policy = Effect.gen(function*() {
        let next = 0
        for (;;) {
          yield* queue.refill.awaitBelow(3)
          yield* Ref.update(inferences, (all) => [...all, next])
          yield* Effect.sleep("150 millis")
          yield* queue.putAll(actions(next, next + 1, next + 2, next + 3, next + 4))
          next += 5
        }
      })
      yield* queue.putAll(actions(-5, -4, -3, -2, -1))
      const policyFiber = yield* Effect.forkChild(policy)
      const dispatcher = yield* Effect.forkChild(dispatch(queue, sent))
      yield* settle
      for (let i = 0; i < 20; i++) {
        yield* TestClock.adjust("100 millis")
        yield* settle
      }
      const values = (yield* Ref.get(sent)).map(([, v]) => v)
      // one action on every tick, in order: no gap while the next chunk was being computed
      assert.deepStrictEqual(values, Array.from({ length: 21 }, (_, i) => i - 5))
      // each inference started as the count fell to 2 (after the 3rd action of a chunk)
      assert.deepStrictEqual((yield* Ref.get(sent)).map(([at]) => at), Array.from({ length: 21 }, (_, i) => i * 100))
      assert.deepStrictEqual((yield* Ref.get(inferences)).slice(0, 4), [0, 5, 10, 15])
      yield* Fiber.interrupt(dispatcher)
      yield* Fiber.interrupt(policyFiber)
    }))
})
