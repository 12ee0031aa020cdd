/**
 * The INIT/OPEN exchange that turns a TCP link into a Zenoh session, as connector (sends
 * INIT-Syn, OPEN-Syn) or as listener (answers INIT-Ack, OPEN-Ack).
 *
 * Negotiation: both sides use the smaller batch size, SN resolution and patch. The listener always
 * sets S in its INIT-Ack unless the result is the default (65535 / 32-bit): a peer that announced
 * less reads a missing S as 65535 and rejects it. The connector echoes the cookie byte for byte.
 */
import { Effect } from "effect"
import * as Batch from "./Batch.js"
import * as Extension from "./Extension.js"
import { type Link, speaksHttp } from "./Link.js"
import * as TransportMessage from "./TransportMessage.js"
import { ZWriter } from "./ZBuf.js"
import { ZenohDecodeError, ZenohHandshakeError, type ZenohLinkError } from "./ZenohError.js"
import * as ZenohId from "./ZenohId.js"

/** Patch level we implement: 1 = fragment `first`/`drop` markers. */
export const PATCH = 1

export interface Negotiated {
  readonly role: "listener" | "connector"
  readonly remoteZid: Uint8Array
  readonly remoteWhatami: number
  /** Agreed batch size (length prefix included). */
  readonly batchSize: number
  /** Agreed resolution byte. */
  readonly resolution: number
  readonly snModulus: number
  /** Agreed patch: ≥ 1 means fragments carry `first` markers. */
  readonly patch: number
  /** The remote's lease: drop it after this much silence. */
  readonly remoteLeaseMillis: number
  /** SN of our first FRAME/FRAGMENT on each channel. */
  readonly localInitialSn: number
  /** The remote's announced initial SN. */
  readonly remoteInitialSn: number
  /** Messages that shared a batch with the last handshake message. */
  readonly leftover: ReadonlyArray<TransportMessage.TransportMessage>
}

const encodeBatch = (msg: TransportMessage.TransportMessage): Uint8Array => {
  const w = new ZWriter(64)
  TransportMessage.encode(w, msg)
  return Batch.encode(w.finish())
}

const patchOf = (init: TransportMessage.Init): number => {
  const ext = Extension.find(init.extensions, Extension.Id.Patch)
  return ext !== undefined && typeof ext.value === "bigint" ? Number(ext.value) : 0
}

const randomSn = (modulus: number): number => Math.floor(Math.random() * modulus)

const leaseFields = (leaseMillis: number) => ({
  leaseMillis,
  leaseInSeconds: leaseMillis % 1000 === 0
})

const resolutionCode = (resolution: number, shift: number) => (resolution >> shift) & 0x03

const minResolution = (a: number, b: number) =>
  Math.min(resolutionCode(a, 0), resolutionCode(b, 0)) | (Math.min(resolutionCode(a, 2), resolutionCode(b, 2)) << 2)

type Role = Negotiated["role"]

const fail = (role: Role, peer: string, reason: string) => Effect.fail(new ZenohHandshakeError({ role, peer, reason }))

/** Reads the next batch and returns its first message (the rest is leftover). */
const expect = <Tag extends TransportMessage.TransportMessage["_tag"]>(
  link: Link,
  role: Role,
  tag: Tag,
  ack: boolean,
  name: string
): Effect.Effect<
  readonly [Extract<TransportMessage.TransportMessage, { _tag: Tag }>, ReadonlyArray<TransportMessage.TransportMessage>],
  ZenohHandshakeError | ZenohLinkError
> =>
  Effect.flatMap(Effect.catchTag(link.readBatch, "ZenohLinkError", (error) => notHttp(link, role, error)), (body) => {
    let messages: Array<TransportMessage.TransportMessage>
    try {
      messages = TransportMessage.decodeBatch(body)
    } catch (error) {
      const reason = error instanceof ZenohDecodeError ? error.message : String(error)
      return fail(role, link.peer, `malformed batch while waiting for ${name}: ${reason}`)
    }
    const [first, ...rest] = messages
    if (first?._tag === "Close") {
      return fail(role, link.peer, `peer sent CLOSE (${TransportMessage.closeReasonName(first.reason)}) instead of ${name}`)
    }
    if (first === undefined || first._tag !== tag || !("ack" in first) || first.ack !== ack) {
      return fail(role, link.peer, `expected ${name}, got ${first === undefined ? "an empty batch" : describe(first)}`)
    }
    return Effect.succeed([first as Extract<TransportMessage.TransportMessage, { _tag: Tag }>, rest] as const)
  })

/**
 * A peer that opened with HTTP will not speak Zenoh: a handshake error (not
 * worth retrying) that says which side of a WebSocket it looks like. A web
 * client is answered with HTTP 400 saying what this port is, so that a
 * WebSocket client fails at once with that instead of waiting for a handshake.
 */
const notHttp = (link: Link, role: Role, error: ZenohLinkError): Effect.Effect<never, ZenohHandshakeError | ZenohLinkError> => {
  if (!error.reason.startsWith(speaksHttp)) return Effect.fail(error)
  if (role === "connector") {
    return fail(
      role,
      link.peer,
      `${error.reason}: a web or WebSocket server, not a Zenoh peer (a chiral WebSocket server is reached at ws://host:port)`
    )
  }
  // The answer is in the kernel and the connection ended before the scope destroys the socket.
  const refused = fail(
    role,
    link.peer,
    `${error.reason}: a web or WebSocket client, not a Zenoh peer (this port speaks Zenoh; chiral's WebSocket servers listen on ws://host:8765)`
  )
  return Effect.andThen(Effect.ignore(link.send([httpRefusal])), Effect.andThen(link.close(250), refused))
}

const httpRefusal = new TextEncoder().encode(
  "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 63\r\n\r\n" +
    "This port speaks Zenoh (chiral: tcp/host:port), not WebSocket.\n"
)

const describe = (msg: TransportMessage.TransportMessage): string =>
  msg._tag === "Init" || msg._tag === "Open" ? `${msg._tag.toUpperCase()}-${msg.ack ? "Ack" : "Syn"}` : msg._tag

const withTimeout = <A>(
  role: Role,
  link: Link,
  timeoutMillis: number,
  effect: Effect.Effect<A, ZenohHandshakeError | ZenohLinkError>
): Effect.Effect<A, ZenohHandshakeError | ZenohLinkError> =>
  effect.pipe(
    Effect.timeoutOrElse({
      duration: timeoutMillis,
      orElse: () => fail(role, link.peer, `no answer within ${timeoutMillis} ms`)
    })
  )

const rejectVersion = (link: Link, role: Role, version: number) => {
  link.send([encodeBatch(TransportMessage.close(TransportMessage.CloseReason.Invalid, true))])
  return fail(role, link.peer, `unsupported protocol version 0x${version.toString(16)} (we speak 0x09)`)
}

const rejectSelf = (link: Link, role: Role) => {
  link.send([encodeBatch(TransportMessage.close(TransportMessage.CloseReason.ConnectionToSelf, true))])
  return fail(role, link.peer, "the peer has our own Zenoh id (connection to self)")
}

interface Settings {
  readonly zid: Uint8Array
  readonly batchSize: number
  readonly leaseMillis: number
  readonly handshakeTimeoutMillis: number
}

/** Opens a session over `link` as the connecting side. */
export const connector = (link: Link, settings: Settings): Effect.Effect<Negotiated, ZenohHandshakeError | ZenohLinkError> =>
  withTimeout(
    "connector",
    link,
    settings.handshakeTimeoutMillis,
    Effect.gen(function*() {
      const announceSize = settings.batchSize !== Batch.MAX_BATCH_SIZE
      link.send([
        encodeBatch({
          _tag: "Init",
          ack: false,
          version: TransportMessage.PROTOCOL_VERSION,
          whatami: TransportMessage.Whatami.Peer,
          zid: settings.zid,
          resolution: announceSize ? TransportMessage.DEFAULT_RESOLUTION : undefined,
          batchSize: announceSize ? settings.batchSize : undefined,
          cookie: undefined,
          extensions: [Extension.z64(Extension.Id.Patch, PATCH)]
        })
      ])
      const [ack] = yield* expect(link, "connector", "Init", true, "INIT-Ack")
      if (ack.version !== TransportMessage.PROTOCOL_VERSION) return yield* rejectVersion(link, "connector", ack.version)
      if (ZenohId.equals(ack.zid, settings.zid)) return yield* rejectSelf(link, "connector")
      const batchSize = ack.batchSize ?? Batch.MAX_BATCH_SIZE
      const resolution = ack.resolution ?? TransportMessage.DEFAULT_RESOLUTION
      const patch = patchOf(ack)
      if (batchSize > settings.batchSize) {
        return yield* fail("connector", link.peer, `INIT-Ack batch size ${batchSize} exceeds ours (${settings.batchSize})`)
      }
      if (minResolution(resolution, TransportMessage.DEFAULT_RESOLUTION) !== resolution) {
        return yield* fail("connector", link.peer, `INIT-Ack resolution 0x${resolution.toString(16)} exceeds ours`)
      }
      if (patch > PATCH) return yield* fail("connector", link.peer, `INIT-Ack patch ${patch} exceeds ours (${PATCH})`)
      if (batchSize < 16) return yield* fail("connector", link.peer, `INIT-Ack batch size ${batchSize} is unusable`)
      const snModulus = TransportMessage.snModulus(resolution)
      const localInitialSn = randomSn(snModulus)
      link.send([
        encodeBatch({
          _tag: "Open",
          ack: false,
          ...leaseFields(settings.leaseMillis),
          initialSn: localInitialSn,
          cookie: ack.cookie ?? new Uint8Array(0),
          extensions: []
        })
      ])
      const [open, leftover] = yield* expect(link, "connector", "Open", true, "OPEN-Ack")
      return {
        role: "connector",
        remoteZid: ack.zid,
        remoteWhatami: ack.whatami,
        batchSize,
        resolution,
        snModulus,
        patch,
        remoteLeaseMillis: open.leaseMillis,
        localInitialSn,
        remoteInitialSn: open.initialSn,
        leftover
      } satisfies Negotiated
    })
  )

/** Accepts a session over `link` as the listening side. */
export const listener = (link: Link, settings: Settings): Effect.Effect<Negotiated, ZenohHandshakeError | ZenohLinkError> =>
  withTimeout(
    "listener",
    link,
    settings.handshakeTimeoutMillis,
    Effect.gen(function*() {
      const [syn] = yield* expect(link, "listener", "Init", false, "INIT-Syn")
      if (syn.version !== TransportMessage.PROTOCOL_VERSION) return yield* rejectVersion(link, "listener", syn.version)
      if (ZenohId.equals(syn.zid, settings.zid)) return yield* rejectSelf(link, "listener")
      const batchSize = Math.min(settings.batchSize, syn.batchSize ?? Batch.MAX_BATCH_SIZE)
      if (batchSize < 16) return yield* fail("listener", link.peer, `INIT-Syn batch size ${batchSize} is unusable`)
      const resolution = minResolution(syn.resolution ?? TransportMessage.DEFAULT_RESOLUTION, TransportMessage.DEFAULT_RESOLUTION)
      const patch = Math.min(PATCH, patchOf(syn))
      const explicit = batchSize !== Batch.MAX_BATCH_SIZE || resolution !== TransportMessage.DEFAULT_RESOLUTION
      const cookie = new Uint8Array(0)
      link.send([
        encodeBatch({
          _tag: "Init",
          ack: true,
          version: TransportMessage.PROTOCOL_VERSION,
          whatami: TransportMessage.Whatami.Peer,
          zid: settings.zid,
          resolution: explicit ? resolution : undefined,
          batchSize: explicit ? batchSize : undefined,
          cookie,
          extensions: patch > 0 ? [Extension.z64(Extension.Id.Patch, patch)] : []
        })
      ])
      const [open, leftover] = yield* expect(link, "listener", "Open", false, "OPEN-Syn")
      const snModulus = TransportMessage.snModulus(resolution)
      const localInitialSn = randomSn(snModulus)
      link.send([
        encodeBatch({
          _tag: "Open",
          ack: true,
          ...leaseFields(settings.leaseMillis),
          initialSn: localInitialSn,
          cookie: undefined,
          extensions: []
        })
      ])
      return {
        role: "listener",
        remoteZid: syn.zid,
        remoteWhatami: syn.whatami,
        batchSize,
        resolution,
        snModulus,
        patch,
        remoteLeaseMillis: open.leaseMillis,
        localInitialSn,
        remoteInitialSn: open.initialSn,
        leftover
      } satisfies Negotiated
    })
  )
