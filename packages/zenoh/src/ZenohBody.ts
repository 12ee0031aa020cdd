/**
 * Zenoh message bodies carried by network messages: PUT and DEL (in PUSH, REQUEST, REPLY),
 * QUERY (in REQUEST), REPLY and ERR (in RESPONSE). Only PUT/DEL matter to pub/sub; the others are
 * decoded so that a FRAME holding them can be walked to its end.
 */
import * as Extension from "./Extension.js"
import type { ZReader, ZWriter } from "./ZBuf.js"
import * as Zint from "./Zint.js"

export const Id = { Put: 0x01, Del: 0x02, Query: 0x03, Reply: 0x04, Err: 0x05 } as const

const FLAG_T = 0x20
const FLAG_E = 0x40
const FLAG_C = 0x20
const FLAG_P = 0x40
const FLAG_Z = 0x80

/** NTP64 time (32.32 fixed-point seconds) and the id of the stamping node. */
export interface Timestamp {
  readonly time: bigint
  readonly zid: Uint8Array
}

/** Encoding id (0 `zenoh/bytes` is the default and is never sent) with an optional schema. */
export interface Encoding {
  readonly id: number
  readonly schema: Uint8Array | undefined
}

export interface Put {
  readonly _tag: "Put"
  readonly timestamp: Timestamp | undefined
  readonly encoding: Encoding | undefined
  readonly extensions: ReadonlyArray<Extension.Extension>
  readonly payload: Uint8Array
}

/** A PUT's fields other than its payload. */
export type PutMeta = Pick<Put, "timestamp" | "encoding" | "extensions">

export interface Del {
  readonly _tag: "Del"
  readonly timestamp: Timestamp | undefined
  readonly extensions: ReadonlyArray<Extension.Extension>
}

export interface Query {
  readonly _tag: "Query"
  readonly consolidation: number | undefined
  readonly parameters: Uint8Array | undefined
  readonly extensions: ReadonlyArray<Extension.Extension>
}

export interface Reply {
  readonly _tag: "Reply"
  readonly consolidation: number | undefined
  readonly extensions: ReadonlyArray<Extension.Extension>
  readonly body: Put | Del
}

export interface Err {
  readonly _tag: "Err"
  readonly encoding: Encoding | undefined
  readonly extensions: ReadonlyArray<Extension.Extension>
  readonly payload: Uint8Array
}

export type PushBody = Put | Del
export type RequestBody = Query | Put | Del
export type ResponseBody = Reply | Err

const noExtensions: ReadonlyArray<Extension.Extension> = []

/** A plain PUT: no timestamp, default encoding, no extensions. */
export const put = (payload: Uint8Array): Put => ({
  _tag: "Put",
  timestamp: undefined,
  encoding: undefined,
  extensions: noExtensions,
  payload
})

// --- decoding ------------------------------------------------------------------------------------

const decodeTimestamp = (r: ZReader, what: string): Timestamp => {
  const time = r.zint64(`${what} timestamp time`)
  const zid = r.zbytes(`${what} timestamp zid`, 16)
  return { time, zid }
}

const decodeEncoding = (r: ZReader, what: string): Encoding => {
  const word = r.zint(`${what} encoding`, Zint.MAX_Z32)
  const schema = (word & 1) === 1 ? r.zbytes(`${what} encoding schema`, 0xff) : undefined
  return { id: Math.floor(word / 2), schema }
}

/** PUT or DEL, from its header byte (already read) onwards. */
export const decodePushBody = (r: ZReader, header: number, what: string): PushBody => {
  switch (header & 0x1f) {
    case Id.Put: {
      const timestamp = (header & FLAG_T) !== 0 ? decodeTimestamp(r, "PUT") : undefined
      const encoding = (header & FLAG_E) !== 0 ? decodeEncoding(r, "PUT") : undefined
      const extensions = Extension.decodeIf((header & FLAG_Z) !== 0, r, "PUT")
      const payload = r.zbytes("PUT payload")
      return { _tag: "Put", timestamp, encoding, extensions, payload }
    }
    case Id.Del: {
      const timestamp = (header & FLAG_T) !== 0 ? decodeTimestamp(r, "DEL") : undefined
      const extensions = Extension.decodeIf((header & FLAG_Z) !== 0, r, "DEL")
      return { _tag: "Del", timestamp, extensions }
    }
    default:
      return r.fail(what, `expected PUT or DEL, found body id 0x${(header & 0x1f).toString(16)}`, r.pos - 1)
  }
}

export const decodeRequestBody = (r: ZReader): RequestBody => {
  const header = r.u8("REQUEST body header")
  if ((header & 0x1f) !== Id.Query) return decodePushBody(r, header, "REQUEST body")
  const consolidation = (header & FLAG_C) !== 0 ? r.u8("QUERY consolidation") : undefined
  const parameters = (header & FLAG_P) !== 0 ? r.zbytes("QUERY parameters") : undefined
  const extensions = Extension.decodeIf((header & FLAG_Z) !== 0, r, "QUERY")
  return { _tag: "Query", consolidation, parameters, extensions }
}

export const decodeResponseBody = (r: ZReader): ResponseBody => {
  const header = r.u8("RESPONSE body header")
  switch (header & 0x1f) {
    case Id.Reply: {
      const consolidation = (header & FLAG_C) !== 0 ? r.u8("REPLY consolidation") : undefined
      const extensions = Extension.decodeIf((header & FLAG_Z) !== 0, r, "REPLY")
      const body = decodePushBody(r, r.u8("REPLY body header"), "REPLY body")
      return { _tag: "Reply", consolidation, extensions, body }
    }
    case Id.Err: {
      const encoding = (header & FLAG_E) !== 0 ? decodeEncoding(r, "ERR") : undefined
      const extensions = Extension.decodeIf((header & FLAG_Z) !== 0, r, "ERR")
      const payload = r.zbytes("ERR payload")
      return { _tag: "Err", encoding, extensions, payload }
    }
    default:
      return r.fail("RESPONSE body", `expected REPLY or ERR, found body id 0x${(header & 0x1f).toString(16)}`, r.pos - 1)
  }
}

// --- encoding ------------------------------------------------------------------------------------

const encodeTimestamp = (w: ZWriter, ts: Timestamp) => {
  w.zint64(ts.time).zbytes(ts.zid)
}

const encodeEncoding = (w: ZWriter, enc: Encoding) => {
  w.zint(enc.id * 2 + (enc.schema !== undefined ? 1 : 0))
  if (enc.schema !== undefined) w.zbytes(enc.schema)
}

/**
 * Everything of a PUT up to and including its payload length: the payload bytes themselves are
 * appended by the caller (or sent as separate slices, avoiding a copy of large payloads).
 */
export const encodePutPrefix = (w: ZWriter, put: PutMeta, payloadLength: number): void => {
  let header = Id.Put
  if (put.timestamp !== undefined) header |= FLAG_T
  if (put.encoding !== undefined) header |= FLAG_E
  if (put.extensions.length > 0) header |= FLAG_Z
  w.u8(header)
  if (put.timestamp !== undefined) encodeTimestamp(w, put.timestamp)
  if (put.encoding !== undefined) encodeEncoding(w, put.encoding)
  Extension.encodeAll(w, put.extensions)
  w.zint(payloadLength)
}

export const encodePushBody = (w: ZWriter, body: PushBody): void => {
  if (body._tag === "Put") {
    encodePutPrefix(w, body, body.payload.length)
    w.bytes(body.payload)
    return
  }
  let header = Id.Del
  if (body.timestamp !== undefined) header |= FLAG_T
  if (body.extensions.length > 0) header |= FLAG_Z
  w.u8(header)
  if (body.timestamp !== undefined) encodeTimestamp(w, body.timestamp)
  Extension.encodeAll(w, body.extensions)
}

export const encodeRequestBody = (w: ZWriter, body: RequestBody): void => {
  if (body._tag !== "Query") return encodePushBody(w, body)
  let header = Id.Query
  if (body.consolidation !== undefined) header |= FLAG_C
  if (body.parameters !== undefined) header |= FLAG_P
  if (body.extensions.length > 0) header |= FLAG_Z
  w.u8(header)
  if (body.consolidation !== undefined) w.u8(body.consolidation)
  if (body.parameters !== undefined) w.zbytes(body.parameters)
  Extension.encodeAll(w, body.extensions)
}

export const encodeResponseBody = (w: ZWriter, body: ResponseBody): void => {
  if (body._tag === "Reply") {
    let header = Id.Reply
    if (body.consolidation !== undefined) header |= FLAG_C
    if (body.extensions.length > 0) header |= FLAG_Z
    w.u8(header)
    if (body.consolidation !== undefined) w.u8(body.consolidation)
    Extension.encodeAll(w, body.extensions)
    encodePushBody(w, body.body)
    return
  }
  let header = Id.Err
  if (body.encoding !== undefined) header |= FLAG_E
  if (body.extensions.length > 0) header |= FLAG_Z
  w.u8(header)
  if (body.encoding !== undefined) encodeEncoding(w, body.encoding)
  Extension.encodeAll(w, body.extensions)
  w.zbytes(body.payload)
}
