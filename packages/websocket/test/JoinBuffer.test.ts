import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import type * as NodeWS from "@effect/platform-node/NodeWS"
import { JoinBuffer, sendOn } from "../src/WsConnection.js"

const parts = (...values: ReadonlyArray<number>) => values.map((v) => new Uint8Array([v, v, v]))

/** A socket that records what it was given and completes each send only when told. */
const holdingSocket = () => {
  const sent: Array<{ data: Uint8Array; copy: Uint8Array; done?: ((error?: Error) => void) | undefined }> = []
  const ws = {
    readyState: 1,
    send: (data: Uint8Array, _options: unknown, done?: (error?: Error) => void) => {
      sent.push({ data, copy: data.slice(), done })
    }
  }
  return { ws: ws as unknown as NodeWS.WebSocket, sent }
}

describe("JoinBuffer", () => {
  it("reuses its buffer only after the release", () => {
    const pool = new JoinBuffer()
    const a = pool.join(parts(1, 2))
    assert.deepStrictEqual([...a.bytes], [1, 1, 1, 2, 2, 2])
    const b = pool.join(parts(3, 4))
    assert.notStrictEqual(b.bytes.buffer, a.bytes.buffer, "joined while lent: a buffer of its own")
    assert.deepStrictEqual([...a.bytes], [1, 1, 1, 2, 2, 2], "the lent bytes are untouched")
    a.release()
    a.release() // twice is once
    const c = pool.join(parts(5))
    assert.strictEqual(c.bytes.buffer, a.bytes.buffer, "released: reused")
    const d = pool.join(parts(6))
    assert.notStrictEqual(d.bytes.buffer, c.bytes.buffer, "the second release of a did not free c's buffer")
  })

  it.effect("sendOn lends the buffer until ws calls the send back, then reuses it", () =>
    Effect.gen(function*() {
      const { sent, ws } = holdingSocket()
      const send = sendOn(ws, "test")
      const first = yield* Effect.forkChild(send(parts(1, 2)))
      const second = yield* Effect.forkChild(send(parts(3, 4)))
      yield* Effect.yieldNow
      assert.strictEqual(sent.length, 2)
      assert.notStrictEqual(sent[1]!.data.buffer, sent[0]!.data.buffer)
      assert.deepStrictEqual([...sent[0]!.data], [...sent[0]!.copy], "the first frame's bytes were not overwritten")
      sent[0]!.done!()
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(first)))
      const third = yield* Effect.forkChild(send(parts(5, 6)))
      yield* Effect.yieldNow
      assert.strictEqual(sent[2]!.data.buffer, sent[0]!.data.buffer, "reused once released")
      assert.deepStrictEqual([...sent[2]!.data], [5, 5, 5, 6, 6, 6])
      sent[1]!.done!()
      sent[2]!.done!(new Error("socket gone"))
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(second)))
      assert.isTrue(Exit.isFailure(yield* Fiber.await(third)))
    }))
})
