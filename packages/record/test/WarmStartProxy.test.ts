// The recording proxy warms its thread's young generation before the first
// frame passes (`warmYoungGeneration`), as a server does. In a process of
// its own (vitest's `pool: "forks"`), as the warm-up is once per thread.
import { describe, it } from "@effect/vitest"
import { ClientTransport, MemoryTransport, ServerTransport } from "@chiral/core"
import { Effect } from "effect"
import * as RecordingProxy from "../src/RecordingProxy.js"
import * as YoungGeneration from "@chiral/testing/YoungGeneration"

describe("a RecordingProxy's start", () => {
  it.effect.skipIf(!YoungGeneration.countsFaults)("warms the young generation: what passes faults in few pages", () => {
    const robot = MemoryTransport.make({ address: "memory://robot" })
    const proxy = MemoryTransport.make({ address: "memory://proxy" })
    // Started at once: its start runs here, up to its first wait for a client.
    const started = RecordingProxy.run().pipe(
      Effect.provideService(ServerTransport, proxy.server),
      Effect.provideService(ClientTransport, robot.client),
      Effect.forkScoped({ startImmediately: true })
    )
    return YoungGeneration.assertWarmedBy(started).pipe(Effect.scoped)
  })
})
