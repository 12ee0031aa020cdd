// How fast the recorder writes an 8-camera 640×480 + depth observation
// stream, by content and compression: frames are handed to `Recorder.record`
// as fast as its bound takes them (never waiting for the disk is the
// recorder's contract, so the rate it sustains is where drops begin).
//
// Build first, then run with Node >= 22 (it imports the built packages, dist/):
//   npx tsc -b && npx node packages/record/bench/WriteRate.ts [seconds per case, default 10] [dir, default a temp dir]
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { CameraFrame, encodeFrame, Observation, Proprio, Tensor } from "@chiral/protocol"
import { Effect, Exit, Scope } from "effect"
import { Recorder } from "@chiral/record"

const W = 640
const H = 480
const cameras = 8

/** Stripes like the simulated robot's (compress very well) or noise (do not compress at all). */
const image = (kind: "synthetic" | "noise", camera: number, phase: number): Uint8Array => {
  const out = new Uint8Array(W * H * 3)
  if (kind === "noise") {
    for (let i = 0; i < out.length; i += 65536) {
      const chunk = out.subarray(i, Math.min(out.length, i + 65536))
      crypto.getRandomValues(chunk)
    }
    return out
  }
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const v = (x + y + phase * 7 + camera * 13) & 255
      const o = (y * W + x) * 3
      out[o] = v
      out[o + 1] = 255 - v
      out[o + 2] = (v * 3) & 255
    }
  }
  return out
}

const frame = (kind: "synthetic" | "noise", phase: number): Uint8Array => {
  const obs = Observation.make({
    timestamp: 100 + phase / 30,
    cameras: Array.from({ length: cameras }, (_, c) =>
      CameraFrame.make({
        name: `cam_${c}`,
        timestamp: 100 + phase / 30,
        image: Tensor.make("uint8", [H, W, 3], image(kind, c, phase)),
        depth: Tensor.make(
          "float32",
          [H, W],
          kind === "noise" ? Float32Array.from({ length: W * H }, () => Math.random() * 3) : Float32Array.from({ length: W * H }, (_, i) => 1 + ((i + phase) % W) / W)
        )
      })),
    proprios: [Proprio.fromNumbers("joint_pos", [1, 2, 3, 4, 5, 6, 7])]
  })
  return encodeFrame({ type: "obs_response", obs })
}

const measure = (kind: "synthetic" | "noise", compression: "zstd" | "none", seconds: number, dir: string) =>
  Effect.gen(function*() {
    const frames = [0, 1, 2, 3].map((p) => frame(kind, p))
    const file = path.join(dir, `write-rate-${kind}-${compression}.mcap`)
    const scope = yield* Scope.make()
    const recorder = yield* Recorder.make({ path: file, writer: { compression } }).pipe(Scope.provide(scope))
    const start = performance.now()
    let i = 0
    while (performance.now() - start < seconds * 1000) {
      // Offer at most what the bound takes; yield so the worker's answers arrive.
      if (recorder.stats().pendingBytes + frames[0]!.byteLength <= 256 * 1024 * 1024) recorder.record("s2c", "bench", frames[i++ % 4]!)
      else yield* Effect.sleep(1)
    }
    yield* Scope.close(scope, Exit.void)
    const elapsed = (performance.now() - start) / 1000
    const stats = recorder.stats()
    const size = fs.statSync(file).size
    fs.rmSync(file)
    return {
      content: kind,
      compression,
      observations_per_s: +(stats.written.counts.observations / elapsed).toFixed(2),
      input_mb_s: +(stats.recordedBytes / 1e6 / elapsed).toFixed(1),
      file_mb_s: +(size / 1e6 / elapsed).toFixed(1),
      ratio: +(size / stats.recordedBytes).toFixed(4),
      file_gb_per_min_at_30hz: +((size / stats.written.counts.observations) * 30 * 60 / 1e9).toFixed(2)
    }
  })

const seconds = Number(process.argv[2] ?? 10)
const dir = process.argv[3] ?? fs.mkdtempSync(path.join(os.tmpdir(), "chiral-write-rate-"))
Effect.runPromise(Effect.gen(function*() {
  for (const kind of ["synthetic", "noise"] as const) {
    for (const compression of ["none", "zstd"] as const) console.log(JSON.stringify(yield* measure(kind, compression, seconds, dir)))
  }
}))
