// How the robot logs the clients its onConnect refuses: once per host and
// reason at warning level, in one line; repeats at debug level, counted; the
// count said when that host's client is let in.
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, References, Stream } from "effect"
import type { Connection } from "../src/index.js"
import * as RefusalLog from "../src/RefusalLog.js"
import * as Robot from "@chiral/testing/Robot"

const from = (peer: string): Connection => ({
  id: `ws://robot:8765 ← ${peer}`,
  peer,
  frames: Stream.empty,
  send: () => Effect.void
})

describe("RefusalLog", () => {
  it.effect("a refusal is a warning once per host and reason, then debug lines; the admission says how many came before", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const log = RefusalLog.make()
      const busy = Cause.fail(new Error("controller busy"))
      yield* Effect.gen(function*() {
        yield* log.refused(from("127.0.0.1:40001"), busy)
        // the same client reconnecting: another port, the same host
        yield* log.refused(from("127.0.0.1:40002"), busy)
        yield* log.refused(from("[::1]:40003"), busy)
        yield* log.refused(from("127.0.0.1:40004"), Cause.fail(new Error("e-stop pressed")))
        expect(log.admitted(from("127.0.0.1:40005"))).toBe(" after 3 refusals")
        expect(log.admitted(from("127.0.0.1:40006"))).toBe("")
        // forgotten once let in: said again
        yield* log.refused(from("127.0.0.1:40007"), busy)
        // a defect may be a bug: its stack comes with the warning
        yield* log.refused(from("10.0.0.9:40008"), Cause.die(new TypeError("allowList is undefined")))
      }).pipe(Effect.provide(logs.layer), Effect.provideService(References.MinimumLogLevel, "Debug"))
      const [first, ...rest] = logs.lines
      expect(first).toBe(
        "Warn: chiral: onConnect refused ws://robot:8765 ← 127.0.0.1:40001: controller busy; closing it (the same refusal of 127.0.0.1 again is logged at debug level)"
      )
      expect(rest.slice(0, 4)).toEqual([
        "Debug: chiral: onConnect refused ws://robot:8765 ← 127.0.0.1:40002: controller busy; closing it (2 refusals of 127.0.0.1 since it was last let in)",
        "Warn: chiral: onConnect refused ws://robot:8765 ← [::1]:40003: controller busy; closing it (the same refusal of [::1] again is logged at debug level)",
        "Warn: chiral: onConnect refused ws://robot:8765 ← 127.0.0.1:40004: e-stop pressed; closing it (the same refusal of 127.0.0.1 again is logged at debug level)",
        "Warn: chiral: onConnect refused ws://robot:8765 ← 127.0.0.1:40007: controller busy; closing it (the same refusal of 127.0.0.1 again is logged at debug level)"
      ])
      expect(rest[4]).toMatch(/^Warn: chiral: onConnect refused ws:\/\/robot:8765 ← 10\.0\.0\.9:40008: allowList is undefined; closing it .*TypeError: allowList is undefined\n\s+at /s)
      // failures are one line each
      expect(logs.lines.slice(0, 5).every((line) => !line.includes("\n"))).toBe(true)
    }))

  it.effect("a reason that names the peer's port is the same refusal at every reconnection; a shared connection is said not to be closed", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const log = RefusalLog.make()
      const naming = (peer: string) => Cause.fail(new Error(`${peer} is not on the allow list`))
      yield* Effect.gen(function*() {
        for (const port of [40001, 40002, 40003]) yield* log.refused(from(`10.0.0.7:${port}`), naming(`10.0.0.7:${port}`))
        yield* log.refused({ ...from("router"), peer: undefined, id: "tcp/0.0.0.0:7447 (router)", shared: true }, naming("router"))
      }).pipe(Effect.provide(logs.layer), Effect.provideService(References.MinimumLogLevel, "Debug"))
      expect(logs.lines.map((l) => l.slice(0, l.indexOf(":")))).toEqual(["Warn", "Debug", "Debug", "Warn"])
      expect(logs.lines[3]).toContain("its messages go unanswered (a shared connection stays open)")
      expect(RefusalLog.sameReason("[::1]:5123 and localhost:80, 12:30")).toBe("[::1] and localhost, 12:30")
    }))
})
