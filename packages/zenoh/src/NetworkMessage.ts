/**
 * Network messages: what travels inside a FRAME or a reassembled series of FRAGMENTs. PUSH and
 * DECLARE drive pub/sub; INTEREST is answered; REQUEST, RESPONSE, RESPONSE_FINAL and OAM are
 * decoded (so a FRAME can be walked) and otherwise ignored by a session.
 */
import * as Extension from "./Extension.js"
import { ZReader, type ZWriter } from "./ZBuf.js"
import * as ZenohBody from "./ZenohBody.js"
import * as Zint from "./Zint.js"

export const Id = {
  Oam: 0x1f,
  Declare: 0x1e,
  Push: 0x1d,
  Request: 0x1c,
  Response: 0x1b,
  ResponseFinal: 0x1a,
  Interest: 0x19
} as const

/** Declaration ids inside a DECLARE. */
export const DeclId = {
  KeyExpr: 0x00,
  UndeclareKeyExpr: 0x01,
  Subscriber: 0x02,
  UndeclareSubscriber: 0x03,
  Queryable: 0x04,
  UndeclareQueryable: 0x05,
  Token: 0x06,
  UndeclareToken: 0x07,
  Final: 0x1a
} as const

const FLAG_N = 0x20 // suffix present
const FLAG_M = 0x40 // scope is the sender's mapping
const FLAG_I = 0x20 // DECLARE: interest id present
const FLAG_C = 0x20 // INTEREST: current
const FLAG_F = 0x40 // INTEREST: future
const FLAG_Z = 0x80

/** Interest option bits (the byte after the INTEREST id when C or F). */
export const InterestOption = {
  KeyExprs: 0x01,
  Subscribers: 0x02,
  Queryables: 0x04,
  Tokens: 0x08,
  Restricted: 0x10,
  Named: 0x20,
  Mapping: 0x40,
  Aggregate: 0x80
} as const

/**
 * A key expression on the wire: a numeric scope (0 = none) and an optional suffix. `senderMapping`
 * (the `M` flag) says whose D_KEYEXPR table the scope refers to.
 */
export interface WireExpr {
  readonly scope: number
  readonly suffix: string | undefined
  readonly senderMapping: boolean
}

/** A full key sent as scope 0 + suffix: always valid, needs no declaration. */
export const wireExpr = (key: string): WireExpr => ({ scope: 0, suffix: key, senderMapping: false })

export interface Push {
  readonly _tag: "Push"
  readonly wireExpr: WireExpr
  readonly extensions: ReadonlyArray<Extension.Extension>
  readonly body: ZenohBody.PushBody
}

export interface Declare {
  readonly _tag: "Declare"
  /** Set when the declaration answers an interest (0 = the implicit one of a new session). */
  readonly interestId: number | undefined
  readonly extensions: ReadonlyArray<Extension.Extension>
  readonly declaration: Declaration
}

export type Declaration =
  | { readonly _tag: "DeclareKeyExpr"; readonly id: number; readonly wireExpr: WireExpr; readonly extensions: ReadonlyArray<Extension.Extension> }
  | { readonly _tag: "UndeclareKeyExpr"; readonly id: number; readonly extensions: ReadonlyArray<Extension.Extension> }
  | { readonly _tag: "DeclareSubscriber"; readonly id: number; readonly wireExpr: WireExpr; readonly extensions: ReadonlyArray<Extension.Extension> }
  | { readonly _tag: "UndeclareSubscriber"; readonly id: number; readonly extensions: ReadonlyArray<Extension.Extension> }
  | { readonly _tag: "DeclareQueryable"; readonly id: number; readonly wireExpr: WireExpr; readonly extensions: ReadonlyArray<Extension.Extension> }
  | { readonly _tag: "UndeclareQueryable"; readonly id: number; readonly extensions: ReadonlyArray<Extension.Extension> }
  | { readonly _tag: "DeclareToken"; readonly id: number; readonly wireExpr: WireExpr; readonly extensions: ReadonlyArray<Extension.Extension> }
  | { readonly _tag: "UndeclareToken"; readonly id: number; readonly extensions: ReadonlyArray<Extension.Extension> }
  | { readonly _tag: "DeclareFinal"; readonly extensions: ReadonlyArray<Extension.Extension> }

export type InterestMode = "final" | "current" | "future" | "currentFuture"

export interface Interest {
  readonly _tag: "Interest"
  readonly id: number
  readonly mode: InterestMode
  /** The option byte (see `InterestOption`); 0 when mode is "final". */
  readonly options: number
  /** Present when the Restricted option is set. */
  readonly wireExpr: WireExpr | undefined
  readonly extensions: ReadonlyArray<Extension.Extension>
}

export interface Request {
  readonly _tag: "Request"
  readonly requestId: number
  readonly wireExpr: WireExpr
  readonly extensions: ReadonlyArray<Extension.Extension>
  readonly body: ZenohBody.RequestBody
}

export interface Response {
  readonly _tag: "Response"
  readonly requestId: number
  readonly wireExpr: WireExpr
  readonly extensions: ReadonlyArray<Extension.Extension>
  readonly body: ZenohBody.ResponseBody
}

export interface ResponseFinal {
  readonly _tag: "ResponseFinal"
  readonly requestId: number
  readonly extensions: ReadonlyArray<Extension.Extension>
}

export interface Oam {
  readonly _tag: "Oam"
  readonly id: number
  readonly extensions: ReadonlyArray<Extension.Extension>
  /** As the header's ENC bits say: nothing, a z64 or bytes. */
  readonly body: undefined | bigint | Uint8Array
}

export type NetworkMessage = Push | Declare | Interest | Request | Response | ResponseFinal | Oam

/** True for a header byte whose id is a network message (a FRAME's messages run while this holds). */
export const isNetworkHeader = (byte: number): boolean => {
  const id = byte & 0x1f
  return id >= Id.Interest && id <= Id.Oam
}

const noExtensions: ReadonlyArray<Extension.Extension> = []

/** Mandatory network extensions we understand (NodeId carries routing info; we ignore it). */
const networkMandatory: ReadonlySet<number> = new Set([Extension.Id.NodeId])
const undeclareMandatory: ReadonlySet<number> = new Set([Extension.Id.UndeclaredWireExpr])
/** REQUEST also carries the query target as a mandatory extension. */
const requestMandatory: ReadonlySet<number> = new Set([Extension.Id.NodeId, 0x34])

// --- constructors used by a session -----------------------------------------------------------------

export const push = (key: string | WireExpr, body: ZenohBody.PushBody): Push => ({
  _tag: "Push",
  wireExpr: typeof key === "string" ? wireExpr(key) : key,
  extensions: noExtensions,
  body
})

export const declare = (declaration: Declaration, interestId?: number): Declare => ({
  _tag: "Declare",
  interestId,
  extensions: noExtensions,
  declaration
})

export const declareSubscriber = (id: number, key: string): Declaration => ({
  _tag: "DeclareSubscriber",
  id,
  wireExpr: wireExpr(key),
  extensions: noExtensions
})

export const undeclareSubscriber = (id: number): Declaration => ({
  _tag: "UndeclareSubscriber",
  id,
  extensions: noExtensions
})

export const declareFinal: Declaration = { _tag: "DeclareFinal", extensions: noExtensions }

// --- decoding ------------------------------------------------------------------------------------

const decodeWireExpr = (r: ZReader, named: boolean, senderMapping: boolean, what: string): WireExpr => {
  const scope = r.zint(`${what} scope`, Zint.MAX_Z16)
  const suffix = named ? r.string(`${what} suffix`) : undefined
  return { scope, suffix, senderMapping }
}

const decodeDeclaration = (r: ZReader): Declaration => {
  const at = r.pos
  const header = r.u8("declaration header")
  const z = (header & FLAG_Z) !== 0
  const named = (header & FLAG_N) !== 0
  const mapping = (header & FLAG_M) !== 0
  switch (header & 0x1f) {
    case DeclId.KeyExpr: {
      const id = r.zint("D_KEYEXPR id", Zint.MAX_Z16)
      const wire = decodeWireExpr(r, named, false, "D_KEYEXPR")
      return { _tag: "DeclareKeyExpr", id, wireExpr: wire, extensions: Extension.decodeIf(z, r, "D_KEYEXPR") }
    }
    case DeclId.UndeclareKeyExpr: {
      const id = r.zint("U_KEYEXPR id", Zint.MAX_Z16)
      return { _tag: "UndeclareKeyExpr", id, extensions: Extension.decodeIf(z, r, "U_KEYEXPR") }
    }
    case DeclId.Subscriber: {
      const id = r.zint("D_SUBSCRIBER id", Zint.MAX_Z32)
      const wire = decodeWireExpr(r, named, mapping, "D_SUBSCRIBER")
      return { _tag: "DeclareSubscriber", id, wireExpr: wire, extensions: Extension.decodeIf(z, r, "D_SUBSCRIBER") }
    }
    case DeclId.UndeclareSubscriber: {
      const id = r.zint("U_SUBSCRIBER id", Zint.MAX_Z32)
      return {
        _tag: "UndeclareSubscriber",
        id,
        extensions: Extension.decodeIf(z, r, "U_SUBSCRIBER", undeclareMandatory)
      }
    }
    case DeclId.Queryable: {
      const id = r.zint("D_QUERYABLE id", Zint.MAX_Z32)
      const wire = decodeWireExpr(r, named, mapping, "D_QUERYABLE")
      return { _tag: "DeclareQueryable", id, wireExpr: wire, extensions: Extension.decodeIf(z, r, "D_QUERYABLE") }
    }
    case DeclId.UndeclareQueryable: {
      const id = r.zint("U_QUERYABLE id", Zint.MAX_Z32)
      return {
        _tag: "UndeclareQueryable",
        id,
        extensions: Extension.decodeIf(z, r, "U_QUERYABLE", undeclareMandatory)
      }
    }
    case DeclId.Token: {
      const id = r.zint("D_TOKEN id", Zint.MAX_Z32)
      const wire = decodeWireExpr(r, named, mapping, "D_TOKEN")
      return { _tag: "DeclareToken", id, wireExpr: wire, extensions: Extension.decodeIf(z, r, "D_TOKEN") }
    }
    case DeclId.UndeclareToken: {
      const id = r.zint("U_TOKEN id", Zint.MAX_Z32)
      return { _tag: "UndeclareToken", id, extensions: Extension.decodeIf(z, r, "U_TOKEN", undeclareMandatory) }
    }
    case DeclId.Final:
      return { _tag: "DeclareFinal", extensions: Extension.decodeIf(z, r, "D_FINAL") }
    default:
      return r.fail("declaration", `unknown declaration id 0x${(header & 0x1f).toString(16)}`, at)
  }
}

/** Decodes one network message starting at the reader's position. */
export const decode = (r: ZReader): NetworkMessage => {
  const at = r.pos
  const header = r.u8("network message header")
  const z = (header & FLAG_Z) !== 0
  switch (header & 0x1f) {
    case Id.Push: {
      const wire = decodeWireExpr(r, (header & FLAG_N) !== 0, (header & FLAG_M) !== 0, "PUSH")
      const extensions = Extension.decodeIf(z, r, "PUSH", networkMandatory)
      const body = ZenohBody.decodePushBody(r, r.u8("PUSH body header"), "PUSH body")
      return { _tag: "Push", wireExpr: wire, extensions, body }
    }
    case Id.Declare: {
      const interestId = (header & FLAG_I) !== 0 ? r.zint("DECLARE interest id", Zint.MAX_Z32) : undefined
      const extensions = Extension.decodeIf(z, r, "DECLARE", networkMandatory)
      const declaration = decodeDeclaration(r)
      return { _tag: "Declare", interestId, extensions, declaration }
    }
    case Id.Interest: {
      const id = r.zint("INTEREST id", Zint.MAX_Z32)
      const current = (header & FLAG_C) !== 0
      const future = (header & FLAG_F) !== 0
      const mode: InterestMode = current ? (future ? "currentFuture" : "current") : future ? "future" : "final"
      let options = 0
      let wire: WireExpr | undefined
      if (mode !== "final") {
        options = r.u8("INTEREST options")
        if ((options & InterestOption.Restricted) !== 0) {
          wire = decodeWireExpr(
            r,
            (options & InterestOption.Named) !== 0,
            (options & InterestOption.Mapping) !== 0,
            "INTEREST"
          )
        }
      }
      const extensions = Extension.decodeIf(z, r, "INTEREST", networkMandatory)
      return { _tag: "Interest", id, mode, options, wireExpr: wire, extensions }
    }
    case Id.Request: {
      const requestId = r.zint("REQUEST id", Zint.MAX_Z32)
      const wire = decodeWireExpr(r, (header & FLAG_N) !== 0, (header & FLAG_M) !== 0, "REQUEST")
      const extensions = Extension.decodeIf(z, r, "REQUEST", requestMandatory)
      const body = ZenohBody.decodeRequestBody(r)
      return { _tag: "Request", requestId, wireExpr: wire, extensions, body }
    }
    case Id.Response: {
      const requestId = r.zint("RESPONSE request id", Zint.MAX_Z32)
      const wire = decodeWireExpr(r, (header & FLAG_N) !== 0, (header & FLAG_M) !== 0, "RESPONSE")
      const extensions = Extension.decodeIf(z, r, "RESPONSE", networkMandatory)
      const body = ZenohBody.decodeResponseBody(r)
      return { _tag: "Response", requestId, wireExpr: wire, extensions, body }
    }
    case Id.ResponseFinal: {
      const requestId = r.zint("RESPONSE_FINAL request id", Zint.MAX_Z32)
      const extensions = Extension.decodeIf(z, r, "RESPONSE_FINAL", networkMandatory)
      return { _tag: "ResponseFinal", requestId, extensions }
    }
    case Id.Oam: {
      const id = r.zint("OAM id", Zint.MAX_Z16)
      const extensions = Extension.decodeIf(z, r, "OAM", networkMandatory)
      const body = Extension.decodeEncoded(r, header, "OAM body", "reserved body encoding", at)
      return { _tag: "Oam", id, extensions, body }
    }
    default:
      return r.fail("network message", `unknown network message id 0x${(header & 0x1f).toString(16)}`, at)
  }
}

// --- encoding ------------------------------------------------------------------------------------

const wireFlags = (wire: WireExpr): number =>
  (wire.suffix !== undefined ? FLAG_N : 0) | (wire.senderMapping ? FLAG_M : 0)

const encodeWireExpr = (w: ZWriter, wire: WireExpr) => {
  w.zint(wire.scope)
  if (wire.suffix !== undefined) w.string(wire.suffix)
}

const zFlag = (exts: ReadonlyArray<Extension.Extension>) => (exts.length > 0 ? FLAG_Z : 0)

const encodeDeclaration = (w: ZWriter, d: Declaration) => {
  switch (d._tag) {
    case "DeclareKeyExpr":
      w.u8(DeclId.KeyExpr | (d.wireExpr.suffix !== undefined ? FLAG_N : 0) | zFlag(d.extensions))
      w.zint(d.id)
      encodeWireExpr(w, d.wireExpr)
      return Extension.encodeAll(w, d.extensions)
    case "UndeclareKeyExpr":
      w.u8(DeclId.UndeclareKeyExpr | zFlag(d.extensions)).zint(d.id)
      return Extension.encodeAll(w, d.extensions)
    case "DeclareSubscriber":
    case "DeclareQueryable":
    case "DeclareToken": {
      const id = d._tag === "DeclareSubscriber"
        ? DeclId.Subscriber
        : d._tag === "DeclareQueryable"
        ? DeclId.Queryable
        : DeclId.Token
      w.u8(id | wireFlags(d.wireExpr) | zFlag(d.extensions)).zint(d.id)
      encodeWireExpr(w, d.wireExpr)
      return Extension.encodeAll(w, d.extensions)
    }
    case "UndeclareSubscriber":
    case "UndeclareQueryable":
    case "UndeclareToken": {
      const id = d._tag === "UndeclareSubscriber"
        ? DeclId.UndeclareSubscriber
        : d._tag === "UndeclareQueryable"
        ? DeclId.UndeclareQueryable
        : DeclId.UndeclareToken
      w.u8(id | zFlag(d.extensions)).zint(d.id)
      return Extension.encodeAll(w, d.extensions)
    }
    case "DeclareFinal":
      w.u8(DeclId.Final | zFlag(d.extensions))
      return Extension.encodeAll(w, d.extensions)
  }
}

/**
 * The bytes of a PUSH carrying a PUT, up to and including the payload length. Sending these then
 * the payload slices yields the PUSH without copying the payload.
 */
export const encodePushPutPrefix = (w: ZWriter, msg: Push, payloadLength: number): void => {
  w.u8(Id.Push | wireFlags(msg.wireExpr) | zFlag(msg.extensions))
  encodeWireExpr(w, msg.wireExpr)
  Extension.encodeAll(w, msg.extensions)
  ZenohBody.encodePutPrefix(w, msg.body as ZenohBody.Put, payloadLength)
}

export const encode = (w: ZWriter, msg: NetworkMessage): void => {
  switch (msg._tag) {
    case "Push":
      w.u8(Id.Push | wireFlags(msg.wireExpr) | zFlag(msg.extensions))
      encodeWireExpr(w, msg.wireExpr)
      Extension.encodeAll(w, msg.extensions)
      return ZenohBody.encodePushBody(w, msg.body)
    case "Declare":
      w.u8(Id.Declare | (msg.interestId !== undefined ? FLAG_I : 0) | zFlag(msg.extensions))
      if (msg.interestId !== undefined) w.zint(msg.interestId)
      Extension.encodeAll(w, msg.extensions)
      return encodeDeclaration(w, msg.declaration)
    case "Interest": {
      const modeFlags = msg.mode === "current"
        ? FLAG_C
        : msg.mode === "future"
        ? FLAG_F
        : msg.mode === "currentFuture"
        ? FLAG_C | FLAG_F
        : 0
      w.u8(Id.Interest | modeFlags | zFlag(msg.extensions)).zint(msg.id)
      if (msg.mode !== "final") {
        w.u8(msg.options)
        if (msg.wireExpr !== undefined) encodeWireExpr(w, msg.wireExpr)
      }
      return Extension.encodeAll(w, msg.extensions)
    }
    case "Request":
      w.u8(Id.Request | wireFlags(msg.wireExpr) | zFlag(msg.extensions)).zint(msg.requestId)
      encodeWireExpr(w, msg.wireExpr)
      Extension.encodeAll(w, msg.extensions)
      return ZenohBody.encodeRequestBody(w, msg.body)
    case "Response":
      w.u8(Id.Response | wireFlags(msg.wireExpr) | zFlag(msg.extensions)).zint(msg.requestId)
      encodeWireExpr(w, msg.wireExpr)
      Extension.encodeAll(w, msg.extensions)
      return ZenohBody.encodeResponseBody(w, msg.body)
    case "ResponseFinal":
      w.u8(Id.ResponseFinal | zFlag(msg.extensions)).zint(msg.requestId)
      return Extension.encodeAll(w, msg.extensions)
    case "Oam":
      w.u8(Id.Oam | Extension.encodingOf(msg.body) | zFlag(msg.extensions)).zint(msg.id)
      Extension.encodeAll(w, msg.extensions)
      return Extension.encodeEncoded(w, msg.body)
  }
}

/**
 * Total size of a PUSH+PUT whose beginning is `head` (its first fragment), read from the PUT
 * payload length; undefined when `head` is something else or too short to tell. Lets a
 * reassembler allocate the whole message once.
 */
export const pushSizeHint = (head: Uint8Array): number | undefined => pushLayout(head)?.size

/**
 * Where a PUSH+PUT's payload starts and how large the whole message is, read from its first
 * bytes (the first fragment): undefined when they do not hold a PUT's header.
 */
export const pushLayout = (head: Uint8Array): { readonly size: number; readonly payloadAt: number } | undefined => {
  try {
    const r = new ZReader(head)
    const header = r.u8("PUSH header")
    if ((header & 0x1f) !== Id.Push) return undefined
    decodeWireExpr(r, (header & FLAG_N) !== 0, false, "PUSH")
    Extension.decodeIf((header & FLAG_Z) !== 0, r, "PUSH", networkMandatory)
    const bodyHeader = r.u8("PUT header")
    if ((bodyHeader & 0x1f) !== ZenohBody.Id.Put) return undefined
    if ((bodyHeader & 0x20) !== 0) {
      r.zint64("timestamp")
      r.zbytes("timestamp zid")
    }
    if ((bodyHeader & 0x40) !== 0) {
      const word = r.zint("encoding")
      if ((word & 1) === 1) r.zbytes("schema")
    }
    Extension.decodeIf((bodyHeader & FLAG_Z) !== 0, r, "PUT")
    const payloadLength = r.zint("payload length", Zint.MAX_Z32)
    return { size: r.pos + payloadLength, payloadAt: r.pos }
  } catch {
    return undefined
  }
}
