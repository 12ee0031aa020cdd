import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as SensorState from "../src/SensorState.js"

const camera = { name: "cam", height: 2, width: 2, channels: 3, hasDepth: true }
const image = (v: number) => new Uint8Array(12).fill(v)
const depth = (v: number) => new Float32Array(4).fill(v)
const write = (state: SensorState.SensorState, v: number, copy = true) =>
  Effect.andThen(state.updateImage("cam", image(v), { copy }), state.updateDepth("cam", depth(v), { copy }))

describe("SensorBuffers", () => {
  it.effect("a leased frame's buffers are never written while the lease lasts, and recycled after", () =>
    Effect.gen(function*() {
      const state = yield* SensorState.make({ cameras: [camera] })
      yield* write(state, 1)
      const scope = yield* Scope.make()
      const leased = (yield* Scope.provide(state.makeObsLeased(), scope)).cameras[0]!
      // Many newer frames while the lease lasts: none lands in the leased buffers.
      for (let v = 2; v < 8; v++) {
        yield* write(state, v)
        const now = (yield* state.makeObsLeased().pipe(Effect.scoped)).cameras[0]!
        assert.notStrictEqual(now.image.data.buffer, leased.image.data.buffer)
        assert.notStrictEqual(now.depth!.data.buffer, leased.depth!.data.buffer)
      }
      assert.deepStrictEqual([...leased.image.data], [...image(1)])
      assert.deepStrictEqual([...leased.depth!.data], [...depth(1)])
      yield* Scope.close(scope, Exit.void)
      // Released and retired: the next frame is written into it.
      yield* write(state, 9)
      const next = (yield* state.makeObsLeased().pipe(Effect.scoped)).cameras[0]!
      assert.strictEqual(next.image.data.buffer, leased.image.data.buffer)
      assert.strictEqual(next.depth!.data.buffer, leased.depth!.data.buffer)
      assert.deepStrictEqual([...next.image.data], [...image(9)])
    }))

  it.effect("without leases, updates alternate between two buffers (no fresh memory per frame)", () =>
    Effect.gen(function*() {
      const state = yield* SensorState.make({ cameras: [camera] })
      const seen = new Set<ArrayBufferLike>()
      for (let v = 1; v < 10; v++) {
        yield* write(state, v)
        seen.add((yield* state.makeObsLeased().pipe(Effect.scoped)).cameras[0]!.image.data.buffer)
      }
      assert.isAtMost(seen.size, 3)
    }))

  it.effect("a frame handed out by makeObs is never recycled", () =>
    Effect.gen(function*() {
      const state = yield* SensorState.make({ cameras: [camera] })
      yield* write(state, 1)
      const kept = (yield* state.makeObs()).cameras[0]!
      for (let v = 2; v < 8; v++) {
        yield* write(state, v)
        yield* state.makeObsLeased().pipe(Effect.scoped)
      }
      assert.deepStrictEqual([...kept.image.data], [...image(1)])
      assert.deepStrictEqual([...kept.depth!.data], [...depth(1)])
    }))

  it.effect("a caller's own buffer (copy: false) is never written", () =>
    Effect.gen(function*() {
      const state = yield* SensorState.make({ cameras: [camera] })
      const mine = image(1)
      yield* state.updateImage("cam", mine, { copy: false })
      for (let v = 2; v < 8; v++) {
        yield* state.updateImage("cam", image(v))
        yield* state.makeObsLeased().pipe(Effect.scoped)
      }
      assert.deepStrictEqual([...mine], [...image(1)])
    }))
})
