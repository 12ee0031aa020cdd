/**
 * Transport messages: the content of a batch. INIT/OPEN establish a session, CLOSE ends it,
 * KEEP_ALIVE renews the lease, FRAME carries network messages and FRAGMENT carries a piece of one
 * network message too large for a batch.
 *
 * A FRAME has no length: its network messages run until the end of the batch or the first byte
 * that is not a network-message header. A FRAGMENT's payload is always the rest of the batch.
 */
import * as Extension from "./Extension.js"
import * as NetworkMessage from "./NetworkMessage.js"
import { ZReader, type ZWriter } from "./ZBuf.js"
import * as Zint from "./Zint.js"

export const PROTOCOL_VERSION = 0x09

export const Id = {
  Oam: 0x00,
  Init: 0x01,
  Open: 0x02,
  Close: 0x03,
  KeepAlive: 0x04,
  Frame: 0x05,
  Fragment: 0x06,
  Join: 0x07
} as const

export const Whatami = { Router: 0, Peer: 1, Client: 2 } as const
export type Whatami = (typeof Whatami)[keyof typeof Whatami]

export const CloseReason = {
  Generic: 0,
  Unsupported: 1,
  Invalid: 2,
  MaxSessions: 3,
  MaxLinks: 4,
  Expired: 5,
  Unresponsive: 6,
  ConnectionToSelf: 7
} as const

const closeReasonNames = [
  "GENERIC",
  "UNSUPPORTED",
  "INVALID",
  "MAX_SESSIONS",
  "MAX_LINKS",
  "EXPIRED",
  "UNRESPONSIVE",
  "CONNECTION_TO_SELF"
]

export const closeReasonName = (reason: number): string => closeReasonNames[reason] ?? `UNKNOWN(${reason})`

/** INIT resolution byte: bits 0–1 frame SN, 2–3 request id; 0=8, 1=16, 2=32, 3=64 bits. */
export const DEFAULT_RESOLUTION = 0x0a
export const DEFAULT_BATCH_SIZE = 65535

/**
 * SN modulus for a resolution code: Zenoh keeps SNs to 7/8 of the bits so an SN fits the same
 * number of zint bytes (32 bit → 2^28).
 */
export const snModulus = (resolutionCode: number): number => 2 ** ([7, 14, 28, 56][resolutionCode & 0x03]!)

const FLAG_A = 0x20
const FLAG_S_INIT = 0x40
const FLAG_T = 0x40
const FLAG_S_CLOSE = 0x20
const FLAG_R = 0x20
const FLAG_M = 0x40
const FLAG_Z = 0x80

export interface Init {
  readonly _tag: "Init"
  /** false: InitSyn (connector), true: InitAck (listener). */
  readonly ack: boolean
  readonly version: number
  readonly whatami: number
  readonly zid: Uint8Array
  /** With the S flag: resolution byte and batch size; undefined means the defaults. */
  readonly resolution: number | undefined
  readonly batchSize: number | undefined
  /** InitAck only. */
  readonly cookie: Uint8Array | undefined
  readonly extensions: ReadonlyArray<Extension.Extension>
}

export interface Open {
  readonly _tag: "Open"
  readonly ack: boolean
  readonly leaseMillis: number
  /** The T flag: the lease travels in seconds. */
  readonly leaseInSeconds: boolean
  readonly initialSn: number
  /** OpenSyn only: the InitAck cookie, verbatim. */
  readonly cookie: Uint8Array | undefined
  readonly extensions: ReadonlyArray<Extension.Extension>
}

export interface Close {
  readonly _tag: "Close"
  /** The S flag: the whole session rather than this link. */
  readonly session: boolean
  readonly reason: number
  readonly extensions: ReadonlyArray<Extension.Extension>
}

export interface KeepAlive {
  readonly _tag: "KeepAlive"
  readonly extensions: ReadonlyArray<Extension.Extension>
}

export interface Frame {
  readonly _tag: "Frame"
  readonly reliable: boolean
  readonly sn: number
  readonly extensions: ReadonlyArray<Extension.Extension>
  readonly messages: ReadonlyArray<NetworkMessage.NetworkMessage>
}

export interface Fragment {
  readonly _tag: "Fragment"
  readonly reliable: boolean
  /** More fragments of the same message follow. */
  readonly more: boolean
  readonly sn: number
  /** Ext `first`: this piece starts a message. */
  readonly first: boolean
  /** Ext `drop`: discard what was collected so far. */
  readonly drop: boolean
  /** Extensions other than first/drop. */
  readonly extensions: ReadonlyArray<Extension.Extension>
  /** The piece: a view into the batch. */
  readonly payload: Uint8Array
}

export interface Oam {
  readonly _tag: "Oam"
  readonly id: number
  readonly extensions: ReadonlyArray<Extension.Extension>
  readonly body: undefined | bigint | Uint8Array
}

export type TransportMessage = Init | Open | Close | KeepAlive | Frame | Fragment | Oam

const noExtensions: ReadonlyArray<Extension.Extension> = []
const frameMandatory: ReadonlySet<number> = new Set([Extension.Id.FramePriority])

// --- decoding ------------------------------------------------------------------------------------

/** Decodes one transport message at the reader's position. */
export const decode = (r: ZReader): TransportMessage => {
  const at = r.pos
  const header = r.u8("transport message header")
  const z = (header & FLAG_Z) !== 0
  switch (header & 0x1f) {
    case Id.Init: {
      const ack = (header & FLAG_A) !== 0
      const name = ack ? "INIT-Ack" : "INIT-Syn"
      const version = r.u8(`${name} version`)
      const flags = r.u8(`${name} flags`)
      const whatami = flags & 0x03
      const zid = r.slice((flags >> 4) + 1, `${name} zid`)
      let resolution: number | undefined
      let batchSize: number | undefined
      if ((header & FLAG_S_INIT) !== 0) {
        resolution = r.u8(`${name} resolution`)
        batchSize = r.u16le(`${name} batch size`)
      }
      const cookie = ack ? r.zbytes(`${name} cookie`) : undefined
      const extensions = Extension.decodeIf(z, r, name)
      return { _tag: "Init", ack, version, whatami, zid, resolution, batchSize, cookie, extensions }
    }
    case Id.Open: {
      const ack = (header & FLAG_A) !== 0
      const name = ack ? "OPEN-Ack" : "OPEN-Syn"
      const leaseInSeconds = (header & FLAG_T) !== 0
      const lease = r.zint(`${name} lease`, Zint.MAX_Z32)
      const initialSn = r.zint(`${name} initial SN`)
      const cookie = ack ? undefined : r.zbytes(`${name} cookie`)
      const extensions = Extension.decodeIf(z, r, name)
      return {
        _tag: "Open",
        ack,
        leaseMillis: leaseInSeconds ? lease * 1000 : lease,
        leaseInSeconds,
        initialSn,
        cookie,
        extensions
      }
    }
    case Id.Close: {
      const reason = r.u8("CLOSE reason")
      return {
        _tag: "Close",
        session: (header & FLAG_S_CLOSE) !== 0,
        reason,
        extensions: Extension.decodeIf(z, r, "CLOSE")
      }
    }
    case Id.KeepAlive:
      return { _tag: "KeepAlive", extensions: Extension.decodeIf(z, r, "KEEP_ALIVE") }
    case Id.Frame: {
      const sn = r.zint("FRAME SN")
      const extensions = Extension.decodeIf(z, r, "FRAME", frameMandatory)
      const messages: Array<NetworkMessage.NetworkMessage> = []
      while (r.remaining > 0 && NetworkMessage.isNetworkHeader(r.peek())) {
        messages.push(NetworkMessage.decode(r))
      }
      return { _tag: "Frame", reliable: (header & FLAG_R) !== 0, sn, extensions, messages }
    }
    case Id.Fragment:
      return { ...decodeFragmentHeader(r, header), payload: r.rest() }
    case Id.Oam: {
      const id = r.zint("transport OAM id", Zint.MAX_Z16)
      const extensions = Extension.decodeIf(z, r, "transport OAM")
      const body = Extension.decodeEncoded(r, header, "transport OAM body", "reserved body encoding", at)
      return { _tag: "Oam", id, extensions, body }
    }
    case Id.Join:
      return r.fail("transport message", "JOIN is for multicast transports, not a unicast TCP session", at)
    default:
      return r.fail("transport message", `unknown transport message id 0x${(header & 0x1f).toString(16)}`, at)
  }
}

/** A FRAGMENT without its payload. */
export type FragmentHeader = Omit<Fragment, "payload">

/**
 * The fields of a FRAGMENT after its header byte (already read), up to where the payload starts.
 * Lets a receiver take the payload as views of a batch that arrived in several pieces.
 */
export const decodeFragmentHeader = (r: ZReader, header: number): FragmentHeader => {
  const sn = r.zint("FRAGMENT SN")
  let first = false
  let drop = false
  let extensions = noExtensions
  if ((header & FLAG_Z) !== 0) {
    const all = Extension.decodeAll(r, "FRAGMENT", frameMandatory)
    const others: Array<Extension.Extension> = []
    for (const ext of all) {
      if (ext.id === Extension.Id.FragmentFirst) first = true
      else if (ext.id === Extension.Id.FragmentDrop) drop = true
      else others.push(ext)
    }
    if (others.length > 0) extensions = others
  }
  return {
    _tag: "Fragment",
    reliable: (header & FLAG_R) !== 0,
    more: (header & FLAG_M) !== 0,
    sn,
    first,
    drop,
    extensions
  }
}

/** Decodes every transport message of one batch body (without its length prefix). */
export const decodeBatch = (body: Uint8Array): Array<TransportMessage> => {
  const r = new ZReader(body)
  const out: Array<TransportMessage> = []
  while (r.remaining > 0) out.push(decode(r))
  return out
}

// --- encoding ------------------------------------------------------------------------------------

const zFlag = (exts: ReadonlyArray<Extension.Extension>) => (exts.length > 0 ? FLAG_Z : 0)

export const encode = (w: ZWriter, msg: TransportMessage): void => {
  switch (msg._tag) {
    case "Init": {
      const s = msg.resolution !== undefined || msg.batchSize !== undefined
      w.u8(Id.Init | (msg.ack ? FLAG_A : 0) | (s ? FLAG_S_INIT : 0) | zFlag(msg.extensions))
      w.u8(msg.version)
      w.u8(((msg.zid.length - 1) << 4) | (msg.whatami & 0x03))
      w.bytes(msg.zid)
      if (s) {
        w.u8(msg.resolution ?? DEFAULT_RESOLUTION)
        w.u16le(msg.batchSize ?? DEFAULT_BATCH_SIZE)
      }
      if (msg.ack) w.zbytes(msg.cookie ?? new Uint8Array(0))
      return Extension.encodeAll(w, msg.extensions)
    }
    case "Open":
      w.u8(Id.Open | (msg.ack ? FLAG_A : 0) | (msg.leaseInSeconds ? FLAG_T : 0) | zFlag(msg.extensions))
      w.zint(msg.leaseInSeconds ? Math.floor(msg.leaseMillis / 1000) : msg.leaseMillis)
      w.zint(msg.initialSn)
      if (!msg.ack) w.zbytes(msg.cookie ?? new Uint8Array(0))
      return Extension.encodeAll(w, msg.extensions)
    case "Close":
      w.u8(Id.Close | (msg.session ? FLAG_S_CLOSE : 0) | zFlag(msg.extensions)).u8(msg.reason)
      return Extension.encodeAll(w, msg.extensions)
    case "KeepAlive":
      w.u8(Id.KeepAlive | zFlag(msg.extensions))
      return Extension.encodeAll(w, msg.extensions)
    case "Frame":
      encodeFrameHeader(w, msg.reliable, msg.sn, msg.extensions)
      for (const m of msg.messages) NetworkMessage.encode(w, m)
      return
    case "Fragment": {
      const exts: Array<Extension.Extension> = []
      if (msg.first) exts.push(Extension.unit(Extension.Id.FragmentFirst))
      if (msg.drop) exts.push(Extension.unit(Extension.Id.FragmentDrop))
      exts.push(...msg.extensions)
      w.u8(Id.Fragment | (msg.reliable ? FLAG_R : 0) | (msg.more ? FLAG_M : 0) | zFlag(exts)).zint(msg.sn)
      Extension.encodeAll(w, exts)
      w.bytes(msg.payload)
      return
    }
    case "Oam":
      w.u8(Id.Oam | Extension.encodingOf(msg.body) | zFlag(msg.extensions)).zint(msg.id)
      Extension.encodeAll(w, msg.extensions)
      return Extension.encodeEncoded(w, msg.body)
  }
}

export const encodeFrameHeader = (
  w: ZWriter,
  reliable: boolean,
  sn: number,
  extensions: ReadonlyArray<Extension.Extension> = noExtensions
): void => {
  w.u8(Id.Frame | (reliable ? FLAG_R : 0) | zFlag(extensions)).zint(sn)
  Extension.encodeAll(w, extensions)
}

/** Size of a FRAGMENT header (before its payload). */
export const fragmentHeaderLength = (sn: number, first: boolean): number => 1 + Zint.lengthOf(sn) + (first ? 1 : 0)

/**
 * Writes a FRAGMENT header into `target` at `offset` (room for `fragmentHeaderLength` bytes) and
 * returns the offset after it. Hot path of large sends: no writer, no allocation.
 */
export const writeFragmentHeader = (
  target: Uint8Array,
  offset: number,
  reliable: boolean,
  more: boolean,
  sn: number,
  first: boolean
): number => {
  target[offset++] = Id.Fragment | (reliable ? FLAG_R : 0) | (more ? FLAG_M : 0) | (first ? FLAG_Z : 0)
  offset = Zint.writeInto(target, offset, sn)
  if (first) target[offset++] = Extension.Id.FragmentFirst
  return offset
}

// --- constructors ----------------------------------------------------------------------------------

export const keepAlive: KeepAlive = { _tag: "KeepAlive", extensions: noExtensions }

export const close = (reason: number, session = false): Close => ({
  _tag: "Close",
  session,
  reason,
  extensions: noExtensions
})

export const frame = (
  reliable: boolean,
  sn: number,
  messages: ReadonlyArray<NetworkMessage.NetworkMessage>
): Frame => ({ _tag: "Frame", reliable, sn, extensions: noExtensions, messages })
