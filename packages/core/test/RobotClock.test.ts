// The robot's clock as the policy's machine sees it (RobotClock): shared
// while every observation's gap (arrival − camera time) fits one clock,
// otherwise moved by the smallest gap, said once per connection.
import { assert, describe, it } from "@effect/vitest"
import { RobotClock } from "../src/index.js"

describe("RobotClock", () => {
  it("one machine: gaps of a few ms leave the offset at 0, and nothing is said", () => {
    const clock = RobotClock.make()
    assert.isUndefined(clock.observe(10.000, 10.004))
    assert.isUndefined(clock.observe(10.033, 10.035))
    // a float rounding just below zero still fits one clock
    assert.isUndefined(clock.observe(10.1, 10.1 - 0.001))
    assert.strictEqual(clock.offset(), 0)
  })

  it("a robot clock 1000 s behind: offset from the quickest observation, said once", () => {
    const clock = RobotClock.make()
    const line = clock.observe(5.0, 1005.02)
    assert.match(line!, /1000 s behind this machine's clock/)
    assert.closeTo(clock.offset(), 1000.02, 1e-9)
    // a quicker one refines it; slower ones do not; nothing more is said
    assert.isUndefined(clock.observe(5.1, 1005.105))
    assert.isUndefined(clock.observe(5.2, 1005.3))
    assert.closeTo(clock.offset(), 1000.005, 1e-9)
  })

  it("a robot clock ahead: a negative offset (one clock never shows an observation before its capture)", () => {
    const clock = RobotClock.make()
    assert.match(clock.observe(2000.0, 1000.01)!, /ahead of this machine's clock/)
    assert.closeTo(clock.offset(), -999.99, 1e-9)
  })

  it("a camera that stops on another machine's clock still ages: its time stops, the offset does not move", () => {
    const clock = RobotClock.make()
    clock.observe(5.0, 1005.01)
    const offset = clock.offset()
    for (let arrival = 1006; arrival < 1010; arrival++) clock.observe(5.0, arrival)
    assert.strictEqual(clock.offset(), offset)
    // on this machine's clock the frozen frame is 4.99 s old at 1010
    assert.closeTo(1010 - (5.0 + clock.offset()), 4.99, 1e-9)
  })

  it("cameras that have not stamped an image yet (time 0) tell nothing: no offset, nothing said", () => {
    const clock = RobotClock.make()
    assert.isUndefined(clock.observe(0, 61290.5))
    assert.strictEqual(clock.offset(), 0)
  })

  it("forget (a new connection): the next robot starts from a shared clock, and a difference is said again", () => {
    const clock = RobotClock.make()
    clock.observe(5.0, 1005.0)
    clock.forget()
    assert.strictEqual(clock.offset(), 0)
    assert.isUndefined(clock.observe(1006.0, 1006.01))
    assert.strictEqual(clock.offset(), 0)
    clock.forget()
    assert.isDefined(clock.observe(5.0, 1005.0))
  })
})
