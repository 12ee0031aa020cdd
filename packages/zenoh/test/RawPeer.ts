/**
 * Test helper: a hand-driven Zenoh peer over a raw TCP link, to play the misbehaving remote
 * (garbage, truncated batches, vanishing mid-fragment, silence) against a real session.
 */
import { Effect, type Scope } from "effect"
import * as Net from "node:net"
import {
  Batch,
  Extension,
  Fragmenter,
  NetworkMessage,
  TransportMessage,
  ZBuf,
  ZenohBody,
  ZenohId
} from "@chiral/zenoh"
import * as Link from "../src/Link.js"

export const batch = (...messages: ReadonlyArray<TransportMessage.TransportMessage>): Uint8Array => {
  const w = new ZBuf.ZWriter(64)
  for (const m of messages) TransportMessage.encode(w, m)
  return Batch.encode(w.finish())
}

export const network = (sn: number, ...messages: ReadonlyArray<NetworkMessage.NetworkMessage>) =>
  batch(TransportMessage.frame(true, sn, messages))

export interface RawPeer {
  readonly link: Link.Link
  readonly zid: Uint8Array
  readonly send: (bytes: Uint8Array) => void
  /** Next transport messages from the session. */
  readonly read: Effect.Effect<Array<TransportMessage.TransportMessage>, unknown>
  /** Reads until a message satisfying `pred` arrives (bounded). */
  readonly readUntil: (
    pred: (m: TransportMessage.TransportMessage) => boolean
  ) => Effect.Effect<TransportMessage.TransportMessage, unknown>
  readonly destroy: () => void
}

const make = (link: Link.Link): RawPeer => {
  const read = Effect.map(link.readBatch, TransportMessage.decodeBatch)
  return {
    link,
    zid: ZenohId.random(),
    send: (bytes) => void link.send([bytes]),
    read,
    readUntil: (pred) =>
      Effect.gen(function*() {
        for (let i = 0; i < 1000; i++) {
          for (const m of yield* read) if (pred(m)) return m
        }
        return yield* Effect.die(new Error("readUntil: not found in 1000 batches"))
      }),
    destroy: link.destroy
  }
}

/** A raw TCP connection to a listening session. */
export const connect = (port: number): Effect.Effect<RawPeer, unknown, Scope.Scope> =>
  Effect.map(Link.connect({ host: "127.0.0.1", port, timeoutMillis: 2000 }), make)

/** Connects and performs a correct INIT/OPEN exchange as connector. */
export const connectAndOpen = (
  port: number,
  options?: { readonly leaseMillis?: number; readonly batchSize?: number }
): Effect.Effect<RawPeer, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const peer = yield* connect(port)
    peer.send(batch({
      _tag: "Init",
      ack: false,
      version: 0x09,
      whatami: 1,
      zid: peer.zid,
      resolution: options?.batchSize === undefined ? undefined : 0x0a,
      batchSize: options?.batchSize,
      cookie: undefined,
      extensions: [Extension.z64(Extension.Id.Patch, 1)]
    }))
    const [ack] = yield* peer.read
    if (ack?._tag !== "Init") return yield* Effect.die(new Error(`expected INIT-Ack, got ${ack?._tag}`))
    const lease = options?.leaseMillis ?? 10_000
    peer.send(batch({
      _tag: "Open",
      ack: false,
      leaseMillis: lease,
      leaseInSeconds: lease % 1000 === 0,
      initialSn: 0,
      cookie: ack.cookie,
      extensions: []
    }))
    yield* peer.readUntil((m) => m._tag === "Open")
    return peer
  })

/** A raw server: accepts one connection, answers the handshake as listener, hands the peer over. */
export const listenOnce = (options?: {
  /** Batch size to answer with; default: the INIT-Syn's (a correct listener never answers more). */
  readonly answerBatch?: number
}): Effect.Effect<
  {
    readonly port: number
    readonly accepted: Effect.Effect<
      RawPeer & {
        readonly syn: TransportMessage.Init
        /** Half-closes: sends FIN and keeps reading, so the session's own end can be seen. */
        readonly end: () => void
      },
      unknown,
      Scope.Scope
    >
  },
  unknown,
  Scope.Scope
> =>
  Effect.gen(function*() {
    let resolve: ((socket: Net.Socket) => void) | undefined
    const pending: Array<Net.Socket> = []
    const address = yield* Link.listen({
      host: "127.0.0.1",
      port: 0,
      onConnection: (socket) => (resolve ? resolve(socket) : pending.push(socket))
    })
    const accepted = Effect.gen(function*() {
      const socket = pending.shift() ?? (yield* Effect.callback<Net.Socket>((r) => {
        resolve = (s) => r(Effect.succeed(s))
      }))
      const peer = make(yield* Link.fromSocket(socket))
      const [syn] = yield* peer.read
      if (syn?._tag !== "Init") return yield* Effect.die(new Error(`expected INIT-Syn, got ${syn?._tag}`))
      peer.send(batch({
        _tag: "Init",
        ack: true,
        version: 0x09,
        whatami: 1,
        zid: peer.zid,
        resolution: options?.answerBatch !== undefined || syn.batchSize !== undefined ? 0x0a : undefined,
        batchSize: options?.answerBatch ?? syn.batchSize,
        cookie: new Uint8Array([1, 2, 3]),
        extensions: [Extension.z64(Extension.Id.Patch, 1)]
      }))
      const [open] = yield* peer.read
      if (open?._tag !== "Open") return yield* Effect.die(new Error(`expected OPEN-Syn, got ${open?._tag}`))
      if (Buffer.compare(open.cookie!, Buffer.from([1, 2, 3])) !== 0) {
        return yield* Effect.die(new Error("cookie not echoed"))
      }
      peer.send(batch({
        _tag: "Open",
        ack: true,
        leaseMillis: 10_000,
        leaseInSeconds: true,
        initialSn: 0,
        cookie: undefined,
        extensions: []
      }))
      return { ...peer, syn, end: () => void socket.end() }
    })
    return { port: address.port, accepted }
  })

/** The FRAGMENT batches of a PUSH+PUT of `payload` on `key`. */
export const fragmentedPut = (key: string, payload: Uint8Array, firstSn: number, batchSize = 65535) => {
  const w = new ZBuf.ZWriter(payload.length + 64)
  NetworkMessage.encode(w, NetworkMessage.push(key, ZenohBody.put(payload)))
  return Fragmenter.fragment([w.finish()], {
    batchSize,
    reliable: true,
    firstSn,
    snModulus: TransportMessage.snModulus(0x0a)
  }).chunks
}

export { Net }
