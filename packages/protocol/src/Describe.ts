import type { Message } from "./Message.js"
import type { Observation } from "./Observation.js"
import { stringifyJson } from "./Json.js"
import { Tensor } from "./Tensor.js"

/**
 * The JSON description of messages used by the shared vectors.json, by
 * `chiral decode --json` and `chiral probe --json`. Print it with
 * {@link stringifyJson}: tensor data and user maps may hold NaN, ±Infinity,
 * -0 and 64-bit integers, which that writer keeps (see Json.ts).
 */

export interface DescribeOptions {
  /** Include tensor elements (default true); false gives `{dtype, shape}` only. */
  readonly tensorData?: boolean | undefined
}

/** JSON-ready values (bigint stays bigint, NaN stays NaN: {@link stringifyJson} prints them). */
const plain = (v: unknown): unknown => {
  if (v === undefined) return null
  if (typeof v !== "object" || v === null) return v
  if (Array.isArray(v)) return v.map(plain)
  if (v instanceof Uint8Array) return Array.from(v)
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number | bigint>)
  if (v instanceof Map) {
    const out: Record<string, unknown> = {}
    for (const [k, item] of v) Object.defineProperty(out, String(k), { value: plain(item), enumerable: true, writable: true, configurable: true })
    return out
  }
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(v)) {
    Object.defineProperty(out, k, { value: plain((v as Record<string, unknown>)[k]), enumerable: true, writable: true, configurable: true })
  }
  return out
}

const tensor = (t: Tensor, withData: boolean) =>
  withData ? { dtype: t.dtype, shape: [...t.shape], data: Tensor.toArray(t) } : { dtype: t.dtype, shape: [...t.shape] }

const matrix = (values: Float64Array, rows: number, withData: boolean) =>
  tensor({ dtype: "float64", shape: [rows, rows], data: values }, withData)

const observation = (obs: Observation, withData: boolean) => {
  const proprios: Record<string, unknown> = {}
  for (const p of obs.proprios) {
    Object.defineProperty(proprios, p.name, { value: tensor(p.data, withData), enumerable: true, writable: true, configurable: true })
  }
  return {
    timestamp: obs.timestamp,
    extra: plain(obs.extra),
    cameras: obs.cameras.map((c) => ({
      name: c.name,
      timestamp: c.timestamp,
      intrinsics: matrix(c.intrinsics, 3, withData),
      extrinsics: matrix(c.extrinsics, 4, withData),
      image: tensor(c.image, withData),
      depth: c.depth === null ? null : tensor(c.depth, withData)
    })),
    proprios
  }
}

/**
 * A message as vectors.json describes it: `type` plus whichever of data, action,
 * obs_timestamps, obs, info, reward, terminated, truncated apply. Tensors are
 * `{dtype, shape, data}` with data row-major (float16 decoded, bool as booleans,
 * 64-bit ints as bigint; NaN and ±Infinity stay numbers here and become the
 * strings "NaN", "Infinity", "-Infinity" in {@link stringifyJson}'s text); a
 * camera without depth has `depth: null`; proprios are an object keyed by name.
 */
export const describeMessage = (message: Message, options?: DescribeOptions): Record<string, unknown> => {
  const withData = options?.tensorData ?? true
  switch (message.type) {
    case "metadata":
    case "reset":
    case "obs_request":
      return { type: message.type }
    case "apply_action":
    case "action":
      return { type: message.type, action: tensor(message.action, withData), obs_timestamps: plain(message.obsTimestamps) }
    case "metadata_response":
      return { type: message.type, data: plain(message.data) }
    case "obs_response":
      return { type: message.type, obs: observation(message.obs, withData) }
    case "reset_response":
      return { type: message.type, obs: observation(message.obs, withData), info: plain(message.info) }
    case "step_response":
      return {
        type: message.type,
        obs: observation(message.obs, withData),
        info: plain(message.info),
        reward: message.reward,
        terminated: message.terminated,
        truncated: message.truncated
      }
  }
}

/**
 * JSON text for a description: {@link stringifyJson}, under its convention
 * (NaN/±Infinity as the strings "NaN", "Infinity", "-Infinity", -0 as `-0.0`,
 * bigints exact). The name describes its first use; it is the same writer.
 */
export const stringifyDescription: (description: unknown, indent?: number) => string = stringifyJson
