/**
 * The policy side's actions: a queue of them and a dispatcher that sends one
 * `apply_action` per tick of a fixed grid. Actions bypass the request slot
 * (`apply_action` has no reply), so a tick never waits behind an observation
 * still in transit. Each action carries the camera timestamps of the latest
 * observation.
 *
 * When the transport offers a dispatcher on a thread of its own
 * (`OffThreadDispatch`; the WebSocket and Zenoh clients do), the queue and the
 * ticks live there, out of reach of this thread's pauses, and what it reports
 * sent is counted here.
 */
import { encodeFrame, type Observation, type Tensor } from "@chiral/protocol"
import { Duration, Effect, FiberHandle, Option, Queue, type Scope, SubscriptionRef } from "effect"
import { type Action, toTensor } from "./Action.js"
import * as ActionQueue from "./ActionQueue.js"
import * as Cadence from "./Cadence.js"
import { timestampsOf } from "./ObservationStream.js"
import type { OffThreadDispatch } from "./OffThreadDispatch.js"
import type { RequestError } from "./RequestError.js"
import { disconnected } from "./RequestSlot.js"
import type { Connection } from "./Transport.js"

export interface ActionDispatcher {
  /** Sends one `apply_action` now (no reply). */
  readonly send: (action: Action) => Effect.Effect<void, RequestError>
  readonly put: (action: Action) => Effect.Effect<void>
  /** Appends a chunk (default), or replaces every waiting action with it. */
  readonly putAll: (chunk: Iterable<Action>, mode?: ActionQueue.PutMode) => Effect.Effect<void>
  readonly pending: Effect.Effect<number>
  readonly clear: Effect.Effect<void>
  /** Sends one queued action per tick (1/hz s, fixed grid); replaces a running dispatcher. */
  readonly start: (hz: number) => Effect.Effect<void>
  readonly stop: Effect.Effect<void>
  /** How many actions have been sent. */
  readonly dispatched: SubscriptionRef.SubscriptionRef<number>
}

export interface DispatchContext {
  readonly connection: Connection
  /** Why the connection is gone; undefined while it is up. */
  readonly lost: () => string | undefined
  readonly latestObs: SubscriptionRef.SubscriptionRef<Option.Option<Observation>>
  readonly offThread: OffThreadDispatch | undefined
  /** Actions that may wait; beyond it the oldest are dropped. */
  readonly capacity: number
}

/** Counts, in `dispatched`, what an off-thread dispatcher reports sent. */
const countOffThread = (offThread: OffThreadDispatch, dispatched: SubscriptionRef.SubscriptionRef<number>) =>
  Effect.gen(function*() {
    const counts = yield* Queue.unbounded<number>()
    let reported = 0
    offThread.onDispatched((count) => {
      Queue.offerUnsafe(counts, count - reported)
      reported = count
    })
    yield* Queue.take(counts).pipe(
      Effect.flatMap((sent) => SubscriptionRef.update(dispatched, (n) => n + sent)),
      Effect.forever,
      Effect.forkScoped
    )
  })

export const make = (context: DispatchContext): Effect.Effect<ActionDispatcher, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { capacity, connection, latestObs, offThread } = context
    const dispatched = yield* SubscriptionRef.make(0)
    const sendTensor = (action: Tensor) =>
      Effect.suspend((): Effect.Effect<void, RequestError> => {
        const lost = context.lost()
        if (lost !== undefined) return Effect.fail(disconnected("apply_action", lost))
        const frame = encodeFrame({
          type: "apply_action",
          action,
          obsTimestamps: timestampsOf(SubscriptionRef.getUnsafe(latestObs))
        })
        return connection.send(frame).pipe(
          Effect.mapError((error) => disconnected("apply_action", error.message)),
          Effect.andThen(SubscriptionRef.update(dispatched, (n) => n + 1))
        )
      })
    const send = (action: Action) => Effect.suspend(() => sendTensor(toTensor(action)))

    if (offThread !== undefined) {
      yield* countOffThread(offThread, dispatched)
      return {
        send,
        put: (action) => Effect.suspend(() => offThread.put([toTensor(action)], false, capacity)),
        putAll: (chunk, mode) => Effect.suspend(() => offThread.put(Array.from(chunk, toTensor), mode === "replace", capacity)),
        pending: offThread.pending,
        clear: offThread.clear,
        start: (hz) => Effect.flatMap(Cadence.periodOf(hz), (period) => offThread.start(Duration.toMillis(period))),
        stop: offThread.stop,
        dispatched
      }
    }

    const queue = yield* ActionQueue.make(capacity)
    const running = yield* FiberHandle.make()
    const tick = Effect.flatMap(queue.poll, (next) => Option.isSome(next) ? sendTensor(next.value) : Effect.void)
    return {
      send,
      put: queue.put,
      putAll: queue.putAll,
      pending: queue.size,
      clear: queue.clear,
      start: (hz) =>
        Effect.flatMap(Cadence.periodOf(hz), (period) =>
          FiberHandle.run(running)(Cadence.untilDisconnected("action dispatch", tick, period))).pipe(
          Effect.asVoid
        ),
      stop: FiberHandle.clear(running),
      dispatched
    }
  })
