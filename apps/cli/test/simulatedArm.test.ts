// The simulated arm's dynamics and reach task as plain state.
import { assert, describe, it } from "@effect/vitest"
import { SimulatedArm } from "../src/SimulatedArm.js"

describe("SimulatedArm", () => {
  it("joints follow commands at most maxStep per action, within ±limit; NaN and ±Inf move nothing", () => {
    const arm = new SimulatedArm({ joints: 3, maxStep: 0.5, limit: 1 })
    arm.apply([0.2, -2, 5])
    assert.deepStrictEqual(arm.positions, [0.2, -0.5, 0.5])
    arm.apply([Number.NaN, Number.NEGATIVE_INFINITY, 5])
    assert.deepStrictEqual(arm.positions, [0.2, -0.5, 1])
    assert.deepStrictEqual(arm.moved, [0, 0, 0.5])
    // a row of the wrong length moves nothing
    arm.apply([1, 1])
    assert.deepStrictEqual(arm.positions, [0.2, -0.5, 1])
    assert.isFalse(arm.hasTask)
    assert.deepStrictEqual(arm.status(), { reward: 0, terminated: false, truncated: false, info: { episode: 0, steps: 3, distance: 0, success: false } })
  })

  it("reach: seeded starts (the same per episode and seed), success latched until reset, truncation after N actions", () => {
    const make = (seed: number) => new SimulatedArm({ joints: 2, maxStep: 0.1, task: { target: [0.5, -0.5], tolerance: 0.05, truncateAfter: 100, seed } })
    const a = make(3)
    const b = make(3)
    a.reset()
    b.reset()
    assert.deepStrictEqual(a.positions, b.positions)
    const first = a.positions
    a.reset()
    assert.notDeepEqual(a.positions, first)
    first.forEach((q, j) => assert.isAtMost(Math.abs(q - [0.5, -0.5][j]!), 1))
    let steps = 0
    while (!a.status().terminated) {
      a.apply([0.5, -0.5])
      steps++
    }
    assert.isAtMost(steps, 20)
    assert.deepStrictEqual([a.status().reward, a.status().info.success, a.status().truncated], [1, true, false])
    const reached = a.positions
    a.apply([0, 0])
    assert.deepStrictEqual(a.positions, reached)
    // held still: truncated once 100 actions went by without success
    b.reset()
    for (let i = 0; i < 99; i++) b.apply(b.positions)
    assert.isFalse(b.status().truncated)
    b.apply(b.positions)
    assert.isTrue(b.status().truncated)
  })
})
