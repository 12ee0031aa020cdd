/**
 * The local Zenoh session: our subscribers, and the remote peers we have sessions with.
 *
 * Publications go to every remote whose declared subscribers intersect the key (and to matching
 * local subscribers, as Zenoh does by default); PUSHes from any remote go to the matching local
 * subscribers. A connector session has one remote and ends with it: its subscriber streams then
 * fail with the reason. A listener outlives its remotes; their comings and goings are reported as
 * `PeerEvent`s.
 *
 * A listener serving several peers keeps them apart where it matters: a peer subscriber
 * (`declarePeerSubscriber`) gives each remote session its own bounded buffer, so a consumer that
 * is slow with one peer's samples pushes back on that peer's TCP connection only, and `put` on a
 * `PeerSamples` goes to that one session. Writes to different remotes never wait for each other
 * (each socket queues its own; see `put`).
 */
import { Cause, Deferred, Effect, Exit, Option, PubSub, Queue, Result, Scope, Stream } from "effect"
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

/**
 * The samples one remote session sent to a peer subscriber, with the means to answer that
 * session alone. Created when the first matching sample from the session arrives.
 */
export interface PeerSamples {
  readonly peer: PeerInfo
  /**
   * This session's samples, in order, with the subscriber's capacity and strategy ("suspend":
   * stops reading from this peer only). Ends when the session is closed (a CLOSE from the peer,
   * `close`, or the local session closing); fails with the reason when it is lost otherwise.
   */
  readonly samples: Stream.Stream<Sample, PeerError>
  /**
   * Publishes on `keyExpr` to this session only (when one of its subscribers matches), as
   * `Session.put` does for every session. Fails with the reason once the session is over.
   */
  readonly put: (
    keyExpr: string,
    payload: Uint8Array | ReadonlyArray<Uint8Array>,
    options?: PutOptions
  ) => Effect.Effect<void, ZenohKeyExprError | ZenohSessionClosed | PeerError>
  /** Ends this session: CLOSE (GENERIC) to the peer, then the socket is closed. */
  readonly close: Effect.Effect<void>
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
  /**
   * Declares a subscriber (to every peer, like `declareSubscriber`) whose samples are kept apart
   * per remote session: one `PeerSamples` per session that sends a matching sample, each with
   * its own buffer of `capacity` samples. Local publications do not reach it. The stream ends
   * when the scope closes.
   */
  readonly declarePeerSubscriber: (
    keyExpr: string,
    options?: SubscriberOptions
  ) => Effect.Effect<Stream.Stream<PeerSamples>, ZenohKeyExprError | ZenohSessionClosed | PeerError, Scope.Scope>
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
  /** A peer subscriber: `queue` is unused, each remote has its own. */
  readonly perPeer?: PerPeer | undefined
}

interface PerPeer {
  readonly options: { readonly capacity: number; readonly strategy: "suspend" | "sliding" | "dropping" }
  /** One `PeerSamples` per remote, as the remote's first sample arrives. */
  readonly sessions: Queue.Queue<PeerSamples, Cause.Done>
  readonly queues: Map<Remote, Queue.Queue<Sample, PeerError | Cause.Done>>
}

const DEFAULT_CAPACITY = 16

/**
 * How long a connector's failed write waits, once per session, for the session's reader to tell
 * why the session ended (`SessionState.whyEnded`). The reader gets there within a turn of the
 * event loop unless something holds it up; on a 2-core machine running the test suite beside two
 * CPU-bound programs a quarter second was not always enough (2 of some 10 loaded runs reported
 * the write's `Unavailable` instead of the server's CLOSE INVALID), so a second.
 */
const endReasonMillis = 1000

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
  /** Connector only: a failed write waited for the session's end in vain (see `whyEnded`). */
  private endReasonMissed = false
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

  /**
   * Offers without waiting where there is room; returns the waits for full "suspend" queues (and
   * for creating a peer subscriber's queue for a remote's first sample). `from`: the remote it
   * came from, undefined for a local publication.
   */
  deliver(sample: Sample, from: Remote | undefined): Effect.Effect<void> | undefined {
    const subs = this.routeLocal(sample.keyExpr)
    let wait: Array<Effect.Effect<void>> | undefined
    for (const sub of subs) {
      let queue = sub.queue
      if (sub.perPeer !== undefined) {
        if (from === undefined) continue
        const own = sub.perPeer.queues.get(from)
        if (own === undefined) {
          ;(wait ??= []).push(Effect.flatMap(this.openPeerQueue(sub.perPeer, from), (q) => Queue.offer(q, sample)))
          continue
        }
        queue = own
      }
      if (!Queue.offerUnsafe(queue, sample) && (sub.waits && Queue.isFullUnsafe(queue))) {
        ;(wait ??= []).push(Queue.offer(queue, sample))
      }
    }
    if (wait === undefined) return undefined
    return wait.length === 1 ? wait[0]! : Effect.all(wait, { discard: true })
  }

  /** A remote's queue in a peer subscriber, announced to its consumer as `PeerSamples`. */
  private openPeerQueue(perPeer: PerPeer, remote: Remote): Effect.Effect<Queue.Queue<Sample, PeerError | Cause.Done>> {
    return Effect.map(Queue.make<Sample, PeerError | Cause.Done>(perPeer.options), (queue) => {
      perPeer.queues.set(remote, queue)
      Queue.offerUnsafe(perPeer.sessions, {
        peer: remote.info,
        samples: Stream.fromQueue(queue),
        put: (keyExpr, payload, options) => this.put(keyExpr, payload, options, remote),
        close: Effect.sync(() => remote.requestClose())
      })
      return queue
    })
  }

  // --- remotes ----------------------------------------------------------------------------------

  /** Registers a remote after its handshake and announces our declarations to it. */
  attach(link: Link, negotiated: Negotiated): Remote {
    const hooks: SessionHooks = {
      maxMessageSize: this.config.maxMessageSize,
      payloadAlignment: this.config.payloadAlignment,
      receiveMemory: this.config.receiveMemory,
      keepAliveMillis: this.config.keepAliveMillis,
      subscriptions: () => [...this.subscribers.values()].map(({ id, keyExpr }) => ({ id, keyExpr })),
      deliver: (sample, from) => this.deliver(sample, from),
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
    remote.ended = error ?? new ZenohSessionClosed({ operation: "put" })
    PubSub.publishUnsafe(this.events, { _tag: "PeerDisconnected", peer: remote.info, error })
    this.signalChange()
    // A peer subscriber's stream of this remote: ends when the session was closed, else fails.
    for (const sub of this.subscribers.values()) {
      const queue = sub.perPeer?.queues.get(remote)
      if (queue === undefined) continue
      sub.perPeer!.queues.delete(remote)
      if (error === undefined || error._tag === "ZenohCloseReceived") Queue.endUnsafe(queue)
      else Queue.failCauseUnsafe(queue, Cause.fail(error))
    }
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
    for (const sub of this.subscribers.values()) endSubscriber(sub, false)
    Deferred.doneUnsafe(this.ended, Exit.fail(new ZenohSessionClosed({ operation: "closed" })))
    this.signalChange()
  }

  /**
   * Runs a remote until it ends, then detaches it. Interrupted (local close) or asked to close:
   * say CLOSE and flush. Failed: drop the link.
   */
  serve(remote: Remote): Effect.Effect<void> {
    const run = Effect.raceFirst(remote.receive, remote.watchLease).pipe(
      Effect.raceFirst(remote.keepAlive),
      Effect.raceFirst(remote.closeRequested)
    )
    return run.pipe(
      Effect.onExit((exit) => {
        const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : Option.none()
        if (error._tag === "Some") {
          this.detach(remote, error.value)
          // What is queued goes out first: a reply still being written, then an invalid
          // message's CLOSE (destroying the socket at once cut both off). A peer that stopped
          // reading holds the socket no longer than the error close timeout.
          return remote.link.close(this.config.errorCloseTimeoutMillis)
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
    return Effect.map(this.addSubscriber(keyExpr, options, false), (sub) => Stream.fromQueue(sub.queue))
  }

  declarePeerSubscriber(
    keyExpr: string,
    options?: SubscriberOptions
  ): Effect.Effect<Stream.Stream<PeerSamples>, ZenohKeyExprError | ZenohSessionClosed | PeerError, Scope.Scope> {
    return Effect.map(this.addSubscriber(keyExpr, options, true), (sub) => Stream.fromQueue(sub.perPeer!.sessions))
  }

  /** Registers a subscriber for the scope's life and declares it to every remote. */
  private addSubscriber(
    keyExpr: string,
    options: SubscriberOptions | undefined,
    perPeer: boolean
  ): Effect.Effect<LocalSubscriber, ZenohKeyExprError | ZenohSessionClosed | PeerError, Scope.Scope> {
    const self = this
    return Effect.gen(function*() {
      const key = yield* Effect.fromResult(KeyExpr.canonize(keyExpr))
      const unavailable = self.unavailable("declareSubscriber")
      if (unavailable !== undefined) return yield* Effect.fail(unavailable)
      const queueOptions = { capacity: options?.capacity ?? DEFAULT_CAPACITY, strategy: options?.strategy ?? "suspend" }
      const queue = yield* Queue.make<Sample, PeerError | Cause.Done>(perPeer ? { capacity: 1 } : queueOptions)
      const id = self.nextSubscriberId++
      const sub: LocalSubscriber = {
        id,
        keyExpr: key,
        queue,
        waits: queueOptions.strategy === "suspend",
        perPeer: perPeer
          ? { options: queueOptions, sessions: yield* Queue.unbounded<PeerSamples, Cause.Done>(), queues: new Map() }
          : undefined
      }
      return yield* Effect.acquireRelease(
        Effect.sync(() => {
          self.subscribers.set(id, sub)
          self.localRoutes.clear()
          const msg = NetworkMessage.declare(NetworkMessage.declareSubscriber(id, key))
          for (const remote of self.remotes) void remote.sendNetwork([msg])
          return sub
        }),
        () =>
          Effect.sync(() => {
            self.subscribers.delete(id)
            self.localRoutes.clear()
            endSubscriber(sub, true)
            const msg = NetworkMessage.declare(NetworkMessage.undeclareSubscriber(id))
            for (const remote of self.remotes) void remote.sendNetwork([msg])
          })
      )
    })
  }

  /**
   * Publishes to every remote whose subscribers match (or to `only`). Each remote's batches are
   * queued on its own socket when called, so a peer that reads slowly or not at all delays no
   * other peer's delivery; the Effect waits until every socket took the bytes.
   */
  put(
    keyExpr: string,
    payload: Uint8Array | ReadonlyArray<Uint8Array>,
    options?: PutOptions,
    only?: Remote
  ): Effect.Effect<void, ZenohKeyExprError | ZenohSessionClosed | PeerError> {
    return Effect.suspend((): Effect.Effect<void, ZenohKeyExprError | ZenohSessionClosed | PeerError> => {
      const canonical = KeyExpr.canonize(keyExpr)
      if (Result.isFailure(canonical)) return Effect.fail(canonical.failure)
      const key = canonical.success
      const unavailable = this.unavailable("put") ?? only?.ended
      if (unavailable !== undefined) return Effect.fail(unavailable)
      const parts: ReadonlyArray<Uint8Array> = payload instanceof Uint8Array ? [payload] : payload
      let length = 0
      for (const p of parts) length += p.length
      const extensions = options?.attachment !== undefined
        ? [Extension.zbuf(Extension.Id.Attachment, options.attachment)]
        : []
      const meta = { timestamp: undefined, encoding: options?.encoding, extensions }
      if (only !== undefined) return only.matches(key) ? only.sendPut(key, parts, length, meta) : Effect.void
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
        }, undefined)
        : undefined
      const all = flushes.length === 0
        ? Effect.void
        : flushes.length === 1
        ? flushes[0]!
        : Effect.all(flushes, { concurrency: "unbounded", discard: true })
      // A listener's put does not fail because one of several peers went away: that peer's
      // session ends and is reported on its own.
      const sent = this.mode === "connector"
        ? Effect.catchTag(all, "ZenohLinkError", (e) => this.whyEnded(e))
        : Effect.ignore(all)
      return local === undefined ? sent : Effect.andThen(sent, local)
    })
  }

  /**
   * A connector's write found its link closed or broken. The peer may have said why just before
   * (a CLOSE, say, still waiting in what was received while the socket already read the end): the
   * session's own end, once its reader gets there, is the better answer, unless that is the link
   * failing too (the write's error is then the more precise). The reader can be held up (behind a
   * subscriber nobody pulls): after `endReasonMillis` the write's error stands, and later writes
   * do not wait again.
   */
  private whyEnded(writeError: ZenohLinkError): Effect.Effect<never, PeerError | ZenohSessionClosed> {
    const told = (end: PeerError | ZenohSessionClosed) => end._tag === "ZenohLinkError" ? writeError : end
    if (this.failure !== undefined) return Effect.fail(told(this.failure))
    if (this.endReasonMissed) return Effect.fail(writeError)
    return Deferred.await(this.ended).pipe(
      Effect.mapError(told),
      Effect.timeoutOrElse({
        duration: endReasonMillis,
        orElse: () =>
          Effect.suspend(() => {
            this.endReasonMissed = true
            return Effect.fail(writeError)
          })
      })
    )
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
      declarePeerSubscriber: (keyExpr, options) => this.declarePeerSubscriber(keyExpr, options),
      put: (keyExpr, payload, options) => this.put(keyExpr, payload, options),
      peers: this.peers,
      peerEvents: Stream.fromPubSub(this.events),
      hasSubscribers: (keyExpr) => this.hasSubscribers(keyExpr),
      awaitSubscribers: (keyExpr) => this.awaitSubscribers(keyExpr)
    }
  }
}

/**
 * Ends a subscriber's stream(s) after what they buffered; `undeclared`: also releases a receiver
 * blocked offering to a full queue (nobody will take from it any more).
 */
const endSubscriber = (sub: LocalSubscriber, undeclared: boolean): void => {
  const end = (queue: Queue.Queue<any, any>) => {
    Queue.endUnsafe(queue)
    if (undeclared) Queue.shutdownUnsafe(queue)
  }
  end(sub.queue)
  if (sub.perPeer === undefined) return
  end(sub.perPeer.sessions)
  for (const queue of sub.perPeer.queues.values()) end(queue)
  sub.perPeer.queues.clear()
}
