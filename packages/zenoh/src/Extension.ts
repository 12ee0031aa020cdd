/**
 * Message extensions (TLV). An extension is identified by `header & 0x7f`: its 4-bit id, the
 * mandatory bit and the body encoding together (so QoS-unit `0x01` and QoS-link `0x21` differ).
 * Unknown extensions are kept (so a message re-encodes as received); an unknown *mandatory* one
 * makes the message invalid, as in the reference implementations.
 */
import type { ZReader, ZWriter } from "./ZBuf.js"
import * as Zint from "./Zint.js"

export const FLAG_MANDATORY = 0x10
export const FLAG_MORE = 0x80
export const ENC_MASK = 0x60
export const ENC_UNIT = 0x00
export const ENC_Z64 = 0x20
export const ENC_ZBUF = 0x40

/** Well-known extension identifiers (`header & 0x7f`). */
export const Id = {
  // INIT / OPEN
  QoS: 0x01,
  QoSLink: 0x21,
  Shm: 0x42,
  Auth: 0x43,
  MultiLink: 0x44,
  LowLatency: 0x05,
  Compression: 0x06,
  Patch: 0x27,
  RegionName: 0x48,
  // FRAME / FRAGMENT
  FramePriority: 0x31,
  FragmentFirst: 0x02,
  FragmentDrop: 0x03,
  // network messages
  NetworkQoS: 0x21,
  Timestamp: 0x42,
  NodeId: 0x33,
  UndeclaredWireExpr: 0x5f,
  // PUT / DEL bodies
  SourceInfo: 0x41,
  BodyShm: 0x12,
  Attachment: 0x43
} as const

export interface Extension {
  /** `header & 0x7f`: id, mandatory bit and encoding. */
  readonly id: number
  /** undefined for unit, bigint for z64, bytes (a view) for zbuf. */
  readonly value: undefined | bigint | Uint8Array
}

export const unit = (id: number): Extension => ({ id: id & 0x7f, value: undefined })
export const z64 = (id: number, value: bigint | number): Extension => ({ id: id & 0x7f, value: BigInt(value) })
export const zbuf = (id: number, value: Uint8Array): Extension => ({ id: id & 0x7f, value })

export const isMandatory = (ext: Extension): boolean => (ext.id & FLAG_MANDATORY) !== 0

export const find = (exts: ReadonlyArray<Extension>, id: number): Extension | undefined => {
  for (const ext of exts) if (ext.id === id) return ext
  return undefined
}

const none: ReadonlyArray<Extension> = []

/**
 * Reads the extension chain that follows a header with its `Z` flag set. `allowedMandatory` lists
 * the mandatory ids the message type understands; any other mandatory one fails the decode.
 */
export const decodeAll = (
  reader: ZReader,
  what: string,
  allowedMandatory: ReadonlySet<number> = emptySet
): ReadonlyArray<Extension> => {
  const out: Array<Extension> = []
  for (;;) {
    const at = reader.pos
    const header = reader.u8(`${what} extension header`)
    const id = header & 0x7f
    const value = decodeEncoded(reader, header, `${what} extension 0x${hex(id)}`, "reserved extension encoding", at)
    if ((header & FLAG_MANDATORY) !== 0 && !allowedMandatory.has(id)) {
      return reader.fail(`${what} extension 0x${hex(id)}`, "unknown mandatory extension", at)
    }
    out.push({ id, value })
    if ((header & FLAG_MORE) === 0) return out
  }
}

/**
 * A value whose encoding the header's ENC bits give (extensions and OAM bodies
 * share them): unit → undefined, z64 → one zint, zbuf → length-prefixed bytes.
 */
export const decodeEncoded = (
  reader: ZReader,
  header: number,
  what: string,
  reserved = "reserved encoding",
  at = reader.pos
): undefined | bigint | Uint8Array => {
  switch (header & ENC_MASK) {
    case ENC_UNIT:
      return undefined
    case ENC_Z64:
      return reader.zint64(what)
    case ENC_ZBUF:
      return reader.zbytes(what)
    default:
      return reader.fail(what, reserved, at)
  }
}

/** The ENC bits for a value, and its bytes (the encoding side of {@link decodeEncoded}). */
export const encodingOf = (value: undefined | bigint | Uint8Array): number =>
  value === undefined ? ENC_UNIT : typeof value === "bigint" ? ENC_Z64 : ENC_ZBUF

export const encodeEncoded = (writer: ZWriter, value: undefined | bigint | Uint8Array): void => {
  if (typeof value === "bigint") writer.zint64(value)
  else if (value !== undefined) writer.zbytes(value)
}

/** Decodes the extension chain when `present` (the owning header's `Z` flag), else returns []. */
export const decodeIf = (
  present: boolean,
  reader: ZReader,
  what: string,
  allowedMandatory?: ReadonlySet<number>
): ReadonlyArray<Extension> => present ? decodeAll(reader, what, allowedMandatory) : none

export const encodeAll = (writer: ZWriter, exts: ReadonlyArray<Extension>): void => {
  for (let i = 0; i < exts.length; i++) {
    const ext = exts[i]!
    const more = i < exts.length - 1 ? FLAG_MORE : 0
    writer.u8(ext.id | more)
    switch (ext.id & ENC_MASK) {
      case ENC_Z64:
        writer.zint64(typeof ext.value === "bigint" ? ext.value : 0n)
        break
      case ENC_ZBUF:
        writer.zbytes(ext.value instanceof Uint8Array ? ext.value : new Uint8Array(0))
        break
    }
  }
}

/** Encoded size of an extension chain. */
export const encodedLength = (exts: ReadonlyArray<Extension>): number => {
  let n = 0
  for (const ext of exts) {
    n += 1
    if ((ext.id & ENC_MASK) === ENC_Z64) n += Zint.lengthOf64(typeof ext.value === "bigint" ? ext.value : 0n)
    else if ((ext.id & ENC_MASK) === ENC_ZBUF) {
      const len = ext.value instanceof Uint8Array ? ext.value.length : 0
      n += Zint.lengthOf(len) + len
    }
  }
  return n
}

const emptySet: ReadonlySet<number> = new Set()

const hex = (n: number) => n.toString(16).padStart(2, "0")
