// Over a real WebSocket, an obs_request may be answered inline, in the socket's
// read callback (Connection.answerInline): one right behind an action, in the
// same write, still sees the robot after that action, whether actions are
// coalesced (the default) or applied as read (coalesceActions: false).
import { describe, expect, it } from "@effect/vitest"
import { decodeFrame, Tensor } from "@chiral/protocol"
import { Duration, Effect, Fiber, Layer, Result } from "effect"
import { ClientTransport, PolicyServer, ServerTransport } from "@chiral/core"
import * as Frames from "@chiral/testing/Frames"
import * as RawWebSocket from "@chiral/testing/RawWebSocket"
import * as Robot from "@chiral/testing/Robot"
import type * as Net from "node:net"
import { WebSocketTransport } from "../src/index.js"

const transports = Layer.unwrap(
  Effect.map(ServerTransport, (server) => Layer.succeed(ClientTransport, WebSocketTransport.makeClient(server.address)))
).pipe(Layer.provideMerge(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })))

/** A masked client frame with mask key 0 (valid; the payload goes as is). */
const clientFrame = (payload: Uint8Array): Buffer => {
  const n = payload.byteLength
  const head = n < 126 ? Buffer.of(0x82, 0x80 | n) : Buffer.of(0x82, 0x80 | 126, n >> 8, n & 255)
  return Buffer.concat([head, Buffer.alloc(4), payload])
}

/** The payload of the next binary message the server sends on `socket` (unmasked; under 64 KiB here). */
const nextMessage = (socket: Net.Socket) =>
  Effect.callback<Uint8Array>((resume) => {
    let pending = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      if (pending.length < 2) return
      const short = pending[1]! & 0x7f
      const [start, length] = short < 126 ? [2, short] : [4, pending.readUInt16BE(2)]
      if (pending.length < start + length) return
      socket.off("data", onData)
      resume(Effect.succeed(new Uint8Array(pending.subarray(start, start + length))))
    }
    socket.on("data", onData)
    socket.resume()
    return Effect.sync(() => socket.off("data", onData))
  })

describe("inline replies over WebSocket", () => {
  for (const coalesceActions of [true, false]) {
    it.live(`an obs_request in the same write as an action sees the robot after it (coalesceActions: ${coalesceActions})`, () =>
      Effect.gen(function*() {
        const server = yield* PolicyServer.make({
          cameras: Robot.cameras,
          proprios: Robot.proprios,
          coalesceActions,
          handlers: {
            reset: Effect.die("unused"),
            // as slow as hardware may be: the request is read while the action is being applied
            applyAction: (action) =>
              Effect.gen(function*() {
                yield* Effect.sleep(Duration.millis(50))
                const robot = yield* PolicyServer.PolicyServer
                yield* Effect.orDie(robot.updateProprio("joint_pos", [Number(Tensor.toArray(action)[0]), 0, 0, 0, 0, 0, 0]))
              })
          }
        })
        const raw = yield* RawWebSocket.connect(server.address)
        const reply = yield* Effect.forkChild(nextMessage(raw.socket), { startImmediately: true })
        raw.socket.write(Buffer.concat([clientFrame(Frames.applyAction(0.75)), clientFrame(Frames.obsRequest)]))
        const message = decodeFrame(yield* Fiber.join(reply))
        expect(Result.isSuccess(message)).toBe(true)
        const obs = Result.getOrThrow(message)
        expect(obs.type).toBe("obs_response")
        if (obs.type !== "obs_response") return
        expect(Tensor.toArray(obs.obs.proprios[0]!.data)[0]).toBe(0.75)
      }).pipe(Effect.scoped, Effect.provide(transports)), 30_000)
  }
})
