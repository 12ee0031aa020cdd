/**
 * The Zenoh client's session for requests and replies, as the transport's
 * `connect` uses it: publish a frame on the request key, receive the replies,
 * learn when the server's request subscriber is known. Two places it can run:
 *
 * - `openInWorker` (the default): on a worker thread (`ZenohSessionWorker`),
 *   so that its keep-alives go out however long the policy's thread is busy;
 *   a process that is frozen or gone is still dropped by its lease.
 * - `openHere`: on this thread, as a plain `Zenoh.connect` (`session: "main"`,
 *   and the fallback when the thread cannot run).
 *
 * Both end with the scope (the server is told with a CLOSE).
 */
import { collectAfter, frameAlignment, freshMessage, lending, ReceivePool, reserveHeapFor, retainFreedBuffers } from "@chiral/protocol"
import {
  type PeerError,
  Zenoh,
  type ZenohConfig,
  type ZenohConfigError,
  type ZenohHandshakeError,
  ZenohId,
  type ZenohKeyExprError,
  ZenohLinkError,
  ZenohSessionClosed
} from "@chiral/zenoh"
import { Cause, Deferred, Duration, Effect, Exit, Queue, type Scope, Stream } from "effect"
import { frameBytes, type OutgoingFrame } from "@chiral/core/Transport"
import * as SuppliedMemory from "./SuppliedMemory.js"
import * as WorkerThread from "./WorkerThread.js"
import { BATCH_LIMIT, decodeError, type Diagnosis, type FromSessionWorker, type SessionWorkerOptions, type ToSessionWorker } from "./ZenohSessionWorker.js"

/** Why a session (or one operation on it) ended. */
export type SessionEnd = PeerError | ZenohSessionClosed | ZenohKeyExprError
/** Why a session could not be opened. */
export type OpenError = ZenohConfigError | ZenohLinkError | ZenohHandshakeError

export interface ClientSession {
  /** Completes once the server's subscriber on the request key is known (publications before are lost). */
  readonly routed: Effect.Effect<void, SessionEnd>
  /** Publishes one frame on the request key. */
  readonly put: (frame: OutgoingFrame) => Effect.Effect<void, SessionEnd>
  /** The replies, in order; fails with the reason when the session ends. Consume once. */
  readonly replies: Stream.Stream<Uint8Array, SessionEnd>
  /** What the session can tell about a server that does not answer. */
  readonly diagnose: Effect.Effect<Diagnosis>
}

export interface OpenOptions {
  readonly host: string
  readonly port: number
  readonly requestKey: string
  readonly replyKey: string
  readonly session: ZenohConfig.ZenohConfig
  /**
   * When the caller stops waiting (`Date.now()` ms): the handshake's timeout is
   * cut to end by then, counted where the session is opened.
   */
  readonly deadline?: number | undefined
  /**
   * Reassemble large replies into recycled memory (a `ReceivePool` keeping at
   * most `maxFree` free buffers, on the session's thread), lending each reply
   * out (`FrameLease`). Absent: fresh memory per reply.
   */
  readonly recycle?: { readonly maxFree: number } | undefined
}

/** The handshake timeout (ms) that ends by `deadline`, if there is one. */
export const handshakeBy = (configured: number | undefined, deadline: number | undefined): number | undefined =>
  deadline === undefined ? configured : Math.max(1, Math.min(configured ?? 10_000, deadline - Date.now()))

const unknown: Diagnosis = { problems: undefined, subscriptions: [] }

/** Replies in flight between the threads, at most (what the subscriber buffered before: 2). */
const WINDOW = 2

/** Fresh memory for the replies reassembled on this thread (`freshMessage`). */
const freshHere: ZenohConfig.ReceiveMemory = { take: freshMessage, put: () => {} }

/** The session on this thread. */
export const openHere = (options: OpenOptions): Effect.Effect<ClientSession, OpenError | SessionEnd, Scope.Scope> =>
  Effect.gen(function*() {
    retainFreedBuffers()
    const pool = options.recycle === undefined ? undefined : new ReceivePool({ maxFree: options.recycle.maxFree })
    const session = yield* Zenoh.connect({
      ...options.session,
      receiveMemory: pool ?? freshHere,
      handshakeTimeout: handshakeBy(millisOf(options.session.handshakeTimeout), options.deadline),
      payloadAlignment: options.session.payloadAlignment ?? frameAlignment,
      host: options.host,
      port: options.port
    })
    const samples = yield* session.declareSubscriber(options.replyKey, { capacity: WINDOW, strategy: "suspend" })
    return {
      routed: session.awaitSubscribers(options.requestKey),
      put: (frame) => session.put(options.requestKey, frame),
      replies: Stream.map(samples, (sample) => {
        // Only a reassembled reply is in the pool's memory (a small one is a copy out of its batch).
        if (pool?.owns(sample.payload.buffer) === true) {
          lending.lend(sample.payload, pool.put, pool.collectAfter(sample.payload.buffer.byteLength))
        }
        return sample.payload
      }),
      diagnose: Effect.all({ problems: session.diagnose, subscriptions: session.peerSubscriptions })
    }
  })

const millisOf = (input: Duration.Input | undefined): number | undefined =>
  input === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(input))

/** The settings as they cross threads: durations in ms, the zid in hex. */
const workerOptions = (options: OpenOptions): SessionWorkerOptions => {
  const s = options.session
  return {
    host: options.host,
    port: options.port,
    requestKey: options.requestKey,
    replyKey: options.replyKey,
    window: WINDOW,
    deadline: options.deadline,
    recycle: options.recycle,
    session: {
      zid: s.zid === undefined || typeof s.zid === "string" ? s.zid : ZenohId.toString(s.zid),
      batchSize: s.batchSize,
      lease: millisOf(s.lease),
      keepAlive: millisOf(s.keepAlive),
      handshakeTimeout: millisOf(s.handshakeTimeout),
      maxMessageSize: s.maxMessageSize,
      closeTimeout: millisOf(s.closeTimeout)
    }
  }
}

/**
 * The session on a worker thread of its own. Undefined when the thread cannot
 * run at all (its script missing, say): the caller then opens it here. The
 * thread is asked to close with the scope, and cut short after the session's
 * close timeout and a second more.
 */
export const openInWorker = (
  options: OpenOptions
): Effect.Effect<ClientSession | undefined, OpenError | SessionEnd, Scope.Scope> =>
  Effect.gen(function*() {
    // The replies' memory comes from this thread's heap (`supply`): keep what it frees.
    retainFreedBuffers()
    const settings = workerOptions(options)
    const opened = Deferred.makeUnsafe<boolean, OpenError | SessionEnd>()
    const routed = Deferred.makeUnsafe<void, SessionEnd>()
    const replies = yield* Queue.unbounded<Uint8Array, SessionEnd | Cause.Done>()
    let ended: SessionEnd | undefined
    const end = (error: SessionEnd) => {
      ended ??= error
      Deferred.doneUnsafe(opened, Exit.fail(error))
      Deferred.doneUnsafe(routed, Exit.fail(error))
      Queue.failCauseUnsafe(replies, Cause.fail(error))
    }
    const diagnoses: Array<(diagnosis: Diagnosis) => void> = []

    const thread = yield* WorkerThread.spawn({
      name: "ZenohSessionWorker",
      workerData: { chiralZenohSession: settings },
      closeTimeoutMillis: (settings.session.closeTimeout ?? 1000) + 1000,
      onGone: (what) => {
        // Before the session opened: the thread cannot run here; after: the session is gone with it.
        Deferred.doneUnsafe(opened, Exit.succeed(false))
        end(new ZenohSessionClosed({ operation: `the Zenoh session's thread: ${what}` }))
      }
    })
    const worker = thread.worker
    /** Fresh memory for the next large reply, from this thread's heap (`SuppliedMemory`). */
    const supplyAfter = (used: number) => {
      if (thread.exited()) return
      reserveHeapFor(used)
      const buffer = SuppliedMemory.nextFor(used)
      worker.postMessage({ t: "supply", buffer } satisfies ToSessionWorker, [buffer])
    }
    /** A recyclable reply's memory, released by its readers, back to the thread's pool. */
    const sendBack = (memory: ArrayBuffer) => {
      if (!thread.exited()) worker.postMessage({ t: "recycle", buffer: memory } satisfies ToSessionWorker, [memory])
    }
    worker.on("message", (message: FromSessionWorker) => {
      switch (message.t) {
        case "open":
          return void Deferred.doneUnsafe(opened, Exit.succeed(true))
        case "failed":
          return void Deferred.doneUnsafe(opened, Exit.fail(decodeError(message.error) as OpenError | SessionEnd))
        case "routed":
          return void Deferred.doneUnsafe(routed, Exit.void)
        case "reply": {
          const frame = new Uint8Array(message.buffer, message.offset, message.length)
          if (message.recyclable === true && options.recycle !== undefined) {
            lending.lend(frame, sendBack, collectAfter(options.recycle.maxFree, message.buffer.byteLength))
          } else if (options.recycle === undefined && message.buffer.byteLength > BATCH_LIMIT) {
            supplyAfter(message.offset + message.length)
          }
          return void Queue.offerUnsafe(replies, frame)
        }
        case "ended":
          return end(decodeError(message.error) as SessionEnd)
        case "diagnosis":
          return diagnoses.shift()?.(message.diagnosis)
      }
    })

    // The thread's start (loading its modules) plus the handshake, bounded.
    const openMillis = (settings.session.handshakeTimeout ?? 10_000) + 10_000
    const usable = yield* Deferred.await(opened).pipe(
      Effect.timeoutOrElse({
        duration: openMillis,
        orElse: () =>
          Effect.fail(
            new ZenohLinkError({
              peer: `${options.host}:${options.port}`,
              operation: "connect",
              reason: `the session's thread did not open it within ${openMillis} ms`
            })
          )
      })
    )
    if (!usable) return undefined
    const post = (message: ToSessionWorker) => worker.postMessage(message)
    return {
      routed: Deferred.await(routed),
      put: (frame) =>
        Effect.suspend(() => {
          if (ended !== undefined) return Effect.fail(ended)
          post({ t: "put", frame: frameBytes(frame) })
          return Effect.void
        }),
      // Each reply taken lets the thread post another.
      replies: Stream.fromEffectRepeat(Effect.tap(Queue.take(replies), () => Effect.sync(() => post({ t: "ack" })))),
      diagnose: Effect.callback<Diagnosis>((resume) => {
        if (thread.exited()) return resume(Effect.succeed(unknown))
        diagnoses.push((diagnosis) => resume(Effect.succeed(diagnosis)))
        post({ t: "diagnose" })
      }).pipe(Effect.timeoutOrElse({ duration: 1000, orElse: () => Effect.succeed(unknown) }))
    } satisfies ClientSession
  })
