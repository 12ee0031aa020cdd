// What a recorded connection keeps of the connection below it.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import type * as Recorder from "../src/Recorder.js"
import * as RecordingTransport from "../src/RecordingTransport.js"

describe("RecordingTransport.tapConnection", () => {
  it("keeps what handlers see of the connection: its peer (onConnect's), whether it is shared, its close", () => {
    const close = () => Effect.void
    const below = {
      id: "ws://0.0.0.0:8765 ← 10.0.0.7:53422",
      peer: "10.0.0.7:53422",
      shared: false,
      close,
      frames: Stream.empty,
      send: () => Effect.void
    }
    // nothing is recorded here: the tap only wraps frames and sends
    const recorder = { record: () => {} } as unknown as Recorder.Recorder
    const tapped = RecordingTransport.tapConnection(below, recorder, "c2s")
    assert.strictEqual(tapped.id, below.id)
    assert.strictEqual(tapped.peer, "10.0.0.7:53422")
    assert.strictEqual(tapped.shared, false)
    assert.strictEqual(tapped.close, close)
  })
})
