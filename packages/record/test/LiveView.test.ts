import * as RawWebSocket from "@chiral/testing/RawWebSocket"
import * as Robot from "@chiral/testing/Robot"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope, Stream, SubscriptionRef } from "effect"
import type { WebSocket } from "ws"
import * as LiveView from "../src/LiveView.js"
import { droppingSocket } from "../src/LiveView.js"

/** A stand-in for a ws socket: what it was asked to send, and how much it has waiting. */
const fakeSocket = () => {
  const sent: Array<{ data: unknown; fin: boolean | undefined }> = []
  const ws = {
    OPEN: 1,
    readyState: 1,
    bufferedAmount: 0,
    send: (data: unknown, options?: { fin?: boolean }) => sent.push({ data, fin: options?.fin })
  }
  return { ws, sent }
}

/** The subprotocol Foxglove and Lichtblick ask for. */
const foxglove = { "Sec-WebSocket-Protocol": "foxglove.websocket.v1" }

describe("LiveView", () => {
  it("a viewer that is behind gets whole messages skipped (both fragments), control messages still", () => {
    const { sent, ws } = fakeSocket()
    let dropped = 0
    const socket = droppingSocket(ws as unknown as WebSocket, 1000, () => dropped++)
    const header = new Uint8Array(13)
    const payload = new Uint8Array(2000)

    socket.send(header, { fin: false })
    socket.send(payload, { fin: true })
    assert.deepStrictEqual(sent.map((s) => s.fin), [false, true])

    // The payload above still waits in the socket: the next message is skipped whole.
    ws.bufferedAmount = 2000
    socket.send(header, { fin: false })
    ws.bufferedAmount = 0 // drained in between: the payload still follows its header's fate
    socket.send(payload, { fin: true })
    assert.strictEqual(sent.length, 2)
    assert.strictEqual(dropped, 1)

    // JSON control messages (advertise…) are never skipped.
    ws.bufferedAmount = 5000
    socket.send("{\"op\":\"advertise\"}")
    assert.strictEqual(sent.length, 3)

    ws.bufferedAmount = 0
    socket.send(header, { fin: false })
    socket.send(payload, { fin: true })
    assert.strictEqual(sent.length, 5)
    assert.strictEqual(dropped, 1)
  })

  it.live("by default the view listens on this machine only, without a warning", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const view = yield* LiveView.make({ port: 0 }).pipe(Effect.provide(logs.layer))
      assert.match(view.address, /^ws:\/\/127\.0\.0\.1:\d+$/)
      assert.strictEqual(yield* RawWebSocket.upgradeStatus(view.address, { headers: foxglove }), 101)
      assert.isFalse(logs.lines.some((l) => l.includes("without a token")), logs.lines.join(" | "))
    }).pipe(Effect.scoped))

  it.live("on every interface without a token the view warns, with advice right for code and for every chiral command", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const view = yield* LiveView.make({ host: "0.0.0.0", port: 0 }).pipe(Effect.provide(logs.layer))
      assert.deepStrictEqual(logs.lines.filter((l) => l.includes("without a token")), [
        `Warn: chiral: serving the live view ${view.address} without a token: anyone who can reach this port can watch the robot's cameras (set a token: LiveViewOptions.token, or a chiral command's --token or CHIRAL_TOKEN)`
      ])
    }).pipe(Effect.scoped))

  it.live("with a token, a viewer without it or with a wrong one gets 401; with it in the URI or a Bearer header, 101", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const view = yield* LiveView.make({ host: "0.0.0.0", port: 0, token: "s3cret" })
        // on every interface, but with a token: nothing to warn about
        assert.isFalse(logs.lines.some((l) => l.includes("without a token")))
        const local = view.address.replace("0.0.0.0", "127.0.0.1")
        const status = (options: RawWebSocket.HandshakeOptions = {}) =>
          RawWebSocket.upgradeStatus(local, { ...options, headers: { ...foxglove, ...options.headers } })
        assert.strictEqual(yield* status(), 401)
        assert.strictEqual(yield* status({ path: "/?token=wrong" }), 401)
        assert.strictEqual(yield* status({ path: "/?token=s3cret-but-longer" }), 401)
        assert.strictEqual(yield* status({ headers: { Authorization: "Bearer nope" } }), 401)
        assert.strictEqual(yield* status({ path: "/?token=s3cret" }), 101)
        assert.strictEqual(yield* status({ headers: { Authorization: "Bearer s3cret" } }), 101)
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const refused = logs.lines.filter((l) => l.includes("refused a viewer from 127.0.0.1:"))
      assert.strictEqual(refused.filter((l) => l.includes("missing token (HTTP 401)")).length, 1)
      assert.strictEqual(refused.filter((l) => l.includes("wrong token (HTTP 401)")).length, 3)
      assert.isFalse(logs.lines.some((l) => l.includes("s3cret")))
    }))

  it.live("an empty token is refused rather than served without one", () =>
    Effect.gen(function*() {
      const error = yield* LiveView.make({ port: 0, token: "" }).pipe(Effect.flip)
      assert.strictEqual(error._tag, "ViewError")
      assert.include(error.message, "the token is empty")
    }).pipe(Effect.scoped))

  it.live("viewers counts the viewers let in, as they connect and leave (one refused for its token is not one)", () =>
    Effect.gen(function*() {
      // (the refusal's warning kept off the test's output)
      const logs = yield* Robot.captureLogs
      const view = yield* LiveView.make({ port: 0, token: "s3cret" }).pipe(Effect.provide(logs.layer))
      const reaches = (n: number) =>
        SubscriptionRef.changes(view.viewers).pipe(Stream.filter((viewers) => viewers === n), Stream.runHead)
      assert.strictEqual(yield* SubscriptionRef.get(view.viewers), 0)
      assert.strictEqual(yield* RawWebSocket.upgradeStatus(view.address, { path: "/?token=wrong", headers: foxglove }), 401)
      const first = yield* Scope.make()
      yield* RawWebSocket.connect(view.address, { path: "/?token=s3cret", headers: foxglove }).pipe(Scope.provide(first))
      yield* reaches(1)
      const second = yield* Scope.make()
      yield* RawWebSocket.connect(view.address, { path: "/?token=s3cret", headers: foxglove }).pipe(Scope.provide(second))
      yield* reaches(2)
      yield* Scope.close(first, Exit.void)
      yield* reaches(1)
      yield* Scope.close(second, Exit.void)
      yield* reaches(0)
      assert.strictEqual(view.stats().viewers, 0)
    }).pipe(Effect.scoped))
})
