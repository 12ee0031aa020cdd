import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber } from "effect"
import type * as NodeWS from "@effect/platform-node/NodeWS"
import type { TransportError } from "@chiral/core/TransportError"
import { JoinBuffer, senderOn, sendOn } from "../src/WsConnection.js"

const parts = (...values: ReadonlyArray<number>) => values.map((v) => new Uint8Array([v, v, v]))

/** A socket that records what it was given and completes each send only when told. */
const holdingSocket = () => {
  const sent: Array<{ data: Uint8Array; copy: Uint8Array; fin: boolean; done?: ((error?: Error) => void) | undefined }> =
    []
  const ws = {
    readyState: 1,
    send: (data: Uint8Array, options: { readonly fin: boolean }, done?: (error?: Error) => void) => {
      sent.push({ data, copy: data.byteLength > 64 ? data : data.slice(), fin: options.fin, done })
    }
  }
  return { ws: ws as unknown as NodeWS.WebSocket, sent }
}

/** `holdingSocket` whose `bufferedAmount` (bytes ws and the socket still hold) the test sets. */
const bufferingSocket = () => {
  const socket = holdingSocket()
  const state = { buffered: 0 }
  Object.defineProperty(socket.ws, "bufferedAmount", { get: () => state.buffered })
  return { ...socket, state }
}

/** One turn of the event loop. */
const turn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** Turns the event loop until `check` holds. */
const turnUntil = (check: () => boolean) => Effect.whileLoop({ while: () => !check(), body: () => turn, step: () => {} })

/** Calls back every send the socket was given and has not called back yet (the kernel took them all). */
const writeAll = (sent: ReturnType<typeof holdingSocket>["sent"]) => {
  for (const s of sent) {
    const done = s.done
    s.done = undefined
    done?.()
  }
}

/** Turns the event loop, the socket writing whatever it is given, until `check` holds. */
const writeUntil = (sent: ReturnType<typeof holdingSocket>["sent"], check: () => boolean) =>
  Effect.whileLoop({ while: () => !check(), body: () => Effect.andThen(Effect.sync(() => writeAll(sent)), turn), step: () => {} })

/** A multi-part frame of four 2.5 MiB parts: each over the 2 MiB handed to the socket per turn. */
const bigFrame = () => Array.from({ length: 4 }, (_, i) => new Uint8Array(2.5 * 1024 * 1024).fill(i + 1))

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

  it.effect("sendOn completes once nothing is left buffered after a write that did not fail, before ws calls back", () =>
    Effect.gen(function*() {
      const { sent, state, ws } = bufferingSocket()
      const send = sendOn(ws, "test")
      // The kernel took it all in the write: complete at once, and the joined buffer is free again.
      const first = yield* Effect.forkChild(send(parts(1, 2)), { startImmediately: true })
      assert.isDefined(first.pollUnsafe(), "complete in the same run")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(first)))
      yield* send(parts(3, 4))
      assert.strictEqual(sent[1]!.data.buffer, sent[0]!.data.buffer, "released at completion: reused")
      sent[0]!.done!()
      sent[1]!.done!(new Error("reported after completion: nothing left to fail"))
      // A write the kernel refused: nothing is buffered, but the socket is errored. ws's callback tells.
      const socket: { errored: Error | null } = { errored: new Error("write ECONNRESET") }
      Object.defineProperty(ws, "_socket", { value: socket, configurable: true })
      const refused = yield* Effect.forkChild(send(parts(5, 6)), { startImmediately: true })
      assert.isUndefined(refused.pollUnsafe(), "not complete on an errored socket")
      sent[2]!.done!(socket.errored!)
      assert.isTrue(Exit.isFailure(yield* Fiber.await(refused)))
      socket.errored = null
      // Bytes still buffered: the send waits for ws's callback.
      state.buffered = 6
      const waiting = yield* Effect.forkChild(send(parts(7, 8)), { startImmediately: true })
      assert.isUndefined(waiting.pollUnsafe(), "not complete while bytes are buffered")
      sent[3]!.done!()
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(waiting)))
    }))

  it.live("sendOn hands a large message's fragments over one per turn when each is over 2 MiB; a send made meanwhile waits for its last one", () =>
    Effect.gen(function*() {
      const { sent, ws } = holdingSocket()
      const send = sendOn(ws, "test")
      const big = bigFrame()
      const first = yield* Effect.forkChild(send(big), { startImmediately: true })
      assert.strictEqual(sent.length, 0, "the first turn is not taken inside the caller's run (it would run into the second)")
      const second = yield* Effect.forkChild(send(parts(7, 8)))
      yield* turnUntil(() => sent.length >= 1)
      assert.deepStrictEqual(sent.map((s) => s.data), [big[0]], "one 2.5 MiB fragment, then the loop's turn")
      assert.isFalse(sent[0]!.fin)
      yield* writeUntil(sent, () => sent.length >= 5)
      assert.deepStrictEqual(sent.slice(0, 4).map((s) => s.data), big, "the message's fragments, in order, none between")
      assert.deepStrictEqual(sent.map((s) => s.fin), [false, false, false, true, true])
      assert.deepStrictEqual([...sent[4]!.copy], [7, 7, 7, 8, 8, 8], "the other message after the last fragment")
      writeAll(sent)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(first)))
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(second)))
    }))

  it.live("sendOn hands over at most 2 MiB of fragments per turn", () =>
    Effect.gen(function*() {
      const { sent, ws } = holdingSocket()
      const mib = Array.from({ length: 7 }, (_, i) => new Uint8Array(1024 * 1024).fill(i + 1))
      const sending = yield* Effect.forkChild(sendOn(ws, "test")(mib), { startImmediately: true })
      const seen: Array<number> = []
      while (seen.at(-1) !== mib.length) {
        writeAll(sent)
        yield* turn
        if (sent.length !== seen.at(-1)) seen.push(sent.length)
      }
      assert.deepStrictEqual(seen, [2, 4, 6, 7], "two 1 MiB fragments a turn, the last one too")
      writeAll(sent)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(sending)))
    }))

  it.live("sendOn hands over a message's next turn only once the socket has written the last one, whatever else it holds", () =>
    Effect.gen(function*() {
      const { sent, ws } = holdingSocket()
      const big = bigFrame()
      const sending = yield* Effect.forkChild(sendOn(ws, "test")(big), { startImmediately: true })
      yield* turnUntil(() => sent.length >= 1)
      for (let i = 0; i < 10; i++) yield* turn
      assert.strictEqual(sent.length, 1, "nothing more while the turn's fragment is not written")
      // a ping of keepalive's, written by ws outside any message, may stay in the socket meanwhile
      sent[0]!.done!()
      yield* turnUntil(() => sent.length >= 2)
      assert.strictEqual(sent.length, 2, "the next turn once it is")
      yield* writeUntil(sent, () => sent.length >= 4)
      assert.deepStrictEqual(sent.map((s) => s.data), big)
      writeAll(sent)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(sending)))
    }))

  it.live("a socket that fails while a message is handed over fails that send, ends the connection, and the next send does not wait", () =>
    Effect.gen(function*() {
      const { sent, ws } = holdingSocket()
      let terminated = 0
      // as ws's: the socket destroyed, the connection closing
      Object.assign(ws, {
        terminate: () => {
          terminated++
          ;(ws as unknown as { readyState: number }).readyState = 2
        }
      })
      const send = sendOn(ws, "test")
      const sending = yield* Effect.forkChild(send(bigFrame()), { startImmediately: true })
      yield* turnUntil(() => sent.length >= 1)
      const after = yield* Effect.forkChild(send(parts(9)))
      for (let i = 0; i < 3; i++) yield* turn
      // the write failed while ws still says open (it closes on the socket's next event)
      sent[0]!.done!(new Error("write ECONNRESET"))
      const exit = yield* Fiber.await(sending)
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Cause.squash((exit as Exit.Failure<void, TransportError>).cause)), "ECONNRESET")
      assert.strictEqual(terminated, 1, "cut off mid-message: nothing else may follow on this connection")
      assert.isTrue(Exit.isFailure(yield* Fiber.await(after)), "not open: refused at once, not stuck behind the message")
      assert.strictEqual(sent.length, 1)
    }))

  it.live("a socket closing between two turns of a message fails that send without cutting the connection off", () =>
    Effect.gen(function*() {
      const { sent, ws } = holdingSocket()
      let terminated = 0
      Object.assign(ws, { terminate: () => void terminated++ })
      const sending = yield* Effect.forkChild(sendOn(ws, "test")(bigFrame()), { startImmediately: true })
      yield* turnUntil(() => sent.length >= 1)
      ;(ws as unknown as { readyState: number }).readyState = 2 // our close(4000, …): its close frame is on its way
      sent[0]!.done!()
      const exit = yield* Fiber.await(sending)
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(terminated, 0, "the close frame is not thrown away")
      assert.strictEqual(sent.length, 1)
    }))

  it.live("sendOn never sends what was interrupted while it waited for a message being handed over", () =>
    Effect.gen(function*() {
      const { sent, ws } = holdingSocket()
      const send = sendOn(ws, "test")
      const first = yield* Effect.forkChild(send(bigFrame()))
      const second = yield* Effect.forkChild(send(parts(7, 8)))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(second)
      yield* writeUntil(sent, () => sent.length >= 4)
      const third = yield* Effect.forkChild(send(parts(9)))
      yield* writeUntil(sent, () => sent.length >= 5)
      assert.strictEqual(sent.length, 5)
      assert.deepStrictEqual([...sent[4]!.copy], [9, 9, 9], "the interrupted send is not among them")
      for (const s of sent) s.done?.()
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(first)))
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(third)))
    }))
})

/** An error as Node's sockets report one: its message and its `code`. */
const systemError = (message: string, code: string) => Object.assign(new Error(message), { code })

describe("senderOn's idle and sendNow (what an inline reply may use)", () => {
  it.effect("idle only while open with nothing on its way out; sendNow sends at once, in order", () =>
    Effect.gen(function*() {
      const { sent, state, ws } = bufferingSocket()
      const sender = senderOn(ws, "test")
      assert.isTrue(sender.idle())
      const done: Array<unknown> = []
      sender.sendNow(parts(1, 2), (error) => done.push(error ?? "sent"))
      assert.deepStrictEqual([...sent[0]!.data], [1, 1, 1, 2, 2, 2])
      assert.deepStrictEqual(done, ["sent"], "the kernel took it all: done at once")
      state.buffered = 6
      assert.isFalse(sender.idle(), "bytes still buffered")
      state.buffered = 0
      // a large message handed over in fragments over several turns
      const big = yield* Effect.forkChild(sender.send(bigFrame()), { startImmediately: true })
      assert.isFalse(sender.idle(), "a message being handed over")
      yield* writeUntil(sent, () => sent.length > 1 && sent.at(-1)!.fin)
      writeAll(sent)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(big)))
      assert.isTrue(sender.idle())
      ;(ws as unknown as { readyState: number }).readyState = 2
      assert.isFalse(sender.idle(), "closing")
    }))
})

describe("sendOn's failed sends", () => {
  /** What the send of one frame fails with when ws calls it back with `error`, after `before` ran on the socket. */
  const failureOf = (error: Error, before: (ws: { readyState: number; _socket?: unknown }) => void = () => {}) =>
    Effect.gen(function*() {
      const { sent, ws } = holdingSocket()
      const send = yield* Effect.forkChild(sendOn(ws, "ws://robot ← client")(parts(1)), { startImmediately: true })
      before(ws as unknown as { readyState: number })
      sent[0]!.done!(error)
      const exit = yield* Fiber.await(send)
      assert.isTrue(Exit.isFailure(exit))
      return Cause.squash((exit as Exit.Failure<void, TransportError>).cause) as TransportError
    })

  it.effect("a connection lost while a reply is on its way is Closed, said in words with Node's code", () =>
    Effect.gen(function*() {
      // The peer's kernel answered with a reset: the write fails with EPIPE while ws still says open.
      const epipe = yield* failureOf(systemError("write EPIPE", "EPIPE"))
      assert.strictEqual(epipe.reason, "Closed")
      assert.strictEqual(
        epipe.message,
        "Closed (ws://robot ← client): lost while a message was being sent: the peer had closed the connection (EPIPE)"
      )
      // A read saw the reset first and destroyed the socket, which cancelled the waiting write: the reset is why.
      const reset = yield* failureOf(systemError("write ECANCELED", "ECANCELED"), (ws) => {
        ws.readyState = 2
        ws._socket = { destroyed: true, errored: systemError("read ECONNRESET", "ECONNRESET") }
      })
      assert.strictEqual(reset.reason, "Closed")
      assert.include(reset.detail, "the peer reset the connection (ECONNRESET)")
      // Keepalive cut a frozen peer off while a reply waited for its socket.
      const cancelled = yield* failureOf(systemError("write ECANCELED", "ECANCELED"), (ws) => {
        ws.readyState = 3
        ws._socket = { destroyed: true, errored: null }
      })
      assert.strictEqual(cancelled.reason, "Closed")
      assert.include(cancelled.detail, "the socket was closed before the write completed (ECANCELED)")
      // No code, but the socket is no longer open (ws's "not open" answer)
      const closing = yield* failureOf(new Error("WebSocket is not open: readyState 2 (CLOSING)"), (ws) => {
        ws.readyState = 2
      })
      assert.strictEqual(closing.reason, "Closed")
    }))

  it.effect("any other failure on a healthy open socket is a Write error that keeps its cause", () =>
    Effect.gen(function*() {
      const bug = new TypeError("Cannot read properties of undefined (reading 'length')")
      const error = yield* failureOf(bug)
      assert.strictEqual(error.reason, "Write")
      assert.strictEqual(error.cause, bug)
    }))
})
