import { protobufFromBinaryDescriptor } from "@mcap/support"
import { assert, describe, it } from "@effect/vitest"
import * as Protobuf from "../src/Protobuf.js"

// @mcap/support builds protobufjs types from a FileDescriptorSet exactly as
// Foxglove does when it opens an MCAP file: the oracle for our descriptors.
describe("Protobuf", () => {
  it("foxglove.RawImage: descriptor and message decode as Foxglove decodes them", () => {
    const schema = Protobuf.foxgloveSchema("RawImage")
    const root = protobufFromBinaryDescriptor(Protobuf.descriptorSet(schema))
    const type = root.lookupType(Protobuf.schemaName(schema))
    assert.strictEqual(Protobuf.schemaName(schema), "foxglove.RawImage")
    assert.deepStrictEqual(
      type.fieldsArray.map((f) => [f.name, f.id, f.type]),
      [["timestamp", 1, ".google.protobuf.Timestamp"], ["frame_id", 7, "string"], ["width", 2, "fixed32"], ["height", 3, "fixed32"], [
        "encoding",
        4,
        "string"
      ], ["step", 5, "fixed32"], ["data", 6, "bytes"]]
    )
    const data = Uint8Array.from({ length: 300 }, (_, i) => i % 251)
    const bytes = Protobuf.encode(schema, {
      timestamp: { sec: 12, nsec: 345 },
      frame_id: "cam_0",
      width: 10,
      height: 10,
      encoding: "rgb8",
      step: 30,
      data
    })
    const decoded = type.toObject(type.decode(bytes), { longs: Number }) as Record<string, unknown>
    assert.deepStrictEqual(decoded["timestamp"], { seconds: 12, nanos: 345 })
    assert.strictEqual(decoded["frame_id"], "cam_0")
    assert.strictEqual(decoded["encoding"], "rgb8")
    assert.strictEqual(decoded["step"], 30)
    assert.deepStrictEqual(Uint8Array.from(decoded["data"] as Uint8Array), data)
  })

  it("foxglove.CameraCalibration and FrameTransform: repeated doubles, nested messages", () => {
    const calibration = Protobuf.foxgloveSchema("CameraCalibration")
    const calibrationType = protobufFromBinaryDescriptor(Protobuf.descriptorSet(calibration)).lookupType("foxglove.CameraCalibration")
    const K = [500.5, 0, 320, 0, 501, 240, 0, 0, 1]
    const c = calibrationType.toObject(
      calibrationType.decode(Protobuf.encode(calibration, { frame_id: "cam_0", width: 640, height: 480, K, D: [], R: [1, 0, 0, 0, 1, 0, 0, 0, 1] })),
      { longs: Number }
    ) as Record<string, unknown>
    assert.deepStrictEqual(c["K"], K)
    assert.strictEqual(c["width"], 640)

    const transform = Protobuf.foxgloveSchema("FrameTransform")
    const transformType = protobufFromBinaryDescriptor(Protobuf.descriptorSet(transform)).lookupType("foxglove.FrameTransform")
    const t = transformType.toObject(
      transformType.decode(Protobuf.encode(transform, {
        timestamp: { sec: 1, nsec: 2 },
        parent_frame_id: "world",
        child_frame_id: "cam_0",
        translation: { x: 1, y: -2, z: 3.5 },
        rotation: { x: 0, y: 0, z: 0.7071067811865476, w: 0.7071067811865476 }
      })),
      { longs: Number }
    ) as Record<string, unknown>
    assert.deepStrictEqual(t["translation"], { x: 1, y: -2, z: 3.5 })
    assert.deepStrictEqual(t["rotation"], { x: 0, y: 0, z: 0.7071067811865476, w: 0.7071067811865476 })
    assert.strictEqual(t["child_frame_id"], "cam_0")
  })
})
