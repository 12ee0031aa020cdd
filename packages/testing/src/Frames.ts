// Request frames and golden vectors for tests that talk to the server directly.
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { encodeFrame } from "@chiral/protocol"

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
