/**
 * The Zenoh client's own session (requests and observations) on a worker
 * thread, so that it lives whatever the policy's thread does. Zenoh keeps a
 * session alive with KEEP_ALIVEs and drops a peer that stays silent for its
 * lease (10 s): a session on the policy's thread would fall silent whenever a
 * long synchronous computation (an inference of 30 s) blocks that thread, and
 * the server would drop it. From here the keep-alives go out on time, while a
 * process that is frozen or gone (both threads stop) is still dropped by its
 * lease. The Python reference keeps its session alive from native threads the
 * same way.
 *
 * This file is the worker's entry (`ZenohSession` starts it). The thread opens
 * the session, declares the reply subscriber, reports once the server's
 * request subscriber is known, publishes the frames the policy's thread posts,
 * and posts every reply back. A reply larger than a batch (64 KiB) was
 * reassembled into a buffer of its own, which is transferred, not copied;
 * smaller ones are copied out of the batch they arrived in (a view: posting
 * it would clone the whole batch, and transferring it would take the batch's
 * other messages along).
 *
 * With `recycle`, large replies are reassembled into memory from a
 * `ReceivePool` of this thread's; the policy's thread lends each one out
 * (`FrameLease`) and, once its readers are collected, moves the memory back
 * here (`recycle`, transferred) for a later reply. Without it, into fresh
 * memory the policy's thread allocates and sends ahead (`supply`, see
 * `SuppliedMemory` for why there).
 *
 * Flow control: at most `window` replies are on their way to the policy's
 * thread; the next waits for an `ack` (a reply taken). So a blocked policy
 * thread holds at most that many observations here; after them the session
 * stops reading from its socket, TCP pushes back on the server (which only
 * slows the replies to this client), and the keep-alives still go out.
 */
import { frameAlignment, ReceivePool } from "@chiral/protocol"
import {
  type PeerError,
  type PeerInfo,
  Zenoh,
  ZenohCloseReceived,
  ZenohConfigError,
  ZenohDecodeError,
  ZenohHandshakeError,
  ZenohKeyExprError,
  ZenohLeaseExpired,
  ZenohLinkError,
  ZenohReassemblyError,
  ZenohSessionClosed
} from "@chiral/zenoh"
import { Cause, Deferred, Effect, Exit, Queue, Stream } from "effect"
import { isMainThread, type MessagePort, parentPort, workerData } from "node:worker_threads"
import { SuppliedMemory } from "./SuppliedMemory.js"

export interface SessionWorkerOptions {
  readonly host: string
  readonly port: number
  /** Where requests are published (`<prefix>chiral/c2s`). */
  readonly requestKey: string
  /** Where the server's replies arrive (`<prefix>chiral/s2c`). */
  readonly replyKey: string
  /** Replies posted and not yet acknowledged, at most. */
  readonly window: number
  /** Reassemble into recycled memory, keeping at most this many free buffers here (absent: fresh memory). */
  readonly recycle?: { readonly maxFree: number } | undefined
  /** When the policy's thread stops waiting for the session to open (`Date.now()` ms). */
  readonly deadline?: number | undefined
  /** The session's Zenoh settings, durations in milliseconds. */
  readonly session: {
    readonly zid?: string | undefined
    readonly batchSize?: number | undefined
    readonly lease?: number | undefined
    readonly keepAlive?: number | undefined
    readonly handshakeTimeout?: number | undefined
    readonly maxMessageSize?: number | undefined
    readonly closeTimeout?: number | undefined
  }
}

/** What the session can tell about a server that does not answer. */
export interface Diagnosis {
  /** What looks wrong with what it sent (`Zenoh.Connection.diagnose`). */
  readonly problems: string | undefined
  /** What it subscribes to. */
  readonly subscriptions: ReadonlyArray<string>
}

/** A Zenoh error as it crosses threads (errors lose their class in a message). */
export type EncodedError = { readonly _tag: string } & Record<string, unknown>

export type ToSessionWorker =
  /** Publish one frame on the request key. */
  | { readonly t: "put"; readonly frame: Uint8Array }
  /** One reply was taken: another may be posted. */
  | { readonly t: "ack" }
  /** Close the session (the server is told) and end the thread. */
  | { readonly t: "close" }
  /** Asks what looks wrong with what the server sent (answered by `diagnosis`). */
  | { readonly t: "diagnose" }
  /** The memory of a `recyclable` reply, provably released by its readers, back for reuse (transferred). */
  | { readonly t: "recycle"; readonly buffer: ArrayBuffer }
  /** Fresh memory for a later large reply, allocated on the policy's thread (transferred; without `recycle`). */
  | { readonly t: "supply"; readonly buffer: ArrayBuffer }

export type FromSessionWorker =
  | { readonly t: "open"; readonly peer: PeerInfo }
  /** The session could not be opened. */
  | { readonly t: "failed"; readonly error: EncodedError }
  /** The server's request subscriber is known: requests published from now on reach it. */
  | { readonly t: "routed" }
  | {
    readonly t: "reply"
    readonly buffer: ArrayBuffer
    readonly offset: number
    readonly length: number
    /** The buffer is recycled memory, to be lent out and sent back (`recycle`) once released. */
    readonly recyclable?: boolean | undefined
  }
  /** The session is over: nothing more comes. */
  | { readonly t: "ended"; readonly error: EncodedError }
  | { readonly t: "diagnosis"; readonly diagnosis: Diagnosis }

/** The plain fields of a Zenoh error (its `cause`, an arbitrary value, stays behind). */
export const encodeError = (error: unknown): EncodedError => {
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string") {
    const out: Record<string, unknown> = { _tag: error._tag }
    for (const [key, value] of Object.entries(error)) {
      if (key !== "cause" && (typeof value === "string" || typeof value === "number")) out[key] = value
    }
    return out as EncodedError
  }
  return { _tag: "ZenohSessionClosed", operation: `session thread: ${String(error)}` }
}

type Decoded =
  | PeerError
  | ZenohSessionClosed
  | ZenohKeyExprError
  | ZenohConfigError
  | ZenohHandshakeError

/** The error `encodeError` encoded, as its class again. */
export const decodeError = (encoded: EncodedError): Decoded => {
  const e = encoded as Record<string, any>
  switch (e._tag) {
    case "ZenohDecodeError":
      return new ZenohDecodeError({ what: e.what, offset: e.offset, reason: e.reason })
    case "ZenohReassemblyError":
      return new ZenohReassemblyError({ reason: e.reason, size: e.size, limit: e.limit })
    case "ZenohLinkError":
      return new ZenohLinkError({ peer: e.peer, operation: e.operation, reason: e.reason, code: e.code })
    case "ZenohCloseReceived":
      return new ZenohCloseReceived({ peer: e.peer, reason: e.reason, reasonName: e.reasonName })
    case "ZenohLeaseExpired":
      return new ZenohLeaseExpired({ peer: e.peer, leaseMillis: e.leaseMillis })
    case "ZenohKeyExprError":
      return new ZenohKeyExprError({ keyExpr: e.keyExpr, reason: e.reason })
    case "ZenohConfigError":
      return new ZenohConfigError({ field: e.field, reason: e.reason })
    case "ZenohHandshakeError":
      return new ZenohHandshakeError({ role: e.role, peer: e.peer, reason: e.reason })
    default:
      return new ZenohSessionClosed({ operation: String(e.operation ?? e._tag) })
  }
}

/** A payload larger than any batch was reassembled into a buffer nobody else holds. */
export const BATCH_LIMIT = 65_535

type Post = (message: FromSessionWorker, transfer?: ReadonlyArray<ArrayBuffer>) => void

/** Posts one reply: the buffer itself when it is the reply's own, else a copy. */
const postReply = (post: Post, payload: Uint8Array, pool: ReceivePool | undefined): void => {
  if (payload.byteLength > BATCH_LIMIT && payload.buffer instanceof ArrayBuffer) {
    const buffer = payload.buffer
    const recyclable = pool?.owns(buffer) === true
    return post({ t: "reply", buffer, offset: payload.byteOffset, length: payload.byteLength, recyclable }, [buffer])
  }
  // A copy of its own (not `slice`: on a Node Buffer that is a view of the batch's memory).
  const copy = new Uint8Array(payload)
  post({ t: "reply", buffer: copy.buffer, offset: 0, length: copy.byteLength }, [copy.buffer])
}

/** Runs the session until it ends or the scope closes. */
const serve = (
  options: SessionWorkerOptions,
  outbox: Queue.Queue<Uint8Array>,
  credit: { available: number; wake: Deferred.Deferred<void> | undefined },
  diagnose: { current: () => Diagnosis },
  post: Post,
  memory: ReceivePool | SuppliedMemory
) =>
  Effect.gen(function*() {
    const pool = memory instanceof ReceivePool ? memory : undefined
    const session = yield* Zenoh.connect({
      ...options.session,
      receiveMemory: memory,
      // the caller's deadline, counted from here (this thread took time to start)
      handshakeTimeout: options.deadline === undefined
        ? options.session.handshakeTimeout
        : Math.max(1, Math.min(options.session.handshakeTimeout ?? 10_000, options.deadline - Date.now())),
      payloadAlignment: frameAlignment,
      host: options.host,
      port: options.port
    })
    const replies = yield* session.declareSubscriber(options.replyKey, { capacity: 2, strategy: "suspend" })
    diagnose.current = () => ({
      problems: Effect.runSync(session.diagnose),
      subscriptions: Effect.runSync(session.peerSubscriptions)
    })
    post({ t: "open", peer: session.peer })

    const routed = Effect.andThen(
      session.awaitSubscribers(options.requestKey),
      Effect.sync(() => post({ t: "routed" }))
    )
    // In the order posted: `put` writes to the socket before it returns its Effect.
    const publishing = Effect.forever(
      Effect.flatMap(Queue.take(outbox), (frame) => session.put(options.requestKey, frame))
    )
    const waitForCredit: Effect.Effect<void> = Effect.suspend(() => {
      if (credit.available > 0) return Effect.void
      const wake = Deferred.makeUnsafe<void>()
      credit.wake = wake
      return Effect.andThen(Deferred.await(wake), waitForCredit)
    })
    const forwarding = Stream.runForEach(replies, (sample) =>
      Effect.andThen(
        waitForCredit,
        Effect.sync(() => {
          credit.available--
          postReply(post, sample.payload, pool)
        })
      ))
    yield* Effect.raceFirst(
      Effect.all([routed, publishing, forwarding], { concurrency: "unbounded", discard: true }),
      session.closed
    )
  })

const run = (options: SessionWorkerOptions, port: MessagePort) => {
  const outbox = Effect.runSync(Queue.unbounded<Uint8Array>())
  const credit: { available: number; wake: Deferred.Deferred<void> | undefined } = {
    available: options.window,
    wake: undefined
  }
  let opened = false
  const post: Post = (message, transfer) => {
    if (message.t === "open") opened = true
    port.postMessage(message, transfer as Array<ArrayBuffer> | undefined)
  }
  const diagnose = { current: (): Diagnosis => ({ problems: undefined, subscriptions: [] }) }
  const memory = options.recycle === undefined
    ? new SuppliedMemory()
    : new ReceivePool({ maxFree: options.recycle.maxFree })
  const fiber = Effect.runFork(Effect.scoped(serve(options, outbox, credit, diagnose, post, memory)))
  port.on("message", (message: ToSessionWorker) => {
    switch (message.t) {
      case "put":
        return void Queue.offerUnsafe(outbox, message.frame)
      case "ack": {
        credit.available++
        const wake = credit.wake
        credit.wake = undefined
        if (wake !== undefined) Deferred.doneUnsafe(wake, Exit.void)
        return
      }
      case "close":
        // Closing the scope says CLOSE to the server and closes the socket.
        return void fiber.interruptUnsafe()
      case "diagnose":
        return post({ t: "diagnosis", diagnosis: diagnose.current() })
      case "recycle":
        return memory instanceof ReceivePool ? memory.put(message.buffer) : undefined
      case "supply":
        return memory instanceof SuppliedMemory ? memory.supply(message.buffer) : undefined
    }
  })
  fiber.addObserver((exit: Exit.Exit<unknown, unknown>) => {
    if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
      const error = Cause.findErrorOption(exit.cause)
      const encoded = encodeError(error._tag === "Some" ? error.value : Cause.squash(exit.cause))
      post(opened ? { t: "ended", error: encoded } : { t: "failed", error: encoded })
    }
    // Nothing keeps the thread alive any more: it ends once its socket is closed.
    port.unref()
  })
}

if (!isMainThread && parentPort !== null && (workerData as { chiralZenohSession?: SessionWorkerOptions })?.chiralZenohSession) {
  run((workerData as { chiralZenohSession: SessionWorkerOptions }).chiralZenohSession, parentPort)
}
