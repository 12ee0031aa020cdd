/**
 * An action dispatcher a transport runs on a thread of its own. When the
 * connection `PolicyClient` gets offers one, the action queue and the dispatch
 * ticks live there, so pauses of the policy's thread (garbage collection of
 * large observations, the policy's own computation) cannot make an action
 * late. Without one, `PolicyClient` dispatches from its own fiber.
 *
 * Same semantics as `PolicyClient`'s own dispatcher: a sliding queue, one
 * action per tick of a grid anchored at the start, missed ticks not replayed,
 * each action stamped with the camera timestamps of the latest observation
 * (which `PolicyClient` reports through `observed`).
 */
import type { Tensor } from "@chiral/protocol"
import type { Effect } from "effect"
import type { Connection } from "./Transport.js"

export interface OffThreadDispatch {
  /** Adds actions (float32), or replaces every waiting one; beyond `capacity` the oldest are dropped. */
  readonly put: (actions: ReadonlyArray<Tensor>, replace: boolean, capacity: number) => Effect.Effect<void>
  readonly clear: Effect.Effect<void>
  readonly pending: Effect.Effect<number>
  /** Starts (or restarts) the ticks, one every `periodMillis`. */
  readonly start: (periodMillis: number) => Effect.Effect<void>
  readonly stop: Effect.Effect<void>
  /** The camera timestamps of the client's latest observation: what the next actions carry. */
  readonly observed: (timestamps: Readonly<Record<string, number>>) => void
  /**
   * Called on this thread for each action sent: how many the dispatcher has
   * sent in all, when this one left and the grid time it was due (monotonic
   * ms, `process.hrtime`).
   */
  readonly onDispatched: (listener: (count: number, at: number, due: number) => void) => void
}

export interface WithOffThreadDispatch {
  readonly dispatch: OffThreadDispatch
}

/** The connection's off-thread dispatcher, if its transport has one. */
export const of = (connection: Connection): OffThreadDispatch | undefined =>
  (connection as Connection & Partial<WithOffThreadDispatch>).dispatch
