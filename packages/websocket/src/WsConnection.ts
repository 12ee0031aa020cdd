/**
 * A chiral `Connection` over a `ws` socket (what @effect/platform-node runs
 * underneath): the server's connections and `wss://` clients. The raw socket
 * is used here for three things Effect's `Socket` writer cannot do:
 *  - send one frame given as several parts as one message made of WebSocket
 *    fragments, so a 17 MB observation is never concatenated;
 *  - learn when a send has reached the operating system (the send callback), so
 *    a connection holds about one frame of outbound data and a slow client
 *    only ever slows itself;
 *  - client options: no permessage-deflate offered, no receive size limit
 *    (`ws` defaults to offering deflate and to a 100 MiB cap).
 */
import { frameBytes, type OutgoingFrame, type SendNow } from "@chiral/core/Transport"
import { TransportError } from "@chiral/core/TransportError"
import * as NodeWS from "@effect/platform-node/NodeWS"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { Cause, Effect, type Pull, type Scope, Stream } from "effect"
import type * as Socket from "effect/socket/Socket"
import { closeDetail, normalCloseCodes, peerClose } from "./CloseFrame.js"

const encoder = new TextEncoder()

export const toTransportError = (error: Socket.SocketError, address: string): TransportError => {
  const reason = error.reason
  switch (reason._tag) {
    case "SocketCloseError":
      return new TransportError({
        reason: "Closed",
        address,
        detail: closeDetail(reason.code, reason.closeReason ?? ""),
        closedBy: peerClose(reason.code, reason.closeReason ?? "")
      })
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
export const describe = (cause: unknown): string => {
  if (cause instanceof Error) return cause.message
  if (typeof cause === "object" && cause !== null) {
    const inner = (cause as { error?: unknown }).error
    if (inner instanceof Error) return inner.message
    const message = (cause as { message?: unknown }).message
    if (typeof message === "string" && message.length > 0) return message
  }
  return String(cause)
}

/**
 * How a connection's text messages are dropped: chiral frames are binary, and
 * a text message cannot be one (read as a frame, its first four characters
 * became a `header_len` of some gigabytes). The first is logged with its
 * size; `summary` gives the count when the connection's frames end.
 */
class TextDrops {
  private count = 0
  private readonly address: string
  constructor(address: string) {
    this.address = address
  }
  /** Counts one text message of `bytes` bytes; the log line for the first one. */
  drop(bytes: number): Effect.Effect<void> {
    return ++this.count === 1
      ? Effect.logWarning(
        `chiral: dropped a text message from ${this.address} (${bytes} bytes): chiral messages are binary frames`
      )
      : Effect.void
  }
  readonly summary: Effect.Effect<void> = Effect.suspend(() =>
    this.count > 1 ? Effect.logWarning(`chiral: ${this.count} text messages from ${this.address} dropped in all`) : Effect.void
  )
}

/**
 * Frame stream over an Effect socket reader: one element per binary message.
 * chiral frames are binary; a text message cannot be one (read as a frame, its
 * first four characters became a `header_len` of some gigabytes), so each is
 * dropped: the first one on a connection is logged with its size, and the
 * count when the stream ends.
 */
export const framesFrom = (
  pull: Effect.Effect<ReadonlyArray<Uint8Array | string>, Socket.SocketError>,
  address: string
): Stream.Stream<Uint8Array, TransportError> => {
  const texts = new TextDrops(address)
  const dropText = (text: string): Effect.Effect<void> => texts.drop(encoder.encode(text).byteLength)
  const batches = pull.pipe(
    Effect.catch((error): Effect.Effect<never, TransportError | Cause.Done> =>
      error.reason._tag === "SocketCloseError" && normalCloseCodes.has(error.reason.code)
        ? Cause.done()
        : Effect.fail(toTransportError(error, address))
    )
  )
  const next: Pull.Pull<NonEmptyReadonlyArray<Uint8Array>, TransportError> = Effect.flatMap(batches, (batch) => {
    if (batch.every((item) => typeof item !== "string")) {
      return Effect.succeed(batch as unknown as NonEmptyReadonlyArray<Uint8Array>)
    }
    const binary = batch.filter((item): item is Uint8Array => typeof item !== "string")
    const logs = Effect.forEach(batch.filter((item) => typeof item === "string"), dropText, { discard: true })
    return Effect.andThen(
      logs,
      binary.length === 0 ? Effect.suspend(() => next) : Effect.succeed(binary as unknown as NonEmptyReadonlyArray<Uint8Array>)
    )
  })
  return Stream.fromPull(Effect.succeed(next)).pipe(Stream.ensuring(texts.summary))
}

/** Bytes of received frames held for a reader that has not taken them before the socket stops reading. */
const inboxHighWaterMark = 64 * 1024

type Resume = (effect: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, TransportError | Cause.Done>) => void

/**
 * The frames a server connection has received and its reader has not taken
 * yet, straight from `ws`'s own events: each binary message as the Buffer
 * `ws` hands over (no copy), text messages dropped as in `framesFrom`. Above
 * 64 KiB held the socket is paused until the reader takes them, so a reader
 * that stops pulling (its requests backed up) stops the client, not memory.
 *
 * Why not Effect's `Socket` reader (what `framesFrom` reads): at 30 Hz
 * every request runs cold, and each layer on its way costs its share. That
 * reader takes messages through `ws`'s DOM-style event wrapper (a
 * MessageEvent per message), asks `ws` for ArrayBuffers (a copy of every
 * message), and maps each pull's errors; measured with a Python client at
 * 30 Hz, the socket's bytes took 0.07 ms to reach the stream, and the
 * reader's next pull after a request ran after the reply was written, where
 * it holds up the client when both share a core.
 */
class Inbox {
  private frames: Array<Uint8Array> = []
  private bytes = 0
  private paused = false
  private waiter: Resume | undefined
  /** How the stream ends once the frames held are taken: set by the first close or error. */
  private end: Effect.Effect<never, TransportError | Cause.Done> | undefined
  private readonly ws: NodeWS.WebSocket
  private readonly onText: (text: Buffer) => void
  /** What takes a frame where it arrives, once installed (`Connection.answerInline`): true when it took it. */
  private inline: ((frame: Uint8Array) => boolean) | undefined
  private readonly onInlineFailure: (cause: unknown) => void
  /** Whether a frame was taken inline in this read from the socket. */
  private inlineTaken = false
  private readonly endInlineTurn = () => {
    this.inlineTaken = false
  }

  constructor(ws: NodeWS.WebSocket, onText: (text: Buffer) => void, onInlineFailure: (cause: unknown) => void) {
    this.ws = ws
    this.onText = onText
    this.onInlineFailure = onInlineFailure
  }

  /** Offers each frame to `take` first where that cannot reorder anything (see `Connection.answerInline`). */
  answerInline(take: (frame: Uint8Array) => boolean): void {
    this.inline = take
  }

  readonly message = (data: Buffer | ArrayBuffer | Array<Buffer>, isBinary: boolean): void => {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data
    if (!isBinary) return this.onText(bytes)
    // Only with the reader waiting and nothing held can the frame go first;
    // once a read from the socket, so that a burst is still read in the
    // reader's turns. The read ends with this callback: microtasks run once
    // ws has emitted every message of the chunk it read.
    if (
      this.inline !== undefined && this.waiter !== undefined && this.frames.length === 0 && this.end === undefined &&
      !this.inlineTaken && this.takeInline(this.inline, bytes)
    ) {
      this.inlineTaken = true
      queueMicrotask(this.endInlineTurn)
      return
    }
    this.frames.push(bytes)
    this.bytes += bytes.byteLength
    if (this.waiter !== undefined) return this.deliver()
    if (this.bytes >= inboxHighWaterMark && !this.paused) {
      this.paused = true
      this.ws.pause()
    }
  }

  /** Inside ws's read callback a throw would end the process: a taker that throws is dropped, and the reader answers. */
  private takeInline(take: (frame: Uint8Array) => boolean, frame: Uint8Array): boolean {
    try {
      return take(frame)
    } catch (cause) {
      this.inline = undefined
      this.onInlineFailure(cause)
      return false
    }
  }

  /** The first of close and error decides how the stream ends; frames already held are read first. */
  readonly finish = (end: Effect.Effect<never, TransportError | Cause.Done>): void => {
    if (this.end !== undefined) return
    this.end = end
    if (this.waiter !== undefined) this.deliver()
  }

  /** The next batch of frames (all held), waiting for one when none is held. */
  readonly pull: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, TransportError | Cause.Done> = Effect.callback((
    resume
  ) => {
    if (this.frames.length > 0 || this.end !== undefined) return resume(this.take())
    this.waiter = resume
    return Effect.sync(() => {
      if (this.waiter === resume) this.waiter = undefined
    })
  })

  private deliver(): void {
    const resume = this.waiter!
    this.waiter = undefined
    resume(this.take())
  }

  private take(): Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, TransportError | Cause.Done> {
    if (this.frames.length === 0) return this.end!
    const frames = this.frames as unknown as NonEmptyReadonlyArray<Uint8Array>
    this.frames = []
    this.bytes = 0
    if (this.paused && this.end === undefined) {
      this.paused = false
      this.ws.resume()
    }
    return Effect.succeed(frames)
  }
}

/**
 * The frames of a server-side `ws` connection (see `Inbox`), for the scope:
 * it reads from the socket (`NodeSocketServer` holds a new connection paused)
 * until the scope closes. Ends when the client closes normally (1000, 1001,
 * 1005, after the frames it sent before); fails with `Closed` on any other
 * close, `Read` on a socket error (e.g. a message over the size limit, which
 * `ws` answers with 1009). Text messages are dropped and logged as by
 * `framesFrom`.
 */
export const framesOf = (
  ws: NodeWS.WebSocket,
  address: string
): Effect.Effect<Stream.Stream<Uint8Array, TransportError>, never, Scope.Scope> =>
  Effect.map(receiverOf(ws, address), (receiver) => receiver.frames)

/** A server connection's frames (`framesOf`), and where to install what may take one as it arrives. */
export interface Receiver {
  readonly frames: Stream.Stream<Uint8Array, TransportError>
  /** Offers each frame to `take` first where that cannot reorder anything (see `Connection.answerInline`). */
  readonly answerInline: (take: (frame: Uint8Array) => boolean) => void
}

/** `framesOf`, with the frames' inline taker (`Receiver`). */
export const receiverOf = (
  ws: NodeWS.WebSocket,
  address: string
): Effect.Effect<Receiver, never, Scope.Scope> =>
  Effect.gen(function*() {
    const context = yield* Effect.context<never>()
    const log = (effect: Effect.Effect<void>) => void Effect.runForkWith(context)(effect)
    const texts = new TextDrops(address)
    const inbox = new Inbox(
      ws,
      (text) => log(texts.drop(text.byteLength)),
      (cause) => log(Effect.logWarning(`chiral: answering ${address} inline failed; its reader answers from now on`, cause))
    )
    const onClose = (code: number, reason: Buffer) =>
      inbox.finish(
        normalCloseCodes.has(code)
          ? Cause.done()
          : Effect.fail(
            new TransportError({
              reason: "Closed",
              address,
              detail: closeDetail(code, reason.toString()),
              closedBy: peerClose(code, reason.toString())
            })
          )
      )
    const onError = (cause: Error) =>
      inbox.finish(Effect.fail(new TransportError({ reason: "Read", address, detail: describe(cause), cause })))
    ws.on("message", inbox.message)
    ws.on("close", onClose)
    ws.on("error", onError)
    if (ws.readyState >= NodeWS.WebSocket.CLOSING) onClose(1006, Buffer.alloc(0))
    else ws.resume()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        ws.off("message", inbox.message)
        ws.off("close", onClose)
        ws.off("error", onError)
        // A late error must not go unhandled once nothing listens.
        ws.on("error", () => {})
        ws.resume()
      }).pipe(Effect.andThen(texts.summary))
    )
    return {
      frames: Stream.fromPull(Effect.succeed(inbox.pull)),
      answerInline: (take: (frame: Uint8Array) => boolean) => inbox.answerInline(take)
    } satisfies Receiver
  })

const joinBelowBytes = 64 * 1024

const totalBytes = (parts: ReadonlyArray<Uint8Array>): number => {
  let n = 0
  for (const part of parts) n += part.byteLength
  return n
}

/**
 * The buffer a connection joins small frames into, reused from one send to the
 * next. A fresh buffer per reply costs more than the copy into it on machines
 * where touching new memory is slow (page faults: see `npm run bench`'s
 * machine limits), and a reply is sent several times a second.
 *
 * Lifetime: `ws` keeps a reference to the bytes it was given until the send
 * callback runs (the bytes are then in the kernel, or the socket failed), so
 * the buffer is lent for exactly that long. A frame joined while the buffer is
 * lent (two sends in flight at once) gets a fresh buffer instead; a send whose
 * callback never runs keeps the buffer lent forever, which costs only the reuse.
 */
export class JoinBuffer {
  private buffer: Uint8Array | undefined
  private lent = false

  /** The frame's bytes in one buffer, and the release to call once the send has completed. */
  join(parts: ReadonlyArray<Uint8Array>): { readonly bytes: Uint8Array; readonly release: () => void } {
    if (this.lent) return { bytes: frameBytes(parts), release: () => {} }
    const size = totalBytes(parts)
    if (this.buffer === undefined || this.buffer.byteLength < size) this.buffer = new Uint8Array(size)
    const bytes = this.buffer.subarray(0, size)
    let at = 0
    for (const part of parts) {
      bytes.set(part, at)
      at += part.byteLength
    }
    this.lent = true
    let released = false
    return {
      bytes,
      release: () => {
        if (released) return
        released = true
        this.lent = false
      }
    }
  }
}

/**
 * How many bytes of one message's fragments go to the socket before the
 * event loop gets a turn (at least one fragment). Each `ws.send` of a
 * fragment is a `writev` that returns once the kernel has copied it (on
 * loopback, delivered it), ~0.3 ms per megabyte here: sent in one run, a 17 MB
 * observation held the server's thread ~8 ms, and an action arriving
 * meanwhile waited that long to be read (`chiral bench`, 8 cameras, actions at
 * 30 Hz in step with the stream's requests: every action 6–8 ms late).
 *
 * A turn is handed over only once the kernel has taken the one before it
 * (its last fragment's write has called back) and the loop has polled since: otherwise
 * Node buffers the fragments of several turns and writes them in one
 * `writev` when the socket drains, 8–13 MB and up to 3 ms at once, traced
 * in the robot's process. Paced so at 2 MiB (`chiral bench`, 8 cameras,
 * actions at 100 Hz, 4 alternating rounds against 4 MiB turns paced by the
 * loop alone): the robot's loop's 1 ms timer p99 1.9–2.1 against 4.5–5.0 ms,
 * actions' |jitter| p99 1.8–2.4 against 3.9–5.7 ms (those whose tick fell
 * in a transfer 1.9–3.2 against 4.8–7.3 ms); round trip p50 level over
 * 3 rounds of 300 (3.73–4.08 against 3.77–4.06 ms). 1 MiB did as well.
 */
const fragmentBytesPerTurn = 2 * 1024 * 1024

/**
 * Whether `ws`'s socket has neither failed nor been destroyed (the socket is
 * ws's own property; a socket it does not expose counts as healthy).
 */
const writeSucceeded = (ws: NodeWS.WebSocket): boolean => {
  const socket = (ws as unknown as { readonly _socket?: { readonly destroyed?: boolean; readonly errored?: unknown } })._socket
  return socket === undefined || (socket.destroyed !== true && (socket.errored === null || socket.errored === undefined))
}

/**
 * Node's codes for a write that failed because the connection is gone: the
 * peer reset it or had closed it, it timed out or became unreachable, or this
 * side destroyed the socket while the write waited (keepalive's cut, shutdown).
 */
const lostConnectionCodes: ReadonlyMap<string, string> = new Map([
  ["EPIPE", "the peer had closed the connection"],
  ["ECONNRESET", "the peer reset the connection"],
  ["ECONNABORTED", "the connection was aborted"],
  ["ECANCELED", "the socket was closed before the write completed"],
  ["ETIMEDOUT", "the connection timed out"],
  ["EHOSTUNREACH", "the peer's host became unreachable"],
  ["ENETUNREACH", "the peer's network became unreachable"],
  ["ENETDOWN", "the network went down"],
  ["ERR_STREAM_DESTROYED", "the socket was destroyed"]
])

const codeOf = (error: unknown): string | undefined => {
  const code = typeof error === "object" && error !== null ? (error as { readonly code?: unknown }).code : undefined
  return typeof code === "string" ? code : undefined
}

/** The error `ws`'s socket failed with, if it did (a read's reset, say). */
const socketError = (ws: NodeWS.WebSocket): unknown =>
  (ws as unknown as { readonly _socket?: { readonly errored?: unknown } })._socket?.errored ?? undefined

/**
 * The error of a send that failed. A connection lost meanwhile (a peer killed
 * while a reply was on its way, a frozen one cut off by keepalive) is `Closed`,
 * as when it is lost between sends: routine for a robot server, whose log says
 * it in one line ("connection lost"), like a socket that just ends. Its
 * detail says why from the socket's own error when it has one: a reset seen
 * by a read destroys the socket, and the write it cancels reports only
 * ECANCELED. Anything else, on a socket still open and healthy, is a `Write`
 * error that keeps its cause (a bug here or in `ws`, which its stack helps find).
 */
export const sendFailure = (ws: NodeWS.WebSocket, address: string, error: unknown): TransportError => {
  const why = socketError(ws) ?? error
  const code = codeOf(why)
  const meaning = code === undefined ? undefined : lostConnectionCodes.get(code)
  if (meaning === undefined && ws.readyState === NodeWS.WebSocket.OPEN && writeSucceeded(ws)) {
    return new TransportError({ reason: "Write", address, detail: describe(error), cause: error })
  }
  return new TransportError({
    reason: "Closed",
    address,
    detail: `lost while a message was being sent: ${meaning === undefined ? describe(why) : `${meaning} (${code})`}`,
    cause: error
  })
}

/** How a send ended: `ws`'s callback (an Error, or nothing), or what was thrown while handing it over. */
type Done = (error?: unknown) => void

/**
 * Hands `ws` the fragments of one message, `fragmentBytesPerTurn` at a time,
 * each turn once the socket has written the one before and the event loop
 * has polled since; `whenHandedOver` runs once the last
 * one is handed over (after which `ws` keeps later sends behind it), `done`
 * once `ws` has written it. Carries on even if its caller stopped waiting: a
 * message cut off after a fragment would leave the connection unusable.
 */
const sendFragments = (ws: NodeWS.WebSocket, parts: ReadonlyArray<Uint8Array>, done: Done, whenHandedOver: () => void) => {
  const last = parts.length - 1
  let next = 0
  const stop = (error: unknown) => {
    // Cut off mid-way on an open socket, ws would take the next message for a
    // continuation of this one. A closing one sends no more messages, and its
    // close frame (allowed mid-message) must not be thrown away.
    if (next > 0 && ws.readyState === NodeWS.WebSocket.OPEN) ws.terminate()
    whenHandedOver()
    done(error)
  }
  // The turn's last fragment is written (the kernel took it, and every byte
  // queued before it): the next turn after a poll of the loop. Its own write's
  // callback, not the socket's 'drain', which Node emits only after a write
  // that filled its buffer, never after a small one (a ping) left waiting.
  const turnWritten = (error?: Error) =>
    error === undefined || error === null ? void setImmediate(() => setImmediate(step)) : stop(error)
  const step = () => {
    if (ws.readyState !== NodeWS.WebSocket.OPEN) return stop(new Error("the socket closed between two of its fragments"))
    let end = next
    let handed = 0
    while (end <= last && (handed === 0 || handed + parts[end]!.byteLength <= fragmentBytesPerTurn)) {
      handed += parts[end++]!.byteLength
    }
    try {
      for (; next < end; next++) {
        const fin = next === last
        const written = fin ? done : next === end - 1 ? turnWritten : undefined
        ws.send(parts[next]!, { binary: true, compress: false, fin }, written)
      }
    } catch (cause) {
      return stop(cause)
    }
    if (next > last) whenHandedOver()
  }
  // An immediate queued from an I/O callback (the request just read) runs
  // before the loop polls again: a first turn taken at once would run into
  // the second (traced: 9 writevs, ~9 MB in 5–6.5 ms between two polls).
  if (totalBytes(parts) > fragmentBytesPerTurn) setImmediate(step)
  else step()
}

/**
 * Sends one frame as one WebSocket message; several parts become fragments of
 * that message (no concatenation), except below `joinBelowBytes` (or with
 * `fragmentParts` false), where they are joined into the connection's reused
 * `JoinBuffer`. A message's fragments are handed over a few megabytes per
 * turn of the event loop (`fragmentBytesPerTurn`); sends made meanwhile wait
 * their turn, so fragments of two messages never interleave. Completes when
 * the last part is written.
 */
export const sendOn = (ws: NodeWS.WebSocket, address: string, fragmentParts = true) =>
  senderOn(ws, address, fragmentParts).send

/** A connection's sends (`sendOn`), and the same at once from inside a read callback. */
export interface Sender {
  readonly send: (frame: OutgoingFrame) => Effect.Effect<void, TransportError>
  /** Starts a send now; in order with every other only when `idle` (`SendNow`). */
  readonly sendNow: SendNow
  /** Open, with nothing on its way out: no message being handed over or waiting, nothing buffered. */
  readonly idle: () => boolean
}

/** `sendOn`, with its `sendNow` and `idle` (`Sender`). */
export const senderOn = (ws: NodeWS.WebSocket, address: string, fragmentParts = true): Sender => {
  const joined = new JoinBuffer()
  // Sends waiting for a message whose fragments are still being handed over.
  const waiting: Array<() => void> = []
  let handingOver = false
  const handedOver = () => {
    handingOver = false
    while (!handingOver && waiting.length > 0) waiting.shift()!()
  }
  const start = (frame: OutgoingFrame, done: Done) => {
    // Below a page or so, one frame is cheaper than fragments: one header, one
    // write, one parse on the other side; the copy costs next to nothing.
    let release = () => {}
    if (!(frame instanceof Uint8Array) && frame.length > 1 && (!fragmentParts || totalBytes(frame) <= joinBelowBytes)) {
      const join = joined.join(frame)
      frame = join.bytes
      release = join.release
    }
    let finished = false
    const finish: Done = (error) => {
      if (finished) return
      finished = true
      done(error)
    }
    const sent: Done = (error) => {
      release()
      finish(error)
    }
    if (!(frame instanceof Uint8Array) && frame.length > 1) {
      handingOver = true
      return sendFragments(ws, frame, sent, handedOver)
    }
    try {
      ws.send(frame instanceof Uint8Array ? frame : frame[0] ?? new Uint8Array(0), { binary: true, compress: false, fin: true }, sent)
    } catch (cause) {
      // ws throws before taking the bytes: they are ours again.
      return sent(cause)
    }
    // Nothing left queued in ws or the socket, and the write did not fail: the
    // kernel took every byte in a write that completed at once (a reply on a
    // socket that keeps up; Node counts a partial write's bytes as buffered),
    // so nothing reads them any more and the send is complete now, not after
    // a turn of the event loop when ws's callback runs. The server's
    // responder then carries on in this same run instead of being woken again
    // for it (measured with a Python client at 30 Hz: that wake-up was part
    // of the 0.10 ms, p90 0.28, the server's thread ran on after each reply
    // while the client waited for a core). A write the kernel refused leaves
    // nothing buffered either, but marks the socket errored (destroyed a tick
    // later): that send waits for ws's callback, which reports the error.
    if (ws.bufferedAmount === 0 && writeSucceeded(ws)) sent()
  }
  const send = (frame: OutgoingFrame): Effect.Effect<void, TransportError> =>
    Effect.callback<void, TransportError>((resume) => {
      const go = () => {
        if (ws.readyState !== NodeWS.WebSocket.OPEN) {
          return resume(Effect.fail(new TransportError({ reason: "Closed", address, detail: "connection is not open" })))
        }
        start(frame, (error) =>
          resume(
            error === undefined || error === null
              ? Effect.void
              : Effect.fail(sendFailure(ws, address, error))
          ))
      }
      if (!handingOver) return go()
      waiting.push(go)
      // Interrupted while it waits: never sent.
      return Effect.sync(() => {
        const at = waiting.indexOf(go)
        if (at >= 0) waiting.splice(at, 1)
      })
    })
  const idle = () =>
    ws.readyState === NodeWS.WebSocket.OPEN && !handingOver && waiting.length === 0 && ws.bufferedAmount === 0
  const sendNow: SendNow = (frame, done) =>
    start(frame, (error) => done(error === undefined || error === null ? undefined : sendFailure(ws, address, error)))
  return { send, sendNow, idle }
}
