// A server and a client warm their thread's young generation before serving
// (`warmYoungGeneration`): what they allocate per request then faults in no
// fresh pages. Each in a process of its own (vitest's `pool: "forks"`, one
// file each), as the warm-up is once per thread: the server here, the
// client in WarmStartClient.test.ts.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { MemoryTransport, PolicyServer } from "../src/index.js"
import * as Robot from "@chiral/testing/Robot"
import * as YoungGeneration from "@chiral/testing/YoungGeneration"

describe("a PolicyServer's start", () => {
  it.effect.skipIf(!YoungGeneration.countsFaults)("warms the young generation: serving faults in few pages", () =>
    Effect.gen(function*() {
      YoungGeneration.startUpBurst()
      const recorder = yield* Robot.makeRecorder
      yield* PolicyServer.make({ cameras: Robot.cameras, proprios: Robot.proprios, handlers: Robot.handlers(recorder) })
      const { faults, pages } = YoungGeneration.faultsServing()
      assert.isBelow(faults, pages / 10, `${faults} page faults for ${pages} pages of short-lived arrays`)
    }).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer())))
})
