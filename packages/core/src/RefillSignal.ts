/**
 * The refill signal: how many actions wait for dispatch, as it changes, and
 * the low-water mark below which the policy should be computing its next
 * chunk. Starting the next inference when the queue falls below n actions,
 * instead of when it runs dry, overlaps inference with execution: the robot
 * keeps moving while the policy thinks, as long as n periods cover an
 * inference.
 *
 * The count is set synchronously (`set`), from the fiber dispatcher's queue or
 * from a dispatcher worker's reports as they arrive, so after a put returns
 * the signal already counts its actions.
 */
import { Effect, Option, PubSub, Stream } from "effect"

export interface RefillSignal {
  /** Actions waiting now. */
  readonly pending: Effect.Effect<number>
  /** The count, now and after every change. */
  readonly changes: Stream.Stream<number>
  /** Completes with the count as soon as fewer than `threshold` actions wait (at once if they already do). */
  readonly awaitBelow: (threshold: number) => Effect.Effect<number>
  /**
   * Emits the count each time it falls below `threshold` (at the start too,
   * if it already is): one element per refill the policy should make.
   */
  readonly lowWater: (threshold: number) => Stream.Stream<number>
}

export interface SettableRefillSignal extends RefillSignal {
  /** Records a new count (synchronous; subscribers are told). */
  readonly set: (pending: number) => void
}

export const make = (initial = 0): Effect.Effect<SettableRefillSignal> =>
  Effect.map(PubSub.unbounded<number>({ replay: 1 }), (pubsub) => {
    let current = initial
    PubSub.publishUnsafe(pubsub, initial)
    const changes = Stream.fromPubSub(pubsub)
    const below = (threshold: number) => (n: number) => n < threshold
    return {
      pending: Effect.sync(() => current),
      changes,
      set: (pending) => {
        if (pending === current) return
        current = pending
        PubSub.publishUnsafe(pubsub, pending)
      },
      awaitBelow: (threshold) =>
        changes.pipe(Stream.filter(below(threshold)), Stream.runHead, Effect.map(Option.getOrElse(() => 0))),
      lowWater: (threshold) =>
        changes.pipe(
          Stream.changesWith((a, b) => below(threshold)(a) === below(threshold)(b)),
          Stream.filter(below(threshold))
        )
    }
  })
