/**
 * The action dispatcher of a Zenoh client connection, on a worker thread of
 * its own (see `OffThreadDispatch` in @chiral/core for why a thread: pauses of the policy's
 * thread, which collects 17 MB observations 30 times a second, must not make
 * actions late).
 *
 * Zenoh is publish/subscribe, so this thread needs no share of the client's
 * session: it opens a session of its own to the same server (same settings,
 * its own Zenoh id) and publishes each `apply_action` on the request key
 * (`<prefix>chiral/c2s`), where the server takes it like any other frame of
 * its one shared connection. The client's session, on the policy's thread,
 * keeps requests and observations; this one declares no subscriber, so the
 * server sends it nothing but its declarations and keep-alives.
 *
 * A publication made before the remote subscriber is known is lost, and our
 * session only sends a PUT to a remote whose subscribers match its key. So
 * this thread answers `ready` once the server's subscriber on the request key
 * has been declared to its session (`awaitSubscribers`); from then on every
 * action reaches that subscriber. (The client's own session also proves that
 * the server answers, with its `metadata` probe; the connection is handed over
 * only when both hold.)
 *
 * The dispatcher is PolicyClient's own, run here: the actions wait in an
 * `ActionPlan` (chunk modes, late drops, capacity), and a loop repeated on
 * `Cadence.fixed` sends one per tick, stamped with the camera timestamps its
 * chunk came with, or else those of the client's latest observation (the
 * policy's thread reports each one); while the robot leaves a request
 * unanswered beyond its limit, the actions due are dropped (the policy's
 * thread writes when it asked into a shared cell, `RobotSilence`). Only the
 * loop's `Clock` differs:
 * `TickClock` sleeps with sub-millisecond precision (a timer wakes the thread
 * just before the tick, `Atomics.wait` sleeps the last stretch), and tells the
 * tick its grid time.
 *
 * This file is the worker's entry; `ZenohDispatch` starts it. Messages
 * between the threads are `ToWorker` and `FromWorker`: those of every
 * dispatcher worker (`DispatchControl`), plus the session's life. Unlike the WebSocket
 * one, this thread runs Effect (the Zenoh session is built on it): loading it
 * takes a few hundred milliseconds, which overlap the client's own probing,
 * and puts some 25 MB of mostly long-lived code and data on this thread's
 * heap. What the dispatcher allocates per tick is small and short-lived, so
 * the collections it causes are brief scavenges.
 */
import { type PeerError, Zenoh, type ZenohKeyExprError, type ZenohSessionClosed } from "@chiral/zenoh"
import { Cause, Clock, Deferred, Duration, Effect, Exit, Fiber, FiberHandle, Queue } from "effect"
import { type MessagePort, isMainThread, parentPort, workerData } from "node:worker_threads"
import { encodeApplyAction } from "@chiral/core/ActionFrame"
import type { DispatchReport, DispatchRequest } from "@chiral/core/DispatchControl"
import { ActionPlan, noDrops, obsTime } from "@chiral/core/ActionPlan"
import * as ActionQueue from "@chiral/core/ActionQueue"
import * as Cadence from "@chiral/core/Cadence"
import * as PreciseTimer from "@chiral/core/PreciseTimer"
import * as ThreadPriority from "@chiral/core/ThreadPriority"

export interface WorkerOptions {
  readonly host: string
  readonly port: number
  /** The key the server subscribes to, where actions are published (`<prefix>chiral/c2s`). */
  readonly key: string
  /**
   * The client session's Zenoh settings, durations in milliseconds. `zid` is
   * not the client session's own (a second session under the client's id
   * would be taken by the server for the same peer) but its sibling
   * (`ZenohId.sibling`), by which a server tells the two are one client; none
   * (a random id) when the client's id has no sibling.
   */
  readonly session: {
    readonly zid?: string | undefined
    readonly batchSize?: number | undefined
    readonly lease?: number | undefined
    readonly keepAlive?: number | undefined
    readonly handshakeTimeout?: number | undefined
    readonly maxMessageSize?: number | undefined
    readonly closeTimeout?: number | undefined
  }
}

export type ToWorker =
  | DispatchRequest
  /** Close the session (the server is told) and end the thread. */
  | { readonly t: "close" }

export type FromWorker =
  | DispatchReport
  /** The session is open and the server's request subscriber known: actions will arrive. */
  | { readonly t: "ready" }
  /** The session could not be opened (before `ready`). */
  | { readonly t: "failed"; readonly detail: string }
  /** The session was lost (after `ready`): nothing more is sent. */
  | { readonly t: "lost"; readonly detail: string }

const now = PreciseTimer.monotonicMillis

/**
 * The dispatch loop's clock: the default one, except that a sleep ends on
 * time to a fraction of a millisecond (`PreciseTimer`: this thread has
 * nothing else to do meanwhile). `due` is when the last sleep was to end: the
 * grid time of the tick that follows it (`Cadence.fixed` sleeps exactly until
 * the next slot; after an overrun it does not sleep and the tick goes at once).
 * Before the first sleep it is undefined: the first tick is due when the
 * repeat starts, which is when it runs.
 */
export class TickClock implements Clock.Clock {
  /** When the tick that runs now was due (monotonic ms); undefined before the first sleep. */
  due: number | undefined = undefined
  readonly currentTimeMillis: Effect.Effect<number>
  readonly currentTimeNanos: Effect.Effect<bigint>
  readonly monotonicTimeNanos: Effect.Effect<bigint>
  private readonly base: Clock.Clock

  constructor(base: Clock.Clock) {
    this.base = base
    this.currentTimeMillis = base.currentTimeMillis
    this.currentTimeNanos = base.currentTimeNanos
    this.monotonicTimeNanos = base.monotonicTimeNanos
  }

  currentTimeMillisUnsafe(): number {
    return this.base.currentTimeMillisUnsafe()
  }
  currentTimeNanosUnsafe(): bigint {
    return this.base.currentTimeNanosUnsafe()
  }
  monotonicTimeNanosUnsafe(): bigint {
    return this.base.monotonicTimeNanosUnsafe()
  }

  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const millis = Duration.toMillis(duration)
    const start = now()
    // An overrun (no time left) still waits for the event loop's next timer (~1 ms), never just
    // yields: this thread may run real-time (ThreadPriority), and one whose every tick overran
    // would otherwise never block and hold a core.
    const due = millis > 0 ? start + millis : start
    this.due = due
    return Effect.callback<void>((resume) => Effect.sync(PreciseTimer.at(due, () => resume(Effect.void))))
  }
}

type SessionEnd = PeerError | ZenohSessionClosed | ZenohKeyExprError

/** The requests answered in order by the session's fiber (the others are taken at once). */
type Control = Exclude<ToWorker, { readonly t: "close" | "observed" | "silence" }>

/** What the policy's thread reports outside the requests: the latest observation's stamps, the silence cell. */
interface Reported {
  latest: Readonly<Record<string, number>>
  silence: Float64Array | undefined
}

/**
 * What the dispatcher holds unsent, and what its plan dropped, still asked
 * for once its session has ended: answers then carry the plan's counts as
 * they were, since each answer's `dropped` replaces what the policy's thread
 * knew (zeros would erase the actions dropped before, a silent robot's
 * among them, from `droppedActions`).
 */
interface Held {
  count: () => number
  dropped: () => ActionPlan["dropped"]
}

/** What the policy's thread is told of the plan with every answer and report. */
const planState = (plan: ActionPlan) => ({ pending: plan.size, dropped: plan.dropped })

/** Actions sent, and actions taken from the plan for a put that failed with the session (dropped with the rest). */
export interface Counts {
  dispatched: number
  unsent: number
}

/**
 * One tick of the dispatch loop: takes the action due now (dropping late
 * ones), publishes it stamped with its observation's camera timestamps, and
 * reports it.
 *
 * An action taken from the plan is counted exactly once: dispatched, or
 * unsent (dropped with what the plan held). A put still waiting for the
 * kernel when the tick is interrupted was queued on the link: it goes out
 * (dispatched) unless the session has ended (`sessionEnded`), which is what
 * interrupts the loop when the link breaks; then it is counted unsent, as
 * the put that failed would have been.
 */
export const makeTick = (deps: {
  readonly session: Pick<Zenoh.Connection, "put">
  readonly key: string
  readonly plan: ActionPlan
  readonly clock: TickClock
  readonly observed: () => Readonly<Record<string, number>>
  /** The connection's `RobotSilence` cell, once the policy's thread has sent it. */
  readonly silence: () => Float64Array | undefined
  readonly post: (message: FromWorker) => void
  readonly counts: Counts
  readonly sessionEnded: () => boolean
}) =>
  Effect.gen(function*() {
    const { clock, counts, plan, post } = deps
    // The grid's first slot is where the repeat starts: right before the first tick.
    const due = clock.due ?? now()
    const waiting = plan.size
    const taken = plan.take(now() / 1000, due / 1000, deps.silence())
    if (taken === undefined) {
      // late actions dropped, none sent: the refill signal still has to know
      if (plan.size !== waiting) post({ t: "queue", ...planState(plan) })
      return
    }
    const { action, obsTimestamps } = taken
    const stamp = obsTimestamps ?? deps.observed()
    const frame = encodeApplyAction(action.shape, action.data, stamp)
    // Started at once: the session writes the frame to its socket before
    // this fiber goes on, then the fiber waits for the kernel to take it.
    const sending = yield* Effect.forkChild(deps.session.put(deps.key, frame), { startImmediately: true })
    const at = now()
    const dispatched = () =>
      post({ t: "dispatched", count: ++counts.dispatched, at, due, obsTime: obsTime(stamp), ...planState(plan) })
    yield* Fiber.join(sending).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          if (Exit.isSuccess(exit)) return dispatched()
          if (Cause.hasInterruptsOnly(exit.cause) && !deps.sessionEnded()) return dispatched()
          counts.unsent++
        })
      )
    )
  })

/** Serves the dispatcher until the session ends or the scope closes. */
const serve = (
  options: WorkerOptions,
  inbox: Queue.Queue<Control>,
  reported: Reported,
  post: (message: FromWorker) => void,
  held: Held
) =>
  Effect.gen(function*() {
    const session = yield* Zenoh.connect({ ...options.session, host: options.host, port: options.port })
    yield* session.awaitSubscribers(options.key)

    const plan = new ActionPlan(ActionQueue.defaultCapacity)
    const state = () => planState(plan)
    const counts: Counts = { dispatched: 0, unsent: 0 }
    held.count = () => plan.size + counts.unsent
    held.dropped = () => plan.dropped
    const clock = new TickClock(yield* Clock.clockWith(Effect.succeed))
    const loop = yield* FiberHandle.make<void, never>()
    // A put that fails ends the loop; the session's end is reported once, below.
    const broken = yield* Deferred.make<never, SessionEnd>()

    // Set before the loop is interrupted for it: a put cut short then counts as unsent.
    let sessionEnded = false
    const closed = Effect.tapError(session.closed, () => Effect.sync(() => void (sessionEnded = true)))
    const tick = makeTick({
      session,
      key: options.key,
      plan,
      clock,
      observed: () => reported.latest,
      silence: () => reported.silence,
      post,
      counts,
      sessionEnded: () => sessionEnded
    })

    const dispatchAt = (periodMillis: number) =>
      Effect.suspend(() => {
        clock.due = undefined
        plan.setPeriod(periodMillis / 1000)
        return Effect.repeat(tick, Cadence.fixed(Duration.millis(periodMillis)))
      }).pipe(
        Effect.provideService(Clock.Clock, clock),
        Effect.asVoid,
        Effect.catch((error) => Deferred.fail(broken, error))
      )

    const handle = (message: Control) =>
      Effect.gen(function*() {
        switch (message.t) {
          case "put": {
            try {
              plan.setCapacity(message.capacity)
              plan.put(message, now() / 1000)
            } catch (error) {
              // a blend of mismatched shapes: refused, the plan unchanged
              return post({ t: "done", id: message.id, ...state(), error: String((error as Error).message ?? error) })
            }
            return post({ t: "done", id: message.id, ...state() })
          }
          case "clear": {
            const cleared = plan.size + counts.unsent
            counts.unsent = 0
            plan.clear()
            return post({ t: "done", id: message.id, ...state(), cleared })
          }
          case "pending":
            return post({ t: "done", id: message.id, ...state() })
          case "start":
            yield* FiberHandle.clear(loop)
            yield* FiberHandle.run(loop, dispatchAt(message.periodMillis))
            return post({ t: "done", id: message.id })
          case "stop":
            yield* FiberHandle.clear(loop)
            return post({ t: "done", id: message.id })
        }
      })

    post({ t: "ready" })
    yield* Effect.raceFirst(
      Effect.forever(Effect.flatMap(Queue.take(inbox), handle)),
      Effect.raceFirst(closed, Deferred.await(broken))
    )
  })

const reasonOf = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

const run = (options: WorkerOptions, port: MessagePort) => {
  // This thread's one job that is timed: put it ahead of the process's other
  // threads where the system allows (see ThreadPriority).
  port.postMessage({ t: "priority", obtained: ThreadPriority.prioritizeCurrentThread() } satisfies FromWorker)
  // Compile the send path before the first tick needs it.
  encodeApplyAction([1, 1], new Float32Array(1), { warmup: 0 })

  let ready = false
  const reported: Reported = { latest: {}, silence: undefined }
  const post = (message: FromWorker) => {
    if (message.t === "ready") ready = true
    port.postMessage(message)
  }
  const inbox = Effect.runSync(Queue.unbounded<Control>())
  const held: Held = { count: () => 0, dropped: () => noDrops }
  const fiber = Effect.runFork(Effect.scoped(serve(options, inbox, reported, post, held)))
  let ended = false
  let closing = false

  // Once the session has ended nothing is sent any more, but the policy's
  // thread still asks what was left (to count it dropped) before it closes us.
  const answerAfterEnd = (message: Control) => {
    switch (message.t) {
      case "put": {
        const before = held.count
        const extra = message.actions.length
        held.count = () => before() + extra
        return post({ t: "done", id: message.id, pending: held.count(), dropped: held.dropped() })
      }
      case "clear": {
        const cleared = held.count()
        held.count = () => 0
        return post({ t: "done", id: message.id, pending: 0, dropped: held.dropped(), cleared })
      }
      case "pending":
        return post({ t: "done", id: message.id, pending: held.count(), dropped: held.dropped() })
      default:
        return post({ t: "done", id: message.id })
    }
  }

  port.on("message", (message: ToWorker) => {
    switch (message.t) {
      case "observed":
        reported.latest = message.timestamps
        return
      case "silence":
        reported.silence = new Float64Array(message.cell)
        return
      case "close":
        closing = true
        // Closing the scope says CLOSE to the server and closes the socket.
        if (ended) port.unref()
        return void fiber.interruptUnsafe()
      default:
        if (ended) answerAfterEnd(message)
        else Queue.offerUnsafe(inbox, message)
    }
  })
  fiber.addObserver((exit: Exit.Exit<unknown, unknown>) => {
    ended = true
    if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
      post(ready ? { t: "lost", detail: reasonOf(exit.cause) } : { t: "failed", detail: reasonOf(exit.cause) })
    }
    for (const message of Effect.runSync(Queue.clear(inbox))) answerAfterEnd(message)
    // Nothing keeps the thread alive once it is told to close: it ends once its socket is closed.
    if (closing) port.unref()
  })
}

if (!isMainThread && parentPort !== null && (workerData as { chiralZenohDispatch?: WorkerOptions })?.chiralZenohDispatch) {
  run((workerData as { chiralZenohDispatch: WorkerOptions }).chiralZenohDispatch, parentPort)
}
