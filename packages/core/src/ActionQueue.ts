/**
 * The actions waiting for dispatch on PolicyClient's own fiber: an
 * `ActionPlan` (the chunk modes, late drops, capacity; the same logic the
 * dispatcher workers run) read against Effect's `Clock`, plus the refill
 * signal.
 *
 * A put changes the plan in one synchronous step, so the dispatcher never sees
 * half an old chunk and half a new one. Time is the capture clock in seconds
 * (`CameraState.captureTime`: the monotonic clock, virtual under TestClock),
 * the clock of the camera timestamps a timed chunk carries.
 *
 * `refill` is the refill signal (`RefillSignal`): the count of waiting
 * actions after every change, and the low-water mark.
 */
import type { ObsTimestamps, Tensor } from "@chiral/protocol"
import { Effect, Option } from "effect"
import { type Action, toTensor } from "./Action.js"
import { ActionPlan, type ChunkMode, type Drops, type Rows } from "./ActionPlan.js"
import { captureTime } from "./CameraState.js"
import * as RefillSignal from "./RefillSignal.js"

/** The modes PolicyClient's `putActions` has always had. */
export type PutMode = "append" | "replace"

export interface PutOptions {
  /** Default `append`. See `ActionPlan` for `time-aligned` and `blend(…)`. */
  readonly mode?: ChunkMode | undefined
  /**
   * The camera timestamps of the observation the chunk was computed from
   * (`obs.cameras[i].timestamp`, s): needed by `time-aligned`, aligns a blend
   * by time, and stamps the actions' `apply_action` in every mode.
   */
  readonly obsTimestamps?: ObsTimestamps | undefined
  /**
   * Seconds to add to `obsTimestamps` to place them on this machine's capture
   * clock, when the robot's clock is another one (`RobotClock`; PolicyClient
   * sets it). Default 0. Only timing uses it: the actions carry the
   * timestamps as given.
   */
  readonly clockOffset?: number | undefined
}

/** An action leaving the queue. */
export interface Dispatchable {
  readonly action: Tensor
  /** The camera timestamps it was computed from, if its chunk said. */
  readonly obsTimestamps: ObsTimestamps | undefined
  /** When it was due (s, capture clock), if timed. */
  readonly due: number | undefined
  /** The time the queue judged it at (s, capture clock): when it leaves. */
  readonly at: number
}

export interface ActionQueue {
  /** Appends one action. */
  readonly put: (action: Action, options?: Omit<PutOptions, "mode">) => Effect.Effect<void>
  /**
   * Puts a chunk: appends it (default), replaces every waiting action, or
   * aligns it in time / blends it (`PutOptions`). Dies with a RangeError for
   * a chunk that cannot be put (`ActionPlan.validate`), leaving the queue as
   * it was. Returns how many of its actions were already late.
   */
  readonly putAll: (chunk: Iterable<Action>, mode?: PutMode | PutOptions | undefined) => Effect.Effect<number>
  /** The next action for a tick now, if any (never waits); late ones are dropped on the way. */
  readonly poll: Effect.Effect<Option.Option<Tensor>>
  /** The same, with what the action was computed from. */
  readonly take: Effect.Effect<Option.Option<Dispatchable>>
  /**
   * For a tick whose grid time is `tick` (s, capture clock): timed actions
   * are placed by the grid time, not by when the timer actually fired (see
   * `ActionPlan.take`).
   */
  readonly takeAtTick: (tick: number) => Effect.Effect<Option.Option<Dispatchable>>
  readonly size: Effect.Effect<number>
  /** Drops every waiting action. */
  readonly clear: Effect.Effect<void>
  /** The dispatch rate (Hz): timed actions are placed on its period. Dies on a rate that is not > 0. */
  readonly setRate: (hz: number) => Effect.Effect<void>
  /** What has been dropped so far (late, replaced, overflow, robotSilent, stalled). */
  readonly dropped: Effect.Effect<Drops>
  /** The number of waiting actions as it changes, and the low-water mark. */
  readonly refill: RefillSignal.RefillSignal
}

export const defaultCapacity = 10_000

const rowsOf = (action: Action): Rows => {
  const t = toTensor(action)
  return { shape: t.shape, data: t.data as Float32Array }
}

const tensorOf = (rows: Rows): Tensor => ({ dtype: "float32", shape: rows.shape, data: rows.data })

const optionsOf = (mode: PutMode | PutOptions | undefined): PutOptions =>
  typeof mode === "string" ? { mode } : mode ?? {}

/**
 * A queue of `capacity` actions; its counts go to `refill` (PolicyClient's,
 * shared by each connection's queue) or one of its own. With `silence` (a
 * `RobotSilence` cell), the actions due while the robot is silent beyond its
 * limit are dropped (`ActionPlan.take`).
 */
export const make = (
  capacity = defaultCapacity,
  refillSignal?: RefillSignal.SettableRefillSignal,
  silence?: Float64Array
): Effect.Effect<ActionQueue> =>
  Effect.gen(function*() {
    const plan = new ActionPlan(capacity)
    const refill = refillSignal ?? (yield* RefillSignal.make(0))

    const putAll = (chunk: Iterable<Action>, mode?: PutMode | PutOptions) =>
      Effect.flatMap(captureTime, (now) =>
        Effect.sync(() => {
          const options = optionsOf(mode)
          // convert first: a bad action must not leave the queue half changed
          const actions = Array.from(chunk, rowsOf)
          const late = plan.put({
            actions,
            mode: options.mode ?? "append",
            obsTimestamps: options.obsTimestamps,
            clockOffset: options.clockOffset
          }, now)
          refill.set(plan.size)
          return late
        }))

    const takeAtTick = (tick?: number) => Effect.flatMap(captureTime, (now) =>
      Effect.sync(() => {
        const taken = plan.take(now, tick, silence)
        refill.set(plan.size)
        return taken === undefined
          ? Option.none<Dispatchable>()
          : Option.some<Dispatchable>({
            action: tensorOf(taken.action),
            obsTimestamps: taken.obsTimestamps,
            due: taken.due,
            at: now
          })
      }))
    const take = takeAtTick()

    return {
      put: (action, options) => Effect.asVoid(putAll([action], { mode: "append", obsTimestamps: options?.obsTimestamps })),
      putAll,
      poll: Effect.map(take, Option.map((d) => d.action)),
      take,
      takeAtTick,
      size: Effect.sync(() => plan.size),
      clear: Effect.sync(() => {
        plan.clear()
        refill.set(0)
      }),
      setRate: (hz) =>
        Number.isFinite(hz) && hz > 0
          ? Effect.sync(() => plan.setPeriod(1 / hz))
          : Effect.die(new RangeError(`rate must be a positive number of Hz, got ${hz}`)),
      dropped: Effect.sync(() => plan.dropped),
      refill
    } satisfies ActionQueue
  })
