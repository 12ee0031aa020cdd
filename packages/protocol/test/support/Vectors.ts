// Loads the golden frames (fixtures copied from ../shared/vectors) and rebuilds
// messages from their vectors.json descriptions.
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Dtype, type Message, numberToHalf, type Tensor } from "@chiral/protocol"

export const vectorsDir = fileURLToPath(new URL("../fixtures/vectors/", import.meta.url))
export const badDir = path.join(vectorsDir, "bad")

export interface Vector {
  readonly name: string
  readonly origin: "python" | "cpp"
  readonly bytes: Uint8Array
  /** The description minus origin/bytes/header_len: what describeMessage must produce. */
  readonly description: Record<string, unknown>
  readonly headerLen: number
}

const readBytes = (file: string) => new Uint8Array(fs.readFileSync(file))

export const vectors: ReadonlyArray<Vector> = Object.entries(
  JSON.parse(fs.readFileSync(path.join(vectorsDir, "vectors.json"), "utf8")) as Record<string, Record<string, unknown>>
).map(([name, entry]) => {
  const { bytes, header_len, origin, ...description } = entry
  const frame = readBytes(path.join(vectorsDir, `${name}.bin`))
  if (frame.byteLength !== bytes) throw new Error(`${name}.bin has ${frame.byteLength} bytes, vectors.json says ${bytes}`)
  return { name, origin: origin as "python" | "cpp", bytes: frame, description, headerLen: header_len as number }
})

export const badFrames: ReadonlyArray<{ readonly name: string; readonly bytes: Uint8Array; readonly problem: string }> =
  Object.entries(JSON.parse(fs.readFileSync(path.join(badDir, "bad.json"), "utf8")) as Record<string, string>).map((
    [name, problem]
  ) => ({ name, problem, bytes: readBytes(path.join(badDir, `${name}.bin`)) }))

interface TensorDescription {
  readonly dtype: Dtype
  readonly shape: ReadonlyArray<number>
  readonly data: ReadonlyArray<number | boolean>
}

export const tensorFrom = (d: TensorDescription): Tensor => {
  const ctor = Dtype.arrayConstructor(d.dtype)
  const data = new ctor(d.data.length)
  d.data.forEach((v, i) => {
    data[i] = d.dtype === "float16"
      ? numberToHalf(v as number)
      : Dtype.isBigInt(d.dtype)
      ? BigInt(v as number)
      : typeof v === "boolean"
      ? Number(v)
      : v as never
  })
  return { dtype: d.dtype, shape: d.shape, data }
}

const observationFrom = (o: any) => ({
  timestamp: o.timestamp,
  extra: o.extra,
  cameras: o.cameras.map((c: any) => ({
    name: c.name,
    timestamp: c.timestamp,
    intrinsics: Float64Array.from(c.intrinsics.data),
    extrinsics: Float64Array.from(c.extrinsics.data),
    image: tensorFrom(c.image),
    depth: c.depth === null ? null : tensorFrom(c.depth)
  })),
  proprios: Object.entries(o.proprios).map(([name, t]) => ({ name, data: tensorFrom(t as TensorDescription) }))
})

/** The message a vectors.json description stands for. */
export const messageFrom = (d: any): Message => {
  switch (d.type) {
    case "apply_action":
    case "action":
      return { type: d.type, action: tensorFrom(d.action), obsTimestamps: d.obs_timestamps }
    case "metadata_response":
      return { type: d.type, data: d.data }
    case "obs_response":
      return { type: d.type, obs: observationFrom(d.obs) }
    case "reset_response":
      return { type: d.type, obs: observationFrom(d.obs), info: d.info }
    case "step_response":
      return {
        type: d.type,
        obs: observationFrom(d.obs),
        reward: d.reward,
        terminated: d.terminated,
        truncated: d.truncated,
        info: d.info
      }
    default:
      return { type: d.type }
  }
}

export const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")
