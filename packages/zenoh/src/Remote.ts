/**
 * One open session with a remote peer, after the handshake: what it declared, our SN counters,
 * its reassembly buffers, and the receive / keep-alive / lease loops.
 *
 * Sending is synchronous (SN allocation and socket write in one step) so that concurrent senders
 * never interleave SNs or split a fragmented message. Receiving runs in one fiber that decodes
 * batch after batch and hands samples to the session, waiting when a subscriber is full (TCP then
 * pushes back on the sender).
 */
import { Deferred, Effect, Exit } from "effect"
import * as Batch from "./Batch.js"
import * as Fragmenter from "./Fragmenter.js"
import type { Negotiated } from "./Handshake.js"
import * as KeyExpr from "./KeyExpr.js"
import type { Link } from "./Link.js"
import * as NetworkMessage from "./NetworkMessage.js"
import { copyOut } from "./ReadMemory.js"
import * as TransportMessage from "./TransportMessage.js"
import { ZReader, ZWriter } from "./ZBuf.js"
import type * as ZenohBody from "./ZenohBody.js"
import type { ReceiveMemory } from "./ZenohConfig.js"
import {
  type PeerError,
  ZenohCloseReceived,
  ZenohDecodeError,
  ZenohLeaseExpired,
  type ZenohLinkError,
  ZenohReassemblyError,
  type ZenohSessionClosed
} from "./ZenohError.js"
import * as ZenohId from "./ZenohId.js"
import * as Zint from "./Zint.js"

/** A sample received from a peer (or published locally) for a subscriber. */
export interface Sample {
  readonly keyExpr: string
  readonly payload: Uint8Array
  readonly kind: "put" | "delete"
  readonly encoding: ZenohBody.Encoding | undefined
  readonly timestamp: ZenohBody.Timestamp | undefined
  /** PUT attachment extension, when the publisher set one. */
  readonly attachment: Uint8Array | undefined
  /** Zenoh id of the peer it came from; undefined for a local publication. */
  readonly source: string | undefined
}

/** What a remote peer is, as seen by the application. */
export interface PeerInfo {
  readonly zid: string
  readonly address: string
  readonly whatami: "router" | "peer" | "client"
  /** Our side of the handshake. */
  readonly role: "listener" | "connector"
  readonly batchSize: number
  readonly leaseMillis: number
}

/** What a remote needs from the local session. */
export interface SessionHooks {
  readonly maxMessageSize: number
  /** See `ZenohConfig.payloadAlignment`. */
  readonly payloadAlignment?: ((payloadHead: Uint8Array) => number) | undefined
  /** See `ZenohConfig.receiveMemory`. */
  readonly receiveMemory?: ReceiveMemory | undefined
  readonly keepAliveMillis: number
  /** Local subscriptions to announce: id and canonical key. */
  readonly subscriptions: () => Iterable<{ readonly id: number; readonly keyExpr: string }>
  /** Hands a sample from `from` to matching local subscribers; an Effect when it has to wait for room. */
  readonly deliver: (sample: Sample, from: Remote) => Effect.Effect<void> | undefined
  /** The remote's set of subscriptions changed. */
  readonly remoteSubscriptionsChanged: () => void
}

/**
 * Bytes to leave before a reassembled message so that its PUT payload starts where `alignment`
 * wants it (modulo 8); 0 when the first piece does not show a PUT's payload.
 */
const leadFor = (alignment: (payloadHead: Uint8Array) => number) => (firstPiece: Uint8Array): number => {
  const layout = NetworkMessage.pushLayout(firstPiece)
  if (layout === undefined) return 0
  const wanted = alignment(firstPiece.subarray(layout.payloadAt))
  return (((wanted - layout.payloadAt) % 8) + 8) % 8
}

const whatamiName = (w: number): PeerInfo["whatami"] => (w === 0 ? "router" : w === 2 ? "client" : "peer")

const ATTACHMENT = 0x43

export class Remote {
  readonly link: Link
  readonly negotiated: Negotiated
  readonly info: PeerInfo
  private readonly hooks: SessionHooks
  private readonly maxBody: number

  // --- what the remote declared ---
  private readonly remoteKeyExprs = new Map<number, string>()
  private readonly subscribers = new Map<number, string>()
  private readonly routeCache = new Map<string, boolean>()

  // --- transmit state ---
  private txSn: number
  private sentSinceTick = false

  // --- receive state ---
  private readonly reliable: Fragmenter.Reassembler
  private readonly bestEffort: Fragmenter.Reassembler
  private receivedSinceCheck = false
  private delivering = false
  /** Messages dropped because they made no sense (undeclared scopes, invalid keys), and the last reason. */
  private unusable = 0
  private lastUnusable: string | undefined
  /** The D_FINAL answering the implicit interest 0 (the remote's initial declarations) arrived. */
  private declarationsComplete = false

  // --- life ---
  /** Why the session is over, once the session has detached it. */
  ended: PeerError | ZenohSessionClosed | undefined = undefined
  private readonly closing = Deferred.makeUnsafe<void>()

  constructor(link: Link, negotiated: Negotiated, hooks: SessionHooks) {
    this.link = link
    this.negotiated = negotiated
    this.hooks = hooks
    this.maxBody = Batch.maxBody(negotiated.batchSize)
    this.txSn = negotiated.localInitialSn
    const reassembler = () =>
      new Fragmenter.Reassembler({
        limit: hooks.maxMessageSize,
        markers: negotiated.patch >= 1,
        snModulus: negotiated.snModulus,
        sizeHint: NetworkMessage.pushSizeHint,
        lead: hooks.payloadAlignment === undefined ? undefined : leadFor(hooks.payloadAlignment),
        memory: hooks.receiveMemory
      })
    this.reliable = reassembler()
    this.bestEffort = reassembler()
    this.info = {
      zid: ZenohId.toString(negotiated.remoteZid),
      address: link.peer,
      whatami: whatamiName(negotiated.remoteWhatami),
      role: negotiated.role,
      batchSize: negotiated.batchSize,
      leaseMillis: negotiated.remoteLeaseMillis
    }
  }

  /** Asks the session serving this remote to close it (CLOSE, then the socket). */
  requestClose(): void {
    Deferred.doneUnsafe(this.closing, Exit.void)
  }

  /** Completes once `requestClose` was called. */
  get closeRequested(): Effect.Effect<void> {
    return Deferred.await(this.closing)
  }

  /**
   * What looks wrong with what this remote sent, for a session that does not work: messages that
   * made no sense, a batch that never completes, initial declarations that never ended. Undefined
   * when nothing does.
   */
  diagnose(): string | undefined {
    const problems: Array<string> = []
    if (this.unusable > 0) {
      problems.push(`${this.unusable} message(s) from it could not be used (last: ${this.lastUnusable})`)
    }
    const incomplete = this.link.incomplete()
    if (incomplete !== undefined) {
      problems.push(`a batch announcing ${incomplete.announced} bytes is incomplete (${incomplete.received} arrived)`)
    }
    if (!this.declarationsComplete) problems.push("its initial declarations never ended (no D_FINAL)")
    return problems.length === 0 ? undefined : problems.join("; ")
  }

  /** The key expressions the remote subscribes to (canonical, in declaration order). */
  subscriptions(): ReadonlyArray<string> {
    return [...new Set(this.subscribers.values())]
  }

  /** Does any subscription the remote declared intersect `keyExpr`? (cached per key) */
  matches(keyExpr: string): boolean {
    const cached = this.routeCache.get(keyExpr)
    if (cached !== undefined) return cached
    let result = false
    for (const sub of this.subscribers.values()) {
      if (KeyExpr.intersects(sub, keyExpr)) {
        result = true
        break
      }
    }
    if (this.routeCache.size >= 1024) this.routeCache.clear()
    this.routeCache.set(keyExpr, result)
    return result
  }

  // --- sending ------------------------------------------------------------------------------------

  private nextSn(): number {
    const sn = this.txSn
    this.txSn = (sn + 1) % this.negotiated.snModulus
    return sn
  }

  /**
   * Sends network messages in reliable FRAMEs, packing as many per batch as fit (one FRAME per
   * batch, as the last message: pico reads a FRAME to the end of its batch). A message larger
   * than a batch travels as FRAGMENTs.
   */
  sendNetwork(messages: ReadonlyArray<NetworkMessage.NetworkMessage>): Effect.Effect<void, ZenohLinkError> {
    const chunks: Array<Uint8Array> = []
    let batch: ZWriter | undefined
    let count = 0
    const flush = () => {
      if (batch === undefined) return
      const bytes = batch.finish()
      Batch.writePrefix(bytes, 0, bytes.length - Batch.PREFIX_LENGTH)
      chunks.push(bytes)
      batch = undefined
      count = 0
    }
    for (const msg of messages) {
      const m = new ZWriter(64)
      NetworkMessage.encode(m, msg)
      const bytes = m.finish()
      const frameHeader = 1 + Zint.lengthOf(this.txSn)
      if (frameHeader + bytes.length > this.maxBody) {
        flush()
        chunks.push(...this.fragments([bytes]))
        continue
      }
      if (batch !== undefined && batch.pos - Batch.PREFIX_LENGTH + bytes.length > this.maxBody) flush()
      if (batch === undefined) {
        batch = new ZWriter(Math.min(this.maxBody + Batch.PREFIX_LENGTH, 256))
        batch.u16le(0)
        TransportMessage.encodeFrameHeader(batch, true, this.nextSn())
      }
      batch.bytes(bytes)
      count++
    }
    if (count > 0) flush()
    return this.write(chunks)
  }

  /** FRAGMENT batches for one message, consuming SNs. */
  private fragments(parts: ReadonlyArray<Uint8Array>): Array<Uint8Array> {
    const out = Fragmenter.fragment(parts, {
      batchSize: this.negotiated.batchSize,
      reliable: true,
      firstSn: this.txSn,
      snModulus: this.negotiated.snModulus
    })
    this.txSn = out.nextSn
    return out.chunks
  }

  /**
   * Publishes a PUT: the payload parts go to the socket as views (never copied), in one FRAME
   * when they fit a batch, else as FRAGMENTs. Queued on the link when called (`Link.send`); the
   * Effect awaits the flush.
   */
  sendPut(
    keyExpr: string,
    parts: ReadonlyArray<Uint8Array>,
    payloadLength: number,
    put: ZenohBody.PutMeta
  ): Effect.Effect<void, ZenohLinkError> {
    // The PUSH prefix is written after room for the batch length and FRAME header, so that a
    // message fitting one batch goes out as [head, ...parts] with no further copy.
    const frameHeader = 1 + Zint.lengthOf(this.txSn)
    const reserved = Batch.PREFIX_LENGTH + frameHeader
    const w = new ZWriter(reserved + 16 + keyExpr.length * 3)
    w.pos = reserved
    NetworkMessage.encodePushPutPrefix(w, NetworkMessage.push(keyExpr, { ...put, _tag: "Put", payload: EMPTY }), payloadLength)
    const head = w.finish()
    const pushLength = head.length - reserved + payloadLength
    if (frameHeader + pushLength <= this.maxBody) {
      Batch.writePrefix(head, 0, frameHeader + pushLength)
      head[Batch.PREFIX_LENGTH] = TransportMessage.Id.Frame | FLAG_RELIABLE
      Zint.writeInto(head, Batch.PREFIX_LENGTH + 1, this.nextSn())
      return this.write([head, ...parts])
    }
    return this.write(this.fragments([head.subarray(reserved), ...parts]))
  }

  sendKeepAlive(): void {
    void this.write([KEEP_ALIVE])
  }

  sendClose(reason: number): void {
    const w = new ZWriter(8)
    TransportMessage.encode(w, TransportMessage.close(reason, true))
    void this.write([Batch.encode(w.finish())])
  }

  private write(chunks: ReadonlyArray<Uint8Array>): Effect.Effect<void, ZenohLinkError> {
    if (chunks.length === 0) return Effect.void
    this.sentSinceTick = true
    return this.link.send(chunks)
  }

  /** Our current declarations as answers to interest `interestId`, then D_FINAL. */
  private currentDeclarations(interestId: number, restrict?: string): Array<NetworkMessage.NetworkMessage> {
    const out: Array<NetworkMessage.NetworkMessage> = []
    for (const sub of this.hooks.subscriptions()) {
      if (restrict !== undefined && !KeyExpr.intersects(restrict, sub.keyExpr)) continue
      out.push(NetworkMessage.declare(NetworkMessage.declareSubscriber(sub.id, sub.keyExpr), interestId))
    }
    out.push(NetworkMessage.declare(NetworkMessage.declareFinal, interestId))
    return out
  }

  /**
   * Right after OPEN, in both roles: our declarations as answers to the implicit interest 0,
   * then D_FINAL(0) (a Rust peer waits for it before its open() returns).
   */
  announce(): void {
    void this.sendNetwork(this.currentDeclarations(0))
  }

  // --- receiving ----------------------------------------------------------------------------------

  /** Receives until the link fails, the peer closes, or a batch does not decode. Never succeeds. */
  readonly receive: Effect.Effect<never, PeerError> = Effect.suspend(() => {
    const self = this
    return Effect.gen(function*() {
      for (const msg of self.negotiated.leftover) {
        const wait = self.handleTransport(msg)
        if (wait !== undefined) yield* wait
      }
      for (;;) {
        const lease = yield* self.link.readLease
        self.receivedSinceCheck = true
        // A FRAGMENT batch: the reassembler copies its payload from the read memory at once, so
        // the only copy is into the reassembly buffer and the read memory is free right after.
        const fragment = splitFragment(lease.parts)
        if (fragment !== undefined) {
          let wait: ReturnType<typeof self.handleTransport>
          try {
            wait = self.handleTransport(fragment)
          } finally {
            // also when handling threw: the block goes back to the link either way
            lease.release()
          }
          if (wait !== undefined) yield* wait
          continue
        }
        // Anything else (frames of requests, actions, declarations: small) is decoded into views
        // that samples keep, so it is copied out of memory the link reuses.
        const body = copyOut(lease)
        let messages: Array<TransportMessage.TransportMessage>
        try {
          messages = TransportMessage.decodeBatch(body)
        } catch (error) {
          if (error instanceof ZenohDecodeError) return yield* self.invalid(error)
          throw error
        }
        for (const msg of messages) {
          const wait = self.handleTransport(msg)
          if (wait !== undefined) yield* wait
        }
      }
    })
  })

  /** Fails when nothing arrived for the remote's lease (checked every quarter lease). */
  readonly watchLease: Effect.Effect<never, ZenohLeaseExpired> = Effect.suspend(() => {
    const self = this
    const lease = this.negotiated.remoteLeaseMillis
    return Effect.gen(function*() {
      let quiet = 0
      for (;;) {
        yield* Effect.sleep(lease / 4)
        if (self.receivedSinceCheck || self.delivering) {
          self.receivedSinceCheck = false
          quiet = 0
        } else if (++quiet >= 4) {
          return yield* Effect.fail(new ZenohLeaseExpired({ peer: self.info.address, leaseMillis: lease }))
        }
      }
    })
  })

  /** Sends KEEP_ALIVE whenever nothing was sent during the last interval. */
  readonly keepAlive: Effect.Effect<never> = Effect.suspend(() => {
    const self = this
    // The remote may expire us on the shorter of both leases (pico does). A remote that announces
    // a lease of (nearly) nothing does not get a loop that never sleeps: at most 100 a second.
    const interval = Math.max(10, Math.min(this.hooks.keepAliveMillis, this.negotiated.remoteLeaseMillis / 4))
    return Effect.gen(function*() {
      for (;;) {
        yield* Effect.sleep(interval)
        if (!self.sentSinceTick) self.sendKeepAlive()
        self.sentSinceTick = false
      }
    })
  })

  /** Drops a message that makes no sense (as Zenoh peers do), logs it and counts it for `diagnose`. */
  private dropUnusable(reason: string): Effect.Effect<void> {
    this.unusable++
    this.lastUnusable = reason
    return Effect.logWarning(`zenoh: ${reason}, from ${this.info.address}; dropped`)
  }

  private invalid<E extends PeerError>(error: E): Effect.Effect<never, E> {
    this.sendClose(TransportMessage.CloseReason.Invalid)
    return Effect.fail(error)
  }

  private handleTransport(
    msg: TransportMessage.TransportMessage | SplitFragment
  ): Effect.Effect<void, PeerError> | undefined {
    switch (msg._tag) {
      case "Frame": {
        // SNs are not checked: TCP neither reorders nor duplicates, and pico numbers some
        // messages from the other channel's counter (see ZENOH.md §8.9).
        return this.handleMessages(msg.messages, 0)
      }
      case "Fragment": {
        const reassembler = msg.reliable ? this.reliable : this.bestEffort
        let whole: Uint8Array | undefined
        try {
          whole = reassembler.push(msg)
        } catch (error) {
          if (error instanceof ZenohReassemblyError) return this.invalid(error)
          throw error
        }
        if (whole === undefined) return undefined
        let m: NetworkMessage.NetworkMessage
        try {
          m = NetworkMessage.decode(new ZReader(whole))
        } catch (error) {
          if (error instanceof ZenohDecodeError) return this.invalid(error)
          throw error
        }
        return this.handleNetwork(m)
      }
      case "KeepAlive":
        return undefined
      case "Close":
        this.link.destroy()
        return Effect.fail(
          new ZenohCloseReceived({
            peer: this.info.address,
            reason: msg.reason,
            reasonName: TransportMessage.closeReasonName(msg.reason)
          })
        )
      case "Init":
      case "Open":
      case "Oam":
        // Not expected on an open session; peers ignore them too.
        return undefined
    }
  }

  /** Handles messages in order; once one has to wait, the rest run after it. */
  private handleMessages(
    messages: ReadonlyArray<NetworkMessage.NetworkMessage>,
    from: number
  ): Effect.Effect<void> | undefined {
    for (let i = from; i < messages.length; i++) {
      const wait = this.handleNetwork(messages[i]!)
      if (wait !== undefined) {
        return i + 1 < messages.length
          ? Effect.andThen(wait, Effect.suspend(() => this.handleMessages(messages, i + 1) ?? Effect.void))
          : wait
      }
    }
    return undefined
  }

  private resolve(wire: NetworkMessage.WireExpr): string | undefined {
    if (wire.scope === 0) return wire.suffix ?? ""
    // M=1: the sender's table. M=0 names one of our ids, and we declare none.
    const prefix = wire.senderMapping ? this.remoteKeyExprs.get(wire.scope) : undefined
    if (prefix === undefined) return undefined
    return prefix + (wire.suffix ?? "")
  }

  private handleNetwork(msg: NetworkMessage.NetworkMessage): Effect.Effect<void> | undefined {
    switch (msg._tag) {
      case "Push": {
        const keyExpr = this.resolve(msg.wireExpr)
        if (keyExpr === undefined) return this.dropUnusable(unknownScope("PUSH", msg.wireExpr))
        const body = msg.body
        const sample: Sample = body._tag === "Put"
          ? {
            keyExpr,
            payload: body.payload,
            kind: "put",
            encoding: body.encoding,
            timestamp: body.timestamp,
            attachment: attachmentOf(body),
            source: this.info.zid
          }
          : {
            keyExpr,
            payload: new Uint8Array(0),
            kind: "delete",
            encoding: undefined,
            timestamp: body.timestamp,
            attachment: attachmentOf(body),
            source: this.info.zid
          }
        const wait = this.hooks.deliver(sample, this)
        if (wait === undefined) return undefined
        this.delivering = true
        return Effect.ensuring(wait, Effect.sync(() => (this.delivering = false)))
      }
      case "Declare":
        if (msg.declaration._tag === "DeclareFinal" && msg.interestId === 0) this.declarationsComplete = true
        return this.handleDeclaration(msg.declaration)
      case "Interest": {
        if (msg.mode === "current" || msg.mode === "currentFuture") {
          const wantSubscribers = (msg.options & NetworkMessage.InterestOption.Subscribers) !== 0
          const restrict = msg.wireExpr !== undefined ? this.resolve(msg.wireExpr) : undefined
          const answers = wantSubscribers
            ? this.currentDeclarations(msg.id, restrict)
            : [NetworkMessage.declare(NetworkMessage.declareFinal, msg.id)]
          void this.sendNetwork(answers)
        }
        // Future declarations go to every peer anyway.
        return undefined
      }
      case "Request":
      case "Response":
      case "ResponseFinal":
      case "Oam":
        return undefined
    }
  }

  private handleDeclaration(d: NetworkMessage.Declaration): Effect.Effect<void> | undefined {
    switch (d._tag) {
      case "DeclareKeyExpr": {
        const key = d.wireExpr.scope === 0
          ? d.wireExpr.suffix ?? ""
          : (this.remoteKeyExprs.get(d.wireExpr.scope) ?? "") + (d.wireExpr.suffix ?? "")
        this.remoteKeyExprs.set(d.id, key)
        return undefined
      }
      case "UndeclareKeyExpr":
        this.remoteKeyExprs.delete(d.id)
        return undefined
      case "DeclareSubscriber": {
        const raw = this.resolve(d.wireExpr)
        if (raw === undefined) return this.dropUnusable(unknownScope("D_SUBSCRIBER", d.wireExpr))
        let key: string
        try {
          key = KeyExpr.canonizeUnsafe(raw)
        } catch {
          return this.dropUnusable(`D_SUBSCRIBER with invalid key ${JSON.stringify(raw)}`)
        }
        this.subscribers.set(d.id, key)
        this.routeCache.clear()
        this.hooks.remoteSubscriptionsChanged()
        return undefined
      }
      case "UndeclareSubscriber":
        if (this.subscribers.delete(d.id)) {
          this.routeCache.clear()
          this.hooks.remoteSubscriptionsChanged()
        }
        return undefined
      default:
        // Queryables, tokens and D_FINAL need no action from a pub/sub peer.
        return undefined
    }
  }
}

/** A FRAGMENT whose payload is several views. */
type SplitFragment = TransportMessage.FragmentHeader & { readonly payload: ReadonlyArray<Uint8Array> }

/**
 * Decodes a FRAGMENT header from the first bytes of a batch (in one part or several) and returns
 * the payload (the rest of the batch) as views; undefined when the batch is something else (or
 * the header is unusual).
 */
const splitFragment = (parts: ReadonlyArray<Uint8Array>): SplitFragment | undefined => {
  const first = parts[0]!
  if (first.length === 0 || (first[0]! & 0x1f) !== TransportMessage.Id.Fragment) return undefined
  // Header byte + SN zint + a few unit extensions fit in 16 bytes.
  const head = Batch.concat(firstBytes(parts, 16))
  let offset: number
  let header: TransportMessage.FragmentHeader
  try {
    const r = new ZReader(head)
    header = TransportMessage.decodeFragmentHeader(r, r.u8("FRAGMENT header"))
    offset = r.pos
  } catch {
    return undefined
  }
  const payload: Array<Uint8Array> = []
  for (const part of parts) {
    if (offset >= part.length) {
      offset -= part.length
      continue
    }
    payload.push(offset === 0 ? part : part.subarray(offset))
    offset = 0
  }
  return { ...header, payload }
}

const firstBytes = (parts: ReadonlyArray<Uint8Array>, n: number): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  for (const part of parts) {
    if (n <= 0) break
    const take = part.length <= n ? part : part.subarray(0, n)
    out.push(take)
    n -= take.length
  }
  return out
}

const KEEP_ALIVE = Batch.encode(new Uint8Array([TransportMessage.Id.KeepAlive]))
const EMPTY = new Uint8Array(0)
const FLAG_RELIABLE = 0x20

const attachmentOf = (body: ZenohBody.PushBody): Uint8Array | undefined => {
  for (const ext of body.extensions) if (ext.id === ATTACHMENT && ext.value instanceof Uint8Array) return ext.value
  return undefined
}

const unknownScope = (what: string, wire: NetworkMessage.WireExpr) =>
  `${what} uses undeclared scope ${wire.scope} (${wire.senderMapping ? "sender" : "receiver"} mapping)`
