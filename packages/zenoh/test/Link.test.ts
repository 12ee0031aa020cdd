/**
 * A connected link reads into reused memory (`onread` into `ReadMemory` blocks) unless told not
 * to (`reuseReadMemory: false`): whatever a caller holds must never change when later bytes
 * arrive. Real loopback sockets; the far end writes raw batches, so every cut of the stream (one
 * batch over many reads, many batches in one read, a paused socket) is under the test's control.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, type Scope } from "effect"
import type * as Net from "node:net"
import * as Batch from "../src/Batch.js"
import * as Link from "../src/Link.js"
import { ReadMemory } from "../src/ReadMemory.js"
import * as Zenoh from "../src/Zenoh.js"
import type { ZenohLinkError } from "../src/ZenohError.js"

/** A batch body of `n` bytes, different for every seed. */
const body = (n: number, seed: number) => {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (i * 7 + seed * 13 + (i >> 8)) & 0xff
  return out
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0

/** A connected link and the raw socket the listener accepted (the far end). */
const pair = (highWaterMark?: number, reuseReadMemory?: boolean) =>
  Effect.gen(function*() {
    const accepted = Deferred.makeUnsafe<Net.Socket>()
    const address = yield* Link.listen({
      host: "127.0.0.1",
      port: 0,
      onConnection: (socket) => Deferred.doneUnsafe(accepted, Exit.succeed(socket))
    })
    const link = yield* Link.connect({ host: "127.0.0.1", port: address.port, timeoutMillis: 10_000,
      highWaterMark,
      reuseReadMemory
    })
    const far = yield* Deferred.await(accepted)
    return { link, far }
  })

/** Writes `bytes` and waits until the kernel took them. */
const write = (far: Net.Socket, bytes: Uint8Array) =>
  Effect.callback<void>((resume) => {
    far.write(bytes, () => resume(Effect.void))
  })

/** One turn of the event loop. */
const turn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** Waits (polling, no deadline of its own) until `condition` holds. */
const until = (condition: () => boolean) =>
  Effect.gen(function*() {
    while (!condition()) yield* Effect.sleep(2)
  })

/** Writes `count` batches of `size` bytes (seeds 0…) as fast as the socket drains; then an empty write marks the end. */
const pumpBatches = (far: Net.Socket, count: number, size: number) => {
  const state = { written: 0, flushed: false }
  const pump = (): void => {
    while (state.written < count) {
      if (!far.write(Batch.encode(body(size, state.written++)))) return void far.once("drain", pump)
    }
    far.write(new Uint8Array(0), () => (state.flushed = true))
  }
  pump()
  return state
}

/** Reads `count` batches of `size` bytes (seeds from `seed`), each checked and released at once; `between` runs after each. */
const readBack = (link: Link.Link, count: number, size: number, seed: number, between: Effect.Effect<void> = Effect.void) =>
  Effect.gen(function*() {
    for (let i = 0; i < count; i++) {
      const lease = yield* link.readLease
      assert.isTrue(same(Batch.copy(lease.parts), body(size, seed + i)), `batch ${seed + i} arrived intact`)
      lease.release()
      yield* between
    }
  })

/** Sends `count` batches of `size` bytes (seeds from `seed`) and reads each back, released at once. */
const churn = (link: Link.Link, far: Net.Socket, count: number, size: number, seed: number) =>
  Effect.andThen(
    write(far, Batch.copy(Array.from({ length: count }, (_, i) => Batch.encode(body(size, seed + i))))),
    readBack(link, count, size, seed)
  )

describe("a connected link reads into reused memory", () => {
  it.live("unless told not to: with reuseReadMemory false its batches are Node's own chunks, the holder's to keep", () =>
    Effect.gen(function*() {
      const { far, link } = yield* pair(undefined, false)
      yield* write(far, Batch.encode(body(1000, 1)))
      const lease = yield* link.readLease
      assert.isTrue(lease.owned)
      assert.isTrue(same(Batch.copy(lease.parts), body(1000, 1)))
    }))

  it.live("batches held (lease not released, readBatchParts, readBatch) keep their bytes while later reads reuse memory", () =>
    Effect.gen(function*() {
      const { link, far } = yield* pair()
      // Each taken with other bytes between them (more than a block), so that each is alone in
      // its block and nothing else there keeps it from reuse.
      yield* write(far, Batch.encode(body(1000, 1)))
      const held = yield* link.readLease
      assert.isFalse(held.owned)
      yield* churn(link, far, 8, 60_000, 10)
      yield* write(far, Batch.encode(body(3000, 2)))
      const parts = yield* link.readBatchParts
      yield* churn(link, far, 8, 60_000, 20)
      yield* write(far, Batch.encode(body(500, 3)))
      const copied = yield* link.readBatch
      // ~4 MB of other bytes: many blocks' worth, read into memory that is reused.
      yield* churn(link, far, 64, 60_000, 100)
      assert.isTrue(same(Batch.copy(held.parts), body(1000, 1)), "the unreleased lease")
      assert.isTrue(same(Batch.copy(parts), body(3000, 2)), "readBatchParts")
      assert.isTrue(same(copied, body(500, 3)), "readBatch")
      held.release()
    }))

  it.live("a batch split across many reads arrives whole, and stays whole while held", () =>
    Effect.gen(function*() {
      const { link, far } = yield* pair()
      // Fill most of the first block, so that the split batch also straddles two blocks.
      yield* churn(link, far, 3, 65_533, 10)
      const whole = Batch.encode(body(65_533, 7))
      let sent = 0
      for (const size of [1, 2, 100, 1000, 7, 4096, 20_000, 333]) {
        yield* write(far, whole.subarray(sent, sent + size))
        sent += size
        // Each piece arrives before the next is written: one read (at least) per piece.
        yield* until(() => link.unread() === sent)
      }
      while (sent < whole.length) {
        const size = Math.min(3000, whole.length - sent)
        yield* write(far, whole.subarray(sent, sent + size))
        sent += size
        yield* until(() => link.unread() === sent)
      }
      const lease = yield* link.readLease
      assert.isAbove(lease.parts.length, 1, "views of several reads")
      assert.isTrue(same(Batch.copy(lease.parts), body(65_533, 7)))
      yield* churn(link, far, 40, 65_533, 200)
      assert.isTrue(same(Batch.copy(lease.parts), body(65_533, 7)))
      lease.release()
    }))

  it.live("a read holding many batches: each is lent on its own; those held keep their bytes", () =>
    Effect.gen(function*() {
      const { link, far } = yield* pair()
      yield* write(far, Batch.copy(Array.from({ length: 100 }, (_, i) => Batch.encode(body(500, i)))))
      const held: Array<{ readonly seed: number; readonly parts: ReadonlyArray<Uint8Array> }> = []
      for (let i = 0; i < 100; i++) {
        const lease = yield* link.readLease
        assert.isTrue(same(Batch.copy(lease.parts), body(500, i)))
        if (i % 2 === 0) lease.release()
        else held.push({ seed: i, parts: lease.parts })
      }
      yield* churn(link, far, 40, 65_533, 1000)
      for (const { parts, seed } of held) assert.isTrue(same(Batch.copy(parts), body(500, seed)), `held batch ${seed}`)
    }))

  it.live("back-pressure: reading pauses at highWaterMark while nobody pulls, and everything arrives after", () =>
    Effect.gen(function*() {
      const highWaterMark = 256 * 1024
      const { link, far } = yield* pair(highWaterMark)
      // 79 MB, more than the kernel's socket buffers can hold (here up to 32 MB + 4 MB).
      const count = 1200
      const size = 65_533
      const sender = pumpBatches(far, count, size)
      yield* until(() => link.unread() >= highWaterMark)
      // Wait until the sender is stuck (nothing more leaves for a while), or has sent everything.
      let last = -1
      let still = 0
      while (still < 25 && !sender.flushed) {
        yield* Effect.sleep(10)
        still = sender.written === last ? still + 1 : 0
        last = sender.written
      }
      assert.isFalse(sender.flushed, "the sender was held back")
      // Reading stopped with the read that crossed the mark (a read is at most a block).
      assert.isAtMost(link.unread(), highWaterMark + 256 * 1024)
      yield* readBack(link, count, size, 0)
      yield* until(() => sender.flushed)
    }))
})

describe("a slow consumer", () => {
  it.live("what waits unread stays within highWaterMark and a read while batches are pulled slower than they come", () =>
    Effect.gen(function*() {
      const highWaterMark = 256 * 1024
      const { link, far } = yield* pair(highWaterMark)
      const count = 600
      const size = 65_533
      pumpBatches(far, count, size)
      let most = 0
      // slower than the sender: the socket may read meanwhile
      yield* readBack(link, count, size, 0, Effect.andThen(Effect.sleep(1), Effect.sync(() => {
        most = Math.max(most, link.unread())
      })))
      // the mark, plus the read that crossed it (at most a block)
      assert.isAtMost(most, highWaterMark + 256 * 1024)
    }))
})

describe("writing", () => {
  // 400 batches of 60 000 bytes: 24 MB, more than the kernel's buffers hold while nobody reads
  const count = 400
  const size = 60_000
  const batches = (seed: number) => Array.from({ length: count }, (_, i) => Batch.encode(body(size, seed + i)))

  it.live("close ends the connection only after what was sent before it", () =>
    Effect.gen(function*() {
      const { link, far } = yield* pair()
      const sender = yield* Link.fromSocket(far)
      const large = sender.send(batches(0))
      yield* Effect.all([Effect.andThen(sender.close(60_000), large), readBack(link, count, size, 0)], {
        concurrency: "unbounded"
      })
      const after = yield* Effect.exit(link.readLease)
      assert.isTrue(Exit.isFailure(after), "the stream ended after the last batch")
    }))

  it.live("a large message goes over turns of at most 2 MiB, each once the socket wrote the last; a send made meanwhile follows it", () =>
    Effect.gen(function*() {
      const { link, far } = yield* pair()
      const sender = yield* Link.fromSocket(far)
      // Each turn is one corked run of writes: record its bytes and what the socket still held back.
      const turns: Array<{ bytes: number; heldBack: number }> = []
      let current: { bytes: number; heldBack: number } | undefined
      const cork = far.cork.bind(far)
      const uncork = far.uncork.bind(far)
      const write = far.write.bind(far) as (chunk: Uint8Array, done?: (error?: Error | null) => void) => boolean
      far.cork = () => {
        current = { bytes: 0, heldBack: far.writableLength }
        cork()
      }
      far.uncork = () => {
        turns.push(current!)
        current = undefined
        uncork()
      }
      far.write = ((chunk: Uint8Array, done?: (error?: Error | null) => void) => {
        if (current !== undefined) current.bytes += chunk.byteLength
        return write(chunk, done)
      }) as typeof far.write
      const large = sender.send(batches(0).slice(0, 100)) // 6 MB
      assert.strictEqual(turns.length, 0, "the first turn is not taken inside the sender's run")
      const small = sender.send([Batch.encode(body(size, 100))])
      yield* Effect.all([large, small, readBack(link, 101, size, 0)], { concurrency: "unbounded" })
      assert.isAtLeast(turns.length, 3)
      for (const turn of turns) {
        assert.isAtMost(turn.bytes, 2 * 1024 * 1024)
        assert.strictEqual(turn.heldBack, 0, "a turn only once the socket has written the one before")
      }
      const small2 = sender.send([Batch.encode(body(size, 101))])
      assert.strictEqual(turns.at(-1)!.bytes, size + 2, "a small message with nothing queued goes at once")
      yield* Effect.all([small2, readBack(link, 1, size, 101)], { concurrency: "unbounded" })
    }))

  it.live("a large message behind a small one the kernel has not taken goes out as the reader reads (no wait for a 'drain' that never comes)", () =>
    Effect.gen(function*() {
      // the reading end pauses at 64 KiB while nobody pulls: the kernel's buffers fill
      const { link, far } = yield* pair(64 * 1024)
      const sender = yield* Link.fromSocket(far)
      const small = 16_000
      let smalls = 0
      // Small messages, each written at once, until one stays in Node: its write returned true,
      // so Node will not emit 'drain' once it is written.
      while (far.writableLength === 0) {
        if (smalls === 10_000) return assert.fail("the kernel kept taking 160 MB")
        sender.send([Batch.encode(body(small, smalls++))]).pipe(Effect.runFork)
        yield* turn
      }
      const large = sender.send(batches(smalls).slice(0, 50)) // 3 MB: over one turn
      const read = Effect.andThen(readBack(link, smalls, small, 0), readBack(link, 50, size, smalls))
      const exit = yield* Effect.all([large, read], { concurrency: "unbounded" }).pipe(Effect.timeout("50 seconds"), Effect.exit)
      assert.isTrue(Exit.isSuccess(exit), "the large message was written and read whole, in order, with the link open")
      assert.isTrue(link.isOpen() && sender.isOpen())
    }))

  it.live("destroyed before the kernel took a message: that send and the one queued behind it fail, and a waiting close ends", () =>
    Effect.gen(function*() {
      // the reading end pauses at 64 KiB: most of the message stays in Node
      const { far } = yield* pair(64 * 1024)
      const sender = yield* Link.fromSocket(far)
      const large = sender.send(batches(0))
      const queued = sender.send([Batch.encode(body(size, count))])
      // destroyed while it waits for the kernel to take what was sent
      const closing = yield* Effect.forkChild(sender.close(600_000))
      yield* Effect.yieldNow
      sender.destroy()
      const [largeExit, queuedExit] = yield* Effect.all([Effect.exit(large), Effect.exit(queued)])
      assert.isTrue(Exit.isFailure(largeExit), "the message cut off fails")
      assert.isTrue(Exit.isFailure(queuedExit), "the send queued behind it fails")
      yield* Fiber.join(closing)
    }))
})

describe("ReadMemory", () => {
  /** One simulated read of `bytes` through the socket's protocol (`nextReadBuffer`, then `filled`). */
  const read = (memory: ReadMemory, bytes: Uint8Array) => {
    const buffer = memory.nextReadBuffer()
    buffer.set(bytes)
    return memory.filled(bytes.length, buffer)
  }

  it("a block is reused only once the reader left it and every chunk and lease on it is let go", () => {
    const memory = new ReadMemory({ blockSize: 1024, minRead: 256, maxFree: 4 })
    const a = read(memory, body(600, 1))
    const lease = memory.lease([a.subarray(10, 20)])
    memory.passed(a)
    memory.settle()
    const b = read(memory, body(400, 2)) // the rest of the first block
    const c = read(memory, body(300, 3)) // 24 bytes left, below minRead: a second block
    assert.strictEqual(memory.allocated, 2)
    assert.notStrictEqual(c.buffer, a.buffer)
    assert.strictEqual(memory.freeBlocks, 0)
    lease.release()
    assert.strictEqual(memory.freeBlocks, 0, "the second read's chunk still holds the first block")
    memory.passed(b)
    assert.strictEqual(memory.freeBlocks, 0, "passed chunks are let go at settle, not before")
    memory.settle()
    assert.strictEqual(memory.freeBlocks, 1)
    assert.isTrue(same(a.subarray(10, 20), body(600, 1).subarray(10, 20)))
    read(memory, body(700, 4)) // fills the second block
    const e = read(memory, body(100, 5)) // and the first comes back
    assert.strictEqual(memory.allocated, 2)
    assert.strictEqual(e.buffer, a.buffer)
  })

  it("an unreleased lease keeps its block out of reuse; released ones come back", () => {
    const memory = new ReadMemory({ blockSize: 1024, minRead: 1024, maxFree: 4 })
    const kept = read(memory, body(1024, 1))
    memory.lease([kept])
    memory.passed(kept)
    for (let i = 0; i < 10; i++) {
      const chunk = read(memory, body(1024, 10 + i))
      const lease = memory.lease([chunk])
      memory.passed(chunk)
      memory.settle()
      lease.release()
    }
    // The kept block, plus two that alternate: the reader's current one and the one released.
    assert.strictEqual(memory.allocated, 3)
    assert.isTrue(same(kept, body(1024, 1)))
  })
})

describe("Link.connect: host names that do not resolve (a scripted resolver, not the machine's DNS)", () => {
  /** A `lookup` that fails with `code` as `dns.lookup` does, or never answers. */
  const failingLookup = (code: string | "never"): Net.LookupFunction => (hostname, _options, callback) => {
    if (code === "never") return
    const error = Object.assign(new Error(`getaddrinfo ${code} ${hostname}`), { code, syscall: "getaddrinfo", hostname })
    process.nextTick(() => callback(error, "", 0))
  }
  const failed = <A>(effect: Effect.Effect<A, ZenohLinkError, Scope.Scope>) => Effect.flip(Effect.scoped(effect))

  it.live("the resolver's code is kept (ENOTFOUND, EAI_AGAIN), by knock too; a resolver that never answers times out saying so (ETIMEOUT)", () =>
    Effect.gen(function*() {
      for (const code of ["ENOTFOUND", "EAI_AGAIN"]) {
        const error = yield* failed(Link.connect({ host: "robto", port: 7447, timeoutMillis: 10_000, lookup: failingLookup(code) }))
        assert.strictEqual(error.code, code)
        assert.strictEqual(error.message, `connect on robto:7447 failed: getaddrinfo ${code} robto`)
        const knocked = yield* Effect.flip(Zenoh.knock({ host: "robto", port: 7447, timeoutMillis: 10_000, lookup: failingLookup(code) }))
        assert.strictEqual(knocked.code, code)
      }
      const silent = yield* failed(Link.connect({ host: "robto", port: 7447, timeoutMillis: 50, lookup: failingLookup("never") }))
      assert.strictEqual(silent.code, "ETIMEOUT")
      assert.strictEqual(silent.message, "connect on robto:7447 failed: no answer from the resolver within 50 ms")
    }))

  it.live("nobody listening at an address keeps its own code (ECONNREFUSED)", () =>
    Effect.gen(function*() {
      const port = yield* Effect.scoped(Effect.map(Link.listen({ host: "127.0.0.1", port: 0, onConnection: (s) => s.destroy() }), (a) => a.port))
      const error = yield* failed(Link.connect({ host: "127.0.0.1", port, timeoutMillis: 10_000 }))
      assert.strictEqual(error.code, "ECONNREFUSED")
    }))
})
