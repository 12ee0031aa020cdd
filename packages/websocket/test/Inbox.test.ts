// framesOf: a server connection's frames straight from ws's events, over a
// stand-in socket, so what ws would do (messages, pause/resume, close, error)
// is under the test's control.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Logger, Queue, Stream } from "effect"
import type { TransportError } from "@chiral/core/TransportError"
import type * as NodeWS from "@effect/platform-node/NodeWS"
import { EventEmitter } from "node:events"
import { framesOf, receiverOf } from "../src/WsConnection.js"

/** What framesOf uses of a `ws` socket: its events, pause/resume and readyState. */
class StandIn extends EventEmitter {
  readyState = 1
  paused = true // NodeSocketServer hands a new connection over paused
  pauses = 0
  pause() {
    this.paused = true
    this.pauses++
  }
  resume() {
    this.paused = false
  }
  binary(...bytes: ReadonlyArray<number>) {
    this.emit("message", Buffer.from(bytes), true)
  }
}

const open = (standIn: StandIn) => framesOf(standIn as unknown as NodeWS.WebSocket, "test ← peer")

/** The frames as they arrive, one element each, into a queue the test takes from. */
const consume = (frames: Stream.Stream<Uint8Array, unknown>) =>
  Effect.gen(function*() {
    const taken = yield* Queue.unbounded<ReadonlyArray<number>>()
    const fiber = yield* Stream.runForEach(frames, (frame) => Queue.offer(taken, [...frame])).pipe(
      Effect.forkChild({ startImmediately: true })
    )
    return { taken, fiber }
  })

const logLines = () => {
  const lines: Array<string> = []
  const logger = Logger.make<unknown, void>(({ message }) => {
    lines.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
  })
  return { lines, layer: Logger.layer([logger]) }
}

describe("framesOf", () => {
  it.effect("reads from the socket, hands each binary message over in order, and ends on a normal close", () =>
    Effect.gen(function*() {
      const ws = new StandIn()
      const frames = yield* open(ws)
      assert.isFalse(ws.paused, "reading once the stream exists")
      const { fiber, taken } = yield* consume(frames)
      ws.binary(1)
      ws.binary(2, 2)
      assert.deepStrictEqual(yield* Queue.take(taken), [1])
      assert.deepStrictEqual(yield* Queue.take(taken), [2, 2])
      ws.binary(3)
      ws.emit("close", 1000, Buffer.alloc(0))
      assert.deepStrictEqual(yield* Queue.take(taken), [3], "a frame sent before the close is read first")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
    }).pipe(Effect.scoped))

  it.effect("holds at most 64 KiB for a reader that does not pull: pauses the socket, and resumes when it pulls", () =>
    Effect.gen(function*() {
      const ws = new StandIn()
      const frames = yield* open(ws)
      const chunk = new Uint8Array(16 * 1024)
      for (let i = 0; i < 3; i++) ws.emit("message", Buffer.from(chunk), true)
      assert.isFalse(ws.paused, "48 KiB held: still reading")
      ws.emit("message", Buffer.from(chunk), true)
      assert.isTrue(ws.paused, "64 KiB held: paused")
      assert.strictEqual(ws.pauses, 1)
      const { taken } = yield* consume(frames)
      for (let i = 0; i < 4; i++) assert.strictEqual((yield* Queue.take(taken)).length, chunk.length)
      assert.isFalse(ws.paused, "taken: reading again")
    }).pipe(Effect.scoped))

  it.effect("a close other than 1000/1001/1005 fails the stream as Closed, with its code and reason", () =>
    Effect.gen(function*() {
      const ws = new StandIn()
      const { fiber } = yield* consume(yield* open(ws))
      ws.emit("close", 4000, Buffer.from("bye"))
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      assert.include(String(error && "error" in error ? (error.error as Error).message : error), "close code 4000: bye")
      // the close the peer sent, for a client to say why it ended (closedBy)
      assert.deepStrictEqual(error && "error" in error ? (error.error as TransportError).closedBy : undefined, { code: 4000, reason: "bye" })
    }).pipe(Effect.scoped))

  it.effect("a socket error (e.g. a message over the size limit) fails the stream as Read; the close after it changes nothing", () =>
    Effect.gen(function*() {
      const ws = new StandIn()
      const { fiber } = yield* consume(yield* open(ws))
      ws.emit("error", new RangeError("Max payload size exceeded"))
      ws.emit("close", 1009, Buffer.alloc(0))
      const exit = yield* Fiber.await(fiber)
      const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      const message = String(error && "error" in error ? (error.error as Error).message : error)
      assert.include(message, "Max payload size exceeded")
      assert.include(message, "Read")
    }).pipe(Effect.scoped))

  it.effect("a socket already closing when the connection is served ends the stream at once (lost, 1006)", () =>
    Effect.gen(function*() {
      const ws = new StandIn()
      ws.readyState = 2
      const { fiber } = yield* consume(yield* open(ws))
      const exit = yield* Fiber.await(fiber)
      const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      assert.include(String(error && "error" in error ? (error.error as Error).message : error), "close code 1006")
      // 1006: no close frame came, so nobody said why
      assert.strictEqual(error && "error" in error ? (error.error as TransportError).closedBy : "none", undefined)
    }).pipe(Effect.scoped))

  it.effect("text messages are dropped: the first logged with its size, the count when the connection ends", () =>
    Effect.gen(function*() {
      const logs = logLines()
      yield* Effect.gen(function*() {
        const ws = new StandIn()
        const { taken } = yield* consume(yield* open(ws))
        ws.emit("message", Buffer.from("hello, robot"), false)
        ws.emit("message", Buffer.from("again"), false)
        ws.binary(7)
        assert.deepStrictEqual(yield* Queue.take(taken), [7])
        assert.strictEqual(ws.listenerCount("message"), 1)
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const text = logs.lines.filter((l) => l.includes("dropped a text message"))
      assert.strictEqual(text.length, 1)
      assert.include(text[0]!, "(12 bytes): chiral messages are binary frames")
      assert.isTrue(logs.lines.some((l) => l.includes("2 text messages from test ← peer dropped in all")))
    }))

  it.effect("lets go of the socket when the scope closes: no listeners of its own left, reading", () =>
    Effect.gen(function*() {
      const ws = new StandIn()
      yield* Effect.scoped(open(ws))
      assert.strictEqual(ws.listenerCount("message"), 0)
      assert.strictEqual(ws.listenerCount("close"), 0)
      assert.strictEqual(ws.listenerCount("error"), 1, "a late error stays handled")
      assert.isFalse(ws.paused)
    }))
})

/** The end of this turn of the event loop: microtasks queued before it have run. */
const endOfTurn = Effect.promise(() => Promise.resolve())

/** A receiver on a stand-in socket whose inline taker records each frame's first byte offered, and takes those `takes` says. */
const inlineReceiver = (takes: (first: number) => boolean) =>
  Effect.gen(function*() {
    const ws = new StandIn()
    const receiver = yield* receiverOf(ws as unknown as NodeWS.WebSocket, "test ← peer")
    const offered: Array<number> = []
    receiver.answerInline((frame) => {
      offered.push(frame[0]!)
      return takes(frame[0]!)
    })
    return { ws, receiver, offered }
  })

describe("receiverOf's inline taker (Connection.answerInline)", () => {
  it.effect("offers a frame first only with the reader waiting and nothing held, and takes at most one a turn", () =>
    Effect.gen(function*() {
      // takes odd first bytes, declines even ones
      const { offered, receiver, ws } = yield* inlineReceiver((first) => first % 2 === 1)
      ws.binary(7) // no reader yet: held, never offered
      const { taken } = yield* consume(receiver.frames)
      assert.deepStrictEqual(yield* Queue.take(taken), [7])
      yield* endOfTurn
      ws.binary(1) // taken inline
      ws.binary(3) // the same turn: read, not offered
      ws.binary(2)
      assert.deepStrictEqual(yield* Queue.take(taken), [3])
      assert.deepStrictEqual(yield* Queue.take(taken), [2])
      yield* endOfTurn
      ws.binary(4) // offered and declined: read, and the turn's inline take is still free
      ws.binary(5) // taken inline
      assert.deepStrictEqual(yield* Queue.take(taken), [4])
      assert.deepStrictEqual(offered, [1, 4, 5])
      assert.strictEqual(yield* Queue.size(taken), 0, "what was taken inline never reaches the reader")
    }).pipe(Effect.scoped))

  it.effect("offers nothing while the reader is busy with a frame, nor after the connection closed", () =>
    Effect.gen(function*() {
      const { offered, receiver, ws } = yield* inlineReceiver(() => true)
      // a reader that holds each frame until the test lets it go
      const release = yield* Queue.unbounded<void>()
      const seen = yield* Queue.unbounded<number>()
      yield* Stream.runForEach(receiver.frames, (frame) => Effect.andThen(Queue.offer(seen, frame[0]!), Queue.take(release)))
        .pipe(Effect.forkChild({ startImmediately: true }))
      ws.binary(2) // offered: the reader waits
      ws.binary(4) // same turn: to the reader
      assert.strictEqual(yield* Queue.take(seen), 4)
      yield* endOfTurn
      ws.binary(6) // the reader is still busy with 4: held for it
      assert.deepStrictEqual(offered, [2])
      yield* Queue.offer(release, undefined)
      assert.strictEqual(yield* Queue.take(seen), 6)
      yield* Queue.offer(release, undefined)
      ws.emit("close", 4000, Buffer.from("bye"))
      yield* endOfTurn
      ws.binary(8)
      assert.deepStrictEqual(offered, [2], "nothing after the close")
    }).pipe(Effect.scoped))
})
