// PolicyClient over a WebSocket connection on a worker thread: the action queue
// and the dispatch ticks live on that thread (ActionDispatch). The same
// behaviour as the in-process dispatcher, over real loopback sockets, and
// ticks that do not wait for a blocked main thread. No timed assertions beyond
// order and counts.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Queue, SubscriptionRef } from "effect"
import { ClientTransport, ServerTransport, WebSocketTransport } from "../src/index.js"
import * as Pair from "./support/Pair.js"
import type * as Robot from "./support/Robot.js"

const onWorker = (thread: "worker" | "main") =>
  Layer.unwrap(
    Effect.map(ServerTransport, (server) =>
      Layer.succeed(ClientTransport, WebSocketTransport.makeClient(server.address, { thread })))
  ).pipe(Layer.provideMerge(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })))

const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]

/** Takes `n` applied actions from the recorder, in arrival order. */
const takeActions = (queue: Queue.Queue<Robot.Applied>, n: number) =>
  Effect.gen(function*() {
    const out: Array<number> = []
    while (out.length < n) out.push(Number((yield* Queue.take(queue)).action.data[0]))
    return out
  })

describe("off-thread action dispatch (WebSocket client on a worker)", () => {
  it.live("queued actions go out one per tick in order; replace swaps the plan; pending and dispatched follow", () =>
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
      while ((yield* SubscriptionRef.get(client.dispatched)) < 5) yield* Effect.sleep(5)
      assert.strictEqual(yield* SubscriptionRef.get(client.dispatched), 5)
      assert.strictEqual(yield* client.pendingActions, 0)
      yield* client.stopActionDispatch
      yield* client.putActions([20, 21].map(row))
      yield* Effect.sleep(50)
      assert.strictEqual(yield* client.pendingActions, 2)
      yield* client.clearActions
      assert.strictEqual(yield* client.pendingActions, 0)
    }).pipe(Effect.scoped, Effect.provide(onWorker("worker"))))

  it.live("actions carry the camera timestamps of the newest observation", () =>
    Effect.gen(function*() {
      const { client, recorder, server } = yield* Pair.startPair()
      yield* server.updateImage("wrist", new Uint8Array(72))
      const obs = yield* client.getObs
      yield* client.putAction(row(1))
      yield* client.startActionDispatch(100)
      const applied = yield* Queue.take(recorder.actions)
      assert.deepStrictEqual(applied.context.obsTimestamps, Object.fromEntries(obs.cameras.map((c) => [c.name, c.timestamp])))
    }).pipe(Effect.scoped, Effect.provide(onWorker("worker"))))

  it.live("ticks keep coming while the main thread is blocked", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      yield* client.putActions(Array.from({ length: 50 }, (_, i) => row(i)))
      yield* client.startActionDispatch(100)
      yield* Queue.take(recorder.actions)
      // Block this thread for 300 ms: ~30 ticks fall due meanwhile. The server
      // runs on this thread too, so it only reads them afterwards, but they were
      // sent: they are all waiting in its socket.
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
    }).pipe(Effect.scoped, Effect.provide(onWorker("worker"))))

  it.live("the main-thread client dispatches from its own fiber", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      yield* client.putActions([1, 2, 3].map(row))
      yield* client.startActionDispatch(200)
      assert.deepStrictEqual(yield* takeActions(recorder.actions, 3), [1, 2, 3])
    }).pipe(Effect.scoped, Effect.provide(onWorker("main"))))
})
