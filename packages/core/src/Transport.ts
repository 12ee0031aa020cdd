/**
 * The transport seam. PolicyServer and PolicyClient only ever see frames:
 * whole protocol messages as bytes. How they travel (WebSocket, Zenoh, memory)
 * is a Layer providing `ServerTransport` or `ClientTransport`.
 */
import type { Duration, Scope, Stream } from "effect"
import { Context, Effect } from "effect"
import type { TransportError } from "./TransportError.js"

/**
 * One outgoing frame: either one buffer, or the parts of one frame in order
 * (`encodeFrameParts`), which a transport may send without concatenating.
 * Either way the peer receives exactly one message.
 */
export type OutgoingFrame = Uint8Array | ReadonlyArray<Uint8Array>

/**
 * Sends one frame at once and calls `done` when the transport is finished
 * with its bytes, with a `TransportError` when the send failed (`Closed`
 * when the connection was lost); `done` may run before this returns. In
 * order with the connection's other sends only when called within the
 * `InlineHandler` call that was given it: that is when the transport has
 * checked that nothing else is on its way out.
 */
export type SendNow = (frame: OutgoingFrame, done: (error?: TransportError) => void) => void

/**
 * Answers one incoming frame where it arrives (`Connection.answerInline`):
 * true when it took the frame and has started its answer through `sendNow`,
 * within this call; false leaves the frame to `frames`, as if it had not been
 * offered. Runs inside the transport's read callback: it must not block. A
 * handler that throws is not offered frames again (the reader answers them).
 */
export type InlineHandler = (frame: Uint8Array, sendNow: SendNow) => boolean

/**
 * A logical connection. For WebSocket it is one client socket; for Zenoh, one
 * remote peer session (a Zenoh router's session stands for every client
 * behind it, and is `shared`).
 */
export interface Connection {
  /** A short name for logs, e.g. `ws://127.0.0.1:8765 ← 127.0.0.1:53422`. */
  readonly id: string
  /**
   * The remote end, `host:port` for a socket, when the transport knows it
   * (for logs and `onConnect`). Undefined for a shared connection.
   */
  readonly peer?: string | undefined
  /**
   * The client this connection belongs to, when one client opens several (our
   * Zenoh client's dispatcher has a session of its own, whose id is its client
   * session's sibling: `ZenohId.clientKey`); undefined: a client of its own.
   * The server's single controller and its other per-client rules treat a
   * client's connections as one.
   */
  readonly client?: string | undefined
  /**
   * Incoming frames, one element per message. Ends when the peer closes the
   * connection normally; fails with a `TransportError` when it is lost.
   * Consume it once.
   */
  readonly frames: Stream.Stream<Uint8Array, TransportError>
  /**
   * Sends one frame. Completes once the transport has handed the bytes to the
   * operating system, so a sender that awaits each send holds at most about
   * one frame of outbound data per connection, and a slow peer only ever
   * slows its own sender.
   */
  readonly send: (frame: OutgoingFrame) => Effect.Effect<void, TransportError>
  /**
   * Ends the connection now, telling the peer why, where the transport can:
   * a WebSocket close frame with `code` (a WebSocket close code, e.g. 1011
   * internal error, 1008 policy violation, 1013 try again later) and
   * `reason`, cut to the 123 bytes of UTF-8 a close frame holds, between
   * characters. Offered by server connections of transports that can say why
   * (WebSocket); elsewhere (Zenoh, memory) it is absent and the connection
   * ends as usual when its handler does. Use `closeWith`. The reason reaches
   * the client and its logs: a short text, never a secret.
   */
  readonly close?: ((code: number, reason: string) => Effect.Effect<void>) | undefined
  /**
   * Installs `handler`, which the transport then offers a frame to before it
   * goes to `frames`, only where answering it at once cannot reorder
   * anything: the reader of `frames` is waiting with no frame held, the
   * connection has nothing on its way out, and at most one taken per read
   * from the socket (a burst's other frames go through `frames`, read in
   * turns). A server answers an obs_request there, without the trip through
   * its fibers (`ServerConnection`). Offered by WebSocket server connections;
   * elsewhere absent, and every frame goes through `frames`. A wrapper that
   * replaces `frames` or `send` (to record, meter or buffer them) must leave
   * it out: inline answers bypass both.
   */
  readonly answerInline?: ((handler: InlineHandler) => void) | undefined
  /**
   * True when this connection stands for several remote clients at once (a
   * Zenoh router between them and the server). The server then never ends it
   * to signal a problem to one client, since that would cut them all off.
   */
  readonly shared?: boolean | undefined
}

/**
 * Ends `connection` with `code` and `reason` where its transport can say why
 * (`Connection.close`); elsewhere nothing, and the connection ends when its
 * handler does.
 */
export const closeWith = (connection: Connection, code: number, reason: string): Effect.Effect<void> =>
  connection.close === undefined ? Effect.void : connection.close(code, reason)

/** Accepts connections (robot side). */
export class ServerTransport extends Context.Service<ServerTransport, {
  /** Where clients reach the server, e.g. `ws://0.0.0.0:8765` (actual port if 0 was asked). */
  readonly address: string
  /**
   * Runs `handler` for every connection, each in its own fiber, until
   * interrupted. Interrupting `serve` interrupts every handler and closes
   * every connection. A handler's failure is logged and ends only its
   * connection.
   */
  readonly serve: <E, R>(
    handler: (connection: Connection) => Effect.Effect<void, E, R>
  ) => Effect.Effect<never, TransportError, R>
}>()("@chiral/core/ServerTransport") {}

/** Opens connections to a server (policy side). */
export class ClientTransport extends Context.Service<ClientTransport, {
  /** The server address, as given by the user (`ws://host:port`). */
  readonly address: string
  /**
   * One connection attempt. Fails with reason `Unavailable` when nobody
   * answers (callers retry), other reasons when retrying cannot help. A host
   * name that cannot be resolved fails with `unresolved` set
   * (`unresolvedHost`: `InvalidAddress` for `ENOTFOUND`, `Unavailable` for a
   * temporary failure). The connection closes with the scope.
   */
  readonly connect: Effect.Effect<Connection, TransportError, Scope.Scope>
  /**
   * What PolicyClient prints (once) while `connect` keeps failing with
   * `Unavailable`. Default `chiral: waiting for server at <address> …`; the
   * Python reference's Zenoh client says `waiting for Zenoh server`.
   */
  readonly waitingMessage?: string | undefined
}>()("@chiral/core/ClientTransport") {}

/**
 * How long the caller still waits for the connection attempt under way
 * (undefined: as long as the transport's own timeouts allow). PolicyClient
 * provides it to `ClientTransport.connect` when its user gave a deadline
 * (`openTimeout`, `chiral probe --timeout`); a transport then ends its attempt
 * by that time, handshake included, with an error that says how far it got
 * (`Silent`: something accepted the connection but never completed the
 * handshake), instead of letting its own longer handshake timeout win.
 */
export const ConnectTimeout = Context.Reference<Duration.Duration | undefined>("@chiral/core/ConnectTimeout", {
  defaultValue: () => undefined
})

/** Concatenates the parts of an outgoing frame (for transports that need one buffer). */
export const frameBytes = (frame: OutgoingFrame): Uint8Array => {
  if (frame instanceof Uint8Array) return frame
  if (frame.length === 1) return frame[0]!
  let size = 0
  for (const part of frame) size += part.byteLength
  const out = new Uint8Array(size)
  let offset = 0
  for (const part of frame) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
}
