/**
 * JSON for recorded values, in chiral's one JSON convention
 * (`stringifyJson` of @chiral/protocol), where JSON itself would lose something:
 *  - non-finite numbers become the strings `"NaN"`, `"Infinity"`,
 *    `"-Infinity"` (plain `JSON.stringify` writes `null`, which would hide a
 *    NaN action); a plot shows them as gaps, a reader turns them back;
 *  - binary values (msgpack bin in metadata, info, extra) become
 *    `{"$base64": "…"}`, other typed arrays plain arrays of numbers;
 *  - 64-bit integers (bigint) become numbers when exactly representable,
 *    otherwise decimal strings.
 */
import { stringifyJson } from "@chiral/protocol"

const nonFinite = (x: number): string | number =>
  Number.isNaN(x) ? "NaN" : x === Infinity ? "Infinity" : x === -Infinity ? "-Infinity" : x

/** `value` as a JSON-ready value (see the module doc for what changes). */
export const toJsonValue = (value: unknown): unknown => {
  if (typeof value === "number") return Number.isFinite(value) ? value : nonFinite(value)
  if (typeof value === "bigint") return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString()
  if (value === null || typeof value !== "object") return value === undefined ? null : value
  if (value instanceof Uint8Array) return { $base64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") }
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number | bigint>, toJsonValue)
  if (Array.isArray(value)) return value.map(toJsonValue)
  if (value instanceof Map) return Object.fromEntries(Array.from(value, ([k, v]) => [String(k), toJsonValue(v)]))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) out[k] = toJsonValue(v)
  return out
}

/** Numbers as written: the strings for non-finite values turned back into numbers. */
export const numberOf = (u: unknown): number =>
  typeof u === "number" ? u : u === "NaN" ? NaN : u === "Infinity" ? Infinity : u === "-Infinity" ? -Infinity : NaN

/** The inverse of {@link toJsonValue} for user maps: `{"$base64"}` back to bytes, non-finite strings stay strings. */
export const fromJsonValue = (value: unknown): unknown => {
  if (value === null || typeof value !== "object") return value
  if (Array.isArray(value)) return value.map(fromJsonValue)
  const record = value as Record<string, unknown>
  const keys = Object.keys(record)
  if (keys.length === 1 && keys[0] === "$base64" && typeof record["$base64"] === "string") {
    return new Uint8Array(Buffer.from(record["$base64"], "base64"))
  }
  const out: Record<string, unknown> = {}
  for (const k of keys) out[k] = fromJsonValue(record[k])
  return out
}

const encoder = new TextEncoder()

/** UTF-8 JSON bytes of `value` (through {@link toJsonValue}, written by `stringifyJson`). */
export const encode = (value: unknown): Uint8Array => encoder.encode(stringifyJson(toJsonValue(value)))

/** The JSON schema for a number that may also be one of the non-finite strings. */
export const numberSchema = {
  anyOf: [{ type: "number" }, { type: "string", enum: ["NaN", "Infinity", "-Infinity"] }]
} as const
