/**
 * The action watchdog: once actions have been arriving, a gap of `timeout`
 * without one runs a handler once (typically: hold position), and the next
 * accepted action arms it again.
 *
 * It watches the robot, not one client: what matters to the arm is that no
 * action reaches it, whichever connection stopped sending (with several
 * clients driving, it fires when all of them have stopped). The event names
 * the connection that sent the last action. Time is Effect's `Clock`
 * (monotonic), so tests drive it with `TestClock`.
 */
import { Cause, Clock, Duration, Effect, Latch, type Scope } from "effect"

/** A connection as handlers see it. */
export interface ConnectionInfo {
  /** The connection's name in logs, e.g. `ws://0.0.0.0:8765 ← 10.0.0.7:53422`. */
  readonly id: string
  /** The remote `host:port`, when the transport knows it. */
  readonly peer: string | undefined
  /** The client it belongs to, when one client opens several connections (`Connection.client`). */
  readonly client?: string | undefined
}

/** Whether `a` and `b` are one client's: the same connection, or two of one client (`Connection.client`). */
export const sameClient = (a: ConnectionInfo, b: ConnectionInfo): boolean =>
  a === b || (a.client !== undefined && a.client === b.client)

export interface ActionTimeout {
  /** The connection that sent the last accepted action. */
  readonly last: ConnectionInfo
  /** How long ago that action arrived, ms (≥ the configured timeout). */
  readonly silentMillis: number
}

export interface Watchdog {
  /** Records an accepted action from `connection`: arms the watchdog and restarts its countdown. */
  readonly feed: (connection: ConnectionInfo) => Effect.Effect<void>
  /**
   * Runs `apply` (a handler applying `connection`'s accepted action) as
   * activity: the watchdog does not fire while it runs, and its countdown
   * restarts when it ends. A command the arm is still carrying out is not a
   * silence: a handler slower than the timeout made the watchdog run
   * `onActionTimeout` (hold) in the middle of each command (a newcomer's
   * trial: a 250 ms handler and a 200 ms timeout, 34 holds in 8 s).
   */
  readonly whileApplying: <A, E, R>(connection: ConnectionInfo, apply: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * Runs `reset` (a reset `connection` asked for) as activity, as
   * `whileApplying` does, but without arming a watchdog that is not armed
   * yet: a reset before any action (an evaluation's first) is no sign that
   * actions are arriving, and the policy's first chunk may take longer than
   * the timeout to infer. An armed watchdog's countdown restarts when it ends.
   */
  readonly whileResetting: <A, E, R>(connection: ConnectionInfo, reset: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

const monotonicMillis = Effect.map(Clock.monotonicTimeNanos, (ns) => Number(ns) / 1e6)

/**
 * Starts the watchdog in the scope. `onTimeout` runs on the watchdog's own
 * fiber; its failures are logged, and while it runs new actions re-arm the
 * watchdog for the next gap.
 */
export const make = <R>(
  timeout: Duration.Duration,
  onTimeout: (event: ActionTimeout) => Effect.Effect<void, unknown, R>
): Effect.Effect<Watchdog, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const timeoutMillis = Duration.toMillis(timeout)
    const armed = Latch.makeUnsafe(false)
    let lastAt = 0
    let last: ConnectionInfo = { id: "", peer: undefined }
    let applying = 0

    const watch = Effect.gen(function*() {
      yield* armed.await
      const now = yield* monotonicMillis
      const due = lastAt + timeoutMillis
      if (now < due) return yield* Effect.sleep(due - now)
      if (applying > 0) return yield* Effect.sleep(timeoutMillis)
      armed.closeUnsafe()
      yield* onTimeout({ last, silentMillis: now - lastAt }).pipe(
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause) ? Effect.interrupt : Effect.logWarning("chiral: onActionTimeout failed", cause)
        )
      )
    })
    yield* Effect.forkScoped(Effect.forever(watch), { startImmediately: true })

    const feed = (connection: ConnectionInfo) =>
      Effect.map(monotonicMillis, (now) => {
        lastAt = now
        last = connection
        armed.openUnsafe()
      })

    const busy = <A, E, R>(connection: ConnectionInfo, work: Effect.Effect<A, E, R>, arms: boolean) =>
      Effect.acquireUseRelease(
        Effect.sync(() => void applying++),
        () => work,
        () => Effect.andThen(Effect.sync(() => void applying--), arms || armed.isOpen() ? feed(connection) : Effect.void)
      )

    return {
      feed,
      whileApplying: (connection, apply) => busy(connection, apply, true),
      whileResetting: (connection, reset) => busy(connection, reset, false)
    }
  })
