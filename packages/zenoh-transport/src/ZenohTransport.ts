/**
 * Zenoh transport, as the references use it: the server is a Zenoh peer that
 * listens on `tcp/<host>:<port>` (default 7447), subscribes to `chiral/c2s` and
 * publishes on `chiral/s2c`; a client connects to it as a peer, publishes its
 * requests and actions on `chiral/c2s` and subscribes to `chiral/s2c`. Each
 * sample carries one frame, the same bytes as a WebSocket message.
 *
 * The keys are shared by every client, but the server, a peer, knows which
 * session each request came from: every peer session is a `Connection` of its
 * own, answered on its own fibers, and its replies go to that session only (on
 * the same reply key, so reference clients work unchanged; see `makeServerOn`
 * for what that means for other subscribers and for routers). `keyPrefix`
 * gives a server/client pair keys of its own (`<prefix>/chiral/c2s`, …), so
 * several robots can share one Zenoh network or even one listening session
 * (`makeServerOn`).
 *
 * A Zenoh publication made before the remote subscriber is known is lost, so a
 * client learns that routes are up the way the references do: it sends
 * `metadata` every 0.5 s until something answers, and swallows that answer
 * before handing the connection over.
 *
 * A client's own session (requests and observations) runs on a worker thread
 * (`ZenohSession`), so that its keep-alives go out however long the policy's
 * thread is blocked; `sessionThread: "main"` keeps it on this thread. It
 * dispatches its actions from another worker thread with a Zenoh session of
 * its own (`ZenohDispatch`, `OffThreadDispatch` in @chiral/core), so that the
 * pauses of the policy's thread cannot make them late; `thread: "main"` keeps
 * them on PolicyClient's fiber.
 */
import { encodeFrame, frameAlignment } from "@chiral/protocol"
import {
  isZenohError,
  KeyExpr,
  type PeerError,
  type PeerEvent,
  type PeerInfo,
  type PeerSamples,
  type Session,
  Zenoh,
  type ZenohConfig,
  ZenohId,
  type ZenohConfigError,
  type ZenohHandshakeError,
  type ZenohKeyExprError,
  ZenohLinkError,
  type ZenohReassemblyError,
  type ZenohSessionClosed
} from "@chiral/zenoh"
import { Cause, Clock, Duration, Effect, Exit, FiberSet, Layer, Option, Predicate, Scope, Stream } from "effect"
import type { WithOffThreadDispatch } from "@chiral/core/OffThreadDispatch"
import { ClientTransport, type Connection, ConnectTimeout, ServerTransport } from "@chiral/core/Transport"
import { isResolveCode, TransportError, type TransportErrorReason, unresolvedHost } from "@chiral/core/TransportError"
import * as Net from "node:net"
import * as ZenohDispatch from "./ZenohDispatch.js"
import * as ZenohSession from "./ZenohSession.js"
import type { SessionEnd } from "./ZenohSession.js"

/** The references' port. */
export const defaultPort = 7447
/** Key the clients publish on and the server subscribes to (before any prefix). */
export const requestKey = "chiral/c2s"
/** Key the server publishes on and the clients subscribe to (before any prefix). */
export const replyKey = "chiral/s2c"
/**
 * Largest message the server reassembles (Zenoh `maxMessageSize`) unless told
 * otherwise: 16 MiB, as the WebSocket server's limit, since clients only send
 * requests and actions; a peer cannot make the robot hold more than that. A
 * bigger one ends that peer's session only. (Clients take Rust Zenoh's 1 GiB:
 * observations are large.)
 */
export const defaultServerMaxMessageBytes = 16 * 1024 * 1024

/** Zenoh session settings (zid, batch size, lease, keep-alive, timeouts, reassembly cap). */
export type SessionOptions = ZenohConfig.ZenohConfig

export interface KeyOptions {
  /**
   * Puts the chiral keys under this prefix: `p` gives `p/chiral/c2s` and
   * `p/chiral/s2c`. A concrete key expression (`robot1`, `lab/arm-2`): no
   * wildcards. Default: none, the references' keys.
   */
  readonly keyPrefix?: string | undefined
}

export interface ServerOptions extends SessionOptions, KeyOptions {
  /** Interface to listen on. Default `0.0.0.0` (as the references). */
  readonly host?: string | undefined
  /** Port. Default 7447; 0 picks a free port (see `ServerTransport.address`). */
  readonly port?: number | undefined
  /**
   * Frames buffered per peer session before the server stops reading from
   * that peer (and only that one). Default 16.
   */
  readonly capacity?: number | undefined
}

export interface ClientOptions extends SessionOptions, KeyOptions {
  /** Pause between `metadata` probes while waiting for the first answer. Default 500 ms (the references'). */
  readonly probeInterval?: Duration.Input | undefined
  /**
   * How long one connection attempt probes before it gives up with
   * `Unavailable`, so PolicyClient prints its waiting line and tries again
   * with a fresh session. Default 2 s.
   */
  readonly probeTimeout?: Duration.Input | undefined
  /**
   * Where the action dispatcher runs. "worker" (default): on a worker thread
   * with a Zenoh session of its own to the same server, which publishes the
   * actions on the request key, so they leave on time however busy this
   * thread is. "main": PolicyClient's own fiber on this thread, through this
   * connection's session. Requests and observations use this thread's session
   * either way.
   */
  readonly thread?: "worker" | "main" | undefined
  /**
   * Where the session for requests and observations runs. "worker" (default):
   * on a worker thread of its own, whose keep-alives keep the session up
   * however long this thread is blocked (a long synchronous inference); the
   * server still drops a process that is frozen or gone after its lease.
   * "main": on this thread, where a block longer than the lease (10 s) ends
   * the session.
   */
  readonly sessionThread?: "worker" | "main" | undefined
  /**
   * Where large replies (observations) are reassembled. "fresh" (default): a
   * buffer of its own per reply, which its observation's tensors are views
   * into, kept for as long as anything reaches it, allocated on this thread
   * and sent ahead to the session's (`SuppliedMemory`), reusing the memory
   * of freed ones that glibc is asked to keep (`retainFreedBuffers`,
   * `reserveHeapFor`). "recycled": memory from a pool on the session's thread
   * (at most 8 free buffers), reused whatever the C allocator and message size
   * (see the README's performance section).
   *
   * The contract with "recycled" (`FrameLease`): an observation's arrays stay
   * valid and unchanged while any of them (or the observation) is reachable;
   * after the last is collected its memory is moved out (the ArrayBuffer is
   * detached) and reused. A view you build yourself over the same memory
   * (`subarray`, `new Uint8Array(t.data.buffer, …)`, `Buffer.from(t.data.buffer,
   * …)`) does not keep it: hold the tensor too, or copy (`slice()`), in
   * particular across an asynchronous write; otherwise such a view reads as
   * empty (length 0) once the memory is reused.
   */
  readonly receiveBuffers?: "fresh" | "recycled" | undefined
  /**
   * Resolves the locator's host name, as `net.connect`'s `lookup` (a resolver
   * of your own, or a test's). It is asked on this thread at every attempt (a
   * function cannot reach the sessions' threads), and the sessions connect to
   * the address it answers. Default: each session resolves the name itself
   * with the system's resolver (`dns.lookup`). Either way a name that cannot
   * be resolved fails the attempt with `unresolved` (see `unresolvedHost`):
   * `ENOTFOUND` as `InvalidAddress`, a temporary failure (`EAI_AGAIN`) as
   * `Unavailable`.
   */
  readonly lookup?: Net.LookupFunction | undefined
}

/** Free reassembly buffers a "recycled" client keeps (for 17.2 MB observations: up to ~138 MB). */
const recycledBuffersKept = 8

/** The two keys of one chiral pair. */
export interface Keys {
  readonly request: string
  readonly reply: string
}

/** The keys for `keyPrefix`, or why the prefix cannot be used. */
export const keysFor = (keyPrefix: string | undefined): Keys | string => {
  if (keyPrefix === undefined) return { request: requestKey, reply: replyKey }
  if (keyPrefix.includes("*") || keyPrefix.includes("$")) return `key prefix ${JSON.stringify(keyPrefix)} has wildcards`
  const request = KeyExpr.canonize(`${keyPrefix}/${requestKey}`)
  const reply = KeyExpr.canonize(`${keyPrefix}/${replyKey}`)
  if (request._tag === "Failure") return `key prefix ${JSON.stringify(keyPrefix)}: ${request.failure.reason}`
  if (reply._tag === "Failure") return `key prefix ${JSON.stringify(keyPrefix)}: ${reply.failure.reason}`
  if (!KeyExpr.isConcrete(request.success)) return `key prefix ${JSON.stringify(keyPrefix)} has wildcards`
  return { request: request.success, reply: reply.success }
}

const resolveKeys = (keyPrefix: string | undefined, address: string): Effect.Effect<Keys, TransportError> => {
  const keys = keysFor(keyPrefix)
  return typeof keys === "string"
    ? Effect.fail(new TransportError({ reason: "InvalidAddress", address, detail: keys }))
    : Effect.succeed(keys)
}

/**
 * Only the Zenoh settings, so that the transport's own options never reach the
 * session; large frames are reassembled where their tensors are aligned.
 */
const sessionOptions = (options: SessionOptions): SessionOptions => ({
  payloadAlignment: options.payloadAlignment ?? frameAlignment,
  zid: options.zid,
  batchSize: options.batchSize,
  lease: options.lease,
  keepAlive: options.keepAlive,
  handshakeTimeout: options.handshakeTimeout,
  maxMessageSize: options.maxMessageSize,
  closeTimeout: options.closeTimeout
})

export const formatLocator = (host: string, port: number): string =>
  `tcp/${host.includes(":") ? `[${host}]` : host}:${port}`

/** Why a session (or one operation on it) ended, as the transport's one error. */
const sessionError = (
  address: string,
  error: PeerError | ZenohSessionClosed | ZenohKeyExprError
): TransportError => {
  let reason: TransportErrorReason
  switch (error._tag) {
    case "ZenohLinkError":
      reason = error.operation === "write" ? "Write" : "Closed"
      break
    case "ZenohDecodeError":
    case "ZenohReassemblyError":
      reason = "Read"
      break
    case "ZenohKeyExprError":
      reason = "InvalidAddress"
      break
    case "ZenohCloseReceived":
    case "ZenohLeaseExpired":
    case "ZenohSessionClosed":
      reason = "Closed"
      break
  }
  const detail = error._tag === "ZenohReassemblyError" ? tooLarge(error) : error.message
  return new TransportError({ reason, address, detail, cause: error })
}

/** `bytes` for people: `256 MiB`, `294.0 MiB`, `512 KiB`, `100 bytes`. */
const mib = (bytes: number) => {
  const [unit, size] = bytes >= 1024 * 1024 ? ["MiB", 1024 * 1024] : bytes >= 1024 ? ["KiB", 1024] : ["bytes", 1]
  return `${(bytes / size).toFixed(bytes % size === 0 ? 0 : 1)} ${unit}`
}

/** A message over the reassembly cap: how big, the cap, and how to raise it. */
const tooLarge = (error: ZenohReassemblyError): string =>
  `a message of ${mib(error.size)} (${error.size} bytes) is over this side's limit of ${mib(error.limit)} (${error.limit} bytes): ${error.reason}; raise it with the maxMessageSize option (chiral: --max-message-size)`

/**
 * A failed session opening. Worth retrying when nobody answered (`Silent`
 * when something accepted the connection but never completed the handshake)
 * or the peer went away; not when the peer speaks something else than Zenoh
 * 0x09 (or our own settings are invalid), since that will not change. A host
 * name (`host`) that could not be resolved is named with the resolver's
 * answer (`unresolvedHost`: `ENOTFOUND` is `InvalidAddress`).
 */
const openError = (
  address: string,
  host: string,
  error: ZenohConfigError | ZenohLinkError | ZenohHandshakeError
): TransportError => {
  if (error._tag === "ZenohLinkError" && error.operation === "connect" && isResolveCode(error.code)) {
    return unresolvedHost({
      address,
      host,
      code: error.code,
      note: error.code === "ETIMEOUT" ? error.reason : undefined,
      cause: error
    })
  }
  // Accepted, but no Zenoh handshake in time: another service on the port, or a frozen server.
  const silent = error._tag === "ZenohHandshakeError" && error.reason.startsWith("no answer")
  const retry = error._tag === "ZenohLinkError" ||
    (error._tag === "ZenohHandshakeError" && error.reason.startsWith("peer sent CLOSE"))
  return new TransportError({
    reason: silent ? "Silent" : retry ? "Unavailable" : "InvalidAddress",
    address,
    detail: error.message,
    cause: error
  })
}

const listenError = (address: string, error: ZenohConfigError | ZenohLinkError): TransportError =>
  new TransportError({
    reason: error._tag === "ZenohConfigError" ? "InvalidAddress" : "Listen",
    address,
    detail: error.message,
    cause: error
  })

/** A handler's failure other than its peer's session ending (which the listener logs itself). */
const handlerFailure = (id: string) => (cause: Cause.Cause<unknown>) => {
  if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
  const error = Cause.findErrorOption(cause)
  const sessionEnded = Option.isSome(error) && error.value instanceof TransportError &&
    Predicate.hasProperty(error.value.cause, "_tag") && isZenohError(error.value.cause)
  return sessionEnded ? Effect.void : Effect.logWarning(`chiral: handler for ${id} failed`, cause)
}

/**
 * One peer session's requests as a `Connection`: its own frames, its own
 * replies (on the reply key, to this session only), its own handler. When the
 * handler ends by itself (a request it cannot answer, say), the session is
 * closed, as a WebSocket server closes that client's socket. A router stands
 * for every client behind it, so its connection is `shared` and never closed.
 */
const servePeer = <E, R>(
  address: string,
  keys: Keys,
  peer: PeerSamples,
  handler: (connection: Connection) => Effect.Effect<void, E, R>
): Effect.Effect<void, never, R> => {
  const id = `${address} ← ${peer.peer.address} (${keys.request}, zid ${peer.peer.zid})`
  const shared = peer.peer.whatami === "router"
  const client = shared ? undefined : ZenohId.clientKey(peer.peer.zid)
  const connection: Connection = {
    id,
    peer: peer.peer.address,
    ...(client === undefined ? {} : { client: `zenoh client ${client}` }),
    frames: peer.samples.pipe(
      Stream.map((sample) => sample.payload),
      Stream.mapError((error) => sessionError(id, error))
    ),
    send: (frame) => Effect.mapError(peer.put(keys.reply, frame), (error) => sessionError(id, error)),
    shared
  }
  return handler(connection).pipe(
    Effect.catchCause(handlerFailure(id)),
    Effect.andThen(shared ? Effect.void : peer.close)
  )
}

/**
 * A `ServerTransport` on a Zenoh session that already exists (listening or
 * connected), for the keys of `keyPrefix`. `address` is what clients are told
 * to connect to. Several of these may share one session with different
 * prefixes (closing a peer's session for one of them closes it for all).
 *
 * Every remote session that publishes on the request key becomes a
 * `Connection` of its own (from its first frame until the session ends), so
 * PolicyServer answers each client on its own fibers. Isolation, and its
 * bound: a peer's frames wait in a buffer of `capacity` requests; when its
 * handler falls behind, the server stops reading that peer's socket only (TCP
 * pushes back on it, nobody else). Replies go to the requesting session only
 * and each send waits until that peer's socket took the frame, so a slow or
 * frozen peer holds at most the one reply being written (plus the requests it
 * already sent) until its lease expires: it is a bounded per-peer queue rather
 * than Zenoh's `Drop`, because a reply dropped would leave its client waiting
 * for an answer that never comes. Other subscribers of the reply key no longer
 * see the answers to requests they did not send; a Zenoh router in between
 * stands for all its clients at once (one shared connection, its replies
 * forwarded to every subscriber behind it, as with the references).
 */
export const makeServerOn = (
  session: Session,
  options: KeyOptions & {
    readonly address: string
    readonly capacity?: number | undefined
  }
): Effect.Effect<ServerTransport["Service"], TransportError> =>
  Effect.map(resolveKeys(options.keyPrefix, options.address), (keys) => {
    const address = options.address
    const serve = <E, R>(handler: (connection: Connection) => Effect.Effect<void, E, R>) =>
      Effect.gen(function*() {
        const sessions = yield* session.declarePeerSubscriber(keys.request, {
          capacity: options.capacity ?? 16,
          strategy: "suspend"
        }).pipe(Effect.mapError((error) => sessionError(address, error)))
        const peers = yield* FiberSet.make<void, never>()
        yield* Stream.runForEach(sessions, (peer) => FiberSet.run(peers, servePeer(address, keys, peer, handler)))
        // The subscriber's stream ends only with the session.
        return yield* new TransportError({ reason: "Closed", address, detail: "the Zenoh session was closed" })
      }).pipe(Effect.scoped)
    return ServerTransport.of({ address, serve })
  })

/**
 * One line per session on the listening port that was refused or ended badly,
 * with its reason (warnings: a handshake that failed, bytes that do not
 * decode, a message over the reassembly cap, a lease that expired, a CLOSE
 * other than GENERIC); a session whose connection just ends is logged at info
 * level; sessions that open and close cleanly, and connections that close
 * before their handshake, at debug level.
 */
const logPeerEvent = (locator: string) => (event: PeerEvent): Effect.Effect<void> => {
  switch (event._tag) {
    case "PeerConnected":
      return Effect.logDebug(`chiral: Zenoh session from ${describePeer(event.peer)} on ${locator}`)
    case "HandshakeFailed": {
      // A connection closed before it said anything is routine: a port check, a
      // client giving up, or a chiral client's knock (`Zenoh.knock`), which opens
      // and closes a connection before each session once it found nobody here.
      const routine = event.error._tag === "ZenohLinkError" && event.error.reason.startsWith("connection closed")
      return routine
        ? Effect.logDebug(`chiral: Zenoh connection from ${event.address} on ${locator} closed before its handshake`)
        : Effect.logWarning(`chiral: Zenoh connection from ${event.address} on ${locator} refused: ${event.error.message}`)
    }
    case "PeerDisconnected": {
      const error = event.error
      const peer = `Zenoh session from ${describePeer(event.peer)} on ${locator}`
      if (error === undefined || (error._tag === "ZenohCloseReceived" && error.reason === 0)) {
        return Effect.logDebug(`chiral: ${peer} closed`)
      }
      // A socket that just ends is how zenoh-pico leaves (it sends no CLOSE): routine.
      return error._tag === "ZenohLinkError"
        ? Effect.logInfo(`chiral: ${peer} lost: ${error.message}`)
        : Effect.logWarning(`chiral: ${peer} ended: ${error.message}`)
    }
  }
}

const describePeer = (peer: PeerInfo) => `${peer.address} (${peer.whatami} ${peer.zid})`

/**
 * Listens as a Zenoh peer on `tcp/<host>:<port>`. The session is bound at once
 * (so the address, and the actual port when 0 was asked, is known) and lives
 * as long as `serve` runs: when serving stops, every client's session gets a
 * CLOSE, as it would from a reference server that exits. Serving again listens
 * again on the same port.
 */
export const makeServer = (
  options: ServerOptions = {}
): Effect.Effect<ServerTransport["Service"], TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? "0.0.0.0"
    const wanted = formatLocator(host, options.port ?? defaultPort)
    yield* resolveKeys(options.keyPrefix, wanted)
    const outer = yield* Effect.scope
    const bind = (port: number) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(outer)
        const listener = yield* Zenoh.listen({
          ...sessionOptions(options),
          maxMessageSize: options.maxMessageSize ?? defaultServerMaxMessageBytes,
          host,
          port
        }).pipe(
          Scope.provide(scope),
          Effect.mapError((error) => listenError(formatLocator(host, port), error)),
          Effect.onError(() => Scope.close(scope, Exit.void))
        )
        const locator = formatLocator(listener.address.host, listener.address.port)
        yield* listener.peerEvents.pipe(
          Stream.runForEach(logPeerEvent(locator)),
          Effect.forkIn(scope, { startImmediately: true })
        )
        return { listener, scope }
      })
    let idle: Effect.Success<ReturnType<typeof bind>> | undefined = yield* bind(options.port ?? defaultPort)
    const port = idle.listener.address.port
    const address = formatLocator(idle.listener.address.host, port)

    const serve = <E, R>(handler: (connection: Connection) => Effect.Effect<void, E, R>) =>
      Effect.gen(function*() {
        const bound = idle ?? (yield* bind(port))
        idle = undefined
        yield* Effect.addFinalizer(() => Scope.close(bound.scope, Exit.void))
        const transport = yield* makeServerOn(bound.listener, {
          address,
          keyPrefix: options.keyPrefix,
          capacity: options.capacity
        })
        return yield* transport.serve(handler)
      }).pipe(Effect.scoped)

    return ServerTransport.of({ address, serve })
  })

const millisOf = (input: Duration.Input | undefined): number | undefined =>
  input === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(input))

/**
 * The dispatcher's worker for a client whose session just opened: the same
 * Zenoh settings (durations in ms, to cross threads), and an id of its own,
 * `zid` (hex): the client session's sibling (`ZenohId.sibling`) when the
 * client drew its id itself; a random one (undefined) for an id set by hand,
 * whose sibling could be another client's own id.
 */
const startDispatcher = (
  locator: string,
  endpoint: Zenoh.Endpoint,
  key: string,
  options: ClientOptions,
  zid: string | undefined
): Effect.Effect<ZenohDispatch.Started, never, Scope.Scope> =>
  Effect.suspend(() => {
    // These settings were valid for the client's own session.
    const session = {
      zid,
      batchSize: options.batchSize,
      lease: millisOf(options.lease),
      keepAlive: millisOf(options.keepAlive),
      handshakeTimeout: millisOf(options.handshakeTimeout),
      maxMessageSize: options.maxMessageSize,
      closeTimeout: millisOf(options.closeTimeout)
    }
    return ZenohDispatch.start({
      address: locator,
      host: endpoint.host,
      port: endpoint.port,
      key,
      session,
      // the thread's start (loading its modules: seconds on a busy machine) plus the handshake
      readyTimeoutMillis: (session.handshakeTimeout ?? 10_000) + 10_000,
      closeTimeoutMillis: session.closeTimeout ?? 1_000
    })
  })

/**
 * How much earlier than the caller's deadline the handshake gives up, so that
 * its own error (`Silent`, or why the link failed) is the one reported.
 */
const deadlineMargin = 150

/** The frame every probe sends. */
const metadataRequest = encodeFrame({ type: "metadata" })

/**
 * Why probing could not go on, as the transport's error. A session that ends
 * because it was refused, expired or cut is worth retrying (the server may be
 * restarting: `Unavailable`); one that breaks because the server sent bytes
 * we cannot read, or that the server closed as invalid, will break again: it
 * fails at once and says what broke, rather than "nobody there".
 */
const probeError = (locator: string) => (error: SessionEnd | Cause.Done): TransportError => {
  if (Cause.isDone(error)) {
    return new TransportError({ reason: "Unavailable", address: locator, detail: "session closed while probing" })
  }
  switch (error._tag) {
    case "ZenohDecodeError":
    case "ZenohReassemblyError":
      return new TransportError({
        reason: "Read",
        address: locator,
        detail: `the session with the server broke: ${error._tag === "ZenohReassemblyError" ? tooLarge(error) : error.message}`,
        cause: error
      })
    case "ZenohCloseReceived":
      if (error.reasonName === "INVALID" || error.reasonName === "UNSUPPORTED") {
        return new TransportError({
          reason: "Closed",
          address: locator,
          detail: `the server ended the session: ${error.message} (it could not read what this client sent)`,
          cause: error
        })
      }
      break
  }
  return new TransportError({ reason: "Unavailable", address: locator, detail: error.message, cause: error })
}

/** Whether a session could not be opened because its TCP connection failed (nobody listening, say). */
const refusedConnection = (error: TransportError): boolean =>
  Predicate.isTagged(error.cause, "ZenohLinkError") && (error.cause as ZenohLinkError).operation === "connect"

/**
 * `endpoint` with its host name resolved by the caller's `lookup`, on this
 * thread; fails as a link's connect does (`code`: the resolver's answer, or
 * `ETIMEOUT` when none came within `timeoutMillis`).
 */
const resolveWith = (
  endpoint: Zenoh.Endpoint,
  lookup: Net.LookupFunction,
  timeoutMillis: number
): Effect.Effect<Zenoh.Endpoint, ZenohLinkError> => {
  if (Net.isIP(endpoint.host) !== 0) return Effect.succeed(endpoint)
  const peer = `${endpoint.host}:${endpoint.port}`
  const failed = (reason: string, code: string | undefined, cause?: unknown) =>
    new ZenohLinkError({ peer, operation: "connect", reason, code, cause })
  return Effect.callback<Zenoh.Endpoint, ZenohLinkError>((resume) => {
    lookup(endpoint.host, {}, (error, address) => {
      const first = typeof address === "string" ? address : address?.[0]?.address
      resume(
        error !== null
          ? Effect.fail(failed(error.message, typeof error.code === "string" ? error.code : "EAI_FAIL", error))
          : first === undefined
          ? Effect.fail(failed(`the resolver gave no address for ${endpoint.host}`, "ENOTFOUND"))
          : Effect.succeed({ host: first, port: endpoint.port })
      )
    })
  }).pipe(
    Effect.timeoutOrElse({
      duration: timeoutMillis,
      orElse: () => Effect.fail(failed(`no answer from the resolver within ${timeoutMillis} ms`, "ETIMEOUT"))
    })
  )
}

/** The client's session: on its own thread unless told otherwise (or the thread cannot run). */
const openSession = (
  locator: string,
  open: ZenohSession.OpenOptions,
  thread: "worker" | "main" | undefined
): Effect.Effect<ZenohSession.ClientSession, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    if (thread !== "main") {
      const session = yield* ZenohSession.openInWorker(open)
      if (session !== undefined) return session
      yield* Effect.logWarning(
        "chiral: the Zenoh session's thread cannot run; the session runs on this thread (a long block of it will end the session)"
      )
    }
    return yield* ZenohSession.openHere(open)
  }).pipe(
    Effect.mapError((error) =>
      error._tag === "ZenohConfigError" || error._tag === "ZenohLinkError" || error._tag === "ZenohHandshakeError"
        ? openError(locator, open.host, error)
        : probeError(locator)(error)
    )
  )

/**
 * The references' way of learning that both routes are up: `metadata` every
 * `probeInterval` until something answers (the answer is consumed). Gives up
 * after `probeTimeout` with `Unavailable` when nobody serves chiral there, or
 * `Read` with what the session can tell when the session itself does not work.
 */
const probe = (p: {
  readonly locator: string
  readonly keys: Keys
  readonly session: ZenohSession.ClientSession
  readonly pull: Effect.Effect<ReadonlyArray<Uint8Array>, SessionEnd | Cause.Done>
  readonly probeInterval: Duration.Duration
  readonly probeTimeout: number
  /** Logs a hint (once per client) about a peer that subscribes to other keys. */
  readonly hint: (line: string) => Effect.Effect<void>
}): Effect.Effect<void, TransportError> =>
  Effect.gen(function*() {
    const { keys, locator, session } = p
    const ended = probeError(locator)
    // Our first probe would be lost if the server's subscriber were not known yet.
    yield* session.routed.pipe(Effect.timeoutOption(p.probeInterval), Effect.mapError(ended))
    const started = yield* Clock.currentTimeMillis
    const interval = Duration.toMillis(p.probeInterval)
    for (let probes = 1;; probes++) {
      yield* session.put(metadataRequest).pipe(Effect.mapError(ended))
      // Whatever arrives first (normally the metadata_response) proves both routes.
      const waitAnswer = p.pull.pipe(Effect.timeoutOption(p.probeInterval), Effect.mapError(ended))
      let answer = yield* waitAnswer
      const expired = (yield* Clock.currentTimeMillis) - started >= p.probeTimeout
      // One more look before giving up: a process stalled past the timeout
      // wakes with the wait's timer due before the answer that arrived
      // meanwhile has been read (timers run before I/O).
      if (Option.isNone(answer) && expired) answer = yield* waitAnswer
      if (Option.isSome(answer)) {
        const waited = (yield* Clock.currentTimeMillis) - started
        return yield* takeLateAnswers(p.pull, probes - answer.value.length, Math.max(interval, waited)).pipe(
          Effect.mapError(ended)
        )
      }
      if (!expired) continue
      // Nobody serving chiral here (worth retrying), or a session that does not work (say why).
      const { problems, subscriptions } = yield* session.diagnose
      const unanswered = `${probes} metadata request(s) on ${keys.request} unanswered (the peer subscribes to ${
        subscriptions.length === 0 ? "nothing" : subscriptions.join(", ")
      })`
      if (problems !== undefined) {
        return yield* new TransportError({
          reason: "Read",
          address: locator,
          detail: `${unanswered}: the session with the server does not work: ${problems}`
        })
      }
      if (subscriptions.length > 0 && !subscriptions.some((key) => KeyExpr.intersects(key, keys.request))) {
        yield* p.hint(
          `chiral: the Zenoh peer at ${locator} answers no chiral requests on ${keys.request}; it subscribes to ${
            subscriptions.join(", ")
          } (a different key prefix?)`
        )
      }
      return yield* new TransportError({ reason: "Unavailable", address: locator, detail: unanswered })
    }
  })

/**
 * A server slower than `probeInterval` to answer got several probes, and
 * answers each, in order: up to `left` more answers follow the first. They
 * are taken here, so that the connection's frames start with the answer to
 * its user's first request (PolicyClient would drop them as unrequested, but
 * a caller of `connect` reads the frames as they come). Each may take as long
 * as the first did (`withinMillis`); one that does not come by then was a
 * probe the server never saw (sent before its subscriber was known).
 */
const takeLateAnswers = (
  pull: Effect.Effect<ReadonlyArray<Uint8Array>, SessionEnd | Cause.Done>,
  left: number,
  withinMillis: number
): Effect.Effect<void, SessionEnd | Cause.Done> =>
  Effect.gen(function*() {
    while (left > 0) {
      const more = yield* pull.pipe(Effect.timeoutOption(withinMillis))
      if (Option.isNone(more)) return
      left -= more.value.length
    }
  })

/**
 * Connects to a chiral server over Zenoh at `locator` (`tcp/host:port`).
 * Each `connect` opens a Zenoh session (on a worker thread of its own unless
 * `sessionThread: "main"`), declares the reply subscriber and probes with
 * `metadata` until the first answer; that answer (and those a slow server
 * gives to the earlier probes) is consumed here. Unless
 * `thread: "main"`, it also starts the action dispatcher's worker as soon as
 * the session is open, and hands the connection over (with its `dispatch`)
 * once the worker's session has reached the server too.
 *
 * The connection's `send` hands the frame to the session's thread and
 * completes at once (requests and actions are small); replies come back in
 * order, a few at a time (see `ZenohSessionWorker`).
 */
export const makeClient = (locator: string, options: ClientOptions = {}): ClientTransport["Service"] => {
  const probeInterval = Duration.fromInputUnsafe(options.probeInterval ?? Duration.millis(500))
  const probeTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.probeTimeout ?? Duration.seconds(2)))
  // A peer that subscribes to other keys is pointed out once, not at every attempt.
  let hinted = false
  // Starting a session's thread costs about half a second of CPU (loading its
  // modules: 510 ms for an attempt refused at once, against 46 ms with the
  // session on this thread), and a client waiting for a robot retries every
  // 0.1–1 s: that kept a core busy. Once an attempt found nobody listening,
  // the next ones knock first and start the thread only when somebody answers.
  let nobodyListened = false
  const hint = (line: string) =>
    Effect.suspend(() => {
      if (hinted) return Effect.void
      hinted = true
      return Effect.logWarning(line)
    })

  const attempt = (budgetMillis: number | undefined) => Effect.gen(function*() {
    const named = Zenoh.parseLocator(locator)
    if (named === undefined || !locator.startsWith("tcp/")) {
      return yield* new TransportError({ reason: "InvalidAddress", address: locator, detail: "expected tcp/host:port" })
    }
    const keys = yield* resolveKeys(options.keyPrefix, locator)
    // The caller's deadline bounds the handshake too, wherever the session is
    // opened: a silent peer is reported as such in time.
    const deadline = budgetMillis === undefined ? undefined : Date.now() + budgetMillis - deadlineMargin
    const linkTimeout = () => ZenohSession.handshakeBy(millisOf(options.handshakeTimeout), deadline) ?? 10_000
    const endpoint = options.lookup === undefined
      ? named
      : yield* resolveWith(named, options.lookup, linkTimeout()).pipe(
        Effect.mapError((e) => openError(locator, named.host, e))
      )
    if (nobodyListened && options.sessionThread !== "main") {
      yield* Zenoh.knock({ ...endpoint, timeoutMillis: linkTimeout() }).pipe(
        Effect.mapError((e) => openError(locator, named.host, e))
      )
    }
    // An id drawn here, not by the session, so that the dispatcher's session
    // can take its sibling; one set by hand is left alone (see `startDispatcher`).
    const drawn = options.zid === undefined ? ZenohId.random() : undefined
    const zid = options.zid ?? drawn!
    const session = yield* openSession(locator, {
      ...endpoint,
      requestKey: keys.request,
      replyKey: keys.reply,
      session: { ...sessionOptions(options), zid },
      deadline,
      recycle: options.receiveBuffers === "recycled" ? { maxFree: recycledBuffersKept } : undefined
    }, options.sessionThread).pipe(
      Effect.tapError((error) => Effect.sync(() => (nobodyListened = refusedConnection(error))))
    )
    nobodyListened = false
    // Somebody answers Zenoh here: the worker starts now, so that its start-up
    // overlaps the probing below.
    const dispatcher = options.thread === "main"
      ? undefined
      : yield* startDispatcher(locator, endpoint, keys.request, options, drawn && ZenohId.toString(ZenohId.sibling(drawn)!))
    const pull = yield* Stream.toPull(session.replies)
    yield* probe({ locator, keys, session, pull, probeInterval, probeTimeout, hint })

    const frames = Stream.fromPull(Effect.succeed(pull)).pipe(
      Stream.mapError((error) => sessionError(locator, error))
    )
    // Set when the dispatcher's session is lost: the connection is over, sends included.
    let lost: TransportError | undefined
    const connection: Connection = {
      id: locator,
      frames,
      send: (frame) =>
        lost !== undefined ? Effect.fail(lost) : Effect.mapError(session.put(frame), (error) => sessionError(locator, error))
    }
    if (dispatcher === undefined) return connection
    const dispatch = yield* dispatcher.ready
    if (Option.isNone(dispatch)) return connection
    // A dispatcher whose session is lost ends the connection: actions would no longer arrive.
    const dispatcherLost = Effect.tapError(dispatcher.lost, (error) => Effect.sync(() => (lost = error)))
    return {
      ...connection,
      frames: Stream.interruptWhen(frames, dispatcherLost),
      dispatch: dispatch.value
    } satisfies Connection & WithOffThreadDispatch
  })

  // With a caller's deadline (`ConnectTimeout`), the whole attempt ends by then.
  const connect = Effect.flatMap(ConnectTimeout, (budget) => {
    if (budget === undefined) return attempt(undefined)
    const millis = Math.max(1, Duration.toMillis(budget))
    return attempt(millis).pipe(
      Effect.timeoutOrElse({
        duration: millis + deadlineMargin,
        orElse: () =>
          Effect.fail(
            new TransportError({ reason: "Unavailable", address: locator, detail: `no chiral answer within ${millis} ms` })
          )
      })
    )
  })

  return ClientTransport.of({
    address: locator,
    connect,
    waitingMessage: `chiral: waiting for Zenoh server at ${locator} …`
  })
}

/** `ServerTransport` over Zenoh (default: listens on `tcp/0.0.0.0:7447`, keys `chiral/c2s`, `chiral/s2c`). */
export const layerServer = (options: ServerOptions = {}): Layer.Layer<ServerTransport, TransportError> =>
  Layer.effect(ServerTransport, makeServer(options))

/** `ClientTransport` over Zenoh to `locator` (default `tcp/127.0.0.1:7447`). */
export const layerClient = (
  locator = formatLocator("127.0.0.1", defaultPort),
  options: ClientOptions = {}
): Layer.Layer<ClientTransport> => Layer.succeed(ClientTransport, makeClient(locator, options))
