// Codec micro-benchmark (not run by the tests). Build first, then run with Node >= 22:
//   npx tsc -b && npx node packages/protocol/bench/codec.ts
// It imports the built package (dist/), as an application would.
import { CameraFrame, decodeFrame, encodeFrame, encodeFrameParts, type Message, Observation, Proprio, Tensor } from "@chiral/protocol"
import { Result } from "effect"

const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const clock = (f: () => unknown) => {
  const t0 = performance.now()
  f()
  return performance.now() - t0
}

/** Median wall time of `f` in ms over `runs` runs after some warm-up runs. */
const time = (f: () => unknown, runs: number) => {
  for (let i = 0; i < Math.max(3, runs / 10); i++) f()
  return median(Array.from({ length: runs }, () => clock(f)))
}

/**
 * Runs `subject` and each baseline alternately, so that load from other
 * processes (the machine is shared) hits all of them alike; medians in ms.
 */
const compare = (subject: () => unknown, baselines: ReadonlyArray<() => unknown>, runs: number) => {
  const all = [subject, ...baselines]
  for (let i = 0; i < 3; i++) for (const f of all) f()
  const samples = all.map(() => new Array<number>())
  for (let i = 0; i < runs; i++) all.forEach((f, j) => samples[j]!.push(clock(f)))
  return samples.map(median)
}

const fill = (bytes: Uint8Array) => {
  let x = 0x12345678
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    bytes[i] = x & 0xff
  }
  return bytes
}

const observation = (cameras: number, h: number, w: number): Observation =>
  Observation.make({
    timestamp: 1234.5,
    cameras: Array.from({ length: cameras }, (_, i) => {
      const depth = new Float32Array(h * w)
      for (let j = 0; j < depth.length; j++) depth[j] = (j % 5000) / 1000
      return CameraFrame.make({
        name: `cam${i}`,
        timestamp: 1234.5 + i / 100,
        intrinsics: [615.25, 0, 320.5, 0, 614.75, 240.125, 0, 0, 1],
        image: Tensor.make("uint8", [h, w, 3], fill(new Uint8Array(h * w * 3))),
        depth: Tensor.make("float32", [h, w], depth)
      })
    }),
    proprios: [Proprio.fromNumbers("joint_pos", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])],
    extra: { frame_id: 17 }
  })

/** The frame placed `shift` bytes into a fresh buffer (shifts move float32 depth off alignment). */
const at = (frame: Uint8Array, shift: number) => {
  const host = new Uint8Array(frame.byteLength + shift)
  host.set(frame, shift)
  return host.subarray(shift)
}

const decodeOk = (frame: Uint8Array) => {
  const r = decodeFrame(frame)
  if (Result.isFailure(r)) throw new Error(r.failure.message)
  return r.success
}

const copiedTensors = (m: Message, frame: Uint8Array) =>
  m.type === "obs_response" ? m.obs.cameras.filter((c) => c.depth !== null && c.depth.data.buffer !== frame.buffer).length : 0

// ── large: 8 × (480×640×3 uint8 + 480×640 float32) ────────────────────────────

const large: Message = { type: "obs_response", obs: observation(8, 480, 640) }
const frame = encodeFrame(large)
const n = frame.byteLength
const runs = Number(process.env.BENCH_RUNS ?? 60)

// Two baselines: copying into a buffer that is already mapped (pure memcpy), and
// copying into fresh memory (what any copy that returns a new buffer must do;
// allocUnsafeSlow skips the zero-fill, so this is the cheapest such copy).
const warm = new Uint8Array(n)
const copyWarm = () => warm.set(frame)
const copyFresh = () => Buffer.allocUnsafeSlow(n).set(frame)
const ratio = (label: string, subject: () => unknown, target: string) => {
  const [t, warmT, freshT] = compare(subject, [copyWarm, copyFresh], runs)
  console.log(
    `  ${label.padEnd(18)} ${t!.toFixed(3).padStart(7)} ms = ${(t! / warmT!).toFixed(2)}× copy into mapped memory (${warmT!.toFixed(2)} ms), ` +
      `${(t! / freshT!).toFixed(2)}× copy into fresh memory (${freshT!.toFixed(2)} ms)${target}`
  )
}

console.log(`large frame: ${(n / 1e6).toFixed(1)} MB, 8 cameras 480×640×3 uint8 + 480×640 float32 depth (medians of ${runs} interleaved runs)`)
ratio("encodeFrame", () => encodeFrame(large), "   target ≤ 2×")
ratio("encodeFrameParts", () => encodeFrameParts(large), "   (header only; payload by reference)")
for (const shift of [0, 1, 2, 3]) {
  const f = at(frame, shift)
  const copies = copiedTensors(decodeOk(f), f)
  ratio(`decodeFrame @+${shift}`, () => decodeFrame(f), `   target ≤ 1.5×; ${copies}/8 depth maps misaligned, copied once`)
}

// ── small: 1 camera 64×48 ─────────────────────────────────────────────────────

const small: Message = { type: "obs_response", obs: observation(1, 48, 64) }
const smallFrame = encodeFrame(small)
const smallRuns = 20000
const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`
console.log(`small frame: ${smallFrame.byteLength} bytes, 1 camera 64×48×3 uint8 + 64×48 float32 depth`)
console.log(`  plain copy         ${us(time(() => smallFrame.slice(), smallRuns))}`)
console.log(`  encodeFrame        ${us(time(() => encodeFrame(small), smallRuns))}`)
console.log(`  encodeFrameParts   ${us(time(() => encodeFrameParts(small), smallRuns))}`)
console.log(`  decodeFrame        ${us(time(() => decodeFrame(smallFrame), smallRuns))}`)
console.log(`  decodeFrame @+1    ${us(time(() => decodeFrame(at(smallFrame, 1)), smallRuns))} (includes placing the frame)`)
