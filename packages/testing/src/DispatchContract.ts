// What every client transport with an off-thread action dispatcher owes
// PolicyClient (see OffThreadDispatch), over real loopback connections: the same
// behaviour as the in-process dispatcher, and ticks that do not wait for a
// blocked main thread. Registered once per transport; no timed assertions
// beyond order and counts. The workers are the built JavaScript: run
// `npx tsc -b` first.
import { assert, it } from "@effect/vitest"
import { Effect, Option, Queue, Schedule, SubscriptionRef } from "effect"
import * as Pair from "./Pair.js"
import type * as Robot from "./Robot.js"

export const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]

/** Takes `n` applied actions from the recorder, in arrival order. */
export const takeActions = (queue: Queue.Queue<Robot.Applied>, n: number) =>
  Effect.gen(function*() {
    const out: Array<number> = []
    while (out.length < n) out.push(Number((yield* Queue.take(queue)).action.data[0]))
    return out
  })

/** Waits (bounded) until `check` holds. */
export const eventually = (check: Effect.Effect<boolean>) =>
  check.pipe(
    Effect.filterOrFail((ok) => ok),
    Effect.retry({ schedule: Schedule.spaced(10), times: 300 }),
    Effect.ignore
  )

/** Registers the shared tests; `transports(thread)` gives a server and a client whose dispatcher runs there. */
export const dispatchContract = (transports: (thread: "worker" | "main") => Pair.Transports) => {
  it.live("queued actions go out one per tick in order; replace swaps the plan; pending, stop, clear and dispatched follow", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      yield* client.putActions([1, 2, 3].map(row))
      assert.strictEqual(yield* client.pendingActions, 3)
      yield* client.putActions([10, 11, 12, 13].map(row), { mode: "replace" })
      yield* client.putAction(row(14))
      assert.strictEqual(yield* client.pendingActions, 5)
      yield* client.startActionDispatch(200)
      assert.deepStrictEqual(yield* takeActions(recorder.actions, 5), [10, 11, 12, 13, 14])
      // dispatched catches up once the worker's reports are processed here
      yield* eventually(Effect.map(SubscriptionRef.get(client.dispatched), (n) => n >= 5))
      assert.strictEqual(yield* SubscriptionRef.get(client.dispatched), 5)
      assert.strictEqual(yield* client.pendingActions, 0)
      yield* client.stopActionDispatch
      yield* client.putActions([20, 21].map(row))
      yield* Effect.sleep(50)
      assert.strictEqual(yield* client.pendingActions, 2)
      yield* client.clearActions
      assert.strictEqual(yield* client.pendingActions, 0)
      // started again, on a fresh grid
      yield* client.putActions([30, 31].map(row))
      yield* client.startActionDispatch(200)
      assert.deepStrictEqual(yield* takeActions(recorder.actions, 2), [30, 31])
      yield* Effect.sleep(30)
      assert.isTrue(Option.isNone(yield* Queue.poll(recorder.actions)))
    }).pipe(Effect.scoped, Effect.provide(transports("worker"))))

  it.live("actions carry the camera timestamps of the newest observation", () =>
    Effect.gen(function*() {
      const { client, recorder, server } = yield* Pair.startPair()
      yield* server.updateImage("wrist", new Uint8Array(72))
      yield* client.getObs
      yield* server.updateImage("wrist", new Uint8Array(72).fill(1))
      const obs = yield* client.getObs
      yield* client.putAction(row(1))
      yield* client.startActionDispatch(100)
      const applied = yield* Queue.take(recorder.actions)
      assert.deepStrictEqual(applied.context.obsTimestamps, Object.fromEntries(obs.cameras.map((c) => [c.name, c.timestamp])))
    }).pipe(Effect.scoped, Effect.provide(transports("worker"))))

  it.live("ticks keep coming while the main thread is blocked", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      yield* client.putActions(Array.from({ length: 50 }, (_, i) => row(i)))
      yield* client.startActionDispatch(100)
      yield* Queue.take(recorder.actions)
      // Block this thread for 300 ms: ~30 ticks fall due meanwhile. The server
      // runs on this thread too, so it only reads them afterwards, but they
      // were sent: they are all waiting in its socket.
      yield* Effect.sync(() => {
        const until = performance.now() + 300
        while (performance.now() < until) {
          // busy
        }
      })
      const burst = yield* Queue.takeAll(Queue.asDequeue(recorder.actions)).pipe(
        Effect.delay(20),
        Effect.map((all) => all.length)
      )
      assert.isAtLeast(burst, 20)
    }).pipe(Effect.scoped, Effect.provide(transports("worker"))))

  it.live("the main-thread client dispatches from its own fiber", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      yield* client.putActions([1, 2, 3].map(row))
      yield* client.startActionDispatch(200)
      assert.deepStrictEqual(yield* takeActions(recorder.actions, 3), [1, 2, 3])
    }).pipe(Effect.scoped, Effect.provide(transports("main"))))
}
