/**
 * The policy side's connection lifecycle: connecting (retrying while nobody
 * answers, with the references' waiting line printed once), reading every
 * frame from the server in order, noticing when a connection is gone, and
 * reconnecting by itself on a `Schedule`.
 *
 * Each connection is a `Link` with a scope of its own: what the client builds
 * on it (`attach`: the request slot, the action dispatcher) lives and dies with
 * it, so nothing queued on one connection is ever sent over the next. While
 * there is no live connection, `current()` is undefined and the client's
 * requests fail at once.
 *
 * States (`state`): `connecting` until the first connection is up (the client
 * is handed out only then), `connected`, `reconnecting` between a loss and
 * the next connection, `closed` once no connection will follow (the client's
 * scope closed, reconnection is off, or it gave up).
 *
 * A server can turn a client away once connected (`refusalCodes`: the
 * robot's `onConnect` refused it; 1013: try again later, a recording proxy
 * whose robot does not answer yet). Such a connection counts as a failed
 * attempt of the reconnection schedule (a schedule that gives up, gives up
 * during refusals too): the default backs off as from a server that is down,
 * instead of starting over at once after each. A refusal is said once per
 * reason in a run of refusals (a warning; a reason already said in the run
 * is a debug line, a peer's port in it not counting), and when a connection
 * is finally accepted (its first frame), that is said with the number of
 * refusals before it; a client that never hears from the server (it only
 * sends actions) is not told so.
 */
import {
  Cause,
  Clock,
  Console,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Result,
  Schedule,
  Scope,
  Stream,
  SubscriptionRef
} from "effect"
import * as CloseReason from "./CloseReason.js"
import * as RefusalLog from "./RefusalLog.js"
import * as OffThreadDispatch from "./OffThreadDispatch.js"
import { type ClientTransport, type Connection, ConnectTimeout } from "./Transport.js"
import { TransportError } from "./TransportError.js"

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed"

/** When to try again after a connection is lost; its input is each failed attempt's error. */
export type ReconnectSchedule = Schedule.Schedule<unknown, TransportError>

/**
 * The default reconnection: at once, then after 100 ms, 200 ms, 400 ms,
 * 800 ms, then every second, for as long as it takes.
 */
export const defaultReconnect: ReconnectSchedule = Schedule.min([
  Schedule.exponential(Duration.millis(100)),
  Schedule.spaced(Duration.seconds(1))
])

export interface ConnectOptions {
  /** Pause between attempts at the first connection while the server is not up. Default 100 ms (the references'). */
  readonly retryInterval?: Duration.Input | undefined
  /** Do not print the waiting line (`chiral: waiting for server at <uri> …`). */
  readonly quiet?: boolean | undefined
  /**
   * How long the first connection may take, attempts and handshakes
   * included; past it the client fails with the last attempt's error (a
   * `TransportError`). Default: no limit, as the references wait. A host
   * name that does not exist (`ENOTFOUND`) fails the first connection at
   * once either way (see `connectFirst`).
   */
  readonly openTimeout?: Duration.Input | undefined
  /**
   * Reconnect by itself after a connection is lost, with attempts spaced by
   * this schedule (`false`: never; the client is then `closed` with its first
   * connection). Every failed attempt is retried until the schedule ends; a
   * connection the server turned away (`refusalCodes`) counts as one.
   * Default `defaultReconnect`.
   */
  readonly reconnect?: ReconnectSchedule | false | undefined
}

/** One live connection, as what is built on it sees it. */
export interface Link {
  readonly connection: Connection
  /** The transport's action dispatcher on a thread of its own, if it offers one. */
  readonly offThread: OffThreadDispatch.OffThreadDispatch | undefined
  /** Why this connection is gone; undefined while it is up. */
  readonly lost: () => string | undefined
}

/** What the client builds on a connection (in the connection's scope). */
export interface Attachment<P> {
  readonly parts: P
  /** Every frame from the server, in order. */
  readonly receive: (frame: Uint8Array) => Effect.Effect<void>
  /**
   * The connection is gone: runs once with the reason, after `current()`
   * went undefined and before another connection is attempted. `final`: no
   * connection will follow. `repeated`: the server refused this connection
   * for a reason said already in this run of refusals (what is logged of it
   * belongs at debug level).
   */
  readonly onLost: (reason: string, final: boolean, repeated: boolean) => Effect.Effect<void>
  /**
   * The connection is gone: what must not look live once the state says so
   * (the latest observation), forgotten before the state changes and
   * `onLost` runs.
   */
  readonly forget?: Effect.Effect<void> | undefined
  /** The connection's first frame arrived: the server let it in. */
  readonly heard?: (() => void) | undefined
}

export interface ClientConnection<P> {
  readonly state: SubscriptionRef.SubscriptionRef<ConnectionState>
  /** Connections made after the first one. */
  readonly reconnects: SubscriptionRef.SubscriptionRef<number>
  /** The live connection's parts; undefined while there is none. */
  readonly current: () => P | undefined
  /** Why there is no live connection (the last loss or failed attempt). */
  readonly why: () => string
  /** Waits for a live connection: true once there is one (at once if there is), false if none will follow. */
  readonly awaitConnected: Effect.Effect<boolean>
  /** Completes when there is no live connection: at once, or when the current one is lost. */
  readonly awaitDisconnected: Effect.Effect<void>
  /**
   * Whether the last connection lost was one the server turned away for a
   * reason said already: what follows from it belongs at debug level.
   */
  readonly refusedAgain: () => boolean
}

/** Failures worth another attempt: nobody answered, or something answered but said nothing. */
const retryable = (error: TransportError) => error.reason === "Unavailable" || error.reason === "Silent"

const describe = (error: unknown) => error instanceof Error ? error.message : String(error)

/** How long an `openTimeout` is given beyond its deadline to a transport that does not take `ConnectTimeout`. */
const deadlineSlack = Duration.millis(100)

/**
 * Loop turns the backstop waits past `deadlineSlack` for the attempt's own
 * verdict: a process stalled past both deadlines wakes with both timers due,
 * the backstop's among them, and the attempt's verdict (which waits for the
 * I/O that had arrived meanwhile: a TCP connect, a handshake's bytes) follows
 * a turn or two later, then passes through the fibers waiting for it.
 */
const verdictTurns = 5

/**
 * Completes after the event loop has gone round `turns` times, each a timer
 * of 0 ms (a poll for I/O between two); real turns, whatever the Clock, as
 * the transports' own deadlines are. So under a TestClock the backstop's
 * failure lands a few real milliseconds after the clock reached it: a test
 * joins the fiber rather than polling it.
 */
const loopTurns = (turns: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    let left = turns
    let timer: ReturnType<typeof setTimeout> | undefined
    const next = () => {
      if (--left <= 0) return resume(Effect.void)
      timer = setTimeout(next, 0)
    }
    timer = setTimeout(next, 0)
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * One attempt in a scope of its own (closed if it fails or is interrupted,
 * even right after connecting), told how long the caller still waits;
 * `failed` hears its error as soon as it has one, before that scope is closed.
 */
const attempt = (
  transport: ClientTransport["Service"],
  parent: Scope.Scope,
  budget: Duration.Duration | undefined,
  failed: (error: TransportError) => void = () => {}
) =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const scope = yield* Scope.fork(parent)
      const connection = yield* restore(transport.connect).pipe(
        Scope.provide(scope),
        Effect.provideService(ConnectTimeout, budget),
        Effect.tapError((error) => Effect.sync(() => failed(error))),
        Effect.onError(() => Scope.close(scope, Exit.void))
      )
      return { connection, scope }
    })
  )

/**
 * The first connection, retrying every `retryInterval` while nobody answers;
 * prints the waiting line once, as the references do. A host name that does
 * not exist (`InvalidAddress`, `ENOTFOUND`) is not waited for: the error is
 * the outcome at once. One the resolver cannot resolve for now (`EAI_AGAIN`,
 * …: `Unavailable` with `unresolved`) is retried like a server that is not up,
 * with a warning that names the host and the resolver's answer instead of
 * the waiting line (once per answer, not per attempt). With an `openTimeout`,
 * each attempt is told the time left (`ConnectTimeout`), and the last
 * attempt's error is the outcome once it has run out.
 */
const connectFirst = (transport: ClientTransport["Service"], parent: Scope.Scope, options: ConnectOptions) =>
  Effect.gen(function*() {
    let warned = options.quiet === true
    const resolveFailures = new Set<string>()
    let last: TransportError | undefined
    // The error of the attempt running now, once it has one (its scope may
    // still be closing); none between attempts, when `last` tells the story.
    let verdict: TransportError | undefined
    const limit = options.openTimeout === undefined ? undefined : Duration.fromInputUnsafe(options.openTimeout)
    const start = yield* Clock.currentTimeMillis
    const left = Effect.map(Clock.currentTimeMillis, (now) =>
      limit === undefined ? undefined : Duration.millis(Math.max(0, Duration.toMillis(limit) - (now - start))))
    const attempts = Effect.flatMap(left, (budget) =>
      attempt(transport, parent, budget, (error) => (verdict = error))).pipe(
      Effect.tapError((error) =>
        Effect.flatMap(left, (budget) => {
          // the attempt is over: from here until the next one, `last` tells
          verdict = undefined
          last = error
          // printed once another attempt is coming (a frozen server's silence too)
          if (!retryable(error) || (budget !== undefined && Duration.toMillis(budget) <= 0)) return Effect.void
          if (error.unresolved !== undefined) {
            if (resolveFailures.has(error.unresolved.code)) return Effect.void
            resolveFailures.add(error.unresolved.code)
            return Effect.logWarning(`chiral: ${transport.address}: ${error.detail}; trying again`)
          }
          if (warned) return Effect.void
          warned = true
          return Console.log(transport.waitingMessage ?? `chiral: waiting for server at ${transport.address} …`)
        })
      ),
      Effect.retry({
        while: (error) =>
          retryable(error) && Effect.map(left, (budget) => budget === undefined || Duration.toMillis(budget) > 0),
        schedule: Schedule.spaced(options.retryInterval ?? Duration.millis(100))
      })
    )
    if (limit === undefined) return yield* attempts
    // A backstop for a transport that does not take ConnectTimeout. Ours end
    // their attempt by the deadline with what they saw: that is the outcome,
    // even when the backstop is due by then too (a process stalled past both).
    const backstop = Effect.sleep(Duration.sum(limit, deadlineSlack)).pipe(
      Effect.andThen(loopTurns(verdictTurns)),
      Effect.andThen(Effect.suspend(() =>
        Effect.fail(
          verdict ?? new TransportError({
            reason: last?.reason ?? "Unavailable",
            address: transport.address,
            detail: `no connection within ${Duration.format(limit)}${
              last === undefined ? "" : ` (last attempt: ${last.detail ?? last.reason})`
            }`,
            unresolved: last?.unresolved
          })
        )
      ))
    )
    return yield* Effect.raceFirst(attempts, backstop)
  })

/**
 * The reconnection schedule as it is stepped through: each failure waits for
 * the delay it says, or ends (`Done`) when the schedule gives up.
 */
type Backoff = (failure: TransportError) => Effect.Effect<unknown, Cause.Done<unknown>>

/**
 * A new connection after a loss, attempts spaced by the `backoff`, which
 * `refusal` (a connection the server turned away: `refusalCodes`) has
 * stepped first, as a failed attempt. Every failure is retried: the address
 * worked, and a server going down or coming up answers in passing with
 * refusals, HTTP errors or silence, as a network blip can make its host name
 * fail to resolve for a while (even `ENOTFOUND`); the schedule decides when
 * to give up, with the last failure. Each kind of failure is logged once,
 * not once per attempt (a host name that does not resolve as a warning
 * naming it and the resolver's answer); `note` hears every one.
 */
const reconnectOn = (
  transport: ClientTransport["Service"],
  parent: Scope.Scope,
  backoff: Backoff,
  refusal: TransportError | undefined,
  note: (failure: string) => void
) =>
  Effect.gen(function*() {
    const reported = new Set<string>()
    const waitAfter = (failure: TransportError) =>
      backoff(failure).pipe(Effect.catchIf(Cause.isDone, () => Effect.fail(failure)))
    if (refusal !== undefined) yield* waitAfter(refusal)
    for (;;) {
      const result = yield* Effect.result(attempt(transport, parent, undefined))
      if (Result.isSuccess(result)) return result.success
      const error = result.failure
      // (a name that does not resolve is said as such: "InvalidAddress" would read as final)
      note(error.unresolved !== undefined && error.detail !== undefined ? error.detail : error.message)
      const kind = `${error.reason}: ${error.detail ?? ""}`
      if (!reported.has(kind)) {
        reported.add(kind)
        yield* error.unresolved !== undefined
          ? Effect.logWarning(`chiral: ${transport.address}: reconnection attempt failed: ${error.detail}; trying again`)
          : Effect.logInfo(`chiral: ${transport.address}: reconnection attempt failed (${error.message}); trying again`)
      }
      yield* waitAfter(error)
    }
  })

/**
 * Why a connection's frames failed: the close the server sent, when it closed
 * the connection on purpose ("closed by the server: 1011 chiral: reset
 * failed: e-stop pressed", as the server's `CloseReason`s say), else how it
 * was lost.
 */
const lostReason = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  if (!(error instanceof TransportError) || error.closedBy === undefined) return `connection lost: ${describe(error)}`
  const { code, reason } = error.closedBy
  return `closed by the server: ${code}${reason === "" ? "" : ` ${reason}`}`
}

/**
 * The close codes by which a server turns a client away as it connects,
 * rather than ending a connection it served: 1008 (the robot's `onConnect`
 * refused it) and 1013 (try again later: a recording proxy whose robot does
 * not answer yet).
 */
const refusalCodes: ReadonlySet<number> = new Set([CloseReason.policyViolation, CloseReason.tryAgainLater])

/**
 * How a connection ended: `reason`, as what was built on it is told;
 * `interrupted` when its reader was stopped (only the connection's scope
 * closing does that before the connection is lost, which means the client is
 * closing); `refusal`, the error when the server turned the client away
 * (`refusalCodes`) before it sent anything.
 */
interface Loss {
  readonly reason: string
  readonly interrupted: boolean
  readonly refusal: TransportError | undefined
}

const lossOf = (exit: Exit.Exit<void, TransportError>, heard: boolean): Loss => {
  if (Exit.isSuccess(exit)) return { reason: "closed by the server", interrupted: false, refusal: undefined }
  if (Cause.hasInterruptsOnly(exit.cause)) return { reason: "the client is closed", interrupted: true, refusal: undefined }
  const error = Cause.squash(exit.cause)
  const refused = !heard && error instanceof TransportError && error.closedBy !== undefined &&
    refusalCodes.has(error.closedBy.code)
  return { reason: lostReason(exit.cause), interrupted: false, refusal: refused ? error : undefined }
}

/** Hands every frame of `connection` to `receive` until the frames end, then says how they ended. */
const readUntilLost = (
  connection: Connection,
  receive: (frame: Uint8Array) => Effect.Effect<void>,
  lost: (exit: Exit.Exit<void, TransportError>) => Effect.Effect<void>
) => connection.frames.pipe(Stream.runForEach(receive), Effect.onExit(lost), Effect.ignore)

/** The refusals since the server last accepted the client (see `refusalCodes`). */
interface Refusals {
  count: number
  /** When the first was noticed (Clock ms). */
  readonly since: number
  /** The reasons said already, at warning level. */
  readonly said: Set<string>
}

interface LinkState<P> {
  readonly scope: Scope.Closeable
  readonly link: Link
  readonly gone: Deferred.Deferred<void>
  attachment: Attachment<P> | undefined
  lost: string | undefined
  /** A frame arrived from the server: it accepted this connection. */
  heard: boolean
  /** Set at the loss when the server turned this connection away. */
  refusal: TransportError | undefined
  /** The refusal was the same as the one before, said already. */
  repeated: boolean
}

/**
 * What the lifecycle's steps (`lose`, `establish`, `supervise`) share: how to
 * connect and what to build, and the client's view of its connection, which
 * they update as connections come and go.
 */
interface Lifecycle<P> {
  readonly transport: ClientTransport["Service"]
  /** The client's scope: reconnection attempts are made in it. */
  readonly clientScope: Scope.Scope
  readonly reconnect: ReconnectSchedule | false
  readonly attach: (link: Link) => Effect.Effect<Attachment<P>, never, Scope.Scope>
  readonly state: SubscriptionRef.SubscriptionRef<ConnectionState>
  readonly reconnects: SubscriptionRef.SubscriptionRef<number>
  /** The live connection's parts; undefined while there is none. */
  current: P | undefined
  /** Why there is no live connection. */
  why: string
  /** The client is closing: no connection may follow. */
  closing: boolean
  /** The last connection established; the client's finalizer closes its scope. */
  live: LinkState<P> | undefined
  /** While the server keeps turning the client away: since when, how often, what was said. */
  refusals: Refusals | undefined
}

/**
 * Marks the link gone (once): no more requests on it, the refusals counted,
 * then what was built on it hears why.
 */
const lose = <P>(lifecycle: Lifecycle<P>, entry: LinkState<P>, exit: Exit.Exit<void, TransportError>) =>
  Effect.gen(function*() {
    if (entry.lost !== undefined) return
    const { interrupted, reason, refusal } = lossOf(exit, entry.heard)
    // (its connection scopes may close before the client's own finalizer runs)
    if (interrupted) lifecycle.closing = true
    entry.lost = reason
    lifecycle.current = undefined
    lifecycle.why = reason
    const final = lifecycle.closing || lifecycle.reconnect === false
    if (refusal !== undefined && !final) {
      const refusals = lifecycle.refusals ??= { count: 0, since: yield* Clock.currentTimeMillis, said: new Set() }
      refusals.count++
      entry.refusal = refusal
      entry.repeated = refusals.said.has(RefusalLog.sameReason(reason))
      refusals.said.add(RefusalLog.sameReason(reason))
    } else {
      lifecycle.refusals = undefined
    }
    if (entry.attachment?.forget !== undefined) yield* entry.attachment.forget
    yield* SubscriptionRef.set(lifecycle.state, final ? "closed" : "reconnecting")
    if (entry.attachment !== undefined) yield* entry.attachment.onLost(reason, final, entry.repeated)
    yield* Deferred.succeed(entry.gone, undefined)
  })

/** The first frame of a connection: the server accepted it, which ends a run of refusals (said with their count). */
const accepted = <P>(lifecycle: Lifecycle<P>, entry: LinkState<P>) =>
  Effect.suspend(() => {
    entry.heard = true
    entry.attachment?.heard?.()
    const refusals = lifecycle.refusals
    if (refusals === undefined || entry.lost !== undefined) return Effect.void
    lifecycle.refusals = undefined
    return Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.logInfo(
        `chiral: ${lifecycle.transport.address}: accepted by the server after ${refusals.count} refusal${
          refusals.count === 1 ? "" : "s"
        } in ${((now - refusals.since) / 1000).toFixed(1)} s`
      ))
  })

/** Builds on a new connection and starts reading it; the client is connected from here. */
const establish = <P>(
  lifecycle: Lifecycle<P>,
  opened: { readonly connection: Connection; readonly scope: Scope.Closeable },
  again: boolean
) =>
  Effect.gen(function*() {
    const entry: LinkState<P> = {
      scope: opened.scope,
      gone: Deferred.makeUnsafe<void>(),
      attachment: undefined,
      lost: undefined,
      heard: false,
      refusal: undefined,
      repeated: false,
      link: {
        connection: opened.connection,
        offThread: OffThreadDispatch.of(opened.connection),
        lost: () => entry.lost
      }
    }
    const attachment = yield* lifecycle.attach(entry.link).pipe(Scope.provide(opened.scope))
    entry.attachment = attachment
    const { receive } = attachment
    // Checked per frame, not inside an effect: at robot rates every step on a reply's path counts.
    const receiveFirst = (frame: Uint8Array) =>
      entry.heard ? receive(frame) : Effect.andThen(accepted(lifecycle, entry), receive(frame))
    yield* Effect.forkIn(readUntilLost(opened.connection, receiveFirst, (exit) => lose(lifecycle, entry, exit)), opened.scope)
    lifecycle.live = entry
    lifecycle.current = attachment.parts
    if (again) {
      const count = yield* SubscriptionRef.updateAndGet(lifecycle.reconnects, (n) => n + 1)
      // While the server turns the client away, most connections are refused at once: the acceptance is said instead.
      const log = lifecycle.refusals === undefined ? Effect.logInfo : Effect.logDebug
      yield* log(`chiral: ${lifecycle.transport.address}: reconnected (reconnection ${count})`)
    }
    yield* SubscriptionRef.set(lifecycle.state, "connected")
    return entry
  })

/**
 * After each loss: the old connection's scope closes, then a new connection
 * (unless none may follow). The reconnection schedule is stepped through
 * from its start after a connection that worked, and carries on after one
 * the server turned away (it counts as a failed attempt).
 */
const supervise = <P>(lifecycle: Lifecycle<P>, first: LinkState<P>) =>
  Effect.gen(function*() {
    const { reconnect, transport } = lifecycle
    let entry = first
    let backoff: Backoff | undefined
    for (;;) {
      yield* Deferred.await(entry.gone)
      yield* Scope.close(entry.scope, Exit.void)
      if (lifecycle.closing) return
      if (reconnect === false) {
        return yield* Effect.logWarning(`chiral: ${transport.address}: ${entry.lost}; not reconnecting (reconnect: false)`)
      }
      const { refusal } = entry
      if (refusal === undefined) {
        backoff = undefined
        yield* Effect.logWarning(`chiral: ${transport.address}: ${entry.lost}; reconnecting`)
      } else if (!entry.repeated) {
        yield* Effect.logWarning(
          `chiral: ${transport.address}: ${entry.lost}; reconnecting on the schedule, as from a server that is down (the same refusal again is logged at debug level)`
        )
      } else {
        yield* Effect.logDebug(
          `chiral: ${transport.address}: ${entry.lost} (${lifecycle.refusals?.count ?? 1} refusals in a row); reconnecting`
        )
      }
      backoff ??= yield* Schedule.toStepWithSleep(reconnect)
      const next = yield* Effect.exit(reconnectOn(transport, lifecycle.clientScope, backoff, refusal, (failure) => {
        lifecycle.why = `reconnecting: ${failure}`
      }))
      if (Exit.isFailure(next)) {
        const error = Cause.squash(next.cause)
        lifecycle.why = `gave up reconnecting: ${describe(error)}`
        yield* SubscriptionRef.set(lifecycle.state, "closed")
        return yield* Effect.logError(`chiral: ${transport.address}: ${lifecycle.why}`)
      }
      entry = yield* establish(lifecycle, next.value, true)
    }
  })

/**
 * Connects (see `ConnectOptions`), builds `attach` on the connection, starts
 * reading, and from then on keeps the client connected: after a loss,
 * `attach` runs again on each new connection. Fails only if the first
 * connection cannot be made.
 */
export const make = <P>(
  transport: ClientTransport["Service"],
  options: ConnectOptions,
  attach: (link: Link) => Effect.Effect<Attachment<P>, never, Scope.Scope>
): Effect.Effect<ClientConnection<P>, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const clientScope = yield* Effect.scope
    const lifecycle: Lifecycle<P> = {
      transport,
      clientScope,
      reconnect: options.reconnect ?? defaultReconnect,
      attach,
      state: yield* SubscriptionRef.make<ConnectionState>("connecting"),
      reconnects: yield* SubscriptionRef.make(0),
      current: undefined,
      why: "not connected yet",
      closing: false,
      live: undefined,
      refusals: undefined
    }
    const { state } = lifecycle

    const first = yield* establish(lifecycle, yield* connectFirst(transport, clientScope, options), false)
    const supervisor = yield* Effect.forkIn(supervise(lifecycle, first), clientScope)
    // Closing the client: no reconnection, then the live connection ends (its
    // reader reports "the client is closed" to what was built on it).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        lifecycle.closing = true
        return Fiber.interrupt(supervisor).pipe(
          Effect.andThen(lifecycle.live === undefined ? Effect.void : Scope.close(lifecycle.live.scope, Exit.void)),
          Effect.andThen(SubscriptionRef.set(state, "closed"))
        )
      })
    )

    const settled = (wanted: (state: ConnectionState) => boolean) =>
      SubscriptionRef.changes(state).pipe(Stream.filter(wanted), Stream.runHead, Effect.asVoid)

    return {
      state,
      reconnects: lifecycle.reconnects,
      current: () => lifecycle.current,
      why: () => lifecycle.why,
      awaitConnected: Effect.andThen(
        settled((s) => s === "connected" || s === "closed"),
        Effect.sync(() => lifecycle.current !== undefined)
      ),
      awaitDisconnected: settled((s) => s !== "connected"),
      // the last connection established is the one lost last
      refusedAgain: () => lifecycle.live?.repeated ?? false
    }
  })

