// A client warms its thread's young generation before its first connection
// (`warmYoungGeneration`), whether or not that connection is made: what it
// allocates per observation then faults in no fresh pages. In a process of
// its own (see WarmStart.test.ts).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { ClientTransport, PolicyClient, TransportError } from "../src/index.js"
import * as YoungGeneration from "@chiral/testing/YoungGeneration"

const nowhere = ClientTransport.of({
  address: "nowhere",
  connect: Effect.fail(new TransportError({ reason: "InvalidAddress", address: "nowhere", detail: "no such robot" })),
  waitingMessage: "waiting for nowhere"
})

describe("a PolicyClient's start", () => {
  it.effect.skipIf(!YoungGeneration.countsFaults)("warms the young generation: what follows faults in few pages", () =>
    Effect.gen(function*() {
      YoungGeneration.startUpBurst()
      const made = yield* Effect.exit(PolicyClient.make({ quiet: true }))
      assert.isTrue(Exit.isFailure(made))
      const { faults, pages } = YoungGeneration.faultsServing()
      assert.isBelow(faults, pages / 10, `${faults} page faults for ${pages} pages of short-lived arrays`)
    }).pipe(Effect.scoped, Effect.provideService(ClientTransport, nowhere)))
})
