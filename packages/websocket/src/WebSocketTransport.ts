/**
 * WebSocket transport. Server: `NodeSocketServer.makeWebSocket` (`ws` under
 * @effect/platform-node) accepts connections and `Socket.fromWebSocket` reads
 * them. Client: `ws://` runs on our own RFC 6455 client (`WebSocketClient`),
 * which reads each message straight into one buffer with its chiral payload
 * 8-byte aligned (no copy past the kernel's, float32 depth as views); `wss://`
 * goes through `ws`.
 *
 * The raw `ws` socket (what platform-node runs underneath, reached through its
 * `NodeWS` re-export and the `Socket.WebSocket` service) is used in this module
 * only, for three things Effect's `Socket` writer cannot do:
 *  - send one frame given as several parts as one message made of WebSocket
 *    fragments, so a 17 MB observation is never concatenated;
 *  - learn when a send has reached the operating system (the send callback), so
 *    a connection holds about one frame of outbound data and a slow client
 *    only ever slows itself;
 *  - client options: no permessage-deflate offered, no receive size limit
 *    (`ws` defaults to offering deflate and to a 100 MiB cap).
 */
import { Worker } from "node:worker_threads"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as NodeWS from "@effect/platform-node/NodeWS"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { Cause, Effect, Layer, Option, type Pull, Queue, type Scope, Stream } from "effect"
import * as NetAddress from "effect/net/NetAddress"
import * as Socket from "effect/socket/Socket"
import type { WithOffThreadDispatch } from "@chiral/core/OffThreadDispatch"
import * as DispatchControl from "@chiral/core/DispatchControl"
import { ClientTransport, type Connection, frameBytes, type OutgoingFrame, ServerTransport } from "@chiral/core/Transport"
import { TransportError } from "@chiral/core/TransportError"
import * as WebSocketClient from "./WebSocketClient.js"
import type { FromWorker, ToWorker, WorkerOptions } from "./ActionDispatchWorker.js"

export interface ServerOptions {
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
}

export interface ClientOptions {
  /** How long the WebSocket opening handshake may take. Default 10 s. */
  readonly openTimeoutMillis?: number | undefined
  /**
   * Where a `ws://` connection's action dispatcher runs. "worker" (default):
   * on a worker thread that writes actions to the connection itself, so they
   * leave on time however busy this thread is. "main": PolicyClient's own
   * fiber on this thread. The connection is on this thread either way.
   */
  readonly thread?: "worker" | "main" | undefined
}

export const defaultPort = 8765
export const defaultMaxMessageBytes = 16 * 1024 * 1024

const encoder = new TextEncoder()

/** Close codes that end the frame stream normally rather than as a lost connection. */
const normalCloseCodes = new Set([1000, 1001, 1005])

const toTransportError = (error: Socket.SocketError, address: string): TransportError => {
  const reason = error.reason
  switch (reason._tag) {
    case "SocketCloseError":
      return new TransportError({ reason: "Closed", address, detail: `close code ${reason.message}` })
    case "SocketReadError":
      return new TransportError({ reason: "Read", address, detail: describe(reason.cause), cause: reason.cause })
    case "SocketWriteError":
      return new TransportError({ reason: "Write", address, detail: describe(reason.cause), cause: reason.cause })
    case "SocketOpenError":
      return new TransportError({ reason: "Unavailable", address, detail: describe(reason.cause), cause: reason.cause })
    case "SocketUpgradeError":
      return new TransportError({ reason: "InvalidAddress", address, detail: "TLS upgrade unsupported" })
  }
}

/** Error events from `ws` carry the real error in `.error` and a `.message`. */
const describe = (cause: unknown): string => {
  if (cause instanceof Error) return cause.message
  if (typeof cause === "object" && cause !== null) {
    const inner = (cause as { error?: unknown }).error
    if (inner instanceof Error) return inner.message
    const message = (cause as { message?: unknown }).message
    if (typeof message === "string" && message.length > 0) return message
  }
  return String(cause)
}

/** Frame stream over an Effect socket reader: one element per message. */
const framesFrom = (
  pull: Effect.Effect<ReadonlyArray<Uint8Array | string>, Socket.SocketError>,
  address: string
): Stream.Stream<Uint8Array, TransportError> => {
  const next: Pull.Pull<NonEmptyReadonlyArray<Uint8Array>, TransportError> = pull.pipe(
    Effect.map((batch) =>
      batch.map((item) => typeof item === "string" ? encoder.encode(item) : item) as unknown as NonEmptyReadonlyArray<
        Uint8Array
      >
    ),
    Effect.catch((error): Effect.Effect<never, TransportError | Cause.Done> =>
      error.reason._tag === "SocketCloseError" && normalCloseCodes.has(error.reason.code)
        ? Cause.done()
        : Effect.fail(toTransportError(error, address))
    )
  )
  return Stream.fromPull(Effect.succeed(next))
}

const joinBelowBytes = 64 * 1024

const totalBytes = (parts: ReadonlyArray<Uint8Array>): number => {
  let n = 0
  for (const part of parts) n += part.byteLength
  return n
}

/**
 * Sends one frame as one WebSocket message; several parts become fragments of
 * that message (no concatenation). Completes when the last part is written.
 */
const sendOn = (ws: NodeWS.WebSocket, address: string, fragmentParts = true) =>
(frame: OutgoingFrame): Effect.Effect<void, TransportError> =>
  Effect.callback<void, TransportError>((resume) => {
    // Below a page or so, one frame is cheaper than fragments: one header, one
    // write, one parse on the other side; the copy costs next to nothing.
    if (!fragmentParts || (!(frame instanceof Uint8Array) && totalBytes(frame) <= joinBelowBytes)) frame = frameBytes(frame)
    if (ws.readyState !== NodeWS.WebSocket.OPEN) {
      return resume(Effect.fail(new TransportError({ reason: "Closed", address, detail: "connection is not open" })))
    }
    const done = (error?: Error | null) =>
      resume(
        error
          ? Effect.fail(new TransportError({ reason: "Write", address, detail: error.message, cause: error }))
          : Effect.void
      )
    try {
      if (frame instanceof Uint8Array) {
        ws.send(frame, { binary: true, compress: false, fin: true }, done)
      } else if (frame.length === 0) {
        ws.send(new Uint8Array(0), { binary: true, compress: false, fin: true }, done)
      } else {
        // Fragments of one message go out in one synchronous run, so no other
        // send on this socket can interleave with them.
        const last = frame.length - 1
        for (let i = 0; i < last; i++) ws.send(frame[i]!, { binary: true, compress: false, fin: false })
        ws.send(frame[last]!, { binary: true, compress: false, fin: true }, done)
      }
    } catch (cause) {
      resume(Effect.fail(new TransportError({ reason: "Write", address, detail: describe(cause), cause })))
    }
  })

const formatAddress = (address: NetAddress.SocketAddress): string =>
  address._tag === "UnixPathAddress"
    ? `ws+unix://${address.path}`
    : `ws://${NetAddress.formatUrlHost(address.address)}:${address.port}`

/** Listens for WebSocket clients; the listener and every connection live in the scope. */
export const makeServer = Effect.fnUntraced(function*(options: ServerOptions = {}) {
  const live = new Set<NodeWS.WebSocket>()
  const host = options.host ?? "0.0.0.0"
  const port = options.port ?? defaultPort
  const wanted = `ws://${host.includes(":") ? `[${host}]` : host}:${port}`
  const server = yield* NodeSocketServer.makeWebSocket({
    host,
    port,
    maxPayload: options.maxMessageBytes ?? defaultMaxMessageBytes,
    perMessageDeflate: false
  }).pipe(
    Effect.mapError((error) =>
      new TransportError({ reason: "Listen", address: wanted, detail: describe(error.reason.cause), cause: error })
    )
  )
  const address = formatAddress(server.address)
  // Registered after the listener, so it runs first at shutdown: the listener's
  // own close waits for every socket to end, and a peer that never answers the
  // close handshake would hold it for ws's 30 s close timeout. Connections
  // still open after the grace period are cut (1001: the server is going away).
  yield* Effect.addFinalizer(() =>
    Effect.callback<void>((resume) => {
      if (live.size === 0) return resume(Effect.void)
      const timer = setTimeout(() => {
        for (const ws of live) ws.terminate()
        resume(Effect.void)
      }, options.closeGraceMillis ?? 1000)
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
  )

  const serve = <E, R>(handler: (connection: Connection) => Effect.Effect<void, E, R>) =>
    server.run((socket) =>
      Effect.gen(function*() {
        const ws = Option.getOrUndefined(yield* Effect.serviceOption(Socket.WebSocket)) as unknown as
          | NodeWS.WebSocket
          | undefined
        if (ws === undefined) return yield* Effect.die("WebSocket server connection without its socket")
        const request = Option.getOrUndefined(yield* Effect.serviceOption(NodeSocketServer.IncomingMessage))
        const peer = request === undefined
          ? "?"
          : `${request.socket.remoteAddress ?? "?"}:${request.socket.remotePort ?? "?"}`
        const id = `${address} ← ${peer}`
        live.add(ws)
        ws.once("close", () => live.delete(ws))
        const reader = yield* socket.reader.pipe(Effect.mapError((error) => toTransportError(error, id)))
        yield* handler({ id, frames: framesFrom(reader.pull, id), send: sendOn(ws, id, options.fragmentParts) })
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
    ).pipe(
      Effect.mapError((error) => new TransportError({ reason: "Listen", address, cause: error }))
    )

  return ServerTransport.of({ address, serve })
})

/**
 * A `ws://` connection on our own client framing (`WebSocketClient`): each
 * message is read straight into one buffer, its chiral payload 8-byte aligned.
 */
const openDirect = (
  url: URL,
  uri: string,
  options: ClientOptions
): Effect.Effect<{ readonly connection: Connection; readonly socket: WebSocketClient.ClientSocket }, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const frames = yield* Queue.unbounded<Uint8Array, TransportError | Cause.Done>()
    let closing = false
    const socket = yield* Effect.acquireRelease(
      Effect.callback<WebSocketClient.ClientSocket, TransportError>((resume) => {
        let opened = false
        const socket: WebSocketClient.ClientSocket = WebSocketClient.connect({
          host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
          port: url.port === "" ? 80 : Number(url.port),
          path: `${url.pathname === "" ? "/" : url.pathname}${url.search}`,
          hostHeader: url.host,
          openTimeoutMillis: options.openTimeoutMillis ?? 10_000
        }, {
          onOpen: () => {
            opened = true
            resume(Effect.succeed(socket))
          },
          onMessage: (message) => {
            Queue.offerUnsafe(frames, message)
          },
          onClose: (code, reason, error) => {
            if (!opened) {
              return resume(Effect.fail(
                new TransportError({
                  reason: error?.kind === "handshake" ? "InvalidAddress" : "Unavailable",
                  address: uri,
                  detail: error?.message ?? `closed during the handshake (${code})`,
                  cause: error
                })
              ))
            }
            if (error === undefined && (closing || normalCloseCodes.has(code))) return void Queue.endUnsafe(frames)
            Queue.failCauseUnsafe(
              frames,
              Cause.fail(
                new TransportError({
                  reason: error?.kind === "protocol" ? "Read" : "Closed",
                  address: uri,
                  detail: error?.message ?? `close code ${code}${reason === "" ? "" : `: ${reason}`}`,
                  cause: error
                })
              )
            )
          }
        })
        return Effect.sync(() => socket.destroy())
      }),
      (socket) =>
        Effect.sync(() => {
          closing = true
          socket.close(1000)
        })
    )
    const send = (frame: OutgoingFrame): Effect.Effect<void, TransportError> =>
      Effect.callback<void, TransportError>((resume) => {
        socket.send(frame instanceof Uint8Array ? [frame] : frame, (error) =>
          resume(
            error === undefined
              ? Effect.void
              : Effect.fail(
                new TransportError({
                  reason: socket.isOpen ? "Write" : "Closed",
                  address: uri,
                  detail: error.message,
                  cause: error
                })
              )
          ))
      })
    return { connection: { id: uri, frames: Stream.fromQueue(frames), send }, socket }
  })

/** How long closing waits for the dispatcher to confirm it has stopped writing. */
const dispatcherStopMillis = 1000

/**
 * A `ws://` connection on this thread with its action dispatcher on a worker
 * thread (`ActionDispatchWorker`), which writes actions to the same socket
 * through a `SharedWriter`: replies arrive here without a hop between
 * threads, and actions leave on time whatever this thread is doing. Where the
 * socket's descriptor cannot be shared the connection comes without a
 * dispatcher, and PolicyClient dispatches from its own fiber.
 */
const connectOffThread = (
  url: URL,
  uri: string,
  options: ClientOptions
): Effect.Effect<Connection & Partial<WithOffThreadDispatch>, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    // Started before connecting, so that its start-up overlaps the handshakes.
    const worker = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Worker(DispatchControl.workerScript("ActionDispatchWorker", import.meta.url), {
          // None of the parent's Node options: the worker is built JavaScript importing
          // built packages (a test runner's source condition would point it at
          // TypeScript), and V8 flags are process-wide anyway.
          execArgv: [],
          workerData: { chiralActionDispatch: { maxQueuedActions: 10_000 } satisfies WorkerOptions }
        })
      ),
      (worker) => Effect.promise(() => worker.terminate())
    )
    const control = DispatchControl.make((message) => worker.postMessage(message))
    worker.on("message", (message: FromWorker) => control.receive(message))
    worker.on("error", control.end)
    worker.on("exit", control.end)

    const { connection, socket } = yield* openDirect(url, uri, options)
    const writer = socket.shareWrites()
    if (writer === undefined) return connection
    worker.postMessage({ t: "attach", writer } satisfies ToWorker)
    // Before the socket closes (finalizers run in reverse): the dispatcher
    // confirms it has stopped, so no write of its is cut off by termination.
    yield* Effect.addFinalizer(() =>
      control.call({ t: "stop" }).pipe(
        Effect.timeoutOption(dispatcherStopMillis),
        Effect.andThen(Effect.sync(control.end))
      )
    )
    return { ...connection, dispatch: control.dispatch }
  })

/** A `wss://` connection through `ws` (TLS is not worth a framing of our own). */
const connectWithWs = (uri: string, options: ClientOptions): Effect.Effect<Connection, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    let current: NodeWS.WebSocket | undefined
    const socket = yield* Socket.fromWebSocket(
      Effect.acquireRelease(
        Effect.sync(() => {
          current = new NodeWS.WebSocket(uri, { perMessageDeflate: false, maxPayload: 0 })
          return current
        }),
        (ws) => Effect.sync(() => ws.close(1000))
      ),
      { openTimeout: options.openTimeoutMillis ?? 10_000 }
    )
    const reader = yield* socket.reader.pipe(
      Effect.mapError((error) => {
        const failure = toTransportError(error, uri)
        // A server that answers the upgrade with an HTTP error will keep doing so.
        return failure.detail?.startsWith("Unexpected server response") === true
          ? new TransportError({ reason: "InvalidAddress", address: uri, detail: failure.detail })
          : new TransportError({ reason: "Unavailable", address: uri, detail: failure.detail ?? failure.reason })
      })
    )
    const connection: Connection = { id: uri, frames: framesFrom(reader.pull, uri), send: sendOn(current!, uri) }
    return connection
  })

/** Connects to a WebSocket server at `uri` (`ws://host:port`). */
export const makeClient = (uri: string, options: ClientOptions = {}): ClientTransport["Service"] => {
  const connect = Effect.gen(function*() {
    const url = yield* Effect.try({
      try: () => new URL(uri),
      catch: (cause) => new TransportError({ reason: "InvalidAddress", address: uri, detail: describe(cause) })
    })
    if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      return yield* new TransportError({
        reason: "InvalidAddress",
        address: uri,
        detail: `expected ws://host:port, got scheme ${url.protocol}`
      })
    }
    if (url.protocol === "wss:") return yield* connectWithWs(uri, options)
    return yield* (options.thread === "main"
      ? Effect.map(openDirect(url, uri, options), ({ connection }) => connection)
      : connectOffThread(url, uri, options))
  })
  return ClientTransport.of({ address: uri, connect })
}

/** `ServerTransport` over WebSocket (default `ws://0.0.0.0:8765`). */
export const layerServer = (options: ServerOptions = {}): Layer.Layer<ServerTransport, TransportError> =>
  Layer.effect(ServerTransport, makeServer(options))

/** `ClientTransport` over WebSocket to `uri` (default `ws://localhost:8765`). */
export const layerClient = (
  uri = `ws://localhost:${defaultPort}`,
  options: ClientOptions = {}
): Layer.Layer<ClientTransport> => Layer.succeed(ClientTransport, makeClient(uri, options))
