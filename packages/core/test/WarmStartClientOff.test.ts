// A client told not to (`warmYoungGeneration: false`, as `chiral probe`
// asks once and exits) leaves the young generation as it was. In a process
// of its own (see WarmStart.test.ts).
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ClientTransport, PolicyClient } from "../src/index.js"
import * as NoRobot from "@chiral/testing/NoRobot"
import * as YoungGeneration from "@chiral/testing/YoungGeneration"

describe("a PolicyClient's start with warmYoungGeneration: false", () => {
  it.effect.skipIf(!YoungGeneration.countsFaults)("does not warm: what follows faults in most of its pages", () =>
    Effect.gen(function*() {
      YoungGeneration.startUpBurst()
      yield* Effect.exit(PolicyClient.make({ quiet: true, warmYoungGeneration: false }))
      const { faults, pages } = YoungGeneration.faultsServing()
      assert.isAbove(faults, pages / 3, `${faults} page faults for ${pages} pages of short-lived arrays`)
    }).pipe(Effect.scoped, Effect.provideService(ClientTransport, NoRobot.clientTransport)))
})
