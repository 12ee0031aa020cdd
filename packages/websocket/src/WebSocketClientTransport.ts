/**
 * The WebSocket client transport. `ws://` runs on our own RFC 6455 client
 * (`WebSocketClient`), which reads each message straight into one buffer with
 * its chiral payload 8-byte aligned (no copy past the kernel's, float32 depth
 * as views), with the action dispatcher on a worker thread by default;
 * `wss://` goes through `ws`.
 */
import type { WithOffThreadDispatch } from "@chiral/core/OffThreadDispatch"
import { ReceivePool, reserveHeapFor, retainFreedBuffers } from "@chiral/protocol"
import * as DispatchControl from "@chiral/core/DispatchControl"
import { ClientTransport, type Connection, ConnectTimeout, type OutgoingFrame } from "@chiral/core/Transport"
import { isResolveCode, TransportError, unresolvedHost } from "@chiral/core/TransportError"
import * as NodeWS from "@effect/platform-node/NodeWS"
import { Cause, Deferred, Duration, Effect, Exit, Layer, Queue, type Scope, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import type * as Net from "node:net"
import { Worker } from "node:worker_threads"
import type { FromWorker, ToWorker, WorkerOptions } from "./ActionDispatchWorker.js"
import * as AccessToken from "./AccessToken.js"
import * as WebSocketClient from "./WebSocketClient.js"
import { defaultPort } from "./WebSocketServer.js"
import { closeDetail, normalCloseCodes, peerClose } from "./CloseFrame.js"
import { describe, framesFrom, sendOn, toTransportError } from "./WsConnection.js"

export interface ClientOptions {
  /**
   * How long the TCP connect and the WebSocket opening handshake may take, in
   * ms. Default 10 s. A caller's deadline (`ConnectTimeout`, from
   * PolicyClient's `openTimeout`) shortens it.
   */
  readonly openTimeoutMillis?: number | undefined
  /**
   * Ping the server this often once connected. Default 20 s, as the
   * references (the Python `websockets` library's `ping_interval`); 0 or
   * Infinity: never. `ws://` and `wss://`.
   */
  readonly pingInterval?: Duration.Input | undefined
  /**
   * End the connection when nothing at all arrives within this long after a
   * ping. Default 20 s (`websockets`' `ping_timeout`); 0 or Infinity: never.
   * A frozen, half-open or vanished server is then noticed within
   * `pingInterval` + `pingTimeout`, and PolicyClient's requests fail with
   * `Disconnected`. The pings are sent and checked on the connection's thread
   * (the policy's, see `WebSocketClient`): a pause of that thread is never
   * taken for the server's silence, and during it nothing is noticed.
   */
  readonly pingTimeout?: Duration.Input | undefined
  /**
   * Where a `ws://` connection's action dispatcher runs. "worker" (default):
   * on a worker thread that writes actions to the connection itself, so they
   * leave on time however busy this thread is. "main": PolicyClient's own
   * fiber on this thread. The connection is on this thread either way.
   */
  readonly thread?: "worker" | "main" | undefined
  /**
   * Where a `ws://` connection receives large messages (64 KiB and more).
   * "fresh" (default): a buffer of its own per message, which its
   * observation's tensors are views into, kept for as long as anything
   * reaches it. "recycled": memory from a pool kept across messages and
   * reconnections (a `ReceivePool` keeping at most 8 free buffers; or pass
   * your own, to size it or read its stats). Fresh buffers reuse the memory
   * of freed ones that glibc is asked to keep (`retainFreedBuffers`,
   * `reserveHeapFor`); recycled ones are reused whatever the C allocator and
   * message size (see the README's performance section).
   *
   * The contract with "recycled" (`FrameLease`): an observation's arrays stay
   * valid and unchanged while any of them (or the observation) is reachable;
   * after the last is collected its memory is moved out (the ArrayBuffer is
   * detached) and reused. A view you build yourself over the same memory
   * (`subarray`, `new Uint8Array(t.data.buffer, …)`, `Buffer.from(t.data.buffer,
   * …)`) does not keep it: hold the tensor too, or copy (`slice()`), in
   * particular across an asynchronous write; otherwise such a view reads as
   * empty (length 0) once the memory is reused. `wss://` is always "fresh".
   */
  readonly receiveBuffers?: "fresh" | "recycled" | ReceivePool | undefined
  /**
   * Resolves the URI's host name, as `net.connect`'s `lookup` (for a resolver
   * of your own, or a test's). Default: the system's (`dns.lookup`). A name
   * it cannot resolve fails the attempt with `unresolved` (see
   * `unresolvedHost`): `ENOTFOUND` as `InvalidAddress`, a temporary failure
   * (`EAI_AGAIN`) as `Unavailable`.
   */
  readonly lookup?: Net.LookupFunction | undefined
}

/** The resolved timings of one connection attempt, in ms (0: off). */
interface Timings {
  readonly openTimeoutMillis: number
  readonly pingIntervalMillis: number
  readonly pingTimeoutMillis: number
}

const defaultPingMillis = 20_000

/** A duration option in ms: 0 when off (0, negative, infinite). */
const millisOrOff = (input: Duration.Input | undefined, fallback: number): number => {
  if (input === undefined) return fallback
  const millis = Duration.toMillis(Duration.fromInputUnsafe(input))
  return Number.isFinite(millis) && millis > 0 ? millis : 0
}

/** The options' timings, the open timeout shortened to what the caller still waits (`ConnectTimeout`). */
const timingsFor = (options: ClientOptions): Effect.Effect<Timings> =>
  Effect.gen(function*() {
    const budget = yield* ConnectTimeout
    const own = options.openTimeoutMillis ?? 10_000
    const left = budget === undefined ? own : Duration.toMillis(budget)
    return {
      openTimeoutMillis: Math.max(1, Math.min(own, Number.isFinite(left) ? left : own)),
      pingIntervalMillis: millisOrOff(options.pingInterval, defaultPingMillis),
      pingTimeoutMillis: millisOrOff(options.pingTimeout, defaultPingMillis)
    }
  })

/** A URL's host as the resolver is asked for it (without an IPv6 address's brackets). */
const hostOf = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, "$1")

/**
 * Why a connection never opened, as the seam says it. A host name that could
 * not be resolved is named with the resolver's answer (`unresolvedHost`).
 */
const openFailure = (url: URL, uri: string, code: number, error: WebSocketClient.ClientSocketError | undefined) =>
  error?.kind === "unresolved"
    ? unresolvedHost({
      address: uri,
      host: hostOf(url),
      // a resolver of the caller's that gave no code: a failure, not "no such name"
      code: error.code ?? "EAI_FAIL",
      note: error.code === "ETIMEOUT" ? error.message : undefined,
      cause: error
    })
    : new TransportError({
      reason: error?.kind === "handshake"
        ? error.status === undefined ? "InvalidAddress" : httpRefusal(error.status)
        : error?.kind === "silent"
        ? "Silent"
        : "Unavailable",
      address: uri,
      detail: error?.message ?? `closed during the handshake (${code})`,
      cause: error
    })

/**
 * What an HTTP status answering the upgrade means: a 5xx is a server (or a
 * reverse proxy before it) that cannot serve now, worth retrying as one that
 * is not up (ours answers 503 while it shuts down); any other is `Refused`,
 * and will be again if asked the same way (401: the token).
 */
const httpRefusal = (status: number): "Unavailable" | "Refused" => status >= 500 && status < 600 ? "Unavailable" : "Refused"

/**
 * A `ws://` connection on our own client framing (`WebSocketClient`): each
 * message is read straight into one buffer, its chiral payload 8-byte aligned.
 * Opening can be interrupted (the caller's deadline): the socket is then
 * destroyed.
 */
const openDirect = (
  url: URL,
  uri: string,
  timings: Timings,
  pool: ReceivePool | undefined,
  lookup: Net.LookupFunction | undefined
): Effect.Effect<{ readonly connection: Connection; readonly socket: WebSocketClient.ClientSocket }, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const frames = yield* Queue.unbounded<Uint8Array, TransportError | Cause.Done>()
    let closing = false
    const socket = yield* Effect.acquireRelease(
      Effect.interruptible(Effect.callback<WebSocketClient.ClientSocket, TransportError>((resume) => {
        let opened = false
        const socket: WebSocketClient.ClientSocket = WebSocketClient.connect({
          host: hostOf(url),
          port: url.port === "" ? 80 : Number(url.port),
          lookup,
          path: `${url.pathname === "" ? "/" : url.pathname}${url.search}`,
          hostHeader: url.host,
          ...timings,
          receivePool: pool
        }, {
          onOpen: () => {
            opened = true
            resume(Effect.succeed(socket))
          },
          onMessage: (message) => {
            Queue.offerUnsafe(frames, message)
          },
          onClose: (code, reason, error) => {
            if (!opened) return resume(Effect.fail(openFailure(url, uri, code, error)))
            if (error === undefined && (closing || normalCloseCodes.has(code))) return void Queue.endUnsafe(frames)
            Queue.failCauseUnsafe(
              frames,
              Cause.fail(
                new TransportError({
                  reason: error?.kind === "protocol" ? "Read" : "Closed",
                  address: uri,
                  detail: error?.message ?? closeDetail(code, reason),
                  closedBy: error === undefined ? peerClose(code, reason) : undefined,
                  cause: error
                })
              )
            )
          }
        })
        return Effect.sync(() => socket.destroy())
      })),
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

/** An action dispatcher on a worker thread, for one connection; terminated with the scope. */
const startDispatcher = (uri: string) =>
  Effect.gen(function*() {
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
    const lost = Deferred.makeUnsafe<never, TransportError>()
    const control = DispatchControl.make((message) => worker.postMessage(message))
    worker.on("message", (message: FromWorker) => {
      if (control.receive(message) || message.t !== "lost") return
      Deferred.doneUnsafe(
        lost,
        Exit.fail(new TransportError({ reason: "Closed", address: uri, detail: `action dispatcher: ${message.detail}` }))
      )
    })
    worker.on("error", control.end)
    worker.on("exit", control.end)
    return { worker, control, lost }
  })

/**
 * A `ws://` connection on this thread with its action dispatcher on a worker
 * thread (`ActionDispatchWorker`), which writes actions to the same socket
 * through a `SharedWriter`: replies arrive here without a hop between
 * threads, and actions leave on time whatever this thread is doing. Where the
 * socket's descriptor cannot be shared the connection comes without a
 * dispatcher, and PolicyClient dispatches from its own fiber.
 *
 * The worker starts before connecting, so that its start-up (30–60 ms of a
 * core) overlaps the handshakes; but after an attempt that found nobody
 * listening (`early` false), only once the connection is open: a policy
 * waiting for its robot made one attempt every 0.1–1 s, and started and
 * terminated a worker each time (`chiral probe` waiting 10 s for nobody used
 * 2.8 s of CPU, 1.4 s of it on workers).
 *
 * The dispatcher belongs to this connection: a write of its that fails (the
 * socket is closed, or the server has not read for `SharedWriter.stallMillis`)
 * stops its ticks, keeps the action it could not send among those it holds,
 * and ends the connection, as a lost Zenoh dispatcher session does.
 */
const connectOffThread = (
  url: URL,
  uri: string,
  timings: Timings,
  pool: ReceivePool | undefined,
  lookup: Net.LookupFunction | undefined,
  early: boolean
): Effect.Effect<Connection & Partial<WithOffThreadDispatch>, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const started = early ? yield* startDispatcher(uri) : undefined
    const { connection, socket } = yield* openDirect(url, uri, timings, pool, lookup)
    const writer = socket.shareWrites()
    if (writer === undefined) return connection
    const { control, lost, worker } = started ?? (yield* startDispatcher(uri))
    worker.postMessage({ t: "attach", writer } satisfies ToWorker)
    // Before the socket closes (finalizers run in reverse): the dispatcher
    // confirms it has stopped, so no write of its is cut off by termination.
    yield* Effect.addFinalizer(() =>
      control.call({ t: "stop" }).pipe(
        Effect.timeoutOption(dispatcherStopMillis),
        Effect.andThen(Effect.sync(control.end))
      )
    )
    return { ...connection, frames: Stream.interruptWhen(connection.frames, Deferred.await(lost)), dispatch: control.dispatch }
  })

/**
 * Pings through `ws` (for `wss://`) with the same rule as `WebSocketClient`:
 * when nothing (a message, a ping or a pong) arrives within the timeout after
 * a ping, the connection is cut, which ends its frames with `Closed`.
 */
const keepAlive = (ws: NodeWS.WebSocket, timings: Timings): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      if (!(timings.pingIntervalMillis > 0)) return undefined
      let lastHeard = performance.now()
      let sentAt: number | undefined
      const heard = () => {
        lastHeard = performance.now()
      }
      for (const event of ["message", "ping", "pong"] as const) ws.on(event, heard)
      const interval = setInterval(() => {
        if (ws.readyState !== ws.OPEN || (sentAt !== undefined && lastHeard <= sentAt)) return
        const sent = performance.now()
        sentAt = sent
        ws.ping()
        if (timings.pingTimeoutMillis > 0) {
          setTimeout(() =>
            setImmediate(() => {
              if (sentAt === sent && lastHeard <= sent) ws.terminate()
            }), timings.pingTimeoutMillis).unref()
        }
      }, timings.pingIntervalMillis)
      interval.unref()
      return interval
    }),
    (interval) => Effect.sync(() => clearInterval(interval))
  ).pipe(Effect.asVoid)

/** The code of a socket error as `ws` reports it (the error itself, or its event's `error`). */
const errorCode = (cause: unknown): unknown => {
  if (typeof cause !== "object" || cause === null) return undefined
  const inner = (cause as { error?: unknown }).error
  return (cause as { code?: unknown }).code ?? (typeof inner === "object" && inner !== null ? (inner as { code?: unknown }).code : undefined)
}

/** A `wss://` connection through `ws` (TLS is not worth a framing of our own). */
const connectWithWs = (
  url: URL,
  uri: string,
  timings: Timings,
  lookup: Net.LookupFunction | undefined
): Effect.Effect<Connection, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    // `ws` receives each message into fresh memory too (see `WebSocketClient.connect`).
    retainFreedBuffers()
    let current: NodeWS.WebSocket | undefined
    const socket = yield* Socket.fromWebSocket(
      Effect.acquireRelease(
        Effect.sync(() => {
          current = new NodeWS.WebSocket(uri, { perMessageDeflate: false, maxPayload: 0, ...(lookup === undefined ? {} : { lookup }) })
          return current
        }),
        (ws) => Effect.sync(() => ws.close(1000))
      ),
      { openTimeout: timings.openTimeoutMillis }
    )
    const shown = AccessToken.redact(uri)
    const reader = yield* socket.reader.pipe(
      Effect.mapError((error) => {
        const failure = toTransportError(error, shown)
        const code = errorCode(failure.cause)
        if (failure.reason === "Unavailable" && isResolveCode(code)) {
          return unresolvedHost({ address: shown, host: hostOf(url), code, cause: failure.cause })
        }
        // An HTTP error answering the upgrade (ws:// and wss://): see httpRefusal.
        return failure.detail?.startsWith("Unexpected server response") === true
          ? new TransportError({
            reason: httpRefusal(Number(/^Unexpected server response: (\d{3})/.exec(failure.detail)?.[1])),
            address: shown,
            detail: failure.detail === "Unexpected server response: 401"
              ? AccessToken.unauthorized(url.pathname + url.search)
              : failure.detail
          })
          : new TransportError({ reason: "Unavailable", address: shown, detail: failure.detail ?? failure.reason })
      })
    )
    yield* keepAlive(current!, timings)
    // Room for the next messages once their size is known (`ws` allocates them itself).
    const frames = Stream.map(framesFrom(reader.pull, shown), (frame) => {
      reserveHeapFor(frame.byteLength)
      return frame
    })
    const connection: Connection = { id: shown, frames, send: sendOn(current!, shown) }
    return connection
  })

/** The pool of a client's `receiveBuffers` option: one per client, shared by its connections over time. */
const poolFor = (option: ClientOptions["receiveBuffers"]): ReceivePool | undefined =>
  option === undefined || option === "fresh" ? undefined : option === "recycled" ? new ReceivePool() : option

/** `uri` with the value of a `token` query parameter replaced by `***`, as logs and errors show it. */
export const redactToken = AccessToken.redact

/** Connects to a WebSocket server at `uri` (`ws://host:port`, optionally `/?token=T`). */
export const makeClient = (uri: string, options: ClientOptions = {}): ClientTransport["Service"] => {
  // What logs and errors show: a token in the URI is never printed.
  const shown = AccessToken.redact(uri)
  const pool = poolFor(options.receiveBuffers)
  // Whether the last attempt found a server: if not, the next one starts its dispatcher only once connected.
  let found = true
  const connect = Effect.gen(function*() {
    const url = yield* Effect.try({
      try: () => new URL(uri),
      catch: (cause) => new TransportError({ reason: "InvalidAddress", address: shown, detail: describe(cause) })
    })
    if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      return yield* new TransportError({
        reason: "InvalidAddress",
        address: shown,
        detail: `expected ws://host:port, got scheme ${url.protocol}`
      })
    }
    const timings = yield* timingsFor(options)
    if (url.protocol === "wss:") return yield* connectWithWs(url, uri, timings, options.lookup)
    if (options.thread === "main") {
      return yield* Effect.map(openDirect(url, shown, timings, pool, options.lookup), ({ connection }) => connection)
    }
    return yield* connectOffThread(url, shown, timings, pool, options.lookup, found).pipe(
      Effect.tapError(() => Effect.sync(() => void (found = false))),
      Effect.tap(() => Effect.sync(() => void (found = true)))
    )
  })
  return ClientTransport.of({ address: shown, connect })
}

/** `ClientTransport` over WebSocket to `uri` (default `ws://localhost:8765`). */
export const layerClient = (
  uri = `ws://localhost:${defaultPort}`,
  options: ClientOptions = {}
): Layer.Layer<ClientTransport> => Layer.succeed(ClientTransport, makeClient(uri, options))
