/**
 * The policy side's connection lifecycle: connecting (retrying while nobody
 * answers, with the references' waiting line printed once), reading every
 * frame from the server in order, and noticing when the connection is gone.
 *
 * Once gone, `lost` says why (closed by the server, lost, or the client
 * closed), and `gone` completes; nothing is reconnected here.
 */
import { Cause, Console, Deferred, Duration, Effect, Exit, Schedule, Scope, Stream } from "effect"
import * as OffThreadDispatch from "./OffThreadDispatch.js"
import type { ClientTransport, Connection } from "./Transport.js"
import type { TransportError } from "./TransportError.js"

export interface ConnectOptions {
  /** Pause between connection attempts while the server is not up. Default 100 ms. */
  readonly retryInterval?: Duration.Input | undefined
  /** Do not print the waiting line (`chiral: waiting for server at <uri> …`). */
  readonly quiet?: boolean | undefined
}

export interface ClientConnection {
  readonly connection: Connection
  /** The transport's action dispatcher on a thread of its own, if it offers one. */
  readonly offThread: OffThreadDispatch.OffThreadDispatch | undefined
  /** Why the connection is gone; undefined while it is up. */
  readonly lost: () => string | undefined
  /** Completes when the connection is gone. */
  readonly gone: Effect.Effect<void>
}

/**
 * One connection, retrying every `retryInterval` while nobody answers; prints
 * the waiting line once, as the references do. Each attempt has its own scope
 * so failed attempts leave nothing behind.
 */
export const connect = (
  transport: ClientTransport["Service"],
  options: ConnectOptions
): Effect.Effect<Connection, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    let warned = options.quiet === true
    const attempt = Effect.gen(function*() {
      const child = yield* Scope.fork(scope)
      return yield* transport.connect.pipe(
        Scope.provide(child),
        Effect.onError(() => Scope.close(child, Exit.void))
      )
    })
    return yield* attempt.pipe(
      Effect.tapError((error) => {
        if (warned || error.reason !== "Unavailable") return Effect.void
        warned = true
        return Console.log(transport.waitingMessage ?? `chiral: waiting for server at ${transport.address} …`)
      }),
      Effect.retry({
        while: (error) => error.reason === "Unavailable",
        schedule: Schedule.spaced(options.retryInterval ?? Duration.millis(100))
      })
    )
  })

/** Handlers of what a connection delivers. */
export interface Reader {
  /** Every frame from the server, in order. */
  readonly receive: (frame: Uint8Array) => Effect.Effect<void>
  /** The frames ended: runs once with the reason, before `gone` completes. */
  readonly onLost: (reason: string) => Effect.Effect<void>
}

/** Connects (see `connect`); `read` then starts the reading fiber in the scope. */
export const open = (
  transport: ClientTransport["Service"],
  options: ConnectOptions
): Effect.Effect<ClientConnection & { readonly read: (reader: Reader) => Effect.Effect<void, never, Scope.Scope> }, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const connection = yield* connect(transport, options)
    const gone = yield* Deferred.make<void>()
    let lost: string | undefined
    const read = (reader: Reader) =>
      connection.frames.pipe(
        Stream.runForEach(reader.receive),
        Effect.onExit((exit) =>
          Effect.suspend(() => {
            lost = Exit.isSuccess(exit)
              ? "closed by the server"
              : Cause.hasInterruptsOnly(exit.cause)
              ? "the client is closed"
              : `connection lost: ${Cause.squash(exit.cause)}`
            return Effect.andThen(reader.onLost(lost), Deferred.succeed(gone, undefined))
          })
        ),
        Effect.ignore,
        Effect.forkScoped,
        Effect.asVoid
      )
    return {
      connection,
      offThread: OffThreadDispatch.of(connection),
      lost: () => lost,
      gone: Deferred.await(gone),
      read
    }
  })
