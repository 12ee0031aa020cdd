/**
 * The policy side's actions: a queue of them and a dispatcher that sends one
 * `apply_action` per tick of a fixed grid. Actions bypass the request slot
 * (`apply_action` has no reply), so a tick never waits behind an observation
 * still in transit. Each action carries the camera timestamps its chunk came
 * with (`PutOptions.obsTimestamps`), or else those of the latest observation.
 *
 * The waiting actions are an `ActionPlan` (chunk modes: append, replace,
 * time-aligned, blend; late actions dropped, never sent late). When the
 * transport offers a dispatcher on a thread of its own (`OffThreadDispatch`;
 * the WebSocket and Zenoh clients do), the plan and the ticks live there, out
 * of reach of this thread's pauses, and what it reports is tracked here: the
 * count sent, the waiting actions (the refill signal), what was dropped, and
 * the timing of each action.
 */
import { encodeFrame, type Observation, type ObsTimestamps, type Tensor } from "@chiral/protocol"
import { Duration, Effect, FiberHandle, Option, PubSub, Queue, type Scope, Stream, SubscriptionRef } from "effect"
import { type Action, toTensor } from "./Action.js"
import { type Drops, obsTime, portable, validate } from "./ActionPlan.js"
import * as ActionQueue from "./ActionQueue.js"
import * as Cadence from "./Cadence.js"
import { captureTime } from "./CameraState.js"
import { timestampsOf } from "./ObservationStream.js"
import type { OffThreadDispatch } from "./OffThreadDispatch.js"
import * as RefillSignal from "./RefillSignal.js"
import type { RequestError } from "./RequestError.js"
import { disconnected } from "./RequestSlot.js"
import type { Connection } from "./Transport.js"

/** One action as it left the client. */
export interface ActionTiming {
  /** Actions this client has sent so far, this one included. */
  readonly count: number
  /** When it left the client (s, capture clock: `CameraState.captureTime`). */
  readonly sentAt: number
  /** The time of the observation it was stamped with (s, its newest camera timestamp); undefined if none. */
  readonly obsTime: number | undefined
  /** How old that observation was when the action left: sentAt − obsTime (s). */
  readonly age: number | undefined
}

export interface ActionDispatcher {
  /** Sends one `apply_action` now (no reply). */
  readonly send: (action: Action) => Effect.Effect<void, RequestError>
  readonly put: (action: Action, options?: Omit<ActionQueue.PutOptions, "mode">) => Effect.Effect<void>
  /**
   * Puts a chunk: appends it (default), replaces every waiting action, or
   * aligns it in time / blends it (`ActionQueue.PutOptions`, `ActionPlan`).
   * Dies with a RangeError for a chunk that cannot be put.
   */
  readonly putAll: (chunk: Iterable<Action>, options?: ActionQueue.PutMode | ActionQueue.PutOptions) => Effect.Effect<void>
  readonly pending: Effect.Effect<number>
  readonly clear: Effect.Effect<void>
  /** Sends one queued action per tick (1/hz s, fixed grid); replaces a running dispatcher. */
  readonly start: (hz: number) => Effect.Effect<void>
  readonly stop: Effect.Effect<void>
  /** How many actions have been sent (once `stop` has returned, every one the dispatcher sent). */
  readonly dispatched: SubscriptionRef.SubscriptionRef<number>
  /** The waiting actions as they change, and the low-water mark. */
  readonly refill: RefillSignal.RefillSignal
  /** What the queue has dropped so far (late, replaced, overflow). */
  readonly dropped: Effect.Effect<Drops>
  /** One element per action sent, as it leaves (a subscriber that falls 4096 behind loses the oldest). */
  readonly timings: Stream.Stream<ActionTiming>
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

const timing = (count: number, sentAt: number, stamp: ObsTimestamps | undefined): ActionTiming => {
  const observed = obsTime(stamp)
  return { count, sentAt, obsTime: observed, age: observed === undefined ? undefined : sentAt - observed }
}

const optionsOf = (options: ActionQueue.PutMode | ActionQueue.PutOptions | undefined): ActionQueue.PutOptions =>
  typeof options === "string" ? { mode: options } : options ?? {}

/**
 * Actions sent, counted synchronously where they are sent or reported, and
 * published in `dispatched`: by the sending fiber, or (for an off-thread
 * dispatcher, whose reports arrive outside any fiber) by a fiber woken per
 * report, and by `sync` once a request to the worker has returned, so that
 * after `stop` the count includes every action the worker sent.
 */
const makeCount = Effect.gen(function*() {
  const dispatched = yield* SubscriptionRef.make(0)
  let here = 0
  let offThread = 0
  const total = () => here + offThread
  // read under the ref's lock: concurrent publications cannot go backwards
  const sync = SubscriptionRef.update(dispatched, () => total())
  return {
    dispatched,
    sync,
    /** One more sent from this thread: its number. */
    sentHere: () => ++here + offThread,
    /** The worker has sent `count` in all: the total. */
    sentOffThread: (count: number) => {
      offThread = count
      return total()
    }
  }
})

/**
 * Tracks what an off-thread dispatcher reports: sends counted (`count`), the
 * waiting actions in `refill` and timings published at once (synchronous).
 */
const followOffThread = (
  offThread: OffThreadDispatch,
  count: Effect.Success<typeof makeCount>,
  timings: PubSub.PubSub<ActionTiming>
) =>
  Effect.gen(function*() {
    const refill = yield* RefillSignal.make(0)
    let dropped: Drops = { late: 0, replaced: 0, overflow: 0 }
    offThread.onQueue((state) => {
      dropped = state.dropped
      refill.set(state.pending)
    })
    const wake = yield* Queue.sliding<void>(1)
    offThread.onDispatched((sent, at, _due, observed) => {
      const total = count.sentOffThread(sent)
      Queue.offerUnsafe(wake, undefined)
      const sentAt = at / 1000
      PubSub.publishUnsafe(timings, {
        count: total,
        sentAt,
        obsTime: observed,
        age: observed === undefined ? undefined : sentAt - observed
      })
    })
    yield* Queue.take(wake).pipe(Effect.andThen(count.sync), Effect.forever, Effect.forkScoped)
    return { refill, dropped: Effect.sync(() => dropped) }
  })

export const make = (context: DispatchContext): Effect.Effect<ActionDispatcher, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { capacity, connection, latestObs, offThread } = context
    const count = yield* makeCount
    const timings = yield* PubSub.sliding<ActionTiming>(4096)
    /** Sends `action` (stamped `stamp`, or with the latest observation's); `at`: when it was taken (s). */
    const sendTensor = (action: Tensor, stamp: ObsTimestamps | undefined, at?: number) =>
      Effect.suspend((): Effect.Effect<void, RequestError> => {
        const lost = context.lost()
        if (lost !== undefined) return Effect.fail(disconnected("apply_action", lost))
        const obsTimestamps = stamp ?? timestampsOf(SubscriptionRef.getUnsafe(latestObs))
        const frame = encodeFrame({ type: "apply_action", action, obsTimestamps })
        return connection.send(frame).pipe(
          Effect.mapError((error) => disconnected("apply_action", error.message)),
          Effect.andThen(at === undefined ? captureTime : Effect.succeed(at)),
          Effect.flatMap((sentAt) => PubSub.publish(timings, timing(count.sentHere(), sentAt, obsTimestamps))),
          Effect.andThen(count.sync)
        )
      })
    const send = (action: Action) => Effect.suspend(() => sendTensor(toTensor(action), undefined))
    const common = { send, dispatched: count.dispatched, timings: Stream.fromPubSub(timings) }

    if (offThread !== undefined) {
      const followed = yield* followOffThread(offThread, count, timings)
      const putAll = (chunk: Iterable<Action>, options?: ActionQueue.PutMode | ActionQueue.PutOptions) =>
        Effect.suspend(() => {
          const { mode = "append", obsTimestamps } = optionsOf(options)
          const actions = Array.from(chunk, toTensor)
          const crossing = portable(mode, actions.length)
          // refused here, as the fiber dispatcher would (the worker refuses only blends of mismatched shapes)
          const invalid = validate({ actions: [], mode: crossing, obsTimestamps })
          if (invalid !== undefined) return Effect.die(new RangeError(invalid))
          return offThread.put(actions, { mode: crossing, obsTimestamps }, capacity)
        })
      return {
        ...common,
        put: (action, options) => putAll([action], { obsTimestamps: options?.obsTimestamps }),
        putAll,
        pending: offThread.pending,
        clear: offThread.clear,
        start: (hz) => Effect.flatMap(Cadence.periodOf(hz), (period) => offThread.start(Duration.toMillis(period))),
        stop: Effect.andThen(offThread.stop, count.sync),
        refill: followed.refill,
        dropped: followed.dropped
      }
    }

    const queue = yield* ActionQueue.make(capacity)
    const running = yield* FiberHandle.make()
    /**
     * One dispatch loop. The grid's origin is its first tick (`Cadence.fixed`
     * anchors it there); a tick's grid time is the grid point nearest to when
     * it runs.
     */
    const loop = (period: Duration.Duration) =>
      Effect.suspend(() => {
        const seconds = Duration.toSeconds(period)
        let origin: number | undefined
        const tick = Effect.flatMap(captureTime, (now) => {
          origin ??= now
          return queue.takeAtTick(origin + Math.round((now - origin) / seconds) * seconds)
        }).pipe(Effect.flatMap((next) =>
          Option.isSome(next) ? sendTensor(next.value.action, next.value.obsTimestamps, next.value.at) : Effect.void
        ))
        return Cadence.untilDisconnected("action dispatch", tick, period)
      })
    return {
      ...common,
      put: queue.put,
      putAll: (chunk, options) => Effect.asVoid(queue.putAll(chunk, options)),
      pending: queue.size,
      clear: queue.clear,
      start: (hz) =>
        Effect.flatMap(Cadence.periodOf(hz), (period) =>
          Effect.andThen(queue.setRate(hz), FiberHandle.run(running)(loop(period)))).pipe(Effect.asVoid),
      stop: FiberHandle.clear(running),
      refill: queue.refill,
      dropped: queue.dropped
    }
  })
