/**
 * The newest action of one connection, waiting to be applied: of several
 * `apply_action`s that arrive together, only the newest reaches the robot.
 *
 * Why: a client sends one action per tick (10 Hz, 30 Hz…). A server that was
 * not reading for a while (its process stopped or swapped out, a long
 * collection, a handler that blocked the thread, a busy event loop) finds the
 * actions of those ticks waiting in its socket and reads them together, and
 * applied as read they moved the robot through all of them within a
 * millisecond. Measured with the Python reference client dispatching at
 * 10 Hz to a robot stopped for 2 s (SIGSTOP): 17 actions applied within
 * 90 ms, in bursts of 4 and 13 at 0.1–0.3 ms apart. The newest is the command
 * the policy wants now; the older ones are late, and dropped as
 * `superseded` (counted, logged), never applied late.
 *
 * How: frames read together are handed to the connection's reader one by one
 * within one turn of the event loop, so an arriving action waits in a slot
 * until that turn's I/O has been delivered (one yield, a few microseconds on
 * an idle loop), and a newer one replaces it. A reader with more frames in
 * hand than it handles in one turn (`ServerConnection`: 16, or 1 ms) yields
 * between turns; the slot waits for it to catch up, so a long burst still
 * ends in one action. A request from the same
 * connection first applies the waiting action and waits for one being
 * applied, so the two keep their order (an `obs_request` after an action sees
 * the robot after it, as when actions were applied as read). Actions are
 * applied one at a time: while a handler is applying one, the next waits in
 * the slot, so a handler slower than the client's rate no longer builds a
 * backlog of ever later actions.
 */
import { Effect, Queue, type Scope, Semaphore } from "effect"

export interface NewestAction<A, R> {
  /** Takes an arriving action; an older one still waiting is superseded by it. Never waits. */
  readonly offer: (action: A) => Effect.Effect<void>
  /**
   * Applies the waiting action now, if there is one, after the one being
   * applied, if any: what a request from the same connection runs first.
   */
  readonly flush: Effect.Effect<void, never, R>
  /** Whether an action is waiting or being applied: when it is not, `flush` has nothing to do. */
  readonly busy: () => boolean
  /** The action waiting, if any (the connection is ending: it will not be applied). */
  readonly waiting: () => A | undefined
}

/**
 * Actions superseded in a row before the slot stops waiting for a reader that
 * is catching up: a client flooding actions faster than they can be read
 * still moves the robot to its newest action at least every 1024.
 */
const maxSuperseded = 1024

/**
 * The slot of one connection. `apply` runs once per action applied, with the
 * number of older actions that arrived with it and were dropped
 * (`superseded`, 0 when it came alone); it must not fail. `catchingUp` says
 * whether the connection's reader has yielded with frames still in hand. The
 * fiber that applies after a turn lives in the scope.
 */
export const make = <A, R>(
  apply: (action: A, superseded: number) => Effect.Effect<void, never, R>,
  catchingUp: () => boolean = () => false
): Effect.Effect<NewestAction<A, R>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    let slot: A | undefined
    let superseded = 0
    let applying = false
    const lock = yield* Semaphore.make(1)
    const wake = yield* Queue.dropping<void>(1)

    const applyWaiting = Semaphore.withPermit(lock)(Effect.suspend(() => {
      const action = slot
      if (action === undefined) return Effect.void
      const dropped = superseded
      slot = undefined
      superseded = 0
      applying = true
      return Effect.ensuring(apply(action, dropped), Effect.sync(() => void (applying = false)))
    }))

    // The yield lets the rest of the turn's frames arrive before the slot is read.
    const afterTheReader = Effect.gen(function*() {
      yield* Effect.yieldNow
      // a request's flush may have applied the slot meanwhile: then there is nothing to wait for
      while (catchingUp() && slot !== undefined && superseded < maxSuperseded) yield* Effect.yieldNow
    })
    yield* Effect.forkScoped(Effect.forever(
      Effect.andThen(Queue.take(wake), Effect.andThen(afterTheReader, applyWaiting))
    ))

    const offer = (action: A) =>
      Effect.sync(() => {
        if (slot !== undefined) superseded++
        slot = action
        Queue.offerUnsafe(wake, undefined)
      })

    const busy = () => slot !== undefined || applying

    return { offer, flush: applyWaiting, busy, waiting: () => slot } satisfies NewestAction<A, R>
  })
