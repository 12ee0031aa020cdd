// A server connection whose transport offers frames as they arrive
// (Connection.answerInline, as the WebSocket server's does): an obs_request is
// answered there, with the bytes the reader's way would send, and only when
// nothing can be out of order; anything else is left to the reader.
import { decodeFrame, encodeFrame, type Message, Tensor } from "@chiral/protocol"
import { assert, describe, it } from "@effect/vitest"
import { type Cause, Deferred, Effect, Option, Queue, Result, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Robot from "@chiral/testing/Robot"
import {
  type Connection,
  frameBytes,
  type Handlers,
  type InlineHandler,
  PolicyServer,
  type SendNow,
  ServerTransport,
  TransportError
} from "../src/index.js"

/** One connection whose frames, sends and inline handler the test holds. */
const fakeConnection = Effect.gen(function*() {
  const inbound = yield* Queue.unbounded<Uint8Array, Cause.Done>()
  const sent = yield* Queue.unbounded<Uint8Array>()
  const inline = yield* Deferred.make<InlineHandler>()
  const closed = yield* Deferred.make<{ readonly code: number; readonly reason: string }>()
  const connection: Connection = {
    id: "fake://robot ← client",
    frames: Stream.fromQueue(inbound),
    send: (frame) => Effect.asVoid(Queue.offer(sent, frameBytes(frame).slice())),
    close: (code, reason) => Effect.asVoid(Deferred.succeed(closed, { code, reason })),
    answerInline: (handler) => void Deferred.doneUnsafe(inline, Effect.succeed(handler))
  }
  const transport = ServerTransport.of({
    address: "fake://robot",
    serve: (handler) => Effect.andThen(Effect.ignore(handler(connection)), Effect.never)
  })
  return { inbound, sent, inline, closed, transport }
})

/** What an inline handler sent, each completed at once. */
const sendsNow = () => {
  const frames: Array<Uint8Array> = []
  const sendNow: SendNow = (frame, done) => {
    frames.push(frameBytes(frame).slice())
    done()
  }
  return { frames, sendNow }
}

const request = (message: Message) => encodeFrame(message)
const obsRequest = request({ type: "obs_request" })

const decoded = (bytes: Uint8Array): Message => {
  const message = decodeFrame(bytes)
  assert.isTrue(Result.isSuccess(message))
  return Result.getOrThrow(message)
}

const reset = Effect.map(PolicyServer.makeObs(), (obs) => ({ obs }))

/** A server on the fake connection with `handlers`, its sensors written once; its inline handler. */
const serving = (handlers: Handlers<never, PolicyServer.PolicyServer>) =>
  Effect.gen(function*() {
    const fake = yield* fakeConnection
    const server = yield* PolicyServer.make({ cameras: Robot.cameras, proprios: Robot.proprios, handlers }).pipe(
      Effect.provideService(ServerTransport, fake.transport)
    )
    yield* server.updateImage("wrist", new Uint8Array(72).fill(9))
    yield* server.updateProprio("joint_pos", [0.5, 0, 0, 0, 0, 0, 0])
    return { ...fake, handler: yield* Deferred.await(fake.inline) }
  })

/** Offers `frame` to `handler` until it takes it, a turn of the fibers between tries. */
const untilTaken = (handler: InlineHandler, frame: Uint8Array, sendNow: SendNow) =>
  Effect.whileLoop({ while: () => !handler(frame, sendNow), body: () => Effect.yieldNow, step: () => {} })

describe("A server's inline replies (Connection.answerInline)", () => {
  it.effect("answers an obs_request where it arrives, byte for byte as the reader would", () =>
    Effect.gen(function*() {
      const { handler, inbound, sent } = yield* serving({ reset, applyAction: () => Effect.void })
      yield* TestClock.adjust(2500)
      const now = sendsNow()
      assert.isTrue(handler(obsRequest, now.sendNow))
      assert.strictEqual(now.frames.length, 1)
      const reply = decoded(now.frames[0]!)
      assert.strictEqual(reply.type, "obs_response")
      if (reply.type !== "obs_response") return
      assert.strictEqual(reply.obs.timestamp, 2.5, "stamped at the request, on the capture clock")
      assert.deepStrictEqual([...(reply.obs.cameras[0]!.image.data as Uint8Array)].slice(0, 3), [9, 9, 9])
      assert.strictEqual(Tensor.toArray(reply.obs.proprios[0]!.data)[0], 0.5)
      // The same request the reader's way, at the same instant: the same bytes.
      yield* Queue.offer(inbound, obsRequest)
      assert.deepStrictEqual(yield* Queue.take(sent), now.frames[0]!)
    }).pipe(Effect.scoped))

  it.effect("leaves anything but an obs_request to the reader", () =>
    Effect.gen(function*() {
      const { handler } = yield* serving({ reset, applyAction: () => Effect.void })
      const now = sendsNow()
      const action = request({ type: "apply_action", action: Tensor.make("float32", [7], new Float32Array(7)), obsTimestamps: {} })
      assert.isFalse(handler(request({ type: "metadata" }), now.sendNow))
      assert.isFalse(handler(request({ type: "reset" }), now.sendNow))
      assert.isFalse(handler(action, now.sendNow))
      assert.isFalse(handler(new Uint8Array([1, 2, 3]), now.sendNow), "not a frame: the reader drops it and says why")
      assert.strictEqual(now.frames.length, 0)
    }).pipe(Effect.scoped))

  it.effect("waits for an action read before it: declined while the action is being applied", () =>
    Effect.gen(function*() {
      const applying = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const { handler, inbound } = yield* serving({
        reset,
        applyAction: () => Effect.andThen(Deferred.succeed(applying, undefined), Deferred.await(finish))
      })
      yield* Queue.offer(
        inbound,
        request({ type: "apply_action", action: Tensor.make("float32", [7], new Float32Array(7)), obsTimestamps: {} })
      )
      yield* Deferred.await(applying)
      const now = sendsNow()
      assert.isFalse(handler(obsRequest, now.sendNow), "the observation would not show the action")
      yield* Deferred.succeed(finish, undefined)
      yield* untilTaken(handler, obsRequest, now.sendNow)
      assert.strictEqual(now.frames.length, 1)
    }).pipe(Effect.scoped))

  it.effect("waits for a reply under way: declined while a reset is being answered, or an inline reply is being sent", () =>
    Effect.gen(function*() {
      const resetting = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const { handler, inbound, sent } = yield* serving({
        applyAction: () => Effect.void,
        reset: Effect.andThen(
          Effect.andThen(Deferred.succeed(resetting, undefined), Deferred.await(finish)),
          reset
        )
      })
      yield* Queue.offer(inbound, request({ type: "reset" }))
      yield* Deferred.await(resetting)
      const now = sendsNow()
      assert.isFalse(handler(obsRequest, now.sendNow), "the reset is answered first")
      yield* Deferred.succeed(finish, undefined)
      assert.strictEqual(decoded(yield* Queue.take(sent)).type, "reset_response")
      yield* untilTaken(handler, obsRequest, now.sendNow)
      // An inline reply whose send has not completed yet holds the next one back.
      let complete: (() => void) | undefined
      const held: SendNow = (_frame, done) => {
        complete = () => done()
      }
      assert.isTrue(handler(obsRequest, held))
      assert.isFalse(handler(obsRequest, now.sendNow))
      complete!()
      assert.isTrue(handler(obsRequest, now.sendNow))
      assert.strictEqual(now.frames.length, 2)
    }).pipe(Effect.scoped))

  it.effect("a send that fails on a connection still open closes it (1011, why); one lost with its connection is left to the reader", () =>
    Effect.gen(function*() {
      const { closed, handler } = yield* serving({ reset, applyAction: () => Effect.void })
      const failing = (reason: "Closed" | "Write"): SendNow => (_frame, done) =>
        done(new TransportError({ reason, address: "fake://robot", detail: "the write failed" }))
      assert.isTrue(handler(obsRequest, failing("Closed")))
      yield* Effect.yieldNow
      assert.isTrue(Option.isNone(yield* Deferred.poll(closed)), "lost: nothing to close")
      assert.isTrue(handler(obsRequest, failing("Write")), "nothing pending after a failed send")
      const { code, reason } = yield* Deferred.await(closed)
      assert.strictEqual(code, 1011)
      assert.include(reason, "obs_request")
      assert.include(reason, "the write failed")
    }).pipe(Effect.scoped))
})
