/**
 * Foxglove's well-known schemas as protobuf: the `FileDescriptorSet` an MCAP
 * schema record (encoding `protobuf`) or a Foxglove WebSocket channel carries,
 * and an encoder for messages of those schemas.
 *
 * The field lists come from `@foxglove/schemas` (its `internal` export, the
 * source Foxglove generates its own `.proto` files from), numbered by the same
 * rule as its `generateProto`: explicit `protobufFieldNumber`s first, the
 * others counted up from 1 skipping those. So `foxglove.RawImage` here is
 * `foxglove/RawImage.proto` as Foxglove publishes it, field for field, and
 * Foxglove or Lichtblick decode our messages without a plugin. Timestamps are
 * `google.protobuf.Timestamp` (seconds int64 = 1, nanos int32 = 2), as there.
 *
 * A message value is a plain object keyed by field name: numbers, strings,
 * booleans, `Uint8Array` for bytes (written without an intermediate copy: the
 * message is assembled once, at its final size), arrays or typed arrays for
 * repeated fields, nested objects, `{ sec, nsec }` for timestamps. Missing
 * fields are left out (proto3 defaults).
 */
import type { FoxgloveMessageSchema } from "@foxglove/schemas/internal.js"
import * as FoxgloveSchemas from "@foxglove/schemas/internal.js"

export type { FoxgloveMessageSchema } from "@foxglove/schemas/internal.js"

type SchemaList = typeof FoxgloveSchemas.foxgloveMessageSchemas

// A CommonJS module: its exports are named ones, or under `default`, depending on who loads it.
const schemaList: SchemaList = (FoxgloveSchemas as { foxgloveMessageSchemas?: SchemaList }).foxgloveMessageSchemas ??
  (FoxgloveSchemas as unknown as { default: { foxgloveMessageSchemas: SchemaList } }).default.foxgloveMessageSchemas

/** The schema named `name` in Foxglove's list, e.g. `RawImage`. */
export const foxgloveSchema = (name: keyof SchemaList): FoxgloveMessageSchema => schemaList[name]

// ── wire primitives ───────────────────────────────────────────────────────────

const Wire = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 } as const

const utf8 = new TextEncoder()

/** Collects the parts of one message; `finish` joins them once. */
class Writer {
  readonly parts: Array<Uint8Array> = []
  length = 0
  private small = new Uint8Array(256)
  private used = 0

  private flushSmall() {
    if (this.used === 0) return
    this.parts.push(this.small.subarray(0, this.used))
    this.small = new Uint8Array(256)
    this.used = 0
  }

  private room(n: number) {
    if (this.used + n > this.small.length) {
      this.flushSmall()
      if (n > this.small.length) this.small = new Uint8Array(n)
    }
  }

  byte(b: number) {
    this.room(1)
    this.small[this.used++] = b
    this.length++
  }

  varint(value: number) {
    // Non-negative integers up to 2^53 (lengths, field tags, uint32, int64 seconds).
    let v = value
    this.room(10)
    while (v >= 0x80) {
      this.small[this.used++] = (v % 0x80) | 0x80
      v = Math.floor(v / 0x80)
      this.length++
    }
    this.small[this.used++] = v
    this.length++
  }

  tag(field: number, wire: number) {
    this.varint(field * 8 + wire)
  }

  fixed32(value: number, signed: boolean) {
    this.room(4)
    const view = new DataView(this.small.buffer, this.small.byteOffset + this.used, 4)
    if (signed) view.setInt32(0, value, true)
    else view.setUint32(0, value >>> 0, true)
    this.used += 4
    this.length += 4
  }

  double(value: number) {
    this.room(8)
    new DataView(this.small.buffer, this.small.byteOffset + this.used, 8).setFloat64(0, value, true)
    this.used += 8
    this.length += 8
  }

  /** Appends bytes by reference (no copy until `finish`). */
  raw(bytes: Uint8Array) {
    if (bytes.byteLength <= 64) {
      this.room(bytes.byteLength)
      this.small.set(bytes, this.used)
      this.used += bytes.byteLength
    } else {
      this.flushSmall()
      this.parts.push(bytes)
    }
    this.length += bytes.byteLength
  }

  lengthDelimited(field: number, bytes: Uint8Array) {
    this.tag(field, Wire.bytes)
    this.varint(bytes.byteLength)
    this.raw(bytes)
  }

  nested(field: number, inner: Writer) {
    inner.flushSmall()
    this.tag(field, Wire.bytes)
    this.varint(inner.length)
    this.flushSmall()
    for (const part of inner.parts) this.parts.push(part)
    this.length += inner.length
  }

  finish(): Uint8Array {
    this.flushSmall()
    if (this.parts.length === 1) return this.parts[0]!
    const out = new Uint8Array(this.length)
    let offset = 0
    for (const part of this.parts) {
      out.set(part, offset)
      offset += part.byteLength
    }
    return out
  }
}

// ── field numbering, as @foxglove/schemas' generateProto ────────────────────

interface NumberedField {
  readonly field: FoxgloveMessageSchema["fields"][number]
  readonly number: number
}

const numbering = new WeakMap<FoxgloveMessageSchema, ReadonlyArray<NumberedField>>()

const numbered = (schema: FoxgloveMessageSchema): ReadonlyArray<NumberedField> => {
  const known = numbering.get(schema)
  if (known !== undefined) return known
  const explicit = new Set(schema.fields.flatMap((f) => f.protobufFieldNumber === undefined ? [] : [f.protobufFieldNumber]))
  let next = 1
  const fields = schema.fields.map((field) => {
    if (field.protobufFieldNumber !== undefined) return { field, number: field.protobufFieldNumber }
    while (explicit.has(next)) next++
    return { field, number: next++ }
  })
  numbering.set(schema, fields)
  return fields
}

const isTimestamp = (schema: FoxgloveMessageSchema) => schema.protoEquivalent === "google.protobuf.Timestamp"
const isDuration = (schema: FoxgloveMessageSchema) => schema.protoEquivalent === "google.protobuf.Duration"

// ── message encoding ──────────────────────────────────────────────────────────

type Value = Record<string, unknown>

const writePrimitive = (w: Writer, number: number, type: string, value: unknown) => {
  switch (type) {
    case "float64":
      w.tag(number, Wire.fixed64)
      return w.double(value as number)
    case "uint32":
      w.tag(number, Wire.fixed32)
      return w.fixed32(value as number, false)
    case "int32":
      w.tag(number, Wire.fixed32)
      return w.fixed32(value as number, true)
    case "boolean":
      w.tag(number, Wire.varint)
      return w.varint(value ? 1 : 0)
    case "string":
      return w.lengthDelimited(number, utf8.encode(value as string))
    case "bytes":
      return w.lengthDelimited(number, value as Uint8Array)
  }
}

/** Packed encoding of a repeated float64/fixed32 field. */
const writePacked = (w: Writer, number: number, type: string, values: ArrayLike<number>) => {
  const inner = new Writer()
  for (let i = 0; i < values.length; i++) {
    if (type === "float64") inner.double(values[i]!)
    else if (type === "boolean") inner.varint(values[i] ? 1 : 0)
    else inner.fixed32(values[i]!, type === "int32")
  }
  w.nested(number, inner)
}

const encodeInto = (w: Writer, schema: FoxgloveMessageSchema, value: Value) => {
  if (isTimestamp(schema) || isDuration(schema)) {
    // google.protobuf.Timestamp/Duration: seconds (int64) = 1, nanos (int32) = 2.
    const sec = (value["sec"] as number | undefined) ?? 0
    const nsec = (value["nsec"] as number | undefined) ?? 0
    if (sec !== 0) (w.tag(1, Wire.varint), w.varint(sec))
    if (nsec !== 0) (w.tag(2, Wire.varint), w.varint(nsec))
    return
  }
  for (const { field, number } of numbered(schema)) {
    const value_ = value[field.name]
    if (value_ === undefined) continue
    const type = field.type
    if (field.array !== undefined) {
      const items = value_ as ArrayLike<unknown>
      if (type.type === "nested") {
        for (let i = 0; i < items.length; i++) {
          const inner = new Writer()
          encodeInto(inner, type.schema, items[i] as Value)
          w.nested(number, inner)
        }
      } else if (type.type === "primitive" && (type.name === "string" || type.name === "bytes")) {
        for (let i = 0; i < items.length; i++) writePrimitive(w, number, type.name, items[i])
      } else if (type.type === "primitive") {
        writePacked(w, number, type.name, items as ArrayLike<number>)
      } else {
        const inner = new Writer()
        for (let i = 0; i < items.length; i++) inner.varint(items[i] as number)
        w.nested(number, inner)
      }
      continue
    }
    switch (type.type) {
      case "primitive":
        writePrimitive(w, number, type.name, value_)
        break
      case "enum":
        w.tag(number, Wire.varint)
        w.varint(value_ as number)
        break
      case "nested": {
        const inner = new Writer()
        encodeInto(inner, type.schema, value_ as Value)
        w.nested(number, inner)
      }
    }
  }
}

/** One message of `schema`, as protobuf bytes (assembled once, at its final size). */
export const encode = (schema: FoxgloveMessageSchema, value: Value): Uint8Array => {
  const w = new Writer()
  encodeInto(w, schema, value)
  return w.finish()
}

// ── descriptors ───────────────────────────────────────────────────────────────

/** FieldDescriptorProto.Type values (google/protobuf/descriptor.proto). */
const FieldType = { double: 1, int64: 3, int32: 5, fixed32: 7, bool: 8, string: 9, message: 11, bytes: 12, enum: 14, sfixed32: 15 } as const
const Label = { optional: 1, repeated: 3 } as const

const primitiveType = {
  float64: FieldType.double,
  uint32: FieldType.fixed32,
  int32: FieldType.sfixed32,
  boolean: FieldType.bool,
  string: FieldType.string,
  bytes: FieldType.bytes
} as const

const protoName = (schema: FoxgloveMessageSchema) => schema.protoEquivalent ?? `foxglove.${schema.name}`
const fileName = (schema: FoxgloveMessageSchema) =>
  schema.protoEquivalent === undefined ? `foxglove/${schema.name}.proto` : `${schema.protoEquivalent.replace(/\./g, "/").toLowerCase()}.proto`

const fieldDescriptor = (name: string, number: number, label: number, type: number, typeName?: string) => {
  const w = new Writer()
  w.lengthDelimited(1, utf8.encode(name))
  w.tag(3, Wire.varint)
  w.varint(number)
  w.tag(4, Wire.varint)
  w.varint(label)
  w.tag(5, Wire.varint)
  w.varint(type)
  if (typeName !== undefined) w.lengthDelimited(6, utf8.encode(typeName))
  return w
}

/** FileDescriptorProto of one message schema (its nested enums inside the message, as Foxglove does). */
const fileDescriptor = (schema: FoxgloveMessageSchema): { bytes: Uint8Array; dependencies: Array<FoxgloveMessageSchema> } => {
  const dependencies: Array<FoxgloveMessageSchema> = []
  const message = new Writer()
  if (isTimestamp(schema) || isDuration(schema)) {
    message.lengthDelimited(1, utf8.encode(isTimestamp(schema) ? "Timestamp" : "Duration"))
    message.nested(2, fieldDescriptor("seconds", 1, Label.optional, FieldType.int64))
    message.nested(2, fieldDescriptor("nanos", 2, Label.optional, FieldType.int32))
  } else {
    message.lengthDelimited(1, utf8.encode(schema.name))
    const enums = new Map<string, { protobufEnumName: string; values: ReadonlyArray<{ name: string; value: number }> }>()
    for (const { field, number } of numbered(schema)) {
      if (field.optional === true) throw new Error(`Protobuf: optional field ${schema.name}.${field.name} is not supported`)
      const label = field.array === undefined ? Label.optional : Label.repeated
      const type = field.type
      if (type.type === "primitive") {
        message.nested(2, fieldDescriptor(field.name, number, label, primitiveType[type.name]))
      } else if (type.type === "nested") {
        if (!dependencies.includes(type.schema)) dependencies.push(type.schema)
        message.nested(2, fieldDescriptor(field.name, number, label, FieldType.message, `.${protoName(type.schema)}`))
      } else {
        enums.set(type.enum.protobufEnumName, type.enum)
        message.nested(
          2,
          fieldDescriptor(field.name, number, label, FieldType.enum, `.foxglove.${schema.name}.${type.enum.protobufEnumName}`)
        )
      }
    }
    for (const e of enums.values()) {
      const enumWriter = new Writer()
      enumWriter.lengthDelimited(1, utf8.encode(e.protobufEnumName))
      for (const v of e.values) {
        const value = new Writer()
        value.lengthDelimited(1, utf8.encode(v.name))
        value.tag(2, Wire.varint)
        value.varint(v.value)
        enumWriter.nested(2, value)
      }
      message.nested(4, enumWriter)
    }
  }
  const file = new Writer()
  file.lengthDelimited(1, utf8.encode(fileName(schema)))
  file.lengthDelimited(2, utf8.encode(protoName(schema).slice(0, protoName(schema).lastIndexOf("."))))
  for (const dependency of dependencies) file.lengthDelimited(3, utf8.encode(fileName(dependency)))
  file.nested(4, message)
  file.lengthDelimited(12, utf8.encode("proto3"))
  return { bytes: file.finish(), dependencies }
}

/**
 * The serialized `google.protobuf.FileDescriptorSet` for `schema` and every
 * schema it uses, dependencies first: the `data` of an MCAP schema record
 * with encoding `protobuf`, named `protoName(schema)` (e.g. `foxglove.RawImage`).
 */
export const descriptorSet = (schema: FoxgloveMessageSchema): Uint8Array => {
  const files: Array<Uint8Array> = []
  const seen = new Set<FoxgloveMessageSchema>()
  const visit = (s: FoxgloveMessageSchema) => {
    if (seen.has(s)) return
    seen.add(s)
    const { bytes, dependencies } = fileDescriptor(s)
    for (const d of dependencies) visit(d)
    files.push(bytes)
  }
  visit(schema)
  const set = new Writer()
  for (const file of files) set.lengthDelimited(1, file)
  return set.finish()
}

/** The fully qualified protobuf name, e.g. `foxglove.RawImage`. */
export const schemaName = protoName
