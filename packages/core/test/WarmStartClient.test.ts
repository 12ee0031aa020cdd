// A client warms its thread's young generation before its first connection
// (`warmYoungGeneration`), whether or not that connection is made. In a
// process of its own (see WarmStart.test.ts).
import { describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ClientTransport, PolicyClient, TransportError } from "../src/index.js"
import * as YoungGeneration from "@chiral/testing/YoungGeneration"

const nowhere = ClientTransport.of({
  address: "nowhere",
  connect: Effect.fail(new TransportError({ reason: "InvalidAddress", address: "nowhere", detail: "no such robot" })),
  waitingMessage: "waiting for nowhere"
})

describe("a PolicyClient's start", () => {
  it.effect.skipIf(!YoungGeneration.countsFaults)("warms the young generation, even when it cannot connect", () =>
    YoungGeneration.assertWarmedBy(PolicyClient.make({ quiet: true })).pipe(
      Effect.scoped,
      Effect.provideService(ClientTransport, nowhere)
    ))
})
