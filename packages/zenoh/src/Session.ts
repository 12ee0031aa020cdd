/**
 * The local Zenoh session: our subscribers, and the remote peers we have sessions with.
 *
 * Publications go to every remote whose declared subscribers intersect the key (and to matching
 * local subscribers, as Zenoh does by default); PUSHes from any remote go to the matching local
 * subscribers. A connector session has one remote and ends with it: its subscriber streams then
 * fail with the reason. A listener outlives its remotes; their comings and goings are reported as
 * `PeerEvent`s.
 */
import { Cause, Deferred, Effect, Exit, PubSub, Queue, Result, Scope, Stream } from "effect"
import type { Negotiated } from "./Handshake.js"
import * as KeyExpr from "./KeyExpr.js"
import type { Link } from "./Link.js"
import * as NetworkMessage from "./NetworkMessage.js"
import { type PeerInfo, Remote, type Sample, type SessionHooks } from "./Remote.js"
import * as TransportMessage from "./TransportMessage.js"
import type * as ZenohBody from "./ZenohBody.js"
import type { Resolved } from "./ZenohConfig.js"
import * as Batch from "./Batch.js"
import * as Extension from "./Extension.js"
import {
  type PeerError,
  type ZenohHandshakeError,
  type ZenohKeyExprError,
  type ZenohLinkError,
  ZenohSessionClosed
} from "./ZenohError.js"
import * as ZenohId from "./ZenohId.js"

export type { PeerInfo, Sample }

export type PeerEvent =
  | { readonly _tag: "PeerConnected"; readonly peer: PeerInfo }
  /** `error` is undefined when we closed the session ourselves. */
  | { readonly _tag: "PeerDisconnected"; readonly peer: PeerInfo; readonly error: PeerError | undefined }
  /** A connection that never became a session (listener side). */
  | {
    readonly _tag: "HandshakeFailed"
    readonly address: string
    readonly error: ZenohHandshakeError | ZenohLinkError
  }

export interface SubscriberOptions {
  /** Samples buffered for a slow consumer. Default 16 (large samples: mind the memory). */
  readonly capacity?: number | undefined
  /**
   * When the buffer is full: "suspend" (default) stops reading from the sending peer (TCP pushes
   * back), "sliding" drops the oldest sample, "dropping" drops the new one.
   */
  readonly strategy?: "suspend" | "sliding" | "dropping" | undefined
}

export interface PutOptions {
  readonly encoding?: ZenohBody.Encoding | undefined
  readonly attachment?: Uint8Array | undefined
}

export interface Session {
  /** Our Zenoh id (hex). */
  readonly zid: string
  /**
   * Declares a subscriber for as long as the scope lives and returns its samples. The stream
   * fails with the peer's error when a connector session loses its peer, and ends when the
   * session is closed.
   */
  readonly declareSubscriber: (
    keyExpr: string,
    options?: SubscriberOptions
  ) => Effect.Effect<Stream.Stream<Sample, PeerError>, ZenohKeyExprError | ZenohSessionClosed | PeerError, Scope.Scope>
  /**
   * Publishes `payload` (one buffer or several parts, sent without copying) on `keyExpr` to
   * every peer subscribed to it. Completes when the bytes were handed to the kernel, so the
   * caller may then reuse the buffers.
   */
  readonly put: (
    keyExpr: string,
    payload: Uint8Array | ReadonlyArray<Uint8Array>,
    options?: PutOptions
  ) => Effect.Effect<void, ZenohKeyExprError | ZenohSessionClosed | PeerError>
  /** The peers we currently have a session with. */
  readonly peers: Effect.Effect<ReadonlyArray<PeerInfo>>
  /** Peers connecting and leaving, from the moment the stream starts. */
  readonly peerEvents: Stream.Stream<PeerEvent>
  /** Does some remote subscriber intersect `keyExpr` right now? */
  readonly hasSubscribers: (keyExpr: string) => Effect.Effect<boolean, ZenohKeyExprError>
  /** Waits until some remote subscriber intersects `keyExpr` (publications before are lost). */
  readonly awaitSubscribers: (keyExpr: string) => Effect.Effect<void, ZenohKeyExprError | ZenohSessionClosed | PeerError>
}

interface LocalSubscriber {
  readonly id: number
  readonly keyExpr: string
  readonly queue: Queue.Queue<Sample, PeerError | Cause.Done>
  /** Waits for room when full (the others drop without waiting). */
  readonly waits: boolean
}

const DEFAULT_CAPACITY = 16

/**
 * Mutable heart of a session. Only touched from fibers of one runtime (single-threaded), so plain
 * fields suffice; every method that changes what peers see also sends it.
 */
export class SessionState {
  readonly config: Resolved
  readonly mode: "listener" | "connector"
  readonly zid: string
  readonly events: PubSub.PubSub<PeerEvent>
  private readonly subscribers = new Map<number, LocalSubscriber>()
  private nextSubscriberId = 1
  private readonly localRoutes = new Map<string, ReadonlyArray<LocalSubscriber>>()
  readonly remotes = new Set<Remote>()
  /** Set once closed locally. */
  private closed = false
  /** Connector only: why the single remote ended. */
  failure: PeerError | undefined
  readonly ended: Deferred.Deferred<never, PeerError | ZenohSessionClosed>
  private changed: Deferred.Deferred<void>

  constructor(config: Resolved, mode: SessionState["mode"], events: PubSub.PubSub<PeerEvent>) {
    this.config = config
    this.mode = mode
    this.zid = ZenohId.toString(config.zid)
    this.events = events
    this.ended = Deferred.makeUnsafe()
    this.changed = Deferred.makeUnsafe()
  }

  private unavailable(operation: string): ZenohSessionClosed | PeerError | undefined {
    if (this.failure !== undefined) return this.failure
    if (this.closed) return new ZenohSessionClosed({ operation })
    return undefined
  }

  private signalChange(): void {
    const previous = this.changed
    this.changed = Deferred.makeUnsafe()
    Deferred.doneUnsafe(previous, Exit.void)
  }

  private routeLocal(keyExpr: string): ReadonlyArray<LocalSubscriber> {
    let subs = this.localRoutes.get(keyExpr)
    if (subs === undefined) {
      subs = [...this.subscribers.values()].filter((s) => KeyExpr.intersects(s.keyExpr, keyExpr))
      if (this.localRoutes.size >= 1024) this.localRoutes.clear()
      this.localRoutes.set(keyExpr, subs)
    }
    return subs
  }

  /** Offers without waiting where there is room; returns the waits for full "suspend" queues. */
  deliver(sample: Sample): Effect.Effect<void> | undefined {
    const subs = this.routeLocal(sample.keyExpr)
    let full: Array<LocalSubscriber> | undefined
    for (const sub of subs) {
      if (!Queue.offerUnsafe(sub.queue, sample) && sub.waits && Queue.isFullUnsafe(sub.queue)) (full ??= []).push(sub)
    }
    if (full === undefined) return undefined
    return Effect.forEach(full, (sub) => Queue.offer(sub.queue, sample), { discard: true })
  }

  // --- remotes ----------------------------------------------------------------------------------

  /** Registers a remote after its handshake and announces our declarations to it. */
  attach(link: Link, negotiated: Negotiated): Remote {
    const hooks: SessionHooks = {
      maxMessageSize: this.config.maxMessageSize,
      payloadAlignment: this.config.payloadAlignment,
      keepAliveMillis: this.config.keepAliveMillis,
      subscriptions: () => [...this.subscribers.values()].map(({ id, keyExpr }) => ({ id, keyExpr })),
      deliver: (sample) => this.deliver(sample),
      remoteSubscriptionsChanged: () => this.signalChange()
    }
    const remote = new Remote(link, negotiated, hooks)
    this.remotes.add(remote)
    remote.announce()
    PubSub.publishUnsafe(this.events, { _tag: "PeerConnected", peer: remote.info })
    return remote
  }

  detach(remote: Remote, error: PeerError | undefined): void {
    if (!this.remotes.delete(remote)) return
    PubSub.publishUnsafe(this.events, { _tag: "PeerDisconnected", peer: remote.info, error })
    this.signalChange()
    if (this.mode === "connector" && error !== undefined && !this.closed) {
      this.failure = error
      for (const sub of this.subscribers.values()) Queue.failCauseUnsafe(sub.queue, Cause.fail(error))
      Deferred.doneUnsafe(this.ended, Exit.fail(error))
    }
  }

  /** Local close: streams end (after what they buffered), later calls fail. */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const sub of this.subscribers.values()) Queue.endUnsafe(sub.queue)
    Deferred.doneUnsafe(this.ended, Exit.fail(new ZenohSessionClosed({ operation: "closed" })))
    this.signalChange()
  }

  /**
   * Runs a remote until it ends, then detaches it. Interrupted (local close): say CLOSE and
   * flush. Failed: drop the link.
   */
  serve(remote: Remote): Effect.Effect<void> {
    const run = Effect.raceFirst(remote.receive, remote.watchLease).pipe(
      Effect.raceFirst(remote.keepAlive)
    )
    return run.pipe(
      Effect.onExit((exit) => {
        if (Exit.isSuccess(exit)) return Effect.void
        const error = Cause.findErrorOption(exit.cause)
        if (error._tag === "Some") {
          this.detach(remote, error.value)
          return Effect.sync(() => remote.link.destroy())
        }
        this.detach(remote, undefined)
        remote.sendClose(TransportMessage.CloseReason.Generic)
        return remote.link.close(this.config.closeTimeoutMillis)
      }),
      Effect.catchCause(() => Effect.void)
    )
  }

  // --- the public operations -------------------------------------------------------------------

  declareSubscriber(
    keyExpr: string,
    options?: SubscriberOptions
  ): Effect.Effect<Stream.Stream<Sample, PeerError>, ZenohKeyExprError | ZenohSessionClosed | PeerError, Scope.Scope> {
    const self = this
    return Effect.gen(function*() {
      const key = yield* Effect.fromResult(KeyExpr.canonize(keyExpr))
      const unavailable = self.unavailable("declareSubscriber")
      if (unavailable !== undefined) return yield* Effect.fail(unavailable)
      const strategy = options?.strategy ?? "suspend"
      const queue = yield* Queue.make<Sample, PeerError | Cause.Done>({
        capacity: options?.capacity ?? DEFAULT_CAPACITY,
        strategy
      })
      const id = self.nextSubscriberId++
      const sub: LocalSubscriber = { id, keyExpr: key, queue, waits: strategy === "suspend" }
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          self.subscribers.set(id, sub)
          self.localRoutes.clear()
          const msg = NetworkMessage.declare(NetworkMessage.declareSubscriber(id, key))
          for (const remote of self.remotes) void remote.sendNetwork([msg])
        }),
        () =>
          Effect.sync(() => {
            self.subscribers.delete(id)
            self.localRoutes.clear()
            // End the stream, and release a receiver blocked offering to this full queue.
            Queue.endUnsafe(queue)
            Queue.shutdownUnsafe(queue)
            const msg = NetworkMessage.declare(NetworkMessage.undeclareSubscriber(id))
            for (const remote of self.remotes) void remote.sendNetwork([msg])
          })
      )
      return Stream.fromQueue(queue)
    })
  }

  put(
    keyExpr: string,
    payload: Uint8Array | ReadonlyArray<Uint8Array>,
    options?: PutOptions
  ): Effect.Effect<void, ZenohKeyExprError | ZenohSessionClosed | PeerError> {
    return Effect.suspend((): Effect.Effect<void, ZenohKeyExprError | ZenohSessionClosed | PeerError> => {
      const canonical = KeyExpr.canonize(keyExpr)
      if (Result.isFailure(canonical)) return Effect.fail(canonical.failure)
      const key = canonical.success
      const unavailable = this.unavailable("put")
      if (unavailable !== undefined) return Effect.fail(unavailable)
      const parts: ReadonlyArray<Uint8Array> = payload instanceof Uint8Array ? [payload] : payload
      let length = 0
      for (const p of parts) length += p.length
      const extensions = options?.attachment !== undefined
        ? [Extension.zbuf(Extension.Id.Attachment, options.attachment)]
        : []
      const meta = { timestamp: undefined, encoding: options?.encoding, extensions }
      const flushes: Array<Effect.Effect<void, PeerError>> = []
      for (const remote of this.remotes) {
        if (remote.matches(key)) flushes.push(remote.sendPut(key, parts, length, meta))
      }
      const local = this.routeLocal(key).length > 0
        ? this.deliver({
          keyExpr: key,
          payload: Batch.concat(parts),
          kind: "put",
          encoding: options?.encoding,
          timestamp: undefined,
          attachment: options?.attachment,
          source: undefined
        })
        : undefined
      const all = flushes.length === 0
        ? Effect.void
        : flushes.length === 1
        ? flushes[0]!
        : Effect.all(flushes, { concurrency: "unbounded", discard: true })
      // A listener's put does not fail because one of several peers went away: that peer's
      // session ends and is reported on its own.
      const sent = this.mode === "connector" ? all : Effect.ignore(all)
      return local === undefined ? sent : Effect.andThen(sent, local)
    })
  }

  hasSubscribers(keyExpr: string): Effect.Effect<boolean, ZenohKeyExprError> {
    return Effect.map(Effect.fromResult(KeyExpr.canonize(keyExpr)), (key) => {
      for (const remote of this.remotes) if (remote.matches(key)) return true
      return false
    })
  }

  awaitSubscribers(keyExpr: string): Effect.Effect<void, ZenohKeyExprError | ZenohSessionClosed | PeerError> {
    const self = this
    return Effect.gen(function*() {
      const key = yield* Effect.fromResult(KeyExpr.canonize(keyExpr))
      for (;;) {
        const unavailable = self.unavailable("awaitSubscribers")
        if (unavailable !== undefined) return yield* Effect.fail(unavailable)
        for (const remote of self.remotes) if (remote.matches(key)) return
        yield* Deferred.await(self.changed)
      }
    })
  }

  get peers(): Effect.Effect<ReadonlyArray<PeerInfo>> {
    return Effect.sync(() => [...this.remotes].map((r) => r.info))
  }

  toSession(): Session {
    return {
      zid: this.zid,
      declareSubscriber: (keyExpr, options) => this.declareSubscriber(keyExpr, options),
      put: (keyExpr, payload, options) => this.put(keyExpr, payload, options),
      peers: this.peers,
      peerEvents: Stream.fromPubSub(this.events),
      hasSubscribers: (keyExpr) => this.hasSubscribers(keyExpr),
      awaitSubscribers: (keyExpr) => this.awaitSubscribers(keyExpr)
    }
  }
}


