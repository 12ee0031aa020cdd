// Codec micro-benchmark (not run by the tests). Build first, then run with Node >= 22:
//   npx tsc -b && npx node packages/protocol/bench/codec.ts
// It imports the built package (dist/), as an application would.
import { CameraFrame, decodeFrame, encodeFrame, encodeFrameParts, type Message, Observation, Proprio, Tensor } from "@chiral/protocol"
import { Result } from "effect"

const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** Median wall time of `f` in ms over `runs` runs after `warmup` runs. */
const time = (f: () => unknown, runs: number, warmup = Math.max(3, runs / 10)) => {
  for (let i = 0; i < warmup; i++) f()
  const samples: Array<number> = []
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    f()
    samples.push(performance.now() - t0)
  }
  return median(samples)
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
const runs = Number(process.env.BENCH_RUNS ?? 40)

const dst = new Uint8Array(n)
const copySet = time(() => dst.set(frame), runs)
const copyAlloc = time(() => frame.slice(), runs)

const encode = time(() => encodeFrame(large), runs)
const encodeParts = time(() => encodeFrameParts(large), runs)

console.log(`large frame: ${(n / 1e6).toFixed(1)} MB, 8 cameras 480×640×3 uint8 + 480×640 float32 depth`)
console.log(`  plain copy (preallocated Uint8Array.set)  ${copySet.toFixed(2)} ms`)
console.log(`  plain copy (Uint8Array.slice, allocating) ${copyAlloc.toFixed(2)} ms`)
console.log(`  encodeFrame        ${encode.toFixed(2)} ms  = ${(encode / copySet).toFixed(2)}× set, ${(encode / copyAlloc).toFixed(2)}× slice   (target ≤ 2×)`)
console.log(`  encodeFrameParts   ${encodeParts.toFixed(3)} ms  = ${(encodeParts / copySet).toFixed(3)}× set (header only, payload by reference)`)
for (const shift of [0, 1, 2, 3]) {
  const f = at(frame, shift)
  const decode = time(() => decodeFrame(f), runs)
  const copies = copiedTensors(decodeOk(f), f)
  console.log(
    `  decodeFrame @+${shift}   ${decode.toFixed(3)} ms  = ${(decode / copySet).toFixed(3)}× set  (${copies}/8 depth maps misaligned → copied once)   (target ≤ 1.5×)`
  )
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
