// The plain-socket action baseline of `npm run bench` ("this machine's limits"):
// how a run's arrivals are judged, and a short live run of its two processes
// (figures never asserted: they depend on the machine). The robot and the policy
// run from dist/, so this needs `tsc -b` first (CI builds before testing).
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as RawCadence from "../src/bench/RawCadence.js"

const options = { bytes: 1000, obsHz: 30, actionHz: 100, seconds: 1 }

describe("RawCadence.summarize", () => {
  it("judges each action from its tick, and splits them by whether an observation was on its way", () => {
    // ticks every 10 ms from 1000; observations asked at 1005 and 1038, received at 1012 and 1041
    const transfers = [[1005, 1012], [1038, 1041]] as const
    const arrivals = [[0, 1000.5], [1, 1013], [2, 1020.2], [4, 1041.5]] as const
    const r = RawCadence.summarize(options, 1000, 5, arrivals, transfers)
    assert.strictEqual(r.sent, 5)
    assert.strictEqual(r.arrived, 4)
    // tick 1 (1010) fell in the first transfer, tick 4 (1040) in the second
    assert.deepStrictEqual(
      [r.duringTransfer.count, r.duringTransfer.max, r.betweenTransfers.count],
      [2, 3, 2]
    )
    assert.closeTo(r.betweenTransfers.max, 0.5, 1e-9)
    assert.strictEqual(r.all.count, 4)
    assert.strictEqual(r.all.max, 3)
    assert.match(RawCadence.format(r), /4 of 5 arrived.*\(50%\)/)
  })

  it("with no arrivals every figure is missing, not zero", () => {
    const r = RawCadence.summarize(options, 0, 3, [], [])
    assert.strictEqual(r.arrived, 0)
    assert.isNaN(r.all.p99)
    assert.match(RawCadence.format(r), /p99 —/)
  })
})

describe("RawCadence.measure", () => {
  it.live("streams and ticks over real sockets; every action sent arrives", () =>
    Effect.gen(function*() {
      const r = yield* RawCadence.measure({ bytes: 64 * 1024, obsHz: 30, actionHz: 50, seconds: 1 })
      assert.strictEqual(r.sent, 50)
      assert.strictEqual(r.arrived, 50)
      assert.strictEqual(r.duringTransfer.count + r.betweenTransfers.count, 50)
      assert.isTrue(Number.isFinite(r.all.p99))
    }).pipe(Effect.scoped), 60_000)
})
