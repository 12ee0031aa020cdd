import { assert, describe, it } from "@effect/vitest"
import type { WebSocket } from "ws"
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
})
