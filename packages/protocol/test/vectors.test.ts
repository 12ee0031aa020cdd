import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { decodeFrame, describeMessage, encodeFrame, encodeFrameParts, FrameError, stringifyDescription } from "@chiral/protocol"
import { badFrames, hex, messageFrom, vectors, vectorsDir } from "./support/Vectors.js"

const decodeOk = (bytes: Uint8Array) => {
  const r = decodeFrame(bytes)
  if (Result.isFailure(r)) assert.fail(r.failure.message)
  return r.success
}

describe("golden frames from the reference implementations", () => {
  it("there are python and cpp vectors for every message type", () => {
    assert.deepStrictEqual(
      new Set(vectors.map((v) => v.description.type)),
      new Set(["metadata", "reset", "obs_request", "apply_action", "action", "metadata_response", "reset_response", "obs_response", "step_response"])
    )
  })

  for (const v of vectors) {
    it(`${v.name} decodes to exactly its described values`, () => {
      const described = JSON.parse(stringifyDescription(describeMessage(decodeOk(v.bytes))))
      assert.deepStrictEqual(described, v.description)
    })
  }

  for (const v of vectors.filter((v) => v.origin === "python")) {
    it(`${v.name} re-encodes to the reference's bytes`, () => {
      const encoded = encodeFrame(messageFrom(v.description))
      assert.strictEqual(hex(encoded), hex(v.bytes))
      const header = encoded[0]! | (encoded[1]! << 8) | (encoded[2]! << 16) | (encoded[3]! << 24)
      assert.strictEqual(header, v.headerLen)
    })
  }

  for (const v of vectors.filter((v) => v.origin === "cpp")) {
    it(`${v.name} re-encodes to the C++ reference's bytes with dialect cpp`, () => {
      assert.strictEqual(hex(encodeFrame(messageFrom(v.description), { dialect: "cpp" })), hex(v.bytes))
    })
  }

  for (const v of vectors) {
    it(`${v.name}: decode → encode in its own dialect gives the same bytes`, () => {
      const again = encodeFrame(decodeOk(v.bytes), { dialect: v.origin })
      assert.strictEqual(hex(again), hex(v.bytes))
      const parts = encodeFrameParts(decodeOk(v.bytes), { dialect: v.origin })
      assert.strictEqual(hex(Buffer.concat(parts)), hex(v.bytes))
    })
  }
})

// What each bad frame must be blamed on: the field, and words the reason must contain.
const blame: Record<string, readonly [field: string, reason: RegExp]> = {
  empty: ["header_len", /0 bytes/],
  short_length: ["header_len", /2 bytes/],
  header_len_past_end: ["header_len", /1000 bytes, but only 12/],
  header_len_huge: ["header_len", /4294967295 bytes, more than the 1048576-byte header limit/],
  header_not_msgpack: ["header", /0xc1/],
  header_not_map: ["header", /expected a msgpack map, got an array/],
  header_trailing_bytes: ["header", /1 more byte after the first msgpack value/],
  missing_type: ["type", /missing/],
  type_not_string: ["type", /expected a string, got integer 7/],
  unknown_type: ["type", /"self_destruct" names no message/],
  image_past_payload: ["cameras[0].image_offset", /reach past the end of the 12-byte payload/],
  image_size_shape_mismatch: ["cameras[0].image_size", /11 bytes, but shape \[2,2,3\] × uint8 needs 12/],
  image_unknown_dtype: ["cameras[0].image_dtype", /"complex512" is not a dtype/],
  image_negative_shape: ["cameras[0].image_shape[0]", /negative dimension -2/],
  image_shape_overflow: ["cameras[0].image_size", /needs 13835058055282163712, more than the whole 12-byte payload/],
  image_offset_negative: ["cameras[0].image_offset", /negative: -4/],
  intrinsics_wrong_length: ["cameras[0].intrinsics", /expected 9 numbers \(3×3 K\), got 2/],
  extrinsics_not_numbers: ["cameras[0].extrinsics[0]", /expected a number, got string/],
  depth_half_described: ["cameras[0].depth_dtype", /missing, but depth_shape is given/],
  cameras_not_list: ["cameras", /expected an array, got a map/],
  camera_missing_name: ["cameras[0].name", /missing/],
  duplicate_camera_names: ["cameras[1].name", /"c" already names cameras\[0\]/],
  proprio_past_payload: ["proprios[0].offset", /reach past the end/],
  proprio_size_not_multiple: ["proprios[0].size", /not a whole number of 4-byte float32 values/],
  action_size_mismatch: ["payload", /12 bytes, but shape \[7\] × float32 needs 28/],
  action_bad_dtype: ["dtype", /"str" is not a dtype/],
  action_timestamps_not_numbers: ["obs_timestamps.c", /expected a number, got string "x"/],
  deep_nesting: ["header[0][0][0][0]…(56 more levels)…[0][0][0][0]", /nested deeper than 64 levels/]
}

describe("malformed frames", () => {
  it("every bad frame has an expectation", () => {
    assert.deepStrictEqual(badFrames.map((b) => b.name).sort(), Object.keys(blame).sort())
  })

  for (const bad of badFrames) {
    it(`${bad.name} (${bad.problem}) fails with a FrameError naming the problem`, () => {
      const r = decodeFrame(bad.bytes)
      assert.isTrue(Result.isFailure(r))
      const error = (r as Result.Failure<unknown, FrameError>).failure
      assert.instanceOf(error, FrameError)
      assert.strictEqual(error._tag, "FrameError")
      const [field, reason] = blame[bad.name]!
      assert.strictEqual(error.field, field)
      assert.match(error.reason, reason)
      assert.strictEqual(error.message, `${error.field}: ${error.reason}`)
      assert.notInclude(error.message, "\n")
    })
  }

  it("decoding a bad frame reads nothing past it (a subarray of a larger buffer)", () => {
    for (const bad of badFrames) {
      // Surround the frame with bytes that would make it valid if read.
      const big = new Uint8Array(bad.bytes.byteLength + 4096).fill(0x01)
      big.set(bad.bytes, 16)
      const r = decodeFrame(big.subarray(16, 16 + bad.bytes.byteLength))
      assert.isTrue(Result.isFailure(r), bad.name)
    }
  })
})

describe("fixture copy", () => {
  // CI clones have ../shared beside the repo; elsewhere there is nothing to compare.
  const shared = path.resolve(vectorsDir, "../../../../../../shared/vectors")
  it.skipIf(!fs.existsSync(shared))("equals ../shared/vectors (re-copy when it changes)", () => {
    const list = (dir: string): Array<string> =>
      fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? list(path.join(dir, e.name)).map((f) => `${e.name}/${f}`) : [e.name]
      ).sort()
    const files = list(shared)
    assert.deepStrictEqual(list(vectorsDir), files)
    for (const f of files) {
      assert.isTrue(fs.readFileSync(path.join(vectorsDir, f)).equals(fs.readFileSync(path.join(shared, f))), `${f} differs`)
    }
  })
})
