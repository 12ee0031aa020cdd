/**
 * What a robot accepts as an action, and the check every `apply_action` (and
 * legacy `action` step) passes before a handler sees it.
 *
 * Non-finite values (NaN, +Inf, -Inf) are refused whether or not a spec is
 * declared: no joint command can mean them, and a NaN handed to a motor
 * controller is undefined behaviour (the field frame
 * `apply_action_nonfinite.bin` is the case). With a spec, the shape and the
 * per-joint bounds are checked as well.
 */
import { halfToNumber, type Tensor, type UserMap } from "@chiral/protocol"
import { ConfigError } from "./SensorError.js"

export interface ActionSpec {
  /**
   * D, the values of one action row. An action is accepted as `[D]` or as
   * `[N, D]` with N ≥ 1 rows (the Python client sends `[D]`; a caller may send
   * `[1, D]`; the C++ client's legacy step sends `[N, D]`). The references'
   * metadata calls this `action_shape: [1, D]`.
   */
  readonly dim: number
  /**
   * N, the most rows an action may have (`[n, D]` with 1 ≤ n ≤ N): what the
   * robot's metadata says (`action_shape: [N, D]`). Default: any number. A
   * C++ reference client's legacy step sends as many rows as its policy gave,
   * and a handler built for one row would take the first or fail.
   */
  readonly maxRows?: number | undefined
  /** Lowest value of each joint, D values, inclusive (same units as the actions). Default: no bound. */
  readonly lower?: ReadonlyArray<number> | undefined
  /** Highest value of each joint, D values, inclusive. Default: no bound. */
  readonly upper?: ReadonlyArray<number> | undefined
}

/** The robot's action shape as its metadata gives it (`shapeFromMetadata`). */
export interface MetadataShape {
  /**
   * [N, D]: D values per action; N actions per legacy step (1 unless the
   * metadata says more).
   */
  readonly shape: readonly [number, number]
  /** What the metadata says, for messages: `action_shape [1, 7]`, `action_D 7`. */
  readonly said: string
}

const positiveInt = (u: unknown): number | undefined => {
  const n = typeof u === "string" && u.trim() !== "" ? Number(u) : u
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : undefined
}

/** A list of dimensions, also when a C++ server sent it as a string ("[1,7]"). */
const dimensions = (u: unknown): ReadonlyArray<number> | undefined => {
  let value = u
  if (typeof value === "string") {
    try {
      value = JSON.parse(value)
    } catch {
      return undefined
    }
  }
  if (!Array.isArray(value) || value.length === 0) return undefined
  const dims = value.map(positiveInt)
  return dims.every((d) => d !== undefined) ? dims as ReadonlyArray<number> : undefined
}

/** Rows in an action tensor: `[D]` is one, `[N, D]` is N. */
export const rowsOf = (action: Tensor): number => (action.shape.length >= 2 ? action.shape[0]! : 1)

/**
 * Whether metadata reads as the C++ reference robot's: `action_N`/`action_D`
 * and no `action_shape` (the Python convention, which chiral-ts servers use).
 */
export const isLegacyRobot = (metadata: UserMap): boolean =>
  metadata["action_shape"] === undefined && metadata["action_D"] !== undefined && metadata["action_N"] !== undefined

/**
 * The robot's action shape from its metadata: `action_shape` (the Python
 * convention: `[1, D]`, or `[D]`; dimensions after the first multiply into
 * D), or `action_N`/`action_D` (the C++ server's strings); undefined when it
 * says neither (or nothing that reads as positive integers).
 */
export const shapeFromMetadata = (metadata: UserMap): MetadataShape | undefined => {
  const shape = dimensions(metadata["action_shape"])
  if (shape !== undefined) {
    const said = `action_shape [${shape.join(", ")}]`
    if (shape.length === 1) return { shape: [1, shape[0]!], said }
    return { shape: [shape[0]!, shape.slice(1).reduce((a, b) => a * b, 1)], said }
  }
  const d = positiveInt(metadata["action_D"])
  if (d === undefined) return undefined
  const n = positiveInt(metadata["action_N"])
  return { shape: [n ?? 1, d], said: n === undefined ? `action_D ${d}` : `action_N ${n}, action_D ${d}` }
}

/** Checks a spec once, when the server is built: the bounds must fit D and each other. */
export const validate = (spec: ActionSpec): ConfigError | undefined => {
  const fail = (reason: string) => new ConfigError({ sensor: "actionSpec", reason })
  if (!Number.isSafeInteger(spec.dim) || spec.dim < 1) return fail(`dim ${spec.dim}: expected an integer ≥ 1`)
  if (spec.maxRows !== undefined && !(Number.isSafeInteger(spec.maxRows) && spec.maxRows >= 1)) {
    return fail(`maxRows ${spec.maxRows}: expected an integer ≥ 1`)
  }
  for (const [name, bounds] of [["lower", spec.lower], ["upper", spec.upper]] as const) {
    if (bounds === undefined) continue
    if (bounds.length !== spec.dim) return fail(`${name} has ${bounds.length} values, dim is ${spec.dim}`)
    const bad = bounds.findIndex((b) => Number.isNaN(b))
    if (bad >= 0) return fail(`${name}[${bad}] is NaN`)
  }
  if (spec.lower !== undefined && spec.upper !== undefined) {
    const crossed = spec.lower.findIndex((low, i) => low > spec.upper![i]!)
    if (crossed >= 0) return fail(`lower[${crossed}] ${spec.lower[crossed]} is above upper[${crossed}] ${spec.upper[crossed]}`)
  }
  return undefined
}

const shapeText = (shape: ReadonlyArray<number>) => `[${shape.join(", ")}]`

/** The value at `i` as a number (float16 decoded, 64-bit ints converted, bool as 0/1). */
const valueAt = (action: Tensor, i: number): number => {
  const v = action.data[i]!
  return action.dtype === "float16" ? halfToNumber(v as number) : Number(v)
}

/** The first NaN/±Inf of a float action, as `index` and value text, or undefined. */
const nonFinite = (action: Tensor): string | undefined => {
  const dtype = action.dtype
  if (dtype !== "float16" && dtype !== "float32" && dtype !== "float64") return undefined
  const data = action.data as Float32Array | Float64Array | Uint16Array
  for (let i = 0; i < data.length; i++) {
    // float16: exponent bits all ones is ±Inf or NaN
    const finite = dtype === "float16" ? (data[i]! & 0x7c00) !== 0x7c00 : Number.isFinite(data[i])
    if (!finite) return `element ${i} is ${String(valueAt(action, i))}`
  }
  return undefined
}

/**
 * Why `action` must not reach a motor, or undefined when it may: a non-finite
 * value always; with a spec, a shape other than `[D]`/`[N, D]`, a bool
 * action, or a value outside its joint's bounds. The reason names the first
 * offending element, by its index in the flattened action (`element 3 (row 0, joint 3) is 2.5, above upper[3] 2`).
 */
export const problem = (action: Tensor, spec: ActionSpec | undefined): string | undefined => {
  const infinite = nonFinite(action)
  if (infinite !== undefined) return `${infinite}: actions must be finite`
  if (spec === undefined) return undefined
  const shape = action.shape
  const rows = shape.length === 1 ? 1 : shape.length === 2 ? shape[0]! : 0
  if (shape[shape.length - 1] !== spec.dim || rows < 1) {
    return `shape ${shapeText(shape)}, expected [${spec.dim}] or [N, ${spec.dim}]`
  }
  if (spec.maxRows !== undefined && rows > spec.maxRows) {
    return `shape ${shapeText(shape)}: ${rows} rows, at most ${spec.maxRows} (the robot's action_shape [${spec.maxRows}, ${spec.dim}])`
  }
  if (action.dtype === "bool") return "dtype bool, expected numbers"
  if (spec.lower === undefined && spec.upper === undefined) return undefined
  for (let i = 0; i < action.data.length; i++) {
    const joint = i % spec.dim
    const value = valueAt(action, i)
    const where = `element ${i} (row ${Math.floor(i / spec.dim)}, joint ${joint}) is ${value}`
    const low = spec.lower?.[joint]
    if (low !== undefined && value < low) return `${where}, below lower[${joint}] ${low}`
    const high = spec.upper?.[joint]
    if (high !== undefined && value > high) return `${where}, above upper[${joint}] ${high}`
  }
  return undefined
}
