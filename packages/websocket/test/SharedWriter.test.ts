// SharedWriter: two threads writing frames to one socket. The peer must see
// every frame whole and in each writer's order, never two interleaved, and
// nothing may be written once the writer is closed.
import * as Net from "node:net"
import { Worker } from "node:worker_threads"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { SharedWriter } from "../src/SharedWriter.js"

/** A frame: u32 length, writer tag, u32 sequence number, then `size` bytes of the tag. */
const frame = (tag: number, seq: number, size: number): Uint8Array => {
  const out = new Uint8Array(9 + size).fill(tag)
  const view = new DataView(out.buffer)
  view.setUint32(0, 5 + size)
  out[4] = tag
  view.setUint32(5, seq)
  return out
}

/** Parses the received stream; fails on any frame that is not whole. */
const parse = (bytes: Uint8Array): Map<number, Array<number>> => {
  const seen = new Map<number, Array<number>>()
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let at = 0
  while (at < bytes.byteLength) {
    const length = view.getUint32(at)
    const tag = bytes[at + 4]!
    const seq = view.getUint32(at + 5)
    for (let i = at + 9; i < at + 4 + length; i++) {
      if (bytes[i] !== tag) throw new Error(`frame ${tag}/${seq} at ${at} is interleaved with another`)
    }
    seen.set(tag, [...(seen.get(tag) ?? []), seq])
    at += 4 + length
  }
  if (at !== bytes.byteLength) throw new Error("the stream ends inside a frame")
  return seen
}

/** A worker writing `count` frames tagged `tag` through the writer (the built module: workers run JavaScript). */
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads")
import(workerData.module).then(({ SharedWriter }) => {
  const writer = new SharedWriter(workerData.handle)
  for (let seq = 0; seq < workerData.count; seq++) {
    const size = workerData.size + (seq % 7) * 500
    const out = new Uint8Array(9 + size).fill(workerData.tag)
    const view = new DataView(out.buffer)
    view.setUint32(0, 5 + size)
    view.setUint32(5, seq)
    const error = writer.write(out)
    if (error !== undefined) return parentPort.postMessage({ error: error.message, seq })
  }
  parentPort.postMessage({ done: true })
})
`

const startWriter = (handle: SharedWriter["handle"], tag: number, count: number, size: number) => {
  const worker = new Worker(workerSource, {
    eval: true,
    workerData: { module: new URL("../dist/SharedWriter.js", import.meta.url).href, handle, tag, count, size }
  })
  const result = new Promise<unknown>((resolve) => worker.once("message", resolve))
  return { worker, result }
}

/** A TCP pair on loopback: the client socket and everything the server received. */
const pair = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ client: Net.Socket; received: () => Uint8Array; server: Net.Server; ended: Promise<void> }>(
      (resolve) => {
        const chunks: Array<Buffer> = []
        let markEnded = () => {}
        const ended = new Promise<void>((r) => (markEnded = r))
        const server = Net.createServer((socket) => {
          // Reading stops once a test has taken more than 16 MB: a peer that does not read.
          let taken = 0
          socket.on("data", (chunk) => {
            chunks.push(chunk)
            taken += chunk.byteLength
            // A slow reader, so that the socket's buffer fills and writes are taken in part.
            socket.pause()
            if (taken <= 16 * 1024 * 1024) setTimeout(() => socket.resume(), 1)
          })
          socket.on("end", () => markEnded())
        })
        server.listen(0, "127.0.0.1", () => {
          const client = Net.connect((server.address() as Net.AddressInfo).port, "127.0.0.1", () =>
            resolve({ client, server, ended, received: () => new Uint8Array(Buffer.concat(chunks)) }))
        })
      }
    )
  ),
  ({ client, server }) =>
    Effect.sync(() => {
      client.destroy()
      server.close()
    })
)

const fdOf = (socket: Net.Socket): number => (socket as unknown as { _handle: { fd: number } })._handle.fd

describe("SharedWriter", () => {
  it.live("frames of two threads arrive whole and in order", () =>
    Effect.gen(function*() {
      const { client, ended, received } = yield* pair
      const writer = SharedWriter.create(fdOf(client))
      // Frames large enough that the kernel often takes them in part.
      const count = 20
      const writers = [startWriter(writer.handle, 1, count, 150_000), startWriter(writer.handle, 2, count, 200_000)]
      for (const { result, worker } of writers) {
        assert.deepStrictEqual(yield* Effect.promise(() => result), { done: true })
        yield* Effect.promise(() => worker.terminate())
      }
      client.end()
      yield* Effect.promise(() => ended)
      const seen = parse(received())
      const inOrder = Array.from({ length: count }, (_, i) => i)
      assert.deepStrictEqual(seen.get(1), inOrder)
      assert.deepStrictEqual(seen.get(2), inOrder)
    }))

  it.live("a frame held mid-way keeps the other writer waiting; close releases it", () =>
    Effect.gen(function*() {
      const { client } = yield* pair
      // The peer stops reading (past 16 MB): fill the socket's buffer with one frame, the lock held.
      const writer = SharedWriter.create(fdOf(client))
      assert.isTrue(writer.tryLock())
      const big = frame(1, 0, 64 * 1024 * 1024)
      let at = 0
      for (;;) {
        const written = writer.writeSome(big, at)
        assert.isNumber(written)
        if (written === 0) break
        at += written as number
      }
      assert.isTrue(at > 0 && at < big.byteLength)
      const other = startWriter(writer.handle, 2, 1, 10)
      yield* Effect.sleep(100)
      writer.close()
      assert.deepStrictEqual(yield* Effect.promise(() => other.result), { error: "connection is closed", seq: 0 })
      yield* Effect.promise(() => other.worker.terminate())
      assert.instanceOf(writer.writeSome(big, at), Error)
    }))

  it.live("after close no thread writes", () =>
    Effect.gen(function*() {
      const { client, ended, received } = yield* pair
      const writer = SharedWriter.create(fdOf(client))
      const other = new SharedWriter(writer.handle)
      assert.isUndefined(writer.write(frame(1, 0, 10)))
      writer.close()
      assert.isTrue(other.isClosed)
      assert.match(other.write(frame(2, 1, 10))?.message ?? "", /closed/)
      assert.match(writer.write(frame(1, 2, 10))?.message ?? "", /closed/)
      client.end()
      yield* Effect.promise(() => ended)
      assert.deepStrictEqual(parse(received()), new Map([[1, [0]]]))
    }))
})
