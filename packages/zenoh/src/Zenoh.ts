/**
 * Opening Zenoh sessions over TCP, in peer mode: `listen` accepts any number of peers, `connect`
 * opens one session to a listening peer. Both are scoped: closing the scope sends CLOSE to every
 * peer, flushes, closes the sockets and stops every fiber and timer.
 */
import { Context, Deferred, Effect, FiberSet, Layer, PubSub, type Scope } from "effect"
import type * as Net from "node:net"
import * as Handshake from "./Handshake.js"
import * as Link from "./Link.js"
import { type PeerEvent, type PeerInfo, type Session, SessionState } from "./Session.js"
import * as ZenohConfig from "./ZenohConfig.js"
import type {
  PeerError,
  ZenohConfigError,
  ZenohHandshakeError,
  ZenohLinkError,
  ZenohSessionClosed
} from "./ZenohError.js"

export interface Endpoint {
  readonly host: string
  readonly port: number
}

export interface ListenOptions extends ZenohConfig.ZenohConfig, Endpoint {}
export interface ConnectOptions extends ZenohConfig.ZenohConfig, Endpoint {
  /** Resolves `host` (`net.connect`'s `lookup`). Default: the system's resolver (`dns.lookup`). */
  readonly lookup?: Net.LookupFunction | undefined
}

/** A listening session: remote peers come and go, subscribers stay. */
export interface Listener extends Session {
  /** The bound address (the actual port when 0 was asked for). */
  readonly address: Endpoint
}

/** A session with one remote peer, opened by connecting to it. */
export interface Connection extends Session {
  readonly peer: PeerInfo
  /** Fails with the reason once the session is over (peer gone, or closed locally). */
  readonly closed: Effect.Effect<never, PeerError | ZenohSessionClosed>
  /**
   * What looks wrong with what the peer sent (messages that made no sense, a batch that never
   * completes, initial declarations that never ended), for explaining a session that does not
   * work; undefined when nothing does.
   */
  readonly diagnose: Effect.Effect<string | undefined>
  /** The key expressions the peer subscribes to now. */
  readonly peerSubscriptions: Effect.Effect<ReadonlyArray<string>>
}

const makeState = (config: ZenohConfig.Resolved, mode: "listener" | "connector") =>
  Effect.gen(function*() {
    const events = yield* Effect.acquireRelease(PubSub.unbounded<PeerEvent>(), PubSub.shutdown)
    const state = new SessionState(config, mode, events)
    // Registered early so it runs last: the remotes are closed by then.
    yield* Effect.addFinalizer(() => Effect.sync(() => state.close()))
    return state
  })

/** Parses `tcp/host:port` (the Zenoh locator form) into an endpoint. */
export const parseLocator = (locator: string): Endpoint | undefined => {
  const match = /^(?:tcp\/)?(\[[^\]]+\]|[^:/\]]+):(\d{1,5})$/.exec(locator)
  if (match === null) return undefined
  const port = Number(match[2])
  if (port > 65535) return undefined
  const host = match[1]!.startsWith("[") ? match[1]!.slice(1, -1) : match[1]!
  return { host, port }
}

/** Listens on `host:port` and serves every peer that connects, until the scope closes. */
export const listen = (
  options: ListenOptions
): Effect.Effect<Listener, ZenohConfigError | ZenohLinkError, Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* Effect.fromResult(ZenohConfig.resolve(options))
    const state = yield* makeState(config, "listener")
    // The server is stopped after the peer fibers (finalizers run in reverse), so the peers still
    // get their CLOSE; connections arriving before the fibers can run are refused.
    let onConnection = (socket: Net.Socket) => void socket.destroy()
    const address = yield* Link.listen({
      host: options.host,
      port: options.port,
      onConnection: (socket) => onConnection(socket)
    })
    const fibers = yield* FiberSet.make<void, never>()
    const run = yield* FiberSet.runtime(fibers)()
    const accept = (socket: Net.Socket) =>
      Effect.scoped(
        Effect.gen(function*() {
          const link = yield* Link.fromSocket(socket)
          const negotiated = yield* Handshake.listener(link, config)
          yield* state.serve(state.attach(link, negotiated))
        })
      ).pipe(
        Effect.catch((error) =>
          PubSub.publish(state.events, {
            _tag: "HandshakeFailed",
            address: Link.peerName(socket),
            error
          })
        ),
        Effect.asVoid
      )
    onConnection = (socket) => void run(accept(socket))
    return { ...state.toSession(), address }
  })

/** Connects to a listening peer at `host:port` and opens a session with it. */
export const connect = (
  options: ConnectOptions
): Effect.Effect<Connection, ZenohConfigError | ZenohLinkError | ZenohHandshakeError, Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* Effect.fromResult(ZenohConfig.resolve(options))
    const state = yield* makeState(config, "connector")
    const link = yield* Link.connect({
      host: options.host,
      port: options.port,
      timeoutMillis: config.handshakeTimeoutMillis,
      lookup: options.lookup
    })
    const negotiated = yield* Handshake.connector(link, config)
    const remote = state.attach(link, negotiated)
    yield* Effect.forkScoped(state.serve(remote))
    return {
      ...state.toSession(),
      peer: remote.info,
      closed: Deferred.await(state.ended),
      diagnose: Effect.sync(() => remote.diagnose()),
      peerSubscriptions: Effect.sync(() => remote.subscriptions())
    }
  })

/**
 * Whether anybody listens at `host:port`: the TCP connection a session would
 * open, closed as soon as it is made, with nothing sent (a Zenoh peer takes
 * it for a port check). Fails as `connect`'s link would: `connect on
 * host:port failed: …` (with the socket error's `code`: `ENOTFOUND` for a host name that does
 * not resolve), or timed out after `timeoutMillis`.
 */
export const knock = (
  options: Endpoint & { readonly timeoutMillis: number; readonly lookup?: Net.LookupFunction | undefined }
): Effect.Effect<void, ZenohLinkError> =>
  Effect.scoped(Effect.asVoid(Link.connect({ ...options, reuseReadMemory: false })))

/** A listening session as a service, for programs that receive it from a Layer. */
export class ZenohListener extends Context.Service<ZenohListener, Listener>()("@chiral/zenoh/ZenohListener") {
  /** Listens for as long as the layer lives. */
  static readonly layer = (options: ListenOptions): Layer.Layer<ZenohListener, ZenohConfigError | ZenohLinkError> =>
    Layer.effect(ZenohListener, listen(options))
}

/** A connected session as a service. */
export class ZenohConnection extends Context.Service<ZenohConnection, Connection>()("@chiral/zenoh/ZenohConnection") {
  /** Connects when the layer is built; closes the session when it is released. */
  static readonly layer = (
    options: ConnectOptions
  ): Layer.Layer<ZenohConnection, ZenohConfigError | ZenohLinkError | ZenohHandshakeError> =>
    Layer.effect(ZenohConnection, connect(options))
}
