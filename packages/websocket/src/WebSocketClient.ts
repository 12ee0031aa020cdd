/**
 * The client end of a WebSocket connection (RFC 6455) over `node:net`, built
 * for one job: receiving large binary messages with as few copies as possible.
 *
 * `ws` receives a message into 64 KiB chunks, copies them into one buffer per
 * frame and, for a fragmented message, copies the frames into one buffer per
 * message: two full copies of a 17 MB observation plus a few hundred chunk
 * allocations, which the garbage collector then has to reclaim. Here the socket
 * reads (`onread`) straight into the message's final buffer: while inside a
 * data frame's payload the next read is given exactly the rest of that payload
 * in place, and only frame headers (with whatever payload bytes follow them
 * in the same read) pass through a small spill buffer. A message is one
 * allocation and, past the spill, no copy.
 *
 * With a `ReceivePool` (`receivePool`), that allocation is recycled memory
 * instead of fresh: each delivered message is lent out (`FrameLease`) and its
 * memory returns to the pool once the message and every tensor decoded as a
 * view into it have been collected. Buffers that were never delivered (one
 * outgrown by a fragmented message, one trimmed) go back at once.
 *
 * The message is also placed so that its chiral payload is 8-byte aligned: a
 * frame starts with a u32 `header_len` and its payload at `4 + header_len`, so
 * once the first 4 bytes are known the message goes at the offset that makes
 * `4 + header_len` a multiple of 8. Typed arrays over the payload (float32
 * depth, float64 tensors) are then views instead of copies. For bytes that are
 * not a chiral frame this is merely a harmless offset.
 *
 * Scope: what chiral needs. No extensions (permessage-deflate is neither
 * offered nor accepted), no subprotocols, no size limit on received messages,
 * `ws://` only (TLS stays with `ws`). Outgoing messages are small (requests and
 * actions) and are masked into one buffer per message, as RFC 6455 requires of
 * clients. Pings are answered; the close handshake is honoured both ways.
 *
 * Liveness (`pingIntervalMillis`, `pingTimeoutMillis`): the client pings the
 * server every interval and cuts the connection (reported as 1006, lost)
 * when nothing at all has arrived within the timeout after a ping: a frozen,
 * half-open or vanished server is noticed within interval + timeout. Any bytes count as an answer, so a server busy
 * sending a large observation is not taken for a dead one. The reading and
 * the timing are on this socket's thread (the policy's): while that thread is
 * blocked nothing is sent or checked, and when it resumes the check waits
 * until what arrived meanwhile has been read (and, if the thread was held up
 * past the deadline, a while longer), so a pause of this thread is never
 * taken for the server's silence.
 */
import { freshMessage, lending, type ReceivePool, retainFreedBuffers, uninitialized } from "@chiral/protocol"
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import * as AccessToken from "./AccessToken.js"
import { ClosedError, SharedWriter, type SharedWriterHandle } from "./SharedWriter.js"

export interface ClientSocketHandlers {
  /** The opening handshake completed. */
  readonly onOpen: () => void
  /**
   * A whole message (binary, or text as its UTF-8 bytes). The buffer is the
   * receiver's to keep; with a `receivePool`, it is lent (see `FrameLease` for
   * what that asks of its readers).
   */
  readonly onMessage: (message: Uint8Array) => void
  /**
   * The connection ended: `code` from the server's close frame (1005 when it
   * gave none), 1006 when it was lost without one, 1002 on a protocol error.
   * `error` says what went wrong unless the close was orderly. Called once;
   * before `onOpen` it means the connection never opened.
   */
  readonly onClose: (code: number, reason: string, error: ClientSocketError | undefined) => void
}

/** Why a connection failed or ended badly. `kind` says whether retrying can help. */
export class ClientSocketError extends Error {
  /**
   * unresolved: the host name could not be resolved (`code`); unavailable:
   * nobody answered; silent: the TCP connection was accepted but no handshake
   * answer came in time; handshake: the answer was refused; protocol: the
   * server broke RFC 6455; lost: the open connection ended (dropped, or
   * silent past the ping timeout).
   */
  readonly kind: "unresolved" | "unavailable" | "silent" | "handshake" | "protocol" | "lost"
  /**
   * The socket error's code (`ECONNREFUSED`, `ENOTFOUND`, `EAI_AGAIN`, …);
   * for `unresolved`, the resolver's answer, or `ETIMEOUT` when the open
   * timeout ran out before it came.
   */
  readonly code: string | undefined
  /** For `handshake`: the HTTP status the server answered the upgrade with, when it was one other than 101. */
  readonly status: number | undefined
  constructor(
    kind: ClientSocketError["kind"],
    message: string,
    options?: { cause?: unknown; code?: string | undefined; status?: number | undefined }
  ) {
    super(message, options)
    this.kind = kind
    this.code = options?.code
    this.status = options?.status
  }
}

export interface ConnectOptions {
  readonly host: string
  readonly port: number
  /** Request target, e.g. `/` or `/path?query`. */
  readonly path: string
  /** The `Host` header. */
  readonly hostHeader: string
  /** How long the TCP connect and the opening handshake may take. */
  readonly openTimeoutMillis: number
  /** Resolves `host` (`net.connect`'s `lookup`). Default: the system's resolver (`dns.lookup`). */
  readonly lookup?: Net.LookupFunction | undefined
  /** Ping the server every this many ms once open (0 or absent: never). */
  readonly pingIntervalMillis?: number | undefined
  /** End the connection when nothing arrives within this many ms after a ping (0 or absent: never). */
  readonly pingTimeoutMillis?: number | undefined
  /**
   * Receive large messages into recycled memory from this pool, lending each
   * delivered message out (`FrameLease`). Absent: a fresh buffer per message.
   */
  readonly receivePool?: ReceivePool | undefined
}

const guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/** Spill buffer for frame headers and the payload bytes that arrive with them. */
const spillBytes = 64 * 1024
/**
 * Largest single read into a message. The kernel holds the socket's lock for
 * a whole read, and a write to the socket (an action leaving from the
 * dispatcher's thread, see `SharedWriter`) waits for it: a 17 MB read would
 * hold an action back for milliseconds, a 256 KiB one for tens of µs.
 */
const maxReadBytes = 256 * 1024
const maxHandshakeBytes = 16 * 1024
/** Close codes an endpoint may put on the wire (1005/1006/1015 are reserved for reporting). */
const sendableClose = (code: number) =>
  (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)

const Opcode = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

/** How late a timer may fire before this thread counts as held up (see `checkAnswer`). */
const heldUpMillis = 20

const seconds = (millis: number) => `${Number((millis / 1000).toPrecision(3))} s`

/** Random mask keys, drawn from a pool refilled from the CSPRNG. */
let maskPool = new Uint8Array(0)
let maskUsed = 0
const nextMask = (out: Uint8Array, at: number) => {
  if (maskUsed + 4 > maskPool.length) {
    maskPool = Crypto.randomFillSync(new Uint8Array(4096))
    maskUsed = 0
  }
  out[at] = maskPool[maskUsed]!
  out[at + 1] = maskPool[maskUsed + 1]!
  out[at + 2] = maskPool[maskUsed + 2]!
  out[at + 3] = maskPool[maskUsed + 3]!
  maskUsed += 4
}

/** Bytes before a chiral frame at which its payload (at 4 + header_len) is 8-byte aligned. */
const alignmentOffset = (first4: Uint8Array): number => {
  const headerLen = (first4[0]! | (first4[1]! << 8) | (first4[2]! << 16) | (first4[3]! << 24)) >>> 0
  return (8 - ((4 + headerLen) % 8)) % 8
}

/** One frame to send, masked, in one buffer. */
const encodeFrame = (opcode: number, parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  let length = 0
  for (const part of parts) length += part.byteLength
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8
  const headerBytes = 2 + lengthBytes + 4
  // every byte is written below
  const out = new Uint8Array(uninitialized(headerBytes + length))
  out[0] = 0x80 | opcode
  if (lengthBytes === 0) out[1] = 0x80 | length
  else if (lengthBytes === 2) {
    out[1] = 0x80 | 126
    out[2] = length >>> 8
    out[3] = length & 0xff
  } else {
    out[1] = 0x80 | 127
    const view = new DataView(out.buffer, out.byteOffset, 10)
    view.setUint32(2, Math.floor(length / 2 ** 32))
    view.setUint32(6, length >>> 0)
  }
  const maskAt = 2 + lengthBytes
  nextMask(out, maskAt)
  let o = headerBytes
  for (const part of parts) {
    for (let i = 0; i < part.byteLength; i++, o++) out[o] = part[i]! ^ out[maskAt + ((o - headerBytes) & 3)]!
  }
  return out
}

/** One binary message from a client, masked, in one buffer (what `send` writes). */
export const encodeBinaryFrame = (parts: ReadonlyArray<Uint8Array>): Uint8Array => encodeFrame(Opcode.binary, parts)

const encodeClose = (code: number, reason = ""): Uint8Array => {
  if (!sendableClose(code)) return encodeFrame(Opcode.close, [])
  const payload = new Uint8Array(2 + Buffer.byteLength(reason))
  payload[0] = code >>> 8
  payload[1] = code & 0xff
  Buffer.from(payload.buffer, payload.byteOffset + 2).write(reason)
  return encodeFrame(Opcode.close, [payload])
}

/**
 * What a refusing server said in the part of its body that came with the
 * head, when that is one short line of text (a Zenoh port answers "This port
 * speaks Zenoh …"), as a suffix for the error; else nothing.
 */
const saidIn = (body: string): string => {
  const line = body.trim().split("\n", 1)[0]!.trim()
  // Markup (an HTML error page) says nothing on one line.
  return line.length > 0 && line.length <= 200 && !line.startsWith("<") && /^[\x20-\x7e]+$/.test(line)
    ? ` (the server said: ${JSON.stringify(line)})`
    : ""
}

/** The HTTP status of a handshake answer (`HTTP/1.1 101 …`), or undefined when it is not HTTP. */
const statusOf = (head: string): string | undefined => /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]

/** Parses the server's handshake answer; returns why it is unacceptable, if it is. */
const checkHandshake = (head: string, key: string, path: string): string | undefined => {
  const lines = head.split("\r\n")
  const status = statusOf(head)
  if (status === undefined) return `malformed handshake answer: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`
  if (status === "401") return AccessToken.unauthorized(path)
  if (status !== "101") return `Unexpected server response: ${status}`
  const headers = new Map<string, string>()
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":")
    if (colon > 0) {
      const name = line.slice(0, colon).trim().toLowerCase()
      const value = line.slice(colon + 1).trim()
      headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value)
    }
  }
  if (headers.get("upgrade")?.toLowerCase() !== "websocket") return "handshake answer without Upgrade: websocket"
  if (!(headers.get("connection") ?? "").toLowerCase().split(/\s*,\s*/).includes("upgrade")) {
    return "handshake answer without Connection: Upgrade"
  }
  const accept = Crypto.createHash("sha1").update(key + guid).digest("base64")
  if (headers.get("sec-websocket-accept") !== accept) return "invalid Sec-WebSocket-Accept header"
  if (headers.has("sec-websocket-extensions")) {
    return `server chose extension ${headers.get("sec-websocket-extensions")} that was not offered`
  }
  if (headers.has("sec-websocket-protocol")) {
    return `server chose subprotocol ${headers.get("sec-websocket-protocol")} that was not offered`
  }
  return undefined
}

type State = "connecting" | "open" | "closing" | "closed"

export class ClientSocket {
  private readonly socket: Net.Socket
  private readonly handlers: ClientSocketHandlers
  private readonly pool: ReceivePool | undefined
  private readonly key: string
  /** The request target (the URI's path and query), for what a refusal means. */
  private readonly path: string
  /** Once writes are shared with another thread, every write goes through it. */
  private writer: SharedWriter | undefined
  /** Frames waiting for the shared writer, the first maybe partly written (`at`). */
  private outbox: Array<{ readonly bytes: Uint8Array; at: number; readonly done: ((error?: Error) => void) | undefined }> = []
  /** Whether this thread holds the shared writer's lock (mid-frame). */
  private holding = false
  private flushTimer: ReturnType<typeof setTimeout> | undefined
  private state: State = "connecting"
  private sentClose = false
  private openTimer: ReturnType<typeof setTimeout> | undefined
  private closeTimer: ReturnType<typeof setTimeout> | undefined
  private tcpConnected = false
  /**
   * The host name is resolved (or is an IP address, which needs no
   * resolving): an error before it is the resolver's (`net.connect` emits
   * `lookup` once it has an address, before connecting).
   */
  private resolved = false

  // ── liveness ──
  private readonly pingIntervalMillis: number
  private readonly pingTimeoutMillis: number
  private pingTimer: ReturnType<typeof setTimeout> | undefined
  private pongTimer: ReturnType<typeof setTimeout> | undefined
  /** When the last bytes arrived, and when the unanswered ping (if any) left (performance.now() ms). */
  private lastHeard = 0
  private pingSentAt: number | undefined
  private pings = 0

  // ── receiving ──
  private readonly spill: Uint8Array = Buffer.allocUnsafeSlow(spillBytes)
  private handshake = ""
  /** Frame header bytes gathered so far (at most 14: 2 + 8 length + 4 mask). */
  private readonly header = new Uint8Array(14)
  private headerHave = 0
  private headerNeed = 2
  private inPayload = false
  private frameOpcode = 0
  private frameFin = false
  private payloadLeft = 0
  /** The data message being assembled: its opcode (0: none), buffer, start offset and bytes so far. */
  private messageOpcode = 0
  private messageBuffer: Uint8Array | undefined
  private messageStart = 0
  private messageLength = 0
  private messageFragmented = false
  /** First bytes of a message whose placement waits for its 4-byte header length. */
  private readonly prefix = new Uint8Array(4)
  private prefixHave = 0
  /** Size of the last fragmented message: the first guess for the next one's buffer. */
  private sizeHint = 0
  private control = new Uint8Array(125)
  private controlLength = 0

  constructor(options: ConnectOptions, handlers: ClientSocketHandlers) {
    this.handlers = handlers
    this.pool = options.receivePool
    this.key = Crypto.randomBytes(16).toString("base64")
    this.path = options.path
    this.pingIntervalMillis = options.pingIntervalMillis ?? 0
    this.pingTimeoutMillis = options.pingTimeoutMillis ?? 0
    this.resolved = Net.isIP(options.host) !== 0
    this.socket = Net.connect({
      host: options.host,
      port: options.port,
      ...(options.lookup === undefined ? {} : { lookup: options.lookup }),
      noDelay: true,
      onread: {
        buffer: () => this.nextReadBuffer(),
        callback: (n: number, buffer: Uint8Array) => {
          this.received(n, buffer)
          return true
        }
      }
    })
    // A stalled event loop can wake with the deadline and the connect (or the
    // handshake answer) both due; timers run before I/O, so the deadline
    // decides after this turn's I/O poll (setImmediate, the check phase), on
    // what had arrived by then, not on which callback happened to run first.
    this.openTimer = setTimeout(() =>
      setImmediate(() => {
        if (this.state === "connecting") this.openExpired(options)
      }), options.openTimeoutMillis)
    this.socket.on("lookup", (error: Error | null) => {
      if (error === null) this.resolved = true
    })
    this.socket.once("connect", () => {
      this.tcpConnected = true
      this.socket.write(
        `GET ${options.path} HTTP/1.1\r\n` +
          `Host: ${options.hostHeader}\r\n` +
          "Upgrade: websocket\r\n" +
          "Connection: Upgrade\r\n" +
          `Sec-WebSocket-Key: ${this.key}\r\n` +
          "Sec-WebSocket-Version: 13\r\n\r\n"
      )
    })
    this.socket.on("error", (error: NodeJS.ErrnoException) => {
      const code = typeof error.code === "string" ? error.code : undefined
      this.fail(
        this.state !== "connecting"
          ? new ClientSocketError("lost", error.message, { cause: error, code })
          : !this.resolved
          ? new ClientSocketError("unresolved", error.message, { cause: error, code })
          : new ClientSocketError("unavailable", error.message, { cause: error, code })
      )
    })
    this.socket.on("end", () => {
      // The server half-closed: after its close frame that is the orderly end.
      if (this.state === "closed") return
      this.fail(
        this.state === "connecting"
          ? new ClientSocketError("unavailable", "the server closed the connection during the handshake")
          : new ClientSocketError("lost", "connection lost without a close frame")
      )
    })
    this.socket.on("close", () => {
      if (this.closeTimer !== undefined) clearTimeout(this.closeTimer)
      if (this.state !== "closed") this.fail(new ClientSocketError("lost", "connection lost without a close frame"))
    })
  }

  get isOpen(): boolean {
    return this.state === "open"
  }

  /**
   * Sends one binary message made of `parts`. `done` is called once the bytes
   * are handed to the operating system, or with the reason they cannot be.
   */
  send(parts: ReadonlyArray<Uint8Array>, done: (error?: Error) => void): void {
    if (this.state !== "open") return done(new Error("connection is not open"))
    this.write(encodeFrame(Opcode.binary, parts), done)
  }

  /**
   * Lets another thread write to this connection (see `SharedWriter`): from
   * now on this socket writes through the returned handle's lock too. Only
   * once open; undefined where the socket's descriptor cannot be reached.
   */
  shareWrites(): SharedWriterHandle | undefined {
    if (this.writer !== undefined) return this.writer.handle
    // Node keeps the descriptor on its internal handle; `close` is wrapped so
    // that no thread can write once the descriptor is being closed, however
    // the socket ends (our close, the peer's, an error Node handles itself).
    const handle = (this.socket as unknown as { _handle?: { fd?: unknown; close?: (...args: Array<unknown>) => unknown } })
      ._handle
    if (this.state !== "open" || handle === undefined || typeof handle.fd !== "number" || handle.fd < 0) return undefined
    if (typeof handle.close !== "function") return undefined
    const writer = SharedWriter.create(handle.fd)
    const close = handle.close
    handle.close = (...args: Array<unknown>) => {
      writer.close()
      return close.apply(handle, args)
    }
    this.writer = writer
    return writer.handle
  }

  /** Starts the closing handshake; the socket is cut if the server does not finish it within `graceMillis`. */
  close(code = 1000, graceMillis = 1000): void {
    if (this.state === "connecting") return this.destroy()
    if (this.state !== "open") return
    this.state = "closing"
    this.sendClose(code)
    this.closeTimer = setTimeout(() => this.destroy(), graceMillis)
    this.closeTimer.unref()
  }

  /** Cuts the connection at once (reported as closed by us, 1006). */
  destroy(): void {
    this.finish(1006, "", undefined)
    this.socket.destroy()
  }

  // ── internals ──

  private schedulePing() {
    if (!(this.pingIntervalMillis > 0) || this.state !== "open") return
    this.pingTimer = setTimeout(this.ping, this.pingIntervalMillis)
    this.pingTimer.unref()
  }

  /** Sends a ping unless one is still unanswered, and checks for an answer after the timeout. */
  private ping = () => {
    this.pingTimer = undefined
    if (this.state !== "open") return
    if (this.pingSentAt === undefined || this.lastHeard > this.pingSentAt) {
      // the previous ping was answered: its check has nothing left to judge
      if (this.pongTimer !== undefined) clearTimeout(this.pongTimer)
      this.pongTimer = undefined
      const payload = new Uint8Array(4)
      new DataView(payload.buffer).setUint32(0, ++this.pings)
      const sent = performance.now()
      this.pingSentAt = sent
      this.write(encodeFrame(Opcode.ping, [payload]))
      if (this.pingTimeoutMillis > 0) {
        this.pongTimer = setTimeout(() => this.checkAnswer(sent, sent + this.pingTimeoutMillis), this.pingTimeoutMillis)
        this.pongTimer.unref()
      }
    }
    this.schedulePing()
  }

  /**
   * The timeout after the ping sent at `sent` ran out (it was due at `due`).
   * Judged once the event loop has polled the socket (`setImmediate` runs
   * after the poll phase): if this thread was blocked, what arrived meanwhile
   * is read first and counts. If this thread was held up well past `due`
   * (blocked, starved of CPU, a long collection), the silence it could
   * observe was shorter than the timeout, and a peer on a starved machine
   * may only now have answered: it is judged once more after as long again
   * (at most one timeout).
   */
  private checkAnswer(sent: number, due: number, again = false) {
    this.pongTimer = undefined
    setImmediate(() => {
      if (this.state !== "open" || this.lastHeard > sent) return
      const late = performance.now() - due
      if (!again && late > heldUpMillis) {
        const grace = Math.min(this.pingTimeoutMillis, late)
        this.pongTimer = setTimeout(() => this.checkAnswer(sent, performance.now(), true), grace)
        this.pongTimer.unref()
        return
      }
      // Failed without a close frame (RFC 6455 §7.1.7): the server is not
      // listening, and with writes shared, an action of the dispatcher's
      // could still slip in after a close frame; once the socket is
      // destroyed, nothing more is written.
      this.fail(
        new ClientSocketError(
          "lost",
          `the server sent nothing for ${seconds(this.pingTimeoutMillis)} after a ping: frozen, or the connection is half-open`
        )
      )
    })
  }

  private sendClose(code: number, reason = "") {
    if (this.sentClose) return
    this.sentClose = true
    this.write(encodeClose(code, reason))
  }

  /** Every frame after the handshake leaves here: through the shared writer once there is one. */
  private write(bytes: Uint8Array, done?: (error?: Error) => void) {
    if (this.writer === undefined) {
      this.socket.write(bytes, done === undefined ? undefined : (error) => done(error ?? undefined))
      return
    }
    this.outbox.push({ bytes, at: 0, done })
    if (this.outbox.length === 1) this.flush()
  }

  /**
   * Writes queued frames through the shared writer without blocking this
   * thread: the lock is taken only when free, a frame the kernel takes in
   * part keeps it until the rest is out, and whatever must wait is retried a
   * millisecond later. The lock is let go between frames, so the dispatcher's
   * actions never wait behind a burst of requests.
   */
  private flush = () => {
    this.flushTimer = undefined
    const writer = this.writer!
    while (this.outbox.length > 0) {
      if (!this.holding) {
        if (!writer.tryLock()) return this.retryFlush()
        this.holding = true
      }
      const frame = this.outbox[0]!
      const written = writer.writeSome(frame.bytes, frame.at)
      if (written instanceof Error) return this.writeFailed(written)
      frame.at += written
      if (frame.at < frame.bytes.byteLength) {
        if (written === 0) return this.retryFlush()
        continue
      }
      this.outbox.shift()
      this.holding = false
      writer.unlock()
      frame.done?.()
    }
  }

  private retryFlush() {
    if (this.flushTimer === undefined) this.flushTimer = setTimeout(this.flush, 1)
  }

  private writeFailed(error: Error) {
    if (this.holding) this.writer!.unlock()
    this.holding = false
    const failed = this.outbox
    this.outbox = []
    if (!(error instanceof ClosedError)) {
      this.fail(new ClientSocketError("lost", `cannot write: ${error.message}`, { cause: error }))
    }
    for (const frame of failed) frame.done?.(error)
  }

  private finish(code: number, reason: string, error: ClientSocketError | undefined) {
    if (this.state === "closed") return
    this.state = "closed"
    if (this.openTimer !== undefined) clearTimeout(this.openTimer)
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer)
    if (this.pingTimer !== undefined) clearTimeout(this.pingTimer)
    if (this.pongTimer !== undefined) clearTimeout(this.pongTimer)
    if (this.writer !== undefined && this.outbox.length > 0) this.writeFailed(new ClosedError())
    this.messageBuffer = undefined
    this.handlers.onClose(code, reason, error)
  }

  /** The open deadline passed: why, from what had happened by then (TCP, resolver). */
  private openExpired(options: ConnectOptions) {
    this.fail(
      this.tcpConnected
        ? new ClientSocketError(
          "silent",
          `${options.host}:${options.port} accepted the TCP connection but sent no WebSocket handshake answer within ${
            seconds(options.openTimeoutMillis)
          }: not a WebSocket server, or a frozen one`
        )
        : !this.resolved
        ? new ClientSocketError(
          "unresolved",
          `no answer from the resolver within ${seconds(options.openTimeoutMillis)}`,
          { code: "ETIMEOUT" }
        )
        : new ClientSocketError("unavailable", `no TCP connection within ${seconds(options.openTimeoutMillis)}`)
    )
  }

  private fail(error: ClientSocketError) {
    if (this.state === "closed") return
    if (error.kind === "protocol" && this.state === "open") this.sendClose(1002)
    this.finish(error.kind === "protocol" ? 1002 : 1006, "", error)
    if (error.kind === "protocol") this.socket.end()
    else this.socket.destroy()
  }

  /** Where the next read lands: in place inside a data payload, otherwise the spill buffer. */
  private nextReadBuffer(): Uint8Array {
    if (this.inPayload && this.payloadLeft > 0 && this.messageBuffer !== undefined && this.isData(this.frameOpcode)) {
      const at = this.messageStart + this.messageLength
      return this.messageBuffer.subarray(at, at + Math.min(this.payloadLeft, maxReadBytes))
    }
    return this.spill
  }

  private isData(opcode: number) {
    return opcode === Opcode.binary || opcode === Opcode.text || opcode === Opcode.continuation
  }

  private received(n: number, buffer: Uint8Array) {
    if (this.state === "closed" || n <= 0) return
    this.lastHeard = performance.now()
    if (buffer !== this.spill) {
      // read in place: the bytes are already where they belong
      this.messageLength += n
      this.payloadLeft -= n
      if (this.payloadLeft === 0) this.endFrame()
      return
    }
    let at = 0
    if (this.state === "connecting") {
      at = this.readHandshake(n)
      if (at < 0) return
    }
    try {
      this.parse(this.spill, at, n)
    } catch (cause) {
      this.fail(
        cause instanceof ClientSocketError
          ? cause
          : new ClientSocketError("protocol", `cannot take a message: ${String(cause)}`, { cause })
      )
    }
  }

  /** Gathers the handshake answer; returns where frames start in the spill buffer, or -1 (not yet / failed). */
  private readHandshake(n: number): number {
    const before = this.handshake.length
    this.handshake += Buffer.from(this.spill.buffer, this.spill.byteOffset, n).toString("latin1")
    const end = this.handshake.indexOf("\r\n\r\n")
    if (end < 0) {
      if (this.handshake.length > maxHandshakeBytes) {
        this.fail(new ClientSocketError("handshake", "handshake answer too long"))
      }
      return -1
    }
    const head = this.handshake.slice(0, end)
    const problem = checkHandshake(head, this.key, this.path)
    if (problem !== undefined) {
      const status = statusOf(head)
      this.fail(
        new ClientSocketError("handshake", problem + saidIn(this.handshake.slice(end + 4)), {
          status: status === undefined || status === "101" ? undefined : Number(status)
        })
      )
      return -1
    }
    this.state = "open"
    if (this.openTimer !== undefined) clearTimeout(this.openTimer)
    this.openTimer = undefined
    this.handshake = ""
    this.schedulePing()
    this.handlers.onOpen()
    return end + 4 - before
  }

  private parse(bytes: Uint8Array, from: number, to: number) {
    let i = from
    while (i < to && this.state !== "closed") {
      if (!this.inPayload) {
        while (this.headerHave < this.headerNeed && i < to) {
          this.header[this.headerHave++] = bytes[i++]!
          if (this.headerHave === 2) this.headerNeed = this.headerSize()
        }
        if (this.headerHave < this.headerNeed) return
        this.startFrame()
        continue
      }
      const take = Math.min(to - i, this.payloadLeft)
      this.takePayload(bytes, i, take)
      i += take
      this.payloadLeft -= take
      if (this.payloadLeft === 0) this.endFrame()
    }
  }

  private headerSize(): number {
    const len = this.header[1]! & 0x7f
    return 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + ((this.header[1]! & 0x80) !== 0 ? 4 : 0)
  }

  private startFrame() {
    const b0 = this.header[0]!
    const b1 = this.header[1]!
    const protocolError = (message: string) => new ClientSocketError("protocol", message)
    if ((b0 & 0x70) !== 0) throw protocolError("reserved bits set (no extension was negotiated)")
    if ((b1 & 0x80) !== 0) throw protocolError("a server must not mask its frames")
    const fin = (b0 & 0x80) !== 0
    const opcode = b0 & 0x0f
    let length = b1 & 0x7f
    if (length === 126) length = (this.header[2]! << 8) | this.header[3]!
    else if (length === 127) {
      const high = ((this.header[2]! << 24) | (this.header[3]! << 16) | (this.header[4]! << 8) | this.header[5]!) >>> 0
      const low = ((this.header[6]! << 24) | (this.header[7]! << 16) | (this.header[8]! << 8) | this.header[9]!) >>> 0
      if (high > 0x1fffff) throw protocolError("frame length beyond 2^53")
      length = high * 2 ** 32 + low
    }
    switch (opcode) {
      case Opcode.text:
      case Opcode.binary:
        if (this.messageOpcode !== 0) throw protocolError("a new message began before the previous one finished")
        this.messageOpcode = opcode
        this.messageFragmented = !fin
        this.messageLength = 0
        this.prefixHave = 0
        // Text and messages too short to carry a frame header are placed at once, unaligned.
        if (opcode === Opcode.text || length < 4) this.place(0, fin ? length : Math.max(length, this.sizeHint))
        break
      case Opcode.continuation:
        if (this.messageOpcode === 0) throw protocolError("continuation frame outside a message")
        if (this.messageBuffer !== undefined) this.reserve(length)
        break
      case Opcode.close:
      case Opcode.ping:
      case Opcode.pong:
        if (!fin) throw protocolError("fragmented control frame")
        if (length > 125) throw protocolError("control frame longer than 125 bytes")
        this.controlLength = 0
        break
      default:
        throw protocolError(`unknown opcode ${opcode}`)
    }
    this.frameOpcode = opcode
    this.frameFin = fin
    this.payloadLeft = length
    this.headerHave = 0
    this.headerNeed = 2
    this.inPayload = true
    if (length === 0) this.endFrame()
  }

  /** Allocates the message buffer with room for `capacity` bytes, the message starting at `offset`. */
  private place(offset: number, capacity: number) {
    this.messageBuffer = this.allocateMessage(offset + capacity)
    this.messageStart = offset
  }

  /** Memory for a message, every byte of which will be written before it is read: from the pool if there is one. */
  private allocateMessage(size: number): Uint8Array {
    return this.pool === undefined ? freshMessage(size) : this.pool.take(size)
  }

  /** A message buffer that was never delivered: nobody else has seen it, so it may go straight back to the pool. */
  private recycle(buffer: Uint8Array) {
    if (this.pool !== undefined && buffer.buffer instanceof ArrayBuffer) this.pool.put(buffer.buffer)
  }

  /** Makes room for `more` bytes after what the message holds (doubling, so growth is amortized). */
  private reserve(more: number) {
    const buffer = this.messageBuffer!
    const needed = this.messageStart + this.messageLength + more
    if (needed <= buffer.byteLength) return
    const grown = this.allocateMessage(Math.max(needed, this.messageStart + 2 * (this.messageLength + more)))
    grown.set(buffer.subarray(this.messageStart, this.messageStart + this.messageLength), this.messageStart)
    this.messageBuffer = grown
    // Safe to reuse: the reads into it have completed (this runs on a read into the spill buffer).
    this.recycle(buffer)
  }

  private takePayload(bytes: Uint8Array, at: number, count: number) {
    if (!this.isData(this.frameOpcode)) {
      this.control.set(bytes.subarray(at, at + count), this.controlLength)
      this.controlLength += count
      return
    }
    if (this.messageBuffer === undefined) {
      // The first bytes of a binary message: wait for the 4-byte header length to place it.
      const wanted = Math.min(4 - this.prefixHave, count)
      this.prefix.set(bytes.subarray(at, at + wanted), this.prefixHave)
      this.prefixHave += wanted
      at += wanted
      count -= wanted
      if (this.prefixHave < 4) return
      // payloadLeft still counts this call's bytes; the prefix bytes of earlier calls come on top
      const firstFrame = this.payloadLeft + this.prefixHave - wanted
      this.place(alignmentOffset(this.prefix), this.frameFin ? firstFrame : Math.max(firstFrame, this.sizeHint))
      this.messageBuffer!.set(this.prefix, this.messageStart)
      this.messageLength = 4
    }
    this.messageBuffer!.set(bytes.subarray(at, at + count), this.messageStart + this.messageLength)
    this.messageLength += count
  }

  private endFrame() {
    this.inPayload = false
    const opcode = this.frameOpcode
    if (this.isData(opcode)) {
      if (!this.frameFin) return
      this.deliver()
      return
    }
    const payload = this.control.subarray(0, this.controlLength)
    if (opcode === Opcode.ping) {
      if (this.state === "open") this.write(encodeFrame(Opcode.pong, [payload]))
    } else if (opcode === Opcode.close) {
      const code = payload.byteLength >= 2 ? (payload[0]! << 8) | payload[1]! : 1005
      const reason = payload.byteLength > 2 ? Buffer.from(payload.subarray(2)).toString("utf8") : ""
      this.sendClose(code === 1005 ? 0 : code)
      this.finish(code, reason, undefined)
      this.socket.end()
    }
  }

  private deliver() {
    let buffer = this.messageBuffer
    const length = this.messageLength
    const start = this.messageStart
    if (this.messageFragmented) this.sizeHint = length
    this.messageOpcode = 0
    this.messageBuffer = undefined
    this.messageLength = 0
    this.prefixHave = 0
    if (buffer === undefined) {
      // a binary message of fewer than 4 bytes over several frames never got placed
      buffer = this.prefix.slice(0, 0)
    }
    let message = buffer.subarray(start, start + length)
    // A guess that overshot by much (a small message after a large one) would pin memory: trim it.
    if (buffer.byteLength - length > 1024 * 1024 && length < buffer.byteLength / 2) {
      const trimmed = this.allocateMessage(start + length)
      trimmed.set(message, start)
      message = trimmed.subarray(start, start + length)
      this.recycle(buffer)
    }
    const pool = this.pool
    if (pool !== undefined && pool.owns(message.buffer)) {
      lending.lend(message, pool.put, pool.collectAfter(message.buffer.byteLength))
    }
    this.handlers.onMessage(message)
  }
}

/** Opens a connection; the outcome arrives through `handlers`. */
export const connect = (options: ConnectOptions, handlers: ClientSocketHandlers): ClientSocket => {
  // Each fresh message buffer then reuses memory an earlier one freed, not pages the kernel maps anew.
  retainFreedBuffers()
  return new ClientSocket(options, handlers)
}
