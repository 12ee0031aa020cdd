/**
 * Counts of the actions a server accepted and refused, and how old the
 * observations were that accepted actions were computed from: the server's
 * half of an end-to-end latency report (obs captured → action arrives).
 */

/** Why the gate refused an action. */
export type RefusalReason =
  /** Its newest obs timestamp was older than `maxActionAge` (or it had none and `unstampedActions` is "drop"). */
  | "stale"
  /** NaN/±Inf, or outside the declared `actionSpec` (shape, bounds), or a non-finite obs timestamp. */
  | "invalid"
  /** `singleController` is on and another connection holds control. */
  | "notController"

export const refusalReasons: ReadonlyArray<RefusalReason> = ["stale", "invalid", "notController"]

/** Why an action was dropped before the handler. */
export type DropReason =
  | RefusalReason
  /**
   * A newer action from the same connection arrived with it, so it was late
   * (`coalesceActions`, `NewestAction`); it never reached the gate.
   */
  | "superseded"
  /** It was waiting to be applied when its connection ended (`NewestAction`). */
  | "disconnected"

export interface ActionStats {
  /** Actions handed to the handler (`apply_action` and legacy steps). */
  readonly accepted: number
  /**
   * Accepted `apply_action`s whose `applyAction` failed (or threw): the robot
   * may not have applied them. Each is logged (the first of a run with its
   * cause); they are not in the connection's "actions applied".
   */
  readonly failed: number
  /** Accepted actions that carried no obs timestamps (`{}`), so have no age. */
  readonly unstamped: number
  /** Actions refused before the handler, by reason. */
  readonly dropped: Readonly<Record<DropReason, number>>
  /**
   * Age of accepted actions' newest obs timestamp when they arrived, in
   * milliseconds on the server's capture clock (`CameraState.captureTime`):
   * `count` stamped actions in all, `p50`/`p99`/`max` over the last
   * `ageWindow` of them; undefined before the first.
   */
  readonly ageMillis: { readonly count: number; readonly p50: number; readonly p99: number; readonly max: number } | undefined
}

/** Stamped actions whose ages the percentiles are taken over (the most recent ones). */
export const ageWindow = 4096

/** Mutable counters behind `ActionStats`; updated on the connection fibers, read by `snapshot`. */
export class Counters {
  accepted = 0
  failed = 0
  unstamped = 0
  readonly dropped: Record<DropReason, number> = { stale: 0, invalid: 0, notController: 0, superseded: 0, disconnected: 0 }
  private readonly ages = new Float64Array(ageWindow)
  private agesSeen = 0

  /** One accepted action, with the age of its newest obs timestamp in ms (undefined: it had none). */
  accept(ageMillis: number | undefined): void {
    this.accepted++
    if (ageMillis === undefined) {
      this.unstamped++
      return
    }
    this.ages[this.agesSeen % ageWindow] = ageMillis
    this.agesSeen++
  }

  drop(reason: DropReason, count = 1): void {
    this.dropped[reason] += count
  }

  snapshot(): ActionStats {
    const n = Math.min(this.agesSeen, ageWindow)
    const sorted = this.ages.slice(0, n).sort()
    const at = (q: number) => sorted[Math.min(n - 1, Math.floor(q * n))]!
    return {
      accepted: this.accepted,
      failed: this.failed,
      unstamped: this.unstamped,
      dropped: { ...this.dropped },
      ageMillis: n === 0 ? undefined : { count: this.agesSeen, p50: at(0.5), p99: at(0.99), max: sorted[n - 1]! }
    }
  }
}
