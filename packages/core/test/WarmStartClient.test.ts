// A client warms its thread's young generation before its first connection
// (`warmYoungGeneration`), whether or not that connection is made. In a
// process of its own (see WarmStart.test.ts).
import { describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ClientTransport, PolicyClient } from "../src/index.js"
import * as NoRobot from "@chiral/testing/NoRobot"
import * as YoungGeneration from "@chiral/testing/YoungGeneration"

describe("a PolicyClient's start", () => {
  it.effect.skipIf(!YoungGeneration.countsFaults)("warms the young generation, even when it cannot connect", () =>
    YoungGeneration.assertWarmedBy(PolicyClient.make({ quiet: true })).pipe(
      Effect.scoped,
      Effect.provideService(ClientTransport, NoRobot.clientTransport)
    ))
})
