// Request frames and golden vectors for tests that talk to the server directly.
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { encodeFrame, type ObsTimestamps } from "@chiral/protocol"

export const vectorsDir = fileURLToPath(new URL("../../protocol/test/fixtures/vectors/", import.meta.url))

export const vector = (name: string): Uint8Array => new Uint8Array(fs.readFileSync(path.join(vectorsDir, `${name}.bin`)))

export const description = (name: string): Record<string, unknown> =>
  (JSON.parse(fs.readFileSync(path.join(vectorsDir, "vectors.json"), "utf8")) as Record<string, Record<string, unknown>>)[
    name
  ]!

export const badFrames = (): ReadonlyArray<{ readonly name: string; readonly bytes: Uint8Array }> =>
  Object.keys(JSON.parse(fs.readFileSync(path.join(vectorsDir, "bad", "bad.json"), "utf8")) as Record<string, string>)
    .map((name) => ({ name, bytes: new Uint8Array(fs.readFileSync(path.join(vectorsDir, "bad", `${name}.bin`))) }))

export const metadataRequest = encodeFrame({ type: "metadata" })
export const obsRequest = encodeFrame({ type: "obs_request" })

/** An `apply_action` of 7 float32 values, `first` then zeros, stamped with `obsTimestamps`. */
export const applyAction = (first: number, obsTimestamps: ObsTimestamps = {}) =>
  encodeFrame({
    type: "apply_action",
    action: { dtype: "float32", shape: [7], data: Float32Array.of(first, 0, 0, 0, 0, 0, 0) },
    obsTimestamps
  })

/** The field frame `apply_action_nonfinite.bin`: `[NaN, +Inf, -Inf, -0, 3.4e38, 1, 2]` (see ../shared/field). */
export const nonFiniteAction = (): Uint8Array =>
  new Uint8Array(fs.readFileSync(new URL("../../protocol/test/fixtures/field/apply_action_nonfinite.bin", import.meta.url)))
