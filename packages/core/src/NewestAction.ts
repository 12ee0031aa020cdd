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
 * until that turn's I/O has been delivered, and a newer one replaces it. The
 * fiber that applies it is woken through the scheduler, so it runs after the
 * loop's I/O callbacks (setImmediate's check phase); measured at 100 Hz on a
 * loop kept busy, the action's arrival to its handler p50 0.65–0.70 ms when
 * applied as read, 0.87–0.89 ms through the slot. A reader with more frames
 * in hand than it handles in one turn (`ServerConnection`: 16, or 1 ms)
 * yields between turns; the slot waits for it to catch up, so a long burst
 * still ends in one action.
 *
 * What counts as together is wider than one read: every action that arrives
 * while the last one waits for its turn or is being applied. A handler that
 * takes 150 ms at 10 Hz makes every other action superseded. Coalescing
 * suits actions that replace the one before (absolute joint or pose
 * targets); a robot whose actions add up (deltas, velocities integrated over
 * a tick) ends somewhere else when one is dropped, and should apply every
 * action (`coalesceActions: false`) and rely on `maxActionAge`. A request from the same
 * connection first applies the waiting action and waits for one being
 * applied, so a request comes after the actions sent before it (an
 * `obs_request` after an action sees the robot after it, as when actions were
 * applied as read); an action sent after a legacy `action` step may still be
 * applied before the step, as before. Actions are
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
  /** Waits until the action being applied, if any, has been (a connection ending lets it finish). */
  readonly settle: Effect.Effect<void>
  /**
   * Takes out what is waiting, which will not be applied (the connection is
   * ending): how many actions that is (the waiting one and those it superseded).
   */
  readonly takeWaiting: () => number
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
 * (`superseded`, 0 when it came alone); it must not fail, nor be
 * interrupted but by the scope's end (the fiber applying would end with it).
 * `catchingUp` says whether the connection's reader has yielded with frames
 * still in hand. The fiber that applies after a turn lives in the scope.
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

    // Woken after the turn's I/O; a reader still catching up has more of the burst in hand.
    // A request's flush may have applied the slot meanwhile: then there is nothing to wait for.
    const afterTheReader = Effect.gen(function*() {
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

    const takeWaiting = () => {
      const count = slot === undefined ? 0 : 1 + superseded
      slot = undefined
      superseded = 0
      return count
    }

    return {
      offer,
      flush: applyWaiting,
      busy,
      settle: Semaphore.withPermit(lock)(Effect.void),
      takeWaiting
    } satisfies NewestAction<A, R>
  })
