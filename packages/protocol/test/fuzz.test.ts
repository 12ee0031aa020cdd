// Mutation fuzzer over the golden frames. A bounded number of cases runs in CI;
// CHIRAL_FUZZ_CASES=1000000 (and optionally CHIRAL_FUZZ_SEED) runs more on demand.
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { decodeFrame, encodeFrame, FrameError, type Message } from "@chiral/protocol"
import { vectors } from "./support/Vectors.js"

const cases = Number(process.env.CHIRAL_FUZZ_CASES ?? 4000)
const seed = Number(process.env.CHIRAL_FUZZ_SEED ?? 0x5eed)

/** mulberry32: small, seedable, reproducible. */
const random = (s: number) => () => {
  s = (s + 0x6d2b79f5) | 0
  let t = Math.imul(s ^ (s >>> 15), 1 | s)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

type Mutation = (frame: Uint8Array, rnd: () => number) => Uint8Array

const int = (rnd: () => number, n: number) => Math.floor(rnd() * n)
const headerEnd = (f: Uint8Array) => Math.min(f.byteLength, 4 + (f[0]! | (f[1]! << 8) | (f[2]! << 16) | (f[3]! << 24)) >>> 0)

const mutations: Record<string, Mutation> = {
  truncate: (f, rnd) => f.slice(0, int(rnd, f.byteLength)),
  flipBit: (f, rnd) => {
    const g = f.slice()
    const n = 1 + int(rnd, 4)
    for (let i = 0; i < n; i++) {
      const at = int(rnd, g.byteLength)
      g[at] = g[at]! ^ (1 << int(rnd, 8))
    }
    return g
  },
  randomHeaderByte: (f, rnd) => {
    const g = f.slice()
    g[4 + int(rnd, headerEnd(f) - 4)] = int(rnd, 256)
    return g
  },
  lengthen: (f, rnd) => {
    const g = new Uint8Array(f.byteLength + 1 + int(rnd, 64))
    g.set(f)
    for (let i = f.byteLength; i < g.byteLength; i++) g[i] = int(rnd, 256)
    return g
  },
  headerLen: (f, rnd) => {
    if (f.byteLength < 4) return f
    const g = f.slice()
    const view = new DataView(g.buffer)
    const choices = [0, 1, 0xffffffff, 0x7fffffff, int(rnd, 2 ** 32), view.getUint32(0, true) + int(rnd, 9) - 4]
    view.setUint32(0, choices[int(rnd, choices.length)]! >>> 0, true)
    return g
  },
  msgpackLength: (f, rnd) => {
    // Rewrite a length-bearing tag (fixmap/fixarray/fixstr or a 16/32-bit length) inside the header.
    const g = f.slice()
    const end = headerEnd(f)
    const tags: Array<number> = []
    for (let i = 4; i < end; i++) {
      const t = g[i]!
      if ((t >= 0x80 && t <= 0xbf) || t === 0xdc || t === 0xdd || t === 0xde || t === 0xdf || t === 0xd9 || t === 0xda) tags.push(i)
    }
    if (tags.length === 0) return g
    const at = tags[int(rnd, tags.length)]!
    if (at + 5 > g.byteLength) return g
    const t = g[at]!
    if (t === 0xdc || t === 0xde || t === 0xda) new DataView(g.buffer).setUint16(at + 1, int(rnd, 0x10000))
    else if (t === 0xdd || t === 0xdf) new DataView(g.buffer).setUint32(at + 1, int(rnd, 2 ** 32))
    else if (t === 0xd9) g[at + 1] = int(rnd, 256)
    else g[at] = (t & 0xe0) === 0xa0 ? 0xa0 | int(rnd, 32) : (t & 0xf0) | int(rnd, 16)
    return g
  },
  bigLengthTag: (f, rnd) => {
    // Replace any header byte with a 32-bit array/map/str/bin tag claiming ~4 G items.
    const g = f.slice()
    const end = headerEnd(f)
    if (end - 4 < 6) return g
    const at = 4 + int(rnd, end - 4 - 5)
    g[at] = [0xdd, 0xdf, 0xdb, 0xc6][int(rnd, 4)]!
    new DataView(g.buffer).setUint32(at + 1, 0xfffffff0 + int(rnd, 16))
    return g
  },
  numericField: (f, rnd) => {
    // Turn a small int (offsets, sizes, shapes) into a large or negative one.
    const g = f.slice()
    const end = headerEnd(f)
    const ints: Array<number> = []
    for (let i = 4; i < end; i++) if (g[i]! < 0x80 || g[i] === 0xcc || g[i] === 0xcd) ints.push(i)
    if (ints.length === 0) return g
    g[ints[int(rnd, ints.length)]!] = [0xff, 0xe0, 0x7f, 0x00, 0xcf, 0xd3][int(rnd, 6)]!
    return g
  }
}

describe("mutation fuzzer", () => {
  const frames = vectors.map((v) => v.bytes)
  const names = Object.keys(mutations)

  it(`${cases} mutated golden frames decode to a message or a FrameError, never a throw (seed ${seed})`, () => {
    const rnd = random(seed)
    const counts = { ok: 0, error: 0 }
    for (let i = 0; i < cases; i++) {
      const source = frames[int(rnd, frames.length)]!
      const name = names[int(rnd, names.length)]!
      let mutated = mutations[name]!(source, rnd)
      if (rnd() < 0.3) mutated = mutations[names[int(rnd, names.length)]!]!(mutated, rnd)
      // Sometimes at an odd address inside a larger buffer, so copies and views both get exercised.
      const shift = int(rnd, 8)
      const host = new Uint8Array(mutated.byteLength + shift + 16).fill(0xaa)
      host.set(mutated, shift)
      const frame = host.subarray(shift, shift + mutated.byteLength)
      let r: Result.Result<Message, FrameError>
      try {
        r = decodeFrame(frame)
      } catch (e) {
        assert.fail(`case ${i} (${name}) threw: ${e}`)
      }
      if (Result.isFailure(r)) {
        counts.error++
        const e = r.failure
        assert.instanceOf(e, FrameError)
        assert.isAbove(e.field.length, 0)
        assert.isAbove(e.reason.length, 0)
        assert.notInclude(e.message, "\n")
        assert.notMatch(e.reason, /^undecodable/, `case ${i} (${name}) hit an unexpected exception path: ${e.message}`)
      } else {
        counts.ok++
        // Whatever decodes is a consistent message: it encodes again without complaint.
        encodeFrame(r.success)
      }
    }
    // Both outcomes must occur, or the mutations are not reaching the interesting code.
    assert.isAbove(counts.ok, 0)
    assert.isAbove(counts.error, cases / 4)
  }, 120_000)
})
