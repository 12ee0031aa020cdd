/**
 * An action dispatcher a transport runs on a thread of its own. When the
 * connection `PolicyClient` gets offers one, the action queue and the dispatch
 * ticks live there, so pauses of the policy's thread (garbage collection of
 * large observations, the policy's own computation) cannot make an action
 * late. Without one, `PolicyClient` dispatches from its own fiber.
 *
 * It belongs to its connection: it writes to no other, and when the
 * connection is gone what it still holds is dropped (`drop`), never sent over
 * the next one, which brings a dispatcher of its own.
 *
 * Same semantics as `PolicyClient`'s own dispatcher, the same code for the
 * waiting actions (`ActionPlan`: chunk modes, late drops, capacity): one
 * action per tick of a grid anchored at the start, missed ticks not replayed,
 * each action stamped with the camera timestamps its chunk came with, or else
 * those of the latest observation (which `PolicyClient` reports through
 * `observed`).
 */
import type { ObsTimestamps, Tensor } from "@chiral/protocol"
import type { Effect } from "effect"
import type { Drops, PortableMode } from "./ActionPlan.js"
import type { Obtained } from "./ThreadPriority.js"
import type { Connection } from "./Transport.js"

/** The waiting actions after a change: how many, and what has been dropped so far. */
export interface QueueState {
  readonly pending: number
  readonly dropped: Drops
}

export interface PutRequest {
  readonly mode: PortableMode
  /** The camera timestamps of the observation the chunk was computed from (s, capture clock). */
  readonly obsTimestamps?: ObsTimestamps | undefined
  /** Seconds to add to them to place them on this machine's capture clock (`RobotClock`). */
  readonly clockOffset?: number | undefined
}

export interface OffThreadDispatch {
  /** Puts a chunk (float32 actions) in the given mode (`ActionPlan`); beyond `capacity` the oldest are dropped. */
  readonly put: (actions: ReadonlyArray<Tensor>, request: PutRequest, capacity: number) => Effect.Effect<void>
  readonly clear: Effect.Effect<void>
  /** Empties the queue, the ticks going on: how many actions it held (with any taken for a write that failed). */
  readonly discard: Effect.Effect<number>
  readonly pending: Effect.Effect<number>
  /**
   * The connection is gone: stops the ticks and empties the queue, giving how
   * many actions it held (an action whose write failed counts among them).
   * Every `onDispatched` report of what it sent comes before the answer.
   * 0 once the thread is gone.
   */
  readonly drop: Effect.Effect<number>
  /** Starts (or restarts) the ticks, one every `periodMillis`. */
  readonly start: (periodMillis: number) => Effect.Effect<void>
  readonly stop: Effect.Effect<void>
  /** The camera timestamps of the client's latest observation: what the next actions carry. */
  readonly observed: (timestamps: Readonly<Record<string, number>>) => void
  /**
   * The connection's `RobotSilence` cell (over a `SharedArrayBuffer`, read at
   * each tick): the actions due once the robot has left a request unanswered
   * longer than its limit are dropped (`ActionPlan.take`).
   */
  readonly watchSilence: (cell: Float64Array) => void
  /**
   * Called on this thread for each action sent: how many the dispatcher has
   * sent in all, when this one left and the grid time of its tick (monotonic
   * ms, `process.hrtime`), and the time of the observation it was stamped
   * with (s, capture clock: the newest camera timestamp; undefined if none).
   */
  readonly onDispatched: (listener: (count: number, at: number, due: number, obsTime: number | undefined) => void) => void
  /**
   * Called on this thread, in order, each time the waiting actions changed
   * (a put, a clear, an action sent or dropped), before the request that
   * changed them completes.
   */
  readonly onQueue: (listener: (state: QueueState) => void) => void
  /** Called on this thread with the scheduling the dispatcher's thread obtained (`ThreadPriority`), once known. */
  readonly onPriority: (listener: (obtained: Obtained) => void) => void
}

export interface WithOffThreadDispatch {
  readonly dispatch: OffThreadDispatch
}

/** The connection's off-thread dispatcher, if its transport has one. */
export const of = (connection: Connection): OffThreadDispatch | undefined =>
  (connection as Connection & Partial<WithOffThreadDispatch>).dispatch
