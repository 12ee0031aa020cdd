import { Schema } from "effect"
import { CameraFrame } from "./CameraFrame.js"
import type { ObsTimestamps } from "./Message.js"
import { Proprio } from "./Proprio.js"

/** What the robot sees at one moment: every camera, every proprio vector, and user extras. */
export interface Observation {
  readonly timestamp: number
  readonly cameras: ReadonlyArray<CameraFrame>
  readonly proprios: ReadonlyArray<Proprio>
  /** Any msgpack map the server adds (always `{}` from C++). */
  readonly extra: Readonly<Record<string, unknown>>
}

const duplicate = (names: ReadonlyArray<string>): string | undefined => {
  const seen = new Set<string>()
  for (const n of names) {
    if (seen.has(n)) return n
    seen.add(n)
  }
  return undefined
}

const schema: Schema.Codec<Observation> = Schema.Struct({
  timestamp: Schema.Number,
  cameras: Schema.Array(CameraFrame.schema),
  proprios: Schema.Array(Proprio.schema),
  extra: Schema.Record(Schema.String, Schema.Unknown)
}).check(Schema.makeFilter((o) => {
  const camera = duplicate(o.cameras.map((c) => c.name))
  if (camera !== undefined) return { path: ["cameras"], issue: `two cameras named ${JSON.stringify(camera)}` }
  const proprio = duplicate(o.proprios.map((p) => p.name))
  if (proprio !== undefined) return { path: ["proprios"], issue: `two proprios named ${JSON.stringify(proprio)}` }
  return true
}))

export const Observation = {
  schema,
  make: (options: {
    readonly timestamp: number
    readonly cameras?: ReadonlyArray<CameraFrame> | undefined
    readonly proprios?: ReadonlyArray<Proprio> | undefined
    readonly extra?: Readonly<Record<string, unknown>> | undefined
  }): Observation => ({
    timestamp: options.timestamp,
    cameras: options.cameras ?? [],
    proprios: options.proprios ?? [],
    extra: options.extra ?? {}
  }),
  /**
   * The camera timestamps an action computed from `o` carries (camera name →
   * capture time, s): what `apply_action`'s `obs_timestamps` and a
   * PolicyClient chunk's `obsTimestamps` hold.
   */
  timestamps: (o: Observation): ObsTimestamps => {
    const out: Record<string, number> = {}
    for (const camera of o.cameras) out[camera.name] = camera.timestamp
    return out
  },
  /** The name of a camera or proprio that appears twice, if any (names are keys on the wire). */
  duplicateName: (o: Observation): string | undefined =>
    duplicate(o.cameras.map((c) => c.name)) ?? duplicate(o.proprios.map((p) => p.name))
} as const
