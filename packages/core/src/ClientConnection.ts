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
  Schedule,
  Scope,
  Stream,
  SubscriptionRef
} from "effect"
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
   * connection). Every failed attempt is retried until the schedule ends.
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
   * connection will follow.
   */
  readonly onLost: (reason: string, final: boolean) => Effect.Effect<void>
  /**
   * The connection is gone: what must not look live once the state says so
   * (the latest observation), forgotten before the state changes and
   * `onLost` runs.
   */
  readonly forget?: Effect.Effect<void> | undefined
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
}

/** Failures worth another attempt: nobody answered, or something answered but said nothing. */
const retryable = (error: TransportError) => error.reason === "Unavailable" || error.reason === "Silent"

const describe = (error: unknown) => error instanceof Error ? error.message : String(error)

/** How long an `openTimeout` is given beyond its deadline to a transport that does not take `ConnectTimeout`. */
const deadlineSlack = Duration.millis(100)

/** One attempt in a scope of its own (closed if it fails), told how long the caller still waits. */
const attempt = (
  transport: ClientTransport["Service"],
  parent: Scope.Scope,
  budget: Duration.Duration | undefined
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(parent)
    const connection = yield* transport.connect.pipe(
      Scope.provide(scope),
      Effect.provideService(ConnectTimeout, budget),
      Effect.onError(() => Scope.close(scope, Exit.void))
    )
    return { connection, scope }
  })

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
    const limit = options.openTimeout === undefined ? undefined : Duration.fromInputUnsafe(options.openTimeout)
    const start = yield* Clock.currentTimeMillis
    const left = Effect.map(Clock.currentTimeMillis, (now) =>
      limit === undefined ? undefined : Duration.millis(Math.max(0, Duration.toMillis(limit) - (now - start))))
    const attempts = Effect.flatMap(left, (budget) => attempt(transport, parent, budget)).pipe(
      Effect.tapError((error) =>
        Effect.flatMap(left, (budget) => {
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
    return yield* attempts.pipe(
      Effect.timeoutOrElse({
        duration: Duration.sum(limit, deadlineSlack),
        orElse: () =>
          Effect.fail(
            new TransportError({
              reason: last?.reason ?? "Unavailable",
              address: transport.address,
              detail: `no connection within ${Duration.format(limit)}${
                last === undefined ? "" : ` (last attempt: ${last.detail ?? last.reason})`
              }`,
              unresolved: last?.unresolved
            })
          )
      })
    )
  })

/**
 * A new connection after a loss, attempts spaced by `schedule`. Every failure
 * is retried: the address worked, and a server going down or coming up
 * answers in passing with refusals, HTTP errors or silence, as a network
 * blip can make its host name fail to resolve for a while (even `ENOTFOUND`);
 * the schedule decides when to give up. Each kind of failure is logged once,
 * not once per attempt (a host name that does not resolve as a warning
 * naming it and the resolver's answer); `note` hears every one.
 */
const reconnectOn = (
  transport: ClientTransport["Service"],
  parent: Scope.Scope,
  schedule: ReconnectSchedule,
  note: (failure: string) => void
) =>
  Effect.suspend(() => {
    const reported = new Set<string>()
    return Effect.suspend(() => attempt(transport, parent, undefined)).pipe(
      Effect.tapError((error) =>
        Effect.suspend(() => {
          // (a name that does not resolve is said as such: "InvalidAddress" would read as final)
          note(error.unresolved !== undefined && error.detail !== undefined ? error.detail : error.message)
          const kind = `${error.reason}: ${error.detail ?? ""}`
          if (reported.has(kind)) return Effect.void
          reported.add(kind)
          return error.unresolved !== undefined
            ? Effect.logWarning(`chiral: ${transport.address}: reconnection attempt failed: ${error.detail}; trying again`)
            : Effect.logInfo(`chiral: ${transport.address}: reconnection attempt failed (${error.message}); trying again`)
        })
      ),
      Effect.retry({ schedule })
    )
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
 * Hands every frame of `connection` to `attachment` until the frames end,
 * then says why (`interrupted`: only the connection's scope closing stops a
 * reader before its connection is lost, which means the client is closing).
 */
const readUntilLost = (
  connection: Connection,
  attachment: { readonly receive: (frame: Uint8Array) => Effect.Effect<void> },
  lost: (reason: string, interrupted: boolean) => Effect.Effect<void>
) =>
  connection.frames.pipe(
    Stream.runForEach(attachment.receive),
    Effect.onExit((exit) => {
      const interrupted = Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
      return lost(
        Exit.isSuccess(exit)
          ? "closed by the server"
          : interrupted
          ? "the client is closed"
          : lostReason(exit.cause),
        interrupted
      )
    }),
    Effect.ignore
  )

interface LinkState<P> {
  readonly scope: Scope.Closeable
  readonly link: Link
  readonly gone: Deferred.Deferred<void>
  attachment: Attachment<P> | undefined
  lost: string | undefined
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
}

/** Marks the link gone (once): no more requests on it, then what was built on it hears why. */
const lose = <P>(lifecycle: Lifecycle<P>, entry: LinkState<P>, reason: string, interrupted: boolean) =>
  Effect.suspend(() => {
    if (entry.lost !== undefined) return Effect.void
    // (its connection scopes may close before the client's own finalizer runs)
    if (interrupted) lifecycle.closing = true
    entry.lost = reason
    lifecycle.current = undefined
    lifecycle.why = reason
    const final = lifecycle.closing || lifecycle.reconnect === false
    return Effect.andThen(entry.attachment?.forget ?? Effect.void, SubscriptionRef.set(lifecycle.state, final ? "closed" : "reconnecting")).pipe(
      Effect.andThen(entry.attachment === undefined ? Effect.void : entry.attachment.onLost(reason, final)),
      Effect.andThen(Deferred.succeed(entry.gone, undefined))
    )
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
      link: {
        connection: opened.connection,
        offThread: OffThreadDispatch.of(opened.connection),
        lost: () => entry.lost
      }
    }
    const attachment = yield* lifecycle.attach(entry.link).pipe(Scope.provide(opened.scope))
    entry.attachment = attachment
    yield* Effect.forkIn(readUntilLost(opened.connection, attachment, (reason, interrupted) =>
      lose(lifecycle, entry, reason, interrupted)), opened.scope)
    lifecycle.live = entry
    lifecycle.current = attachment.parts
    if (again) {
      const count = yield* SubscriptionRef.updateAndGet(lifecycle.reconnects, (n) => n + 1)
      yield* Effect.logInfo(`chiral: ${lifecycle.transport.address}: reconnected (reconnection ${count})`)
    }
    yield* SubscriptionRef.set(lifecycle.state, "connected")
    return entry
  })

/** After each loss: the old connection's scope closes, then a new connection (unless none may follow). */
const supervise = <P>(lifecycle: Lifecycle<P>, first: LinkState<P>) =>
  Effect.gen(function*() {
    const { reconnect, transport } = lifecycle
    let entry = first
    for (;;) {
      yield* Deferred.await(entry.gone)
      yield* Scope.close(entry.scope, Exit.void)
      if (lifecycle.closing) return
      if (reconnect === false) {
        return yield* Effect.logWarning(`chiral: ${transport.address}: ${entry.lost}; not reconnecting (reconnect: false)`)
      }
      yield* Effect.logWarning(`chiral: ${transport.address}: ${entry.lost}; reconnecting`)
      const next = yield* Effect.exit(reconnectOn(transport, lifecycle.clientScope, reconnect, (failure) => {
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
      live: undefined
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
      awaitDisconnected: settled((s) => s !== "connected")
    }
  })

