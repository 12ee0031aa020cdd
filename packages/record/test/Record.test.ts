import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ClientTransport, MemoryTransport, PolicyClient, PolicyServer, ServerTransport } from "@chiral/core"
import { encodeFrame, type Observation, Tensor } from "@chiral/protocol"
import { assert, describe, it } from "@effect/vitest"
import { McapIndexedReader } from "@mcap/core"
import { loadDecompressHandlers, protobufFromBinaryDescriptor } from "@mcap/support"
import { Context, Deferred, Effect, Exit, Layer, Ref, Schedule, Scope } from "effect"
import * as Episode from "../src/Episode.js"
import * as Recorder from "../src/Recorder.js"
import * as RecordingProxy from "../src/RecordingProxy.js"
import * as RecordingTransport from "../src/RecordingTransport.js"

const tempFile = (name: string) => path.join(fs.mkdtempSync(path.join(os.tmpdir(), "chiral-record-")), name)

const W = 5
const H = 4

/** A robot on `server` with two cameras (one with float32 depth holding a NaN) and a proprio with NaN. */
const robot = (server: ServerTransport["Service"], applied: Ref.Ref<Array<ReadonlyArray<number>>>, enough: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const api = yield* PolicyServer.make({
      cameras: [
        { name: "front", height: H, width: W, hasDepth: true, intrinsics: [100, 0, 2.5, 0, 101, 2, 0, 0, 1] },
        { name: "wrist", height: H, width: W }
      ],
      proprios: [{ name: "joint_pos", size: 3 }],
      handlers: {
        getMetadata: Effect.succeed({ action_shape: [1, 3], robot: "test" }),
        reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs, info: { episode: 1 } })),
        applyAction: (action) => Ref.update(applied, (a) => [...a, Array.from(action.data as Float32Array)])
      }
    }).pipe(Effect.provideService(ServerTransport, server))
    // Both actions have reached the robot: the first applied, the non-finite one
    // refused by its gate (a NaN never reaches a motor; the recording keeps it as sent).
    yield* api.actionStats.pipe(
      Effect.repeat({ until: (s) => s.accepted + s.dropped.invalid >= 2, schedule: Schedule.spaced(5) }),
      Effect.andThen(Deferred.succeed(enough, undefined)),
      Effect.forkScoped
    )
    yield* api.updateImage("front", Uint8Array.from({ length: H * W * 3 }, (_, i) => i))
    yield* api.updateDepth("front", Float32Array.from({ length: H * W }, (_, i) => i === 3 ? NaN : i / 10))
    yield* api.updateImage("wrist", Uint8Array.from({ length: H * W * 3 }, (_, i) => 255 - i))
    yield* api.updateExtrinsics("front", [0, -1, 0, 0.5, 1, 0, 0, -0.25, 0, 0, 1, 1.5, 0, 0, 0, 1])
    yield* api.updateProprio("joint_pos", [0.5, NaN, -Infinity])
    return api
  })

/** Waits until the recorder has been handed `n` frames (a condition, not a delay). */
const offered = (recorder: Recorder.Recorder, n: number) =>
  Effect.sync(() => recorder.stats().offered).pipe(
    Effect.repeat({ until: (k) => k >= n, schedule: Schedule.spaced(5) })
  )

const sameObservation = (actual: Observation, expected: Observation) => {
  assert.strictEqual(actual.timestamp, expected.timestamp)
  assert.deepStrictEqual(actual.cameras.map((c) => c.name), expected.cameras.map((c) => c.name))
  for (let i = 0; i < expected.cameras.length; i++) {
    const a = actual.cameras[i]!
    const e = expected.cameras[i]!
    assert.strictEqual(a.timestamp, e.timestamp)
    assert.deepStrictEqual(Array.from(a.intrinsics), Array.from(e.intrinsics))
    assert.deepStrictEqual(Array.from(a.extrinsics), Array.from(e.extrinsics))
    assert.deepStrictEqual(a.image.shape, e.image.shape)
    assert.deepStrictEqual(Tensor.bytes(a.image), Tensor.bytes(e.image))
    assert.strictEqual(a.depth === null, e.depth === null)
    if (e.depth !== null) assert.deepStrictEqual(Tensor.bytes(a.depth!), Tensor.bytes(e.depth))
  }
  assert.deepStrictEqual(actual.proprios.map((p) => [p.name, Array.from(p.data.data as Float32Array)]), expected.proprios.map((p) => [p.name, Array.from(p.data.data as Float32Array)]))
}

/**
 * Drives a client: metadata, reset, one observation, one action; then, once
 * the robot applied it, an action with NaN and ±Infinity from a client that
 * does not check (ours refuses to send one; a reference client sends it), on
 * a connection of its own. Returns what the first client received.
 */
const drive = (enough: Deferred.Deferred<void>, applied: Ref.Ref<Array<ReadonlyArray<number>>>) =>
  Effect.gen(function*() {
    const client = yield* PolicyClient.make({ quiet: true })
    const metadata = yield* client.getMetadata
    const reset = yield* client.reset
    const obs = yield* client.getObs
    yield* client.sendAction([1, 2, 3])
    yield* Ref.get(applied).pipe(Effect.repeat({ until: (a) => a.length >= 1, schedule: Schedule.spaced(5) }))
    const unchecked = yield* (yield* ClientTransport).connect
    yield* unchecked.send(encodeFrame({
      type: "apply_action",
      action: Tensor.make("float32", [3], Float32Array.of(NaN, Infinity, -Infinity)),
      obsTimestamps: {}
    }))
    yield* Deferred.await(enough)
    return { metadata, reset, obs }
  }).pipe(Effect.scoped)

// Live sockets, worker threads and files: generous, for a loaded 2-core machine.
const liveTimeout = 60_000

describe("recording", () => {
  it.live("proxy: frames forwarded unchanged; the MCAP file reads back with the same bytes, actions and metadata", () =>
    Effect.gen(function*() {
      const file = tempFile("proxy.mcap")
      const robotNet = MemoryTransport.make({ address: "memory://robot" })
      const proxyNet = MemoryTransport.make({ address: "memory://proxy" })
      const applied = yield* Ref.make<Array<ReadonlyArray<number>>>([])
      const enough = yield* Deferred.make<void>()
      yield* robot(robotNet.server, applied, enough)

      const scope = yield* Scope.make()
      const recorder = yield* Recorder.make({ path: file }).pipe(Scope.provide(scope))
      yield* RecordingProxy.run({ recorder }).pipe(
        Effect.provideService(ServerTransport, proxyNet.server),
        Effect.provideService(ClientTransport, robotNet.client),
        Effect.forkIn(scope)
      )
      const received = yield* drive(enough, applied).pipe(Effect.provideService(ClientTransport, proxyNet.client))
      // metadata, reset, obs_request and their three answers, two actions.
      yield* offered(recorder, 8)
      const stats = recorder.stats()
      assert.strictEqual(stats.dropped, 0)
      yield* Scope.close(scope, Exit.void)

      assert.deepStrictEqual(yield* Ref.get(applied), [[1, 2, 3]])

      const episode = yield* Episode.open(file)
      assert.deepStrictEqual(episode.metadata, received.metadata)
      assert.deepStrictEqual(episode.observations.map((o) => [o.seq, o.reply]), [[1, "reset_response"], [2, "obs_response"]])
      assert.deepStrictEqual(episode.observations[0]!.info, { episode: 1 })
      sameObservation(yield* episode.observation(1), received.reset.obs)
      sameObservation(yield* episode.observation(2), received.obs)
      assert.deepStrictEqual(episode.actions.map((a) => a.values), [[1, 2, 3], [NaN, Infinity, -Infinity]])
      const cameraTimes = Object.fromEntries(received.obs.cameras.map((c) => [c.name, c.timestamp]))
      assert.deepStrictEqual(episode.actions[0]!.obsTimestamps, cameraTimes)
      assert.deepStrictEqual(episode.observations[1]!.cameraTimestamps, cameraTimes)
      const recording = episode.records.find((r) => r.name === "chiral.recording")!
      assert.strictEqual(recording.values.get("frames_dropped"), "0")
      assert.isDefined(episode.records.find((r) => r.name === "chiral.reset"))
    }).pipe(Effect.scoped), liveTimeout)

  it.live("the file is Foxglove's: indexed, compressed, RawImage/CameraCalibration/FrameTransform decode from the file's own schemas", () =>
    Effect.gen(function*() {
      const file = tempFile("inprocess.mcap")
      const net = MemoryTransport.make()
      const applied = yield* Ref.make<Array<ReadonlyArray<number>>>([])
      const enough = yield* Deferred.make<void>()
      // In-process: the robot's own transport is recorded.
      const scope = yield* Scope.make()
      const recorded = yield* Layer.build(RecordingTransport.layerServer({ path: file })).pipe(
        Effect.provideService(ServerTransport, net.server),
        Scope.provide(scope)
      )
      yield* robot(Context.get(recorded, ServerTransport), applied, enough).pipe(Scope.provide(scope))
      const received = yield* drive(enough, applied).pipe(Effect.provideService(ClientTransport, net.client))
      yield* Scope.close(scope, Exit.void)

      const bytes = fs.readFileSync(file)
      const reader = yield* Effect.promise(async () =>
        McapIndexedReader.Initialize({
          readable: { size: async () => BigInt(bytes.byteLength), read: async (o, n) => bytes.subarray(Number(o), Number(o + n)) },
          decompressHandlers: await loadDecompressHandlers()
        })
      )
      assert.isAbove(reader.chunkIndexes.length, 0)
      assert.isTrue(reader.chunkIndexes.every((c) => c.compression === "zstd"))
      const topics = Array.from(reader.channelsById.values(), (c) => c.topic).sort()
      assert.deepStrictEqual(topics, [
        "/action",
        "/front/calibration",
        "/front/depth",
        "/front/image",
        "/observation",
        "/proprio/joint_pos",
        "/tf",
        "/wrist/calibration",
        "/wrist/image"
      ])
      const decoded = yield* Effect.promise(async () => {
        const out: Array<{ topic: string; value: Record<string, unknown> }> = []
        for await (const m of reader.readMessages({ topics: ["/front/image", "/front/depth", "/front/calibration", "/tf"] })) {
          const channel = reader.channelsById.get(m.channelId)!
          const schema = reader.schemasById.get(channel.schemaId)!
          assert.strictEqual(schema.encoding, "protobuf")
          const type = protobufFromBinaryDescriptor(schema.data).lookupType(schema.name)
          out.push({ topic: channel.topic, value: type.toObject(type.decode(m.data), { longs: Number }) })
        }
        return out
      })
      const obs = received.obs
      const front = obs.cameras[0]!
      const last = (topic: string) => decoded.findLast((d) => d.topic === topic)!.value
      const image = last("/front/image")
      assert.strictEqual(image["encoding"], "rgb8")
      assert.strictEqual(image["width"], W)
      assert.strictEqual(image["height"], H)
      assert.strictEqual(image["step"], W * 3)
      assert.strictEqual(image["frame_id"], "front")
      assert.deepStrictEqual(Uint8Array.from(image["data"] as Uint8Array), Tensor.bytes(front.image))
      const depth = last("/front/depth")
      assert.strictEqual(depth["encoding"], "32FC1")
      assert.deepStrictEqual(Uint8Array.from(depth["data"] as Uint8Array), Tensor.bytes(front.depth!))
      const calibration = last("/front/calibration")
      assert.deepStrictEqual(calibration["K"], Array.from(front.intrinsics))
      assert.deepStrictEqual(calibration["P"], [100, 0, 2.5, 0, 0, 101, 2, 0, 0, 0, 1, 0])
      const tf = decoded.findLast((d) => d.topic === "/tf" && d.value["child_frame_id"] === "front")!.value
      assert.deepStrictEqual(tf["translation"], { x: 0.5, y: -0.25, z: 1.5 })
      // 90° about z: (x, y, z, w) = (0, 0, sin 45°, cos 45°).
      const q = tf["rotation"] as Record<string, number>
      assert.closeTo(q["z"]!, Math.SQRT1_2, 1e-12)
      assert.closeTo(q["w"]!, Math.SQRT1_2, 1e-12)
      const seconds = Math.floor(front.timestamp)
      assert.deepStrictEqual(image["timestamp"], { seconds, nanos: Math.round((front.timestamp - seconds) * 1e9) })
    }).pipe(Effect.scoped), liveTimeout)

  it.live("an owned frame alone in its buffer is moved to the writer, not copied; any other is copied", () =>
    Effect.gen(function*() {
      const file = tempFile("owned.mcap")
      const scope = yield* Scope.make()
      const recorder = yield* Recorder.make({ path: file }).pipe(Scope.provide(scope))
      const alone = encodeFrame({ type: "metadata_response", data: { robot: "moved" } })
      assert.isTrue(recorder.record("s2c", "test", alone, undefined, true))
      assert.strictEqual(alone.byteLength, 0, "moved: detached here")
      const slab = new Uint8Array(4096)
      const inSlab = encodeFrame({ type: "metadata_response", data: { robot: "copied" } })
      slab.set(inSlab, 100)
      const view = slab.subarray(100, 100 + inSlab.byteLength)
      assert.isTrue(recorder.record("s2c", "test", view, undefined, true))
      assert.strictEqual(view.byteLength, inSlab.byteLength, "copied: the slab stays usable")
      // Two frames back to back in one small buffer (a transport's read or batch): neither moves the other's bytes.
      const first = encodeFrame({ type: "metadata_response", data: { robot: "first" } })
      const second = encodeFrame({ type: "metadata_response", data: { robot: "second" } })
      const batch = new Uint8Array(first.byteLength + second.byteLength)
      batch.set(first)
      batch.set(second, first.byteLength)
      const firstView = batch.subarray(0, first.byteLength)
      const secondView = batch.subarray(first.byteLength)
      assert.isTrue(recorder.record("s2c", "test", firstView, undefined, true))
      assert.deepStrictEqual(Array.from(secondView), Array.from(second), "the second frame is intact")
      assert.isTrue(recorder.record("s2c", "test", secondView, undefined, true))
      assert.strictEqual(batch.byteLength, first.byteLength + second.byteLength, "copied: the batch stays usable")
      // A frame in a Node Buffer (a socket's chunk): the copy is a copy, and the chunk's other frame stays.
      const inChunk = encodeFrame({ type: "metadata_response", data: { robot: "in a chunk" } })
      const chunk = Buffer.concat([inChunk, second])
      assert.isTrue(recorder.record("s2c", "test", chunk.subarray(0, inChunk.byteLength)))
      assert.deepStrictEqual(Array.from(chunk.subarray(inChunk.byteLength)), Array.from(second), "the chunk is intact")
      // A frame after an alignment lead of up to 7 bytes, ending its buffer, is moved.
      const led = new Uint8Array(5 + first.byteLength)
      led.set(first, 5)
      assert.isTrue(recorder.record("s2c", "test", led.subarray(5), undefined, true))
      assert.strictEqual(led.byteLength, 0, "moved: detached here")
      yield* offered(recorder, 6)
      yield* Scope.close(scope, Exit.void)
      const episode = yield* Episode.open(file)
      const metadata = episode.records.filter((r) => r.name === "chiral.metadata").map((r) => r.values.get("robot"))
      assert.deepStrictEqual(metadata, ["\"moved\"", "\"copied\"", "\"first\"", "\"second\"", "\"in a chunk\"", "\"first\""])
    }).pipe(Effect.scoped), liveTimeout)

  it.live("a writer that falls behind drops frames from the recording and counts them; forwarding goes on", () =>
    Effect.gen(function*() {
      const file = tempFile("bounded.mcap")
      const scope = yield* Scope.make()
      // Room for nothing: every frame is dropped, none waits.
      const recorder = yield* Recorder.make({ path: file, maxPendingBytes: 0 }).pipe(Scope.provide(scope))
      assert.isFalse(recorder.record("c2s", "test", new Uint8Array(100)))
      assert.isFalse(recorder.record("s2c", "test", [new Uint8Array(10), new Uint8Array(20)]))
      assert.deepStrictEqual([recorder.stats().offered, recorder.stats().dropped, recorder.stats().droppedBytes], [2, 2, 130])
      yield* Scope.close(scope, Exit.void)
      const episode = yield* Episode.open(file)
      const recording = episode.records.find((r) => r.name === "chiral.recording")!
      assert.strictEqual(recording.values.get("frames_dropped"), "2")
      assert.strictEqual(recording.values.get("bytes_dropped"), "130")
    }).pipe(Effect.scoped), liveTimeout)
})
