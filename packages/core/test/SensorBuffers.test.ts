import { assert, describe, it } from "@effect/vitest"
import { type CameraFrame, encodeFrame } from "@chiral/protocol"
import { Deferred, Effect, Exit, Fiber, Queue, Scope, Stream } from "effect"
import * as SensorState from "../src/SensorState.js"
import * as ServerConnection from "../src/ServerConnection.js"
import type { Connection } from "../src/Transport.js"
import { TransportError } from "../src/TransportError.js"

const camera = { name: "cam", height: 2, width: 2, channels: 3, hasDepth: true }
const image = (v: number) => new Uint8Array(12).fill(v)
const depth = (v: number) => new Float32Array(4).fill(v)
const write = (state: SensorState.SensorState, v: number, copy = true) =>
  Effect.andThen(state.updateImage("cam", image(v), { copy }), state.updateDepth("cam", depth(v), { copy }))

/** Writes several newer frames (2, 3, …) and checks that none lands in `leased`'s buffers, which keep frame 1. */
const neverWrittenInto = (state: SensorState.SensorState, leased: CameraFrame) =>
  Effect.gen(function*() {
    for (let v = 2; v < 10; v++) {
      yield* write(state, v)
      const now = (yield* state.makeObsLeased().pipe(Effect.scoped)).cameras[0]!
      assert.notStrictEqual(now.image.data.buffer, leased.image.data.buffer)
      assert.notStrictEqual(now.depth!.data.buffer, leased.depth!.data.buffer)
    }
    assert.deepStrictEqual([...leased.image.data], [...image(1)])
    assert.deepStrictEqual([...leased.depth!.data], [...depth(1)])
  })

describe("SensorBuffers", () => {
  it.effect("a leased frame's buffers are never written while the lease lasts, and recycled after", () =>
    Effect.gen(function*() {
      const state = yield* SensorState.make({ cameras: [camera] })
      yield* write(state, 1)
      const scope = yield* Scope.make()
      const leased = (yield* Scope.provide(state.makeObsLeased(), scope)).cameras[0]!
      // Many newer frames while the lease lasts: none lands in the leased buffers.
      yield* neverWrittenInto(state, leased)
      yield* Scope.close(scope, Exit.void)
      // Released and retired: the next frame is written into it.
      yield* write(state, 9)
      const next = (yield* state.makeObsLeased().pipe(Effect.scoped)).cameras[0]!
      assert.strictEqual(next.image.data.buffer, leased.image.data.buffer)
      assert.strictEqual(next.depth!.data.buffer, leased.depth!.data.buffer)
      assert.deepStrictEqual([...next.image.data], [...image(9)])
    }))

  it.effect("a lease ended by an interruption is never recycled: a send cut short may still be reading it", () =>
    Effect.gen(function*() {
      const state = yield* SensorState.make({ cameras: [camera] })
      yield* write(state, 1)
      const scope = yield* Scope.make()
      const leased = (yield* Scope.provide(state.makeObsLeased(), scope)).cameras[0]!
      yield* Scope.close(scope, Exit.interrupt())
      yield* neverWrittenInto(state, leased)
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

/** This test sends no actions: a gate that admits everything. */
const admitAll = {
  admit: () => Effect.void,
  admitReset: Effect.void,
  supersede: () => Effect.void,
  failed: Effect.void,
  disconnected: () => Effect.void,
  whileApplying: <A, E, R>(apply: Effect.Effect<A, E, R>) => apply,
  whileResetting: <A, E, R>(reset: Effect.Effect<A, E, R>) => reset,
  served: () => {},
  counts: () => ({ accepted: 0, failed: 0, refused: 0, superseded: 0, disconnected: 0 })
}

// Both ways an obs_request is answered without a getObs handler: the leased
// handler effect in a scope, and the server's own one-step path.
const replyPaths = [
  ["as a handler's effect in a scope", false],
  ["by the server's default getObs", true]
] as const

const responderFor = (state: SensorState.SensorStateWithLease, byDefault: boolean) =>
  ServerConnection.responder(
    { reset: Effect.map(state.makeObs(), (obs) => ({ obs })), applyAction: () => Effect.void },
    state.makeObs(),
    state.makeObsLeased(),
    byDefault ? state.leaseObservationUnsafe : undefined
  )

describe("the server's reply path", () => {
  it.effect.each(replyPaths)("lends the observation's buffers until the reply's send completes, %s", ([, byDefault]) =>
    Effect.gen(function*() {
      const state = yield* SensorState.make({ cameras: [camera] })
      yield* write(state, 1)
      const responder = responderFor(state, byDefault)
      assert.strictEqual(responder.observeUnsafe !== undefined, byDefault)
      const requests = yield* Queue.unbounded<Uint8Array>()
      const sent: Array<{ readonly parts: ReadonlyArray<Uint8Array>; readonly done: Deferred.Deferred<void> }> = []
      const connection: Connection = {
        id: "held",
        frames: Stream.fromQueue(requests),
        send: (frame) =>
          Effect.gen(function*() {
            const done = yield* Deferred.make<void>()
            sent.push({ parts: Array.isArray(frame) ? frame : [frame as Uint8Array], done })
            yield* Deferred.await(done)
          })
      }
      yield* ServerConnection.serve(connection, responder, { maxPending: 4, gate: admitAll, coalesceActions: true }).pipe(Effect.forkScoped)
      const request = encodeFrame({ type: "obs_request" })
      yield* Queue.offer(requests, request)
      while (sent.length < 1) yield* Effect.yieldNow
      // The reply's image part is a view of the camera's current buffer.
      const image = sent[0]!.parts.find((p) => p.byteLength === 12)!
      const before = [...image]
      for (let v = 2; v < 8; v++) yield* write(state, v)
      assert.deepStrictEqual([...image], before, "not overwritten while the send is in flight")
      yield* Deferred.succeed(sent[0]!.done, undefined)
      // Sent: the responder's scope closes, the buffer is released and a later frame reuses it.
      let reused = false
      for (let v = 8; v < 200 && !reused; v++) {
        yield* Effect.yieldNow
        yield* write(state, v)
        reused = (yield* state.makeObsLeased().pipe(Effect.scoped)).cameras[0]!.image.data.buffer === image.buffer
      }
      assert.isTrue(reused, "released once sent")
      yield* Queue.offer(requests, request)
      while (sent.length < 2) yield* Effect.yieldNow
      yield* Deferred.succeed(sent[1]!.done, undefined)
    }).pipe(Effect.scoped))

  it.effect.each(replyPaths)("never recycles a reply's buffers once its send was interrupted, %s", ([, byDefault]) =>
    Effect.gen(function*() {
      const state = yield* SensorState.make({ cameras: [camera] })
      yield* write(state, 1)
      const responder = responderFor(state, byDefault)
      const requests = yield* Queue.unbounded<Uint8Array>()
      const sent: Array<ReadonlyArray<Uint8Array>> = []
      // A send that never completes: the transport may hold the bytes however long.
      const connection: Connection = {
        id: "cut short",
        frames: Stream.fromQueue(requests),
        send: (frame) =>
          Effect.andThen(Effect.sync(() => sent.push(Array.isArray(frame) ? frame : [frame as Uint8Array])), Effect.never)
      }
      const serving = yield* ServerConnection.serve(connection, responder, { maxPending: 4, gate: admitAll, coalesceActions: true }).pipe(
        Effect.forkChild({ startImmediately: true })
      )
      yield* Queue.offer(requests, encodeFrame({ type: "obs_request" }))
      while (sent.length < 1) yield* Effect.yieldNow
      const image = sent[0]!.find((p) => p.byteLength === 12)!
      yield* Fiber.interrupt(serving)
      for (let v = 2; v < 20; v++) {
        yield* write(state, v)
        const now = (yield* state.makeObsLeased().pipe(Effect.scoped)).cameras[0]!
        assert.notStrictEqual(now.image.data.buffer, image.buffer)
      }
      assert.deepStrictEqual([...image], [...new Uint8Array(12).fill(1)])
    }))
})

describe("the server's default getObs", () => {
  // However the reply's send ends, the observation's lease ends with it, once.
  const sends: ReadonlyArray<readonly [string, Connection["send"], "ends" | "hangs"]> = [
    ["fails", () => Effect.fail(new TransportError({ reason: "Write", address: "test", detail: "refused" })), "ends"],
    ["throws", () => {
      throw new Error("the transport threw")
    }, "ends"],
    ["is interrupted", () => Effect.never, "hangs"]
  ]
  for (const [what, send, outcome] of sends) {
    it.effect(`releases the lease once when the send ${what}`, () =>
      Effect.gen(function*() {
        const state = yield* SensorState.make({ cameras: [camera] })
        let leased = 0
        let released = 0
        let mayStillBeRead: boolean | undefined
        const observe = (timestamp: number) => {
          const lease = state.leaseObservationUnsafe(timestamp)
          leased++
          return {
            obs: lease.obs,
            release: (stillRead?: boolean) => {
              released++
              mayStillBeRead = stillRead
            }
          }
        }
        const responder = ServerConnection.responder(
          { reset: Effect.map(state.makeObs(), (obs) => ({ obs })), applyAction: () => Effect.void },
          state.makeObs(),
          state.makeObsLeased(),
          observe
        )
        const requests = yield* Queue.unbounded<Uint8Array>()
        const connection: Connection = { id: what, frames: Stream.fromQueue(requests), send }
        const serving = yield* ServerConnection.serve(connection, responder, { maxPending: 4, gate: admitAll, coalesceActions: true }).pipe(
          Effect.forkChild({ startImmediately: true })
        )
        yield* Queue.offer(requests, encodeFrame({ type: "obs_request" }))
        if (outcome === "ends") {
          const exit = yield* Fiber.await(serving)
          assert.isTrue(Exit.isFailure(exit), "the connection ends")
        } else {
          while (leased < 1) yield* Effect.yieldNow
          yield* Fiber.interrupt(serving)
        }
        assert.strictEqual(leased, 1)
        assert.strictEqual(released, 1)
        // Only an interrupted send may still be reading the bytes: only then are they kept for good.
        assert.strictEqual(mayStillBeRead, outcome === "hangs")
      }))
  }
})
