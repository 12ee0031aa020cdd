// The robot's action shape from its metadata, on the policy's side: once the
// client has read it, an action of another size is refused before it is
// queued or sent (TestClock, in-memory transport, PolicyClient's own
// dispatcher). Without it, any size goes, as before.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Queue } from "effect"
import { Tensor } from "@chiral/protocol"
import { ActionSpec, PolicyClient, PolicyServer, type RequestError } from "../src/index.js"
import * as Pair from "@chiral/testing/Pair"
import { advance } from "@chiral/testing/VirtualTime"
import * as Robot from "@chiral/testing/Robot"

const values = (n: number, first: number) => Array.from({ length: n }, (_, i) => (i === 0 ? first : 0))

/** The test robot answering `metadata` to getMetadata; a client connected to it. */
const pairWith = (metadata: Record<string, unknown>) =>
  Effect.gen(function*() {
    const recorder = yield* Robot.makeRecorder
    yield* PolicyServer.make({
      cameras: Robot.cameras,
      proprios: Robot.proprios,
      coalesceActions: false,
      handlers: { ...Robot.handlers(recorder), getMetadata: Effect.succeed(metadata) }
    })
    const client = yield* PolicyClient.make({ quiet: true })
    const applied = Effect.map(Queue.clear(recorder.actions), (all) => all.map((a) => Number(a.action.data[0])))
    return { client, applied }
  })

const refusal = (exit: RequestError) => [exit.reason, exit.request, exit.detail]

describe("the robot's action shape (metadata) on the policy's side", () => {
  it.effect("action_shape [1, 7]: once read, 8 values are refused as Malformed by putActions, putAction, sendAction and step, nothing queued or sent; 7 go", () =>
    Effect.gen(function*() {
      const { applied, client } = yield* pairWith({ action_shape: [1, 7] })
      yield* client.startActionDispatch(10)
      // not read yet: any size goes, as before
      yield* client.sendAction(values(8, 1))
      yield* advance(10)
      assert.deepStrictEqual(yield* applied, [1])

      yield* client.getMetadata
      yield* client.putActions([values(7, 2)])
      const chunk = yield* Effect.flip(client.putActions([values(7, 3), values(7, 4), values(8, 5)]))
      assert.deepStrictEqual(refusal(chunk), [
        "Malformed",
        "apply_action",
        "action 2 has shape [8], the robot's metadata says action_shape [1, 7]: [7] or [1, 7] per action; nothing was queued or sent"
      ])
      // one row of 7, as action_shape [1, 7] says: not [2, 7] (a reference robot's handler gets it as it is), [0, 7], [14]
      for (const [shape, n] of [[[2, 7], 14], [[0, 7], 0], [[14], 14]] as const) {
        const refused = yield* Effect.flip(client.sendAction(Tensor.make("float32", shape, new Float32Array(n))))
        assert.include(refused.detail, `the action has shape [${shape.join(", ")}]`)
      }
      const sent = yield* Effect.flip(client.sendAction(values(8, 6)))
      assert.deepStrictEqual(refusal(sent), [
        "Malformed",
        "apply_action",
        "the action has shape [8], the robot's metadata says action_shape [1, 7]: [7] or [1, 7] per action; nothing was queued or sent"
      ])
      const step = yield* Effect.flip(client.step([values(8, 7)]))
      assert.deepStrictEqual(refusal(step), [
        "Malformed",
        "action",
        "RangeError: the chunk's rows have 8 values (shape [1, 8]), the robot's metadata says action_shape [1, 7]: " +
        "7 per action; the chunk was not sent"
      ])
      // N is 1: a step of 2 rows is refused too (a C++ robot's handler for action_N 1 got both)
      const rows = yield* Effect.flip(client.step([values(7, 11), values(7, 12)]))
      assert.deepStrictEqual(refusal(rows), [
        "Malformed",
        "action",
        "RangeError: the chunk has 2 rows (shape [2, 7]), the robot's metadata says action_shape [1, 7]: " +
        "at most 1 per step; the chunk was not sent"
      ])
      assert.strictEqual(yield* client.pendingActions, 1)
      // [7] and [1, 7] are one action of 7 values
      yield* client.putAction(Tensor.make("float32", [1, 7], Float32Array.from(values(7, 8))))
      yield* client.sendAction(new Float32Array(values(7, 9)))
      yield* advance(300)
      assert.deepStrictEqual(yield* applied, [9, 2, 8])
      const stepped = yield* client.step([values(7, 10)])
      assert.strictEqual(stepped.obs.cameras.length, 2)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("action_shape [4, 7]: an action of 1 to 4 rows of 7 goes; 5 rows, or none, are refused", () =>
    Effect.gen(function*() {
      const { applied, client } = yield* pairWith({ action_shape: [4, 7] })
      yield* client.getMetadata
      yield* client.sendAction(Tensor.make("float32", [2, 7], Float32Array.from([...values(7, 1), ...values(7, 2)])))
      yield* advance(10)
      assert.deepStrictEqual(yield* applied, [1])
      for (const rows of [5, 0]) {
        const refused = yield* Effect.flip(client.sendAction(Tensor.make("float32", [rows, 7], new Float32Array(rows * 7))))
        assert.include(refused.detail, `shape [${rows}, 7], the robot's metadata says action_shape [4, 7]: [7] or [n, 7] with n from 1 to 4`)
      }
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("without an action shape in the metadata (none, or unreadable), any size goes; a later metadata with one sets the check, one without ends it", () =>
    Effect.gen(function*() {
      const metadata: Record<string, unknown> = { robot: "no shape" }
      const { applied, client } = yield* pairWith(metadata)
      yield* client.startActionDispatch(10)
      yield* client.getMetadata
      yield* client.putActions([values(8, 1)])
      yield* advance(150)
      assert.deepStrictEqual(yield* applied, [1])

      // the C++ server's strings
      metadata["action_N"] = "1"
      metadata["action_D"] = "6"
      yield* client.getMetadata
      const refused = yield* Effect.flip(client.putActions([values(8, 2)]))
      assert.include(refused.detail, "the robot's metadata says action_N 1, action_D 6: [6] or [1, 6] per action")
      yield* client.putActions([values(6, 3)])

      delete metadata["action_N"]
      delete metadata["action_D"]
      metadata["action_shape"] = [0, 7]
      yield* client.getMetadata
      yield* client.putActions([values(8, 4)])
      yield* advance(300)
      assert.deepStrictEqual(yield* applied, [3, 4])
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it("shapeFromMetadata: action_shape ([1, D], [D], a string), or action_N/action_D; what it says", () => {
    assert.deepStrictEqual(ActionSpec.shapeFromMetadata({ action_shape: [1, 7] }), { shape: [1, 7], said: "action_shape [1, 7]" })
    assert.deepStrictEqual(ActionSpec.shapeFromMetadata({ action_shape: [7] }), { shape: [1, 7], said: "action_shape [7]" })
    assert.deepStrictEqual(ActionSpec.shapeFromMetadata({ action_shape: "[1,9]" }), { shape: [1, 9], said: "action_shape [1, 9]" })
    assert.deepStrictEqual(ActionSpec.shapeFromMetadata({ action_D: 5 }), { shape: [1, 5], said: "action_D 5" })
    assert.strictEqual(ActionSpec.shapeFromMetadata({ action_shape: [1, -7] }), undefined)
  })
})

describe("a robot whose metadata reads as the C++ reference's", () => {
  it.effect("is said once: it answers only metadata, reset and the legacy step; action_shape says nothing", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const cpp = yield* pairWith({ action_N: "1", action_D: "7" })
        yield* cpp.client.getMetadata
        yield* cpp.client.getMetadata
      }).pipe(Effect.scoped, Effect.provide(Pair.memory()), Effect.provide(logs.layer))
      yield* Effect.gen(function*() {
        const python = yield* pairWith({ action_shape: [1, 7] })
        yield* python.client.getMetadata
      }).pipe(Effect.scoped, Effect.provide(Pair.memory()), Effect.provide(logs.layer))
      const said = logs.lines.filter((l) => l.includes("as the C++ reference robot's does"))
      assert.strictEqual(said.length, 1)
      assert.include(said[0], "answers only metadata, reset and the legacy step, and ignores get_obs and apply_action without a word")
    }))
})
