// The chunk modes as plain logic (what every dispatcher runs): append, replace,
// time-aligned with late drops, blending by weights at the head and by time.
import { assert, describe, it } from "@effect/vitest"
import { ActionPlan, blend, obsTime, portable, type Rows, stallAftermathSeconds, stallSeconds, validate } from "../src/ActionPlan.js"

const row = (...values: Array<number>): Rows => ({ shape: [values.length], data: Float32Array.from(values) })
const rows = (...values: Array<number>) => values.map((v) => row(v))
/** The first value of each action the plan gives at `times`, undefined where it gives none. */
const takeAt = (plan: ActionPlan, times: ReadonlyArray<number>) => times.map((t) => plan.take(t)?.action.data[0])
const drain = (plan: ActionPlan) => {
  const out: Array<number> = []
  for (let a = plan.take(Infinity); a !== undefined; a = plan.take(Infinity)) out.push(a.action.data[0]!)
  return out
}
/** Equal to `expected` as float32 (what an action carries). */
const close = (actual: number | undefined, expected: number) => assert.strictEqual(actual, Math.fround(expected))

describe("ActionPlan", () => {
  it("append keeps order; replace supersedes what waits (counted); capacity drops the oldest", () => {
    const plan = new ActionPlan(5)
    plan.put({ actions: rows(1, 2, 3), mode: "append" }, 0)
    plan.put({ actions: rows(4, 5), mode: "append" }, 0)
    assert.strictEqual(plan.take(0)?.action.data[0], 1)
    plan.put({ actions: rows(10, 11), mode: "replace" }, 0)
    assert.deepStrictEqual(plan.dropped, { late: 0, replaced: 4, overflow: 0, robotSilent: 0, stalled: 0 })
    plan.put({ actions: rows(12, 13, 14, 15), mode: "append" }, 0)
    assert.strictEqual(plan.size, 5)
    assert.deepStrictEqual(plan.dropped.overflow, 1)
    assert.deepStrictEqual(drain(plan), [11, 12, 13, 14, 15])
  })

  it("an untimed action is sent whenever it is at the head; its chunk's timestamps go with it", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    const stamp = { cam: 7.5 }
    plan.put({ actions: rows(1), mode: "append", obsTimestamps: stamp }, 100)
    const taken = plan.take(1000)!
    assert.deepStrictEqual(taken.obsTimestamps, stamp)
    assert.isUndefined(taken.due)
  })

  it("nothing is taken within half a period of the last action taken: a stalled dispatcher's late tick and the tick after it send one action, not two", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    plan.put({ actions: rows(1, 2, 3, 4), mode: "append" }, 0)
    // ticks at 0 and 0.1 s, then the thread stalls (less than stallSeconds): the tick of 0.2 s fires
    // at 0.93 s, and the grid's current tick (0.9 s) right after it
    const ticks = [[0, 0], [0.1, 0.1], [0.93, 0.2], [0.934, 0.9], [1.0, 1.0]] as const
    assert.deepStrictEqual(ticks.map(([now, tick]) => plan.take(now, tick)?.action.data[0]), [1, 2, 3, undefined, 4])
    assert.strictEqual(plan.size, 0)
    assert.deepStrictEqual(plan.dropped, { late: 0, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0 })
  })

  it("a tick stallSeconds or more behind its grid time (the dispatcher's thread did not run) drops every untimed action waiting (stalled) and sends nothing; the next put goes as usual", () => {
    assert.strictEqual(stallSeconds, 1)
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    // the trial: chunks of 10 appended at 10 Hz, the process stopped for 3 s after the tick of 0.1 s
    plan.put({ actions: rows(0, 1, 2, 3, 4, 5, 6, 7, 8, 9), mode: "append" }, 0)
    plan.put({ actions: rows(10, 11, 12, 13, 14, 15, 16, 17, 18, 19), mode: "replace" }, 0.05)
    assert.deepStrictEqual([plan.take(0.1, 0.1)?.action.data[0]], [10])
    // the tick of 0.2 s fires at 3.2 s, the grid's current one (3.2 s) right after it, then on
    assert.isUndefined(plan.take(3.2, 0.2))
    assert.strictEqual(plan.size, 0)
    assert.isUndefined(plan.take(3.2005, 3.2))
    assert.deepStrictEqual(plan.dropped, { late: 0, replaced: 10, overflow: 0, robotSilent: 0, stalled: 9 })
    // a chunk put after the stall is sent one per tick
    plan.put({ actions: rows(100, 101), mode: "append" }, 3.25)
    assert.deepStrictEqual([[3.3, 3.3], [3.4, 3.4], [3.5, 3.5]].map(([now, tick]) => plan.take(now!, tick)?.action.data[0]), [100, 101, undefined])
    assert.strictEqual(plan.dropped.stalled, 9)
  })

  it("after a stall, a chunk stamped with an observation older than stallSeconds before the late tick ran is dropped (stalled); one observed later, or unstamped, goes", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    plan.put({ actions: rows(0, 1, 2), mode: "append" }, 0)
    assert.strictEqual(plan.take(0.1, 0.1)?.action.data[0], 0)
    // stopped from ~0.15 s; the tick of 0.2 s runs at 3.2 s: what was observed before 2.2 s is stale
    assert.isUndefined(plan.take(3.2, 0.2))
    assert.strictEqual(plan.dropped.stalled, 2)
    // the chunk whose inference ran across the stop, and one computed at once from the latest observation before it
    plan.put({ actions: rows(10, 11), mode: "replace", obsTimestamps: { cam: 0.12 } }, 3.21)
    plan.put({ actions: rows(20, 21), mode: "append", obsTimestamps: { cam: 0.05 }, clockOffset: 0 }, 3.22)
    assert.strictEqual(plan.size, 0)
    assert.strictEqual(plan.dropped.stalled, 6)
    // one observed after it goes (its clock offset counted), and so does an unstamped one
    plan.put({ actions: rows(30), mode: "append", obsTimestamps: { cam: 2.25 } }, 3.25)
    plan.put({ actions: rows(31), mode: "append", obsTimestamps: { cam: 2.1 }, clockOffset: 0.2 }, 3.25)
    plan.put({ actions: rows(32), mode: "append" }, 3.25)
    // a camera time of 0 is a camera that had no frame: not judged
    plan.put({ actions: rows(33), mode: "append", obsTimestamps: { cam: 0 } }, 3.25)
    assert.deepStrictEqual(
      [[3.3, 3.3], [3.4, 3.4], [3.5, 3.5], [3.6, 3.6]].map(([now, tick]) => plan.take(now!, tick)?.action.data[0]),
      [30, 31, 32, 33]
    )
    assert.strictEqual(plan.dropped.stalled, 6)
    // once a chunk planned after the stall has come, old stamps are no stall's business (a camera that froze)
    plan.put({ actions: rows(40), mode: "append", obsTimestamps: { cam: 0.05 } }, 3.65)
    assert.strictEqual(plan.take(3.7, 3.7)?.action.data[0], 40)
    assert.strictEqual(plan.dropped.stalled, 6)
  })

  it("chunks planned before a stall are looked for at most stallAftermathSeconds after it; timed chunks are judged by their slots", () => {
    assert.strictEqual(stallAftermathSeconds, 10)
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    plan.put({ actions: rows(0, 1), mode: "append" }, 0)
    assert.strictEqual(plan.take(0.1, 0.1)?.action.data[0], 0)
    assert.isUndefined(plan.take(3.2, 0.2))
    // a time-aligned chunk observed at 2.1 s, put at 3.25 s: its passed slots are late, the rest go
    plan.put({ actions: rows(10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23), mode: "time-aligned", obsTimestamps: { cam: 2.1 } }, 3.25)
    assert.strictEqual(plan.dropped.stalled, 1)
    assert.isAbove(plan.size, 0)
    plan.clear()
    // 10 s after the stall an old stamp is no longer looked at
    plan.put({ actions: rows(30), mode: "append", obsTimestamps: { cam: 0.05 } }, 13.3)
    assert.strictEqual(plan.dropped.stalled, 1)
    assert.strictEqual(plan.size, 1)
  })

  it("a stop inside a tick (after its take) makes the next tick on time: the gap since the tick before says the stall; a restart of dispatch, or a take without a grid time, is no stall", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    plan.put({ actions: rows(0, 1, 2, 3), mode: "append" }, 0)
    assert.strictEqual(plan.take(1.0, 1.0)?.action.data[0], 0)
    // stopped while action 0 was written; the next tick is the grid's current one, at 4.0 s
    assert.isUndefined(plan.take(4.0, 4.0))
    assert.strictEqual(plan.dropped.stalled, 3)
    // a gap of 0.9 s more than a period is not yet one
    plan.put({ actions: rows(10, 11), mode: "append" }, 4.0)
    assert.strictEqual(plan.take(5.0, 5.0)?.action.data[0], 10)
    // dispatch stopped and started again 10 s later (setPeriod): no stall
    plan.setPeriod(0.1)
    assert.strictEqual(plan.take(15.0, 15.0)?.action.data[0], 11)
    // a caller polling when it likes (no grid time) is never judged
    plan.put({ actions: rows(20), mode: "append" }, 15.0)
    assert.strictEqual(plan.take(30.0)?.action.data[0], 20)
    assert.strictEqual(plan.dropped.stalled, 3)
  })

  it("a tick less than stallSeconds behind its grid time drops nothing: the action at the head goes", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    plan.put({ actions: rows(1, 2, 3), mode: "append" }, 0)
    assert.strictEqual(plan.take(1.1, 0.2)?.action.data[0], 1)
    assert.strictEqual(plan.take(1.2, 1.2)?.action.data[0], 2)
    assert.deepStrictEqual(plan.dropped, { late: 0, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0 })
    assert.strictEqual(plan.size, 1)
  })

  it("a stalled tick drops the untimed actions only: timed ones are judged by their slots, as at any tick", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    // timed actions due at 3.0, 3.1, …, 3.4 (observation at 3.0), then untimed ones after them
    plan.put({ actions: rows(0, 1, 2, 3, 4), mode: "time-aligned", obsTimestamps: { c: 3.0 } }, 0)
    plan.put({ actions: rows(10, 11), mode: "append" }, 0)
    // the tick of 0.2 s fires at 3.2 s: the untimed ones go, nothing is sent
    assert.isUndefined(plan.take(3.2, 0.2))
    assert.deepStrictEqual(plan.dropped, { late: 0, replaced: 0, overflow: 0, robotSilent: 0, stalled: 2 })
    assert.strictEqual(plan.size, 5)
    // the grid's current tick: slots of 3.0 and 3.1 have passed (late), 3.2's action goes
    assert.strictEqual(plan.take(3.2005, 3.2)?.action.data[0], 2)
    assert.strictEqual(plan.dropped.late, 2)
    // a stalled tick with only timed actions waiting judges them at the actual time: 3.3 has passed, 3.4 goes
    assert.strictEqual(plan.take(3.4, 2.0)?.action.data[0], 4)
    assert.deepStrictEqual(plan.dropped, { late: 3, replaced: 0, overflow: 0, robotSilent: 0, stalled: 2 })
  })

  it("a blend without timestamps is untimed: a stalled tick drops it; one aligned by time is judged by its slots", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    // aligned by time (observation at 5.0: due 5.0, 5.1), then one at the head: its action 2 is untimed
    plan.put({ actions: rows(20, 30), mode: blend(), obsTimestamps: { c: 5.0 } }, 5.0)
    plan.put({ actions: rows(20, 30, 40), mode: blend() }, 5.0)
    assert.isUndefined(plan.take(5.0, 3.0))
    assert.strictEqual(plan.dropped.stalled, 1)
    assert.deepStrictEqual(takeAt(plan, [5.0, 5.1, 5.2]), [20, 30, undefined])
  })

  it("time-aligned: actions whose slot passed before the chunk arrived are dropped, the rest go on their ticks", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    // observation at 1.0 s; action i due at 1.0 + 0.1 i; the chunk arrives at 1.26 s
    const late = plan.put({ actions: rows(0, 1, 2, 3, 4, 5, 6, 7), mode: "time-aligned", obsTimestamps: { a: 0.98, b: 1.0 } }, 1.26)
    // slots [due - 0.05, due + 0.05): 0, 1 and 2 (ends 1.25) have passed
    assert.strictEqual(late, 3)
    assert.strictEqual(plan.size, 5)
    // tick at 1.26 is in slot 3; 1.36 in slot 4; a tick at 1.56 is past slot 5 (dropped) and in slot 6
    assert.deepStrictEqual(takeAt(plan, [1.26, 1.36, 1.56]), [3, 4, 6])
    // slot 7 begins at 1.65: a tick before that sends nothing, one in it sends 7
    assert.deepStrictEqual(takeAt(plan, [1.6, 1.66]), [undefined, 7])
    assert.deepStrictEqual(plan.dropped, { late: 4, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0 })
    assert.strictEqual(plan.size, 0)
  })

  it("time-aligned: slots are judged at the tick's grid time, so timer jitter at a slot's edge loses nothing", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    // slots end at 1.05, 1.15, 1.25, …; the dispatcher's grid sits just before those edges
    plan.put({ actions: rows(0, 1, 2, 3, 4), mode: "time-aligned", obsTimestamps: { c: 1.0 } }, 1.0)
    // grid 1.0499 fired 0.4 ms late (past the edge), grid 1.1499 fired 0.4 ms early
    assert.deepStrictEqual([plan.take(1.0503, 1.0499), plan.take(1.1495, 1.1499)].map((t) => t?.action.data[0]), [0, 1])
    // a tick 60 ms late (more than half a period) is judged at the actual time: slot 2 has ended
    assert.strictEqual(plan.take(1.3099, 1.2499)?.action.data[0], 3)
    assert.strictEqual(plan.dropped.late, 1)
  })

  it("time-aligned: a chunk replaces what waits from its first slot on; earlier timed actions stay", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    plan.put({ actions: rows(10, 11, 12, 13, 14), mode: "time-aligned", obsTimestamps: { c: 1.0 } }, 1.0)
    // a newer chunk from the observation at 1.2: its slot 0 is the old chunk's slot 2
    plan.put({ actions: rows(20, 21, 22), mode: "time-aligned", obsTimestamps: { c: 1.2 } }, 1.0)
    assert.deepStrictEqual(plan.dropped.replaced, 3)
    assert.deepStrictEqual(takeAt(plan, [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]), [10, 11, 20, 21, 22, undefined])
  })

  it("time-aligned: a chunk entirely late changes nothing", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    plan.put({ actions: rows(10, 11, 12), mode: "time-aligned", obsTimestamps: { c: 2.0 } }, 2.0)
    assert.strictEqual(plan.put({ actions: rows(1, 2), mode: "time-aligned", obsTimestamps: { c: 1.0 } }, 2.0), 2)
    assert.deepStrictEqual(takeAt(plan, [2.0, 2.1, 2.2]), [10, 11, 12])
    assert.deepStrictEqual(plan.dropped, { late: 2, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0 })
  })

  it("time-aligned before dispatch knows its period: nothing is judged late until the ticks", () => {
    const plan = new ActionPlan(100)
    assert.strictEqual(plan.put({ actions: rows(0, 1, 2, 3), mode: "time-aligned", obsTimestamps: { c: 1.0 } }, 5), 0)
    plan.setPeriod(0.1)
    assert.deepStrictEqual(takeAt(plan, [1.2]), [2])
    assert.strictEqual(plan.dropped.late, 2)
  })

  it("blend at the head (no time): ACT's exponential weights, older predictions first", () => {
    const m = 0.5
    const plan = new ActionPlan(100)
    plan.put({ actions: rows(0, 10, 20, 30), mode: blend(m) }, 0)
    assert.strictEqual(plan.take(0)?.action.data[0], 0)
    // the next chunk, one step later: its action 0 is for the slot of the old action 1
    plan.put({ actions: rows(100, 110, 120, 130), mode: blend(m) }, 0)
    plan.take(0)
    plan.put({ actions: rows(1000, 1010, 1020, 1030), mode: blend(m) }, 0)
    const w = [1, Math.exp(-m), Math.exp(-2 * m)]
    const values = drain(plan)
    assert.strictEqual(values.length, 4)
    // slot 2: predicted by all three chunks (20, 110, 1000)
    close(values[0], (w[0]! * 20 + w[1]! * 110 + w[2]! * 1000) / (w[0]! + w[1]! + w[2]!))
    close(values[1], (w[0]! * 30 + w[1]! * 120 + w[2]! * 1010) / (w[0]! + w[1]! + w[2]!))
    close(values[2], (w[0]! * 130 + w[1]! * 1020) / (w[0]! + w[1]!))
    close(values[3], 1030)
  })

  it("blend with a user function and with a table, every value of the action", () => {
    const plan = new ActionPlan(100)
    // newest only: w0 = 1, then 0 (keep the oldest)
    plan.put({ actions: [row(1, 2)], mode: blend((k) => (k === 0 ? 1 : 0)) }, 0)
    plan.put({ actions: [row(3, 4)], mode: blend((k) => (k === 0 ? 1 : 0)) }, 0)
    assert.deepStrictEqual(Array.from(plan.take(0)!.action.data), [1, 2])
    plan.put({ actions: [row(1, 2)], mode: blend([1, 3]) }, 0)
    plan.put({ actions: [row(3, 4)], mode: blend([1, 3]) }, 0)
    plan.put({ actions: [row(7, 8)], mode: blend([1, 3]) }, 0)
    // (1·(1,2) + 3·(3,4) + 3·(7,8)) / 7: k beyond the table takes its last weight
    const [a, b] = Array.from(plan.take(0)!.action.data)
    close(a, (1 + 9 + 21) / 7)
    close(b, (2 + 12 + 24) / 7)
  })

  it("blend by time: slots matched by due time, late actions dropped, chunks on another grid phase blended in", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    const m = 0.01
    const w1 = Math.exp(-m)
    plan.put({ actions: rows(0, 1, 2, 3, 4), mode: blend(m), obsTimestamps: { c: 1.0 } }, 1.0)
    assert.strictEqual(plan.take(1.0)?.action.data[0], 0)
    // computed from the observation at 1.13 (another phase of the grid), arriving at 1.26:
    // its action 0 (due 1.13, slot ended 1.18) is late, action 1 (due 1.23) is not
    const late = plan.put({ actions: rows(10, 11, 12, 13, 14), mode: blend(m), obsTimestamps: { c: 1.13 } }, 1.26)
    assert.strictEqual(late, 1)
    // the old action due 1.1 is before the new chunk's first slot: it stays, and the next tick finds it late;
    // the old ones due 1.2, 1.3, 1.4 are nearest the new ones due 1.23, 1.33, 1.43 and blend with them
    const values = takeAt(plan, [1.26, 1.36, 1.46, 1.56])
    close(values[0], (2 + w1 * 11) / (1 + w1))
    close(values[1], (3 + w1 * 12) / (1 + w1))
    close(values[2], (4 + w1 * 13) / (1 + w1))
    close(values[3], 14)
    assert.deepStrictEqual(plan.dropped, { late: 2, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0 })
    assert.strictEqual(plan.size, 0)
  })

  it("a blended action carries the newest contribution's timestamps, and leaves as float32", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    plan.put({ actions: rows(1, 2), mode: blend(), obsTimestamps: { c: 1.0 } }, 1.0)
    plan.put({ actions: rows(3), mode: blend(), obsTimestamps: { c: 1.1 } }, 1.06)
    const taken = plan.take(1.1)!
    assert.deepStrictEqual(taken.obsTimestamps, { c: 1.1 })
    assert.instanceOf(taken.action.data, Float32Array)
    assert.closeTo(taken.due!, 1.1, 1e-9)
  })

  it("refuses what it cannot put, and leaves the plan as it was", () => {
    const plan = new ActionPlan(100)
    plan.setPeriod(0.1)
    assert.match(validate({ actions: [], mode: "time-aligned" })!, /needs the camera timestamps/)
    assert.throws(() => plan.put({ actions: rows(1), mode: "time-aligned", obsTimestamps: {} }, 0), RangeError)
    assert.match(validate({ actions: [], mode: blend([0, 1]) })!, /w₀ must be > 0/)
    assert.match(validate({ actions: [], mode: blend(Number.NaN) })!, /finite/)
    plan.put({ actions: [row(1, 2), row(3, 4)], mode: "append" }, 0)
    assert.throws(() => plan.put({ actions: [row(5, 6), row(7)], mode: blend() }, 0), /shape/)
    assert.throws(() => plan.put({ actions: [row(5, 6)], mode: blend(() => Number.NaN) }, 0), /weight/)
    assert.deepStrictEqual(drain(plan), [1, 3])
  })

  it("portable: a weight function becomes a table that crosses threads", () => {
    const mode = portable(blend((k) => 1 / (k + 1)), 3)
    assert.deepStrictEqual(mode, { kind: "blend", weights: { kind: "table", weights: Array.from({ length: 64 }, (_, k) => 1 / (k + 1)) } })
    assert.strictEqual((portable(blend(() => 1), 100) as { readonly weights: { readonly weights: ReadonlyArray<number> } }).weights.weights.length, 100)
    assert.deepStrictEqual(structuredClone(mode), mode)
    assert.strictEqual(portable("replace", 3), "replace")
  })

  it("obsTime: the newest camera timestamp", () => {
    assert.strictEqual(obsTime({ a: 1, b: 3, c: 2 }), 3)
    assert.isUndefined(obsTime({}))
    assert.isUndefined(obsTime(undefined))
  })
})
