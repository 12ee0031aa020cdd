/**
 * The JSON that chiral prints: message descriptions (`chiral decode --json`,
 * `chiral probe --json`), action logs (`chiral serve --log-actions`) and
 * reports (`chiral bench --json`). One writer, so every one of them follows
 * one convention and parses with any JSON reader.
 *
 * JSON has no NaN and no infinities. JSON.stringify writes them as `null`,
 * which cannot be told from a missing value, and Python's json writes bare
 * `NaN`/`Infinity`, which JSON.parse and most JSON readers reject. Robot data
 * does carry them (an uninitialised joint, a divide by zero in a policy), so
 * they must stay visible and distinct:
 *
 * | value          | written as      | reads back with                     |
 * |----------------|-----------------|-------------------------------------|
 * | NaN            | `"NaN"`         | `Number(s)` (JS), `float(s)` (Python) |
 * | +Infinity      | `"Infinity"`    | same                                |
 * | -Infinity      | `"-Infinity"`   | same                                |
 * | -0             | `-0.0`          | JSON.parse gives -0, Python's json -0.0 |
 * | bigint         | exact digits    | (JSON.parse rounds beyond 2^53; Python's json is exact) |
 *
 * The three strings are the spellings of JavaScript's `String(x)` and of
 * Python's `float()`, so one call turns each back into its number. Where a
 * value is known to be a number (tensor data of a float dtype, timestamps,
 * rewards, report figures) one of these strings is that float; in a user map
 * (metadata, info, extra) the string "NaN" sent as a string prints the same,
 * and only the frame itself tells them apart. -0 is a valid JSON number, and
 * written as `-0.0` (not `0`, which is what JSON.stringify prints) it keeps its
 * sign in both JavaScript and Python readers.
 *
 * Everything else is written as JSON.stringify writes it (same escaping, same
 * layout for an indent, `toJSON` honoured, `undefined` and functions left out
 * of objects and written as null in arrays), and typed arrays as arrays of
 * their elements.
 */

/** What the three non-finite numbers are written as (JSON strings). */
export const nonFiniteText = {
  nan: "NaN",
  positiveInfinity: "Infinity",
  negativeInfinity: "-Infinity"
} as const

const numberText = (x: number): string => {
  if (x !== x) return `"${nonFiniteText.nan}"`
  if (x === Infinity) return `"${nonFiniteText.positiveInfinity}"`
  if (x === -Infinity) return `"${nonFiniteText.negativeInfinity}"`
  if (x === 0 && 1 / x < 0) return "-0.0"
  // Number.prototype.toString is exactly how JSON.stringify writes a finite number.
  return String(x)
}

const isElementArray = (v: object): v is ArrayLike<unknown> =>
  Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView))

/** A value's JSON text, or undefined where JSON.stringify would leave it out. */
const write = (value: unknown, key: string | number, gap: string, indent: string, open: Array<object>): string | undefined => {
  if (typeof value === "object" && value !== null && typeof (value as { toJSON?: unknown }).toJSON === "function") {
    value = (value as { toJSON: (key: string) => unknown }).toJSON(String(key))
  }
  switch (typeof value) {
    case "number":
      return numberText(value)
    case "bigint":
      return value.toString()
    case "string":
      return JSON.stringify(value)
    case "boolean":
      return value ? "true" : "false"
    case "object":
      break
    default:
      return undefined // undefined, functions, symbols
  }
  if (value === null) return "null"
  if (open.includes(value)) throw new TypeError("stringifyJson: the value contains itself")
  open.push(value)
  const inner = indent + gap
  const [start, separator, end] = gap === "" ? ["", ",", ""] : [`\n${inner}`, `,\n${inner}`, `\n${indent}`]
  let text: string
  if (isElementArray(value)) {
    const items = new Array<string>(value.length)
    for (let i = 0; i < value.length; i++) {
      const item = value[i]
      // Tensor data is most of what is printed: numbers skip the general case.
      items[i] = typeof item === "number" ? numberText(item) : write(item, i, gap, inner, open) ?? "null"
    }
    text = items.length === 0 ? "[]" : `[${start}${items.join(separator)}${end}]`
  } else {
    const colon = gap === "" ? ":" : ": "
    const members: Array<string> = []
    for (const name of Object.keys(value)) {
      const item = write((value as Record<string, unknown>)[name], name, gap, inner, open)
      if (item !== undefined) members.push(`${JSON.stringify(name)}${colon}${item}`)
    }
    text = members.length === 0 ? "{}" : `{${start}${members.join(separator)}${end}}`
  }
  open.pop()
  return text
}

/**
 * `value` as JSON text under the convention above: valid JSON (RFC 8259) for
 * every input, NaN/±Infinity as the strings "NaN", "Infinity", "-Infinity",
 * -0 as `-0.0`, bigints exact. `indent` is the number of spaces per level
 * (none: one line), laid out as JSON.stringify lays it out. A value that
 * JSON.stringify leaves out entirely (undefined at the top) is written `null`.
 * Throws a TypeError for a value that contains itself, as JSON.stringify does.
 */
export const stringifyJson = (value: unknown, indent?: number): string =>
  write(value, "", " ".repeat(Math.max(0, Math.min(10, Math.floor(indent ?? 0)))), "", []) ?? "null"

/**
 * A JSON.parse reviver that reads the three non-finite strings back as numbers:
 * `JSON.parse(text, reviveNonFinite)`. For documents whose strings are never
 * these words otherwise (reports such as `chiral bench --json`); a user map
 * may hold the string "NaN" as a string.
 */
export const reviveNonFinite = (_key: string, value: unknown): unknown =>
  value === nonFiniteText.nan
    ? Number.NaN
    : value === nonFiniteText.positiveInfinity
    ? Infinity
    : value === nonFiniteText.negativeInfinity
    ? -Infinity
    : value
