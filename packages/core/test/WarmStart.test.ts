// A server warms its thread's young generation before serving
// (`warmYoungGeneration`): what it allocates per request then faults in few
// fresh pages. In a process of its own (vitest's `pool: "forks"`, a file
// each), as the warm-up is once per thread; the client's is in
// WarmStartClient.test.ts.
import { describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { MemoryTransport, PolicyServer } from "../src/index.js"
import * as Robot from "@chiral/testing/Robot"
import * as YoungGeneration from "@chiral/testing/YoungGeneration"

describe("a PolicyServer's start", () => {
  it.effect.skipIf(!YoungGeneration.countsFaults)("warms the young generation: serving faults in few pages", () =>
    YoungGeneration.assertWarmedBy(Effect.gen(function*() {
      const recorder = yield* Robot.makeRecorder
      yield* PolicyServer.make({ cameras: Robot.cameras, proprios: Robot.proprios, handlers: Robot.handlers(recorder) })
    })).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer())))
})
