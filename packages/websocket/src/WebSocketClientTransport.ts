/**
 * The WebSocket client transport. `ws://` runs on our own RFC 6455 client
 * (`WebSocketClient`), which reads each message straight into one buffer with
 * its chiral payload 8-byte aligned (no copy past the kernel's, float32 depth
 * as views), with the action dispatcher on a worker thread by default;
 * `wss://` goes through `ws`.
 */
import type { WithOffThreadDispatch } from "@chiral/core/OffThreadDispatch"
import * as DispatchControl from "@chiral/core/DispatchControl"
import { ClientTransport, type Connection, type OutgoingFrame } from "@chiral/core/Transport"
import { TransportError } from "@chiral/core/TransportError"
import * as NodeWS from "@effect/platform-node/NodeWS"
import { Cause, Effect, Layer, Queue, type Scope, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import { Worker } from "node:worker_threads"
import type { FromWorker, ToWorker, WorkerOptions } from "./ActionDispatchWorker.js"
import * as WebSocketClient from "./WebSocketClient.js"
import { defaultPort } from "./WebSocketServer.js"
import { describe, framesFrom, normalCloseCodes, sendOn, toTransportError } from "./WsConnection.js"

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

/** `ClientTransport` over WebSocket to `uri` (default `ws://localhost:8765`). */
export const layerClient = (
  uri = `ws://localhost:${defaultPort}`,
  options: ClientOptions = {}
): Layer.Layer<ClientTransport> => Layer.succeed(ClientTransport, makeClient(uri, options))
