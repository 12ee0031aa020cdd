/**
 * The WebSocket server: `NodeSocketServer.makeWebSocket` (`ws` under
 * @effect/platform-node) accepts connections, and `WsConnection` reads
 * (`receiverOf`) and sends (`senderOn`) on them, and lets a frame be answered
 * as it arrives (`Connection.answerInline`). Connections are checked for the
 * access token (`AccessToken`, before the upgrade) and kept alive by pings
 * (`Keepalive`).
 */
import { ServerTransport, type Connection } from "@chiral/core/Transport"
import { TransportError } from "@chiral/core/TransportError"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import type * as NodeWS from "@effect/platform-node/NodeWS"
import { Cause, Effect, Exit, Layer, Option } from "effect"
import * as NetAddress from "effect/net/NetAddress"
import * as Socket from "effect/socket/Socket"
import type * as Http from "node:http"
import * as AccessToken from "./AccessToken.js"
import { fitReason, isSendableCode } from "./CloseFrame.js"
import * as Keepalive from "./Keepalive.js"
import { describe, receiverOf, senderOn } from "./WsConnection.js"

export interface ServerOptions extends Keepalive.KeepaliveOptions {
  /** Interface to listen on. Default `0.0.0.0` (as the references). */
  readonly host?: string | undefined
  /** Port. Default 8765; 0 picks a free port (see `ServerTransport.address`). */
  readonly port?: number | undefined
  /**
   * Largest message the server accepts; a bigger one closes that client's
   * connection (1009). Clients only send requests and actions. Default 16 MiB.
   */
  readonly maxMessageBytes?: number | undefined
  /** How long closing connections may take at shutdown before they are cut. Default 1000 ms. */
  readonly closeGraceMillis?: number | undefined
  /**
   * Send a frame given in parts as WebSocket fragments of one message (default
   * true: no copy here). `ws` on the receiving side copies each fragment and
   * then joins them, one copy more than for an unfragmented message, so
   * `false` (join here, send one fragment) moves that copy to this side.
   */
  readonly fragmentParts?: boolean | undefined
  /**
   * Access token clients must present (`ws://host:port/?token=T` or
   * `Authorization: Bearer T`); others get HTTP 401 before the upgrade (see
   * `AccessToken`). Default: none, anyone who reaches the port is served
   * (logged as a warning when the host is not a loopback address).
   */
  readonly token?: string | undefined
}

export const defaultPort = 8765
export const defaultMaxMessageBytes = 16 * 1024 * 1024

/** Whether `host` only accepts connections from this machine (no token warning then). */
export const isLoopbackHost = (host: string): boolean => /^(127\.|::1$|\[::1\]$|localhost$)/i.test(host)

const formatAddress = (address: NetAddress.SocketAddress): string =>
  address._tag === "UnixPathAddress"
    ? `ws+unix://${address.path}`
    : `ws://${NetAddress.formatUrlHost(address.address)}:${address.port}`

/** The connections a server holds, and whether it is shutting down. */
interface Connections {
  readonly live: Set<NodeWS.WebSocket>
  /**
   * Set when shutdown begins. Until the listener itself has closed it still
   * accepts, but nothing serves new connections any more: a client that
   * reconnects in that window is refused before the upgrade (HTTP 503)
   * instead of being left on a connection nobody answers.
   */
  closing: boolean
}

/** Keepalive's interval and timeout; undefined when it is off. */
type KeepaliveSettings = Exclude<ReturnType<typeof Keepalive.resolve>, string>

/**
 * `ws`'s check before the upgrade: refused with 503 while shutting down, and
 * with 401 (logged) when a token is set (`refusal`) and the client does not
 * present it.
 */
const verifyClientFor = (
  connections: Connections,
  refusal: ((request: Http.IncomingMessage) => string | undefined) | undefined,
  log: (effect: Effect.Effect<void>) => void
) =>
(
  info: { readonly req: Http.IncomingMessage },
  done: (ok: boolean, code?: number, message?: string, headers?: Http.OutgoingHttpHeaders) => void
) => {
  if (connections.closing) return done(false, 503, "Service Unavailable")
  if (refusal === undefined) return done(true)
  AccessToken.verifyClient(refusal, "a connection", (line) => log(Effect.logWarning(line)))(info, done)
}

/**
 * Shutdown: no more connections are served, every live one is closed (1001:
 * the server is going away) and waited for; those still open after
 * `graceMillis` are cut.
 */
const closeAll = (connections: Connections, graceMillis: number) =>
  Effect.callback<void>((resume) => {
    const { live } = connections
    connections.closing = true
    if (live.size === 0) return resume(Effect.void)
    const timer = setTimeout(() => {
      for (const ws of live) ws.terminate()
      resume(Effect.void)
    }, graceMillis)
    const check = () => {
      if (live.size === 0) {
        clearTimeout(timer)
        resume(Effect.void)
      }
    }
    for (const ws of live) {
      ws.once("close", check)
      ws.close(1001)
    }
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * One accepted connection, in a scope of its own: tracked among the live
 * ones, kept alive by pings, handed to `handler` as a `Connection`. How it
 * ended is logged, not raised: one client's end is not the server's.
 */
const serveConnection = <E, R>(
  connections: Connections,
  address: string,
  keepalive: KeepaliveSettings,
  fragmentParts: boolean | undefined,
  handler: (connection: Connection) => Effect.Effect<void, E, R>
) =>
  Effect.gen(function*() {
    const ws = Option.getOrUndefined(yield* Effect.serviceOption(Socket.WebSocket)) as unknown as
      | NodeWS.WebSocket
      | undefined
    if (ws === undefined) return yield* Effect.die("WebSocket server connection without its socket")
    const request = Option.getOrUndefined(yield* Effect.serviceOption(NodeSocketServer.IncomingMessage))
    const peer = AccessToken.peerOf(request)
    const id = `${address} ← ${peer}`
    connections.live.add(ws)
    ws.once("close", () => connections.live.delete(ws))
    // Closed when the connection's scope ends, after its reader has let go:
    // 1001 (going away) when the server stops serving, as Python's
    // `websockets` server does, 1000 when the handler is done with the
    // client; a failed handler's close says no status (1005), as before.
    yield* Effect.addFinalizer((exit) => Effect.sync(() => ws.close(closeCodeOf(exit))))
    const receiver = yield* receiverOf(ws, id)
    const sender = senderOn(ws, id, fragmentParts)
    if (keepalive !== undefined) yield* Effect.forkScoped(Keepalive.run(ws, id, keepalive))
    yield* handler({
      id,
      peer,
      frames: receiver.frames,
      send: sender.send,
      close: closeOn(ws),
      answerInline: (handler) => receiver.answerInline((frame) => sender.idle() && handler(frame, sender.sendNow))
    })
  }).pipe(
    Effect.scoped,
    Effect.catchCause((cause) => {
      if (Cause.hasInterruptsOnly(cause)) return Effect.void
      // A client that goes away without a close handshake is routine for a robot server.
      const error = Cause.findErrorOption(cause)
      return Option.isSome(error) && error.value instanceof TransportError && error.value.reason === "Closed"
        ? Effect.logInfo(`chiral: connection lost: ${error.value.message}`)
        : Effect.logWarning("chiral: connection ended", cause)
    })
  )

/**
 * `Connection.close` on `ws`: a close frame with `code` (1011 when `ws` may
 * not send it) and `reason` fitted to the frame (`fitReason`). The first
 * close is the one the client sees: the connection scope's own close that
 * follows does nothing to a socket already closing.
 */
const closeOn = (ws: NodeWS.WebSocket) => (code: number, reason: string): Effect.Effect<void> =>
  Effect.sync(() => ws.close(isSendableCode(code) ? code : 1011, fitReason(reason)))

/** The close code for a connection whose handler ended with `exit` (undefined: none, 1005). */
const closeCodeOf = (exit: Exit.Exit<unknown, unknown>): number | undefined =>
  Exit.isSuccess(exit) ? 1000 : Cause.hasInterruptsOnly(exit.cause) ? 1001 : undefined

/** Listens for WebSocket clients; the listener and every connection live in the scope. */
export const makeServer = Effect.fnUntraced(function*(options: ServerOptions = {}) {
  const connections: Connections = { live: new Set(), closing: false }
  const host = options.host ?? "0.0.0.0"
  const port = options.port ?? defaultPort
  const wanted = `ws://${host.includes(":") ? `[${host}]` : host}:${port}`
  const keepalive = Keepalive.resolve(options)
  if (typeof keepalive === "string") {
    return yield* new TransportError({ reason: "Listen", address: wanted, detail: keepalive })
  }
  if (options.token === "") {
    return yield* new TransportError({ reason: "Listen", address: wanted, detail: "the token is empty" })
  }
  const context = yield* Effect.context<never>()
  const log = (effect: Effect.Effect<void>) => void Effect.runForkWith(context)(effect)
  const refusal = options.token === undefined ? undefined : AccessToken.checker(options.token)
  const server = yield* NodeSocketServer.makeWebSocket({
    host,
    port,
    maxPayload: options.maxMessageBytes ?? defaultMaxMessageBytes,
    perMessageDeflate: false,
    verifyClient: verifyClientFor(connections, refusal, log)
  }).pipe(
    Effect.mapError((error) =>
      new TransportError({ reason: "Listen", address: wanted, detail: describe(error.reason.cause), cause: error })
    )
  )
  const address = formatAddress(server.address)
  if (options.token === undefined && !isLoopbackHost(host)) {
    yield* Effect.logWarning(
      `chiral: serving ${address} without a token: anyone who can reach this port can drive the robot (set a token: ServerOptions.token, or a chiral command's --token or CHIRAL_TOKEN)`
    )
  }
  // Registered after the listener, so it runs first at shutdown: the listener's
  // own close waits for every socket to end, and a peer that never answers the
  // close handshake would hold it for ws's 30 s close timeout.
  yield* Effect.addFinalizer(() => closeAll(connections, options.closeGraceMillis ?? 1000))

  const serve = <E, R>(handler: (connection: Connection) => Effect.Effect<void, E, R>) =>
    server.run(() => serveConnection(connections, address, keepalive, options.fragmentParts, handler)).pipe(
      Effect.mapError((error) => new TransportError({ reason: "Listen", address, cause: error })),
      // Once nothing serves, nothing more is accepted (see `Connections.closing`).
      Effect.ensuring(Effect.sync(() => {
        connections.closing = true
      }))
    )

  return ServerTransport.of({ address, serve })
})

/** `ServerTransport` over WebSocket (default `ws://0.0.0.0:8765`). */
export const layerServer = (options: ServerOptions = {}): Layer.Layer<ServerTransport, TransportError> =>
  Layer.effect(ServerTransport, makeServer(options))

