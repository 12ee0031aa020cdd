// A recording survives its recorder's death: what was handed to the file
// reaches it within the flush bound without a close, and a file cut short
// anywhere reads back up to its last complete record.
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { encodeFrame, type Observation, Tensor } from "@chiral/protocol"
import { assert, describe, it } from "@effect/vitest"
import { McapIndexedReader } from "@mcap/core"
import { Effect, Exit, Schedule, Scope } from "effect"
import * as Episode from "../src/Episode.js"
import { EpisodeWriter, type Timer } from "../src/EpisodeWriter.js"
import * as Recorder from "../src/Recorder.js"

const tempFile = (name: string) => path.join(fs.mkdtempSync(path.join(os.tmpdir(), "chiral-durable-")), name)

const onDisk = (file: string) => fs.statSync(file).size

/** Waits until `condition` holds (a condition, not a delay; the test's limit bounds a hang). */
const until = (condition: () => boolean) =>
  Effect.sync(condition).pipe(Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(10) }))

const W = 6
const H = 4

/** Observation `n`: one camera whose pixels are n, n+1, …, so each one is told apart. */
const observationOf = (n: number): Observation => ({
  timestamp: 100 + n,
  cameras: [{
    name: "cam",
    timestamp: 100 + n,
    intrinsics: Float64Array.of(1, 0, 0, 0, 1, 0, 0, 0, 1),
    extrinsics: Float64Array.from({ length: 16 }, (_, i) => i % 5 === 0 ? 1 : 0),
    image: Tensor.make("uint8", [H, W, 3], Uint8Array.from({ length: H * W * 3 }, (_, i) => (n + i) & 0xff)),
    depth: null
  }],
  proprios: [],
  extra: {}
})

const imageOf = (o: Observation) => Array.from(Tensor.bytes(o.cameras[0]!.image))

/**
 * A recording of a reset and `n - 1` observations and an action after each,
 * one chunk per message (chunkBytes 1), left open in `scope` once all of it
 * is in the file.
 */
const recordOpen = (file: string, n: number, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const recorder = yield* Recorder.make({ path: file, writer: { chunkBytes: 1 } }).pipe(Scope.provide(scope))
    recorder.record("s2c", "test", encodeFrame({ type: "metadata_response", data: { robot: "durable" } }))
    recorder.record("s2c", "test", encodeFrame({ type: "reset_response", obs: observationOf(1), info: {} }))
    for (let i = 2; i <= n; i++) {
      recorder.record("c2s", "test", encodeFrame({ type: "apply_action", action: Tensor.make("float32", [1], Float32Array.of(i)), obsTimestamps: {} }))
      recorder.record("s2c", "test", encodeFrame({ type: "obs_response", obs: observationOf(i) }))
    }
    // All of it handed to the file, and all of that on disk, the file still open.
    yield* until(() => {
      const stats = recorder.stats()
      return stats.written.counts.observations === n && stats.pendingBytes === 0 && onDisk(file) === stats.written.fileBytes
    })
    return recorder
  })

describe("durable recording", () => {
  it.live("what is handed to the file is written when the flush timer fires, armed for at most 1 s, without a close", () =>
    Effect.gen(function*() {
      const file = tempFile("timed.mcap")
      const armed: Array<{ readonly fire: () => void; readonly millis: number }> = []
      const timer: Timer = (fire, millis) => {
        armed.push({ fire, millis })
        return () => undefined
      }
      const writer = yield* Effect.promise(() => EpisodeWriter.open(file, { compression: "none" }, timer))
      // The header is staged: not on disk yet, a flush armed.
      assert.strictEqual(onDisk(file), 0)
      assert.strictEqual(armed.length, 1)
      assert.isAtMost(armed[0]!.millis, 1000)
      armed[0]!.fire()
      yield* until(() => onDisk(file) === Number(writer.bytes))
      const header = onDisk(file)
      assert.isAbove(header, 0)

      yield* Effect.promise(() => writer.metadata("chiral.test", new Map([["n", "1"]])))
      assert.strictEqual(armed.length, 2)
      assert.isAtMost(armed[1]!.millis, 1000)
      assert.strictEqual(onDisk(file), header)
      armed[1]!.fire()
      yield* until(() => onDisk(file) === Number(writer.bytes))
      assert.isAbove(onDisk(file), header)

      yield* Effect.promise(() => writer.close())
      const episode = yield* Episode.open(file)
      assert.isUndefined(episode.incomplete)
      assert.deepStrictEqual(episode.records.map((r) => r.name), ["chiral.test"])
    }).pipe(Effect.scoped))

  it.live("a timed flush while records are being handed over loses none of them (one write at a time)", () =>
    Effect.gen(function*() {
      const file = tempFile("racing.mcap")
      const armed: Array<() => void> = []
      const timer: Timer = (fire) => {
        armed.push(fire)
        return () => undefined
      }
      const writer = yield* Effect.promise(() => EpisodeWriter.open(file, { compression: "none" }, timer))
      for (let i = 0; i < 20; i++) {
        // The flush's writev is under way while the next record is staged.
        armed.at(-1)?.()
        yield* Effect.promise(() => writer.metadata("chiral.test", new Map([["n", String(i)]])))
      }
      yield* Effect.promise(() => writer.close())
      const episode = yield* Episode.open(file)
      assert.isUndefined(episode.incomplete)
      assert.deepStrictEqual(episode.records.map((r) => r.values.get("n")), Array.from({ length: 20 }, (_, i) => String(i)))
    }).pipe(Effect.scoped))

  it.live("a recording never closed (its recorder killed) has its frames on disk and reads back, saying it was not completed", () =>
    Effect.gen(function*() {
      const file = tempFile("open.mcap")
      const scope = yield* Scope.make()
      yield* recordOpen(file, 4, scope)
      const episode = yield* Episode.open(file)
      assert.isDefined(episode.incomplete)
      assert.strictEqual(episode.incomplete!.fileBytes, onDisk(file))
      assert.strictEqual(episode.incomplete!.readBytes, onDisk(file))
      // metadata is a record; the reset and 3 observations: /observation and /cam/image, /cam/calibration, /tf each; 3 actions
      assert.strictEqual(episode.incomplete!.messages, 4 * 4 + 3)
      assert.deepStrictEqual(episode.observations.map((o) => o.seq), [1, 2, 3, 4])
      assert.deepStrictEqual(episode.actions.map((a) => a.values), [[2], [3], [4]])
      assert.deepStrictEqual(episode.metadata, { robot: "durable" })
      for (const seq of [1, 2, 3, 4]) assert.deepStrictEqual(imageOf(yield* episode.observation(seq)), imageOf(observationOf(seq)))
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.scoped))

  it.live("a file cut anywhere (mid-chunk, mid-summary, mid-header) reads back what is complete before the cut", () =>
    Effect.gen(function*() {
      const file = tempFile("whole.mcap")
      const scope = yield* Scope.make()
      yield* recordOpen(file, 5, scope)
      yield* Scope.close(scope, Exit.void)
      const whole = fs.readFileSync(file)
      const complete = yield* Episode.open(file)
      assert.isUndefined(complete.incomplete)

      // Where each chunk is, from the complete file's index.
      const chunks = yield* Effect.promise(async () => {
        const reader = await McapIndexedReader.Initialize({
          readable: {
            size: () => Promise.resolve(BigInt(whole.byteLength)),
            read: (offset, length) => Promise.resolve(whole.subarray(Number(offset), Number(offset + length)))
          }
        })
        return reader.chunkIndexes.map((c) => ({ start: Number(c.chunkStartOffset), end: Number(c.chunkStartOffset + c.chunkLength) }))
      })
      assert.isAtLeast(chunks.length, 10)
      const read = (bytes: number) =>
        Effect.gen(function*() {
          const cut = tempFile(`cut-${bytes}.mcap`)
          fs.writeFileSync(cut, whole.subarray(0, bytes))
          return yield* Episode.open(cut)
        })

      let seen = 0
      for (const [i, chunk] of chunks.entries()) {
        // Mid-chunk (and one byte short of its end): read up to the chunk before, exactly.
        for (const at of [chunk.start + 3, Math.floor((chunk.start + chunk.end) / 2), chunk.end - 1]) {
          const episode = yield* read(at).pipe(Effect.exit)
          if (Exit.isFailure(episode)) {
            // Only before the first observation: nothing chiral is complete yet.
            assert.strictEqual(seen, 0, String(episode))
            assert.include(String(episode), "the file was not completed")
            continue
          }
          const e = episode.value
          assert.deepStrictEqual(e.incomplete, { messages: i, readBytes: chunk.start, fileBytes: at })
          seen = e.observations.length
          // What was read is what was recorded, pixels included.
          assert.deepStrictEqual(e.observations.map((o) => o.seq), complete.observations.slice(0, seen).map((o) => o.seq))
          if (seen > 0) assert.deepStrictEqual(imageOf(yield* e.observation(seen)), imageOf(observationOf(seen)))
        }
      }
      // The last chunk holds the last observation's own message (its pixels come before it): cut, it is not read.
      assert.strictEqual(seen, 4)
      // Cut in the summary, or in the footer: every message is there.
      const summaryCut = yield* read(whole.byteLength - 30)
      assert.strictEqual(summaryCut.observations.length, 5)
      assert.strictEqual(summaryCut.actions.length, 4)
      assert.strictEqual(summaryCut.incomplete!.messages, chunks.length)
      assert.deepStrictEqual(summaryCut.records.map((r) => r.name), complete.records.map((r) => r.name))
      // Cut in the header: nothing chiral, said so.
      const headerCut = yield* read(12).pipe(Effect.flip)
      assert.include(headerCut.message, "the file was not completed (the recorder stopped without closing it)")
    }).pipe(Effect.scoped))

  it.live("a file that is not MCAP at all (or empty) fails, saying so", () =>
    Effect.gen(function*() {
      const json = new TextEncoder().encode("{\"not\": \"an mcap file, just some JSON that is long enough\"}")
      const cases = [
        [json, `not an MCAP file (it does not start with MCAP's magic bytes; ${json.byteLength} bytes)`],
        [new Uint8Array(0), "not an MCAP file (it is empty)"]
      ] as const
      for (const [bytes, reason] of cases) {
        const file = tempFile("not.mcap")
        fs.writeFileSync(file, bytes)
        const error = yield* Episode.open(file).pipe(Effect.flip)
        assert.strictEqual(error._tag, "RecordError")
        assert.strictEqual(error.message, `${file}: ${reason}`)
      }
    }).pipe(Effect.scoped))
})
