/**
 * Keep-alive and lease cadences of one peer session, on the TestClock, over an in-memory link.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Queue } from "effect"
import { TestClock } from "effect/testing"
import { Batch, type Handshake, ZenohId } from "@chiral/zenoh"
import type { Link } from "../src/Link.js"
import { Remote } from "../src/Remote.js"
import { ZenohLinkError } from "../src/ZenohError.js"

const KEEP_ALIVE = "010004"

const setup = Effect.gen(function*() {
  const inbox = yield* Queue.unbounded<ReadonlyArray<Uint8Array>>()
  const sent: Array<string> = []
  const link: Link = {
    peer: "memory",
    readBatch: Effect.map(Queue.take(inbox), Batch.concat),
    readBatchParts: Queue.take(inbox),
    readLease: Effect.map(Queue.take(inbox), (parts) => ({ parts, owned: true, release: () => {} })),
    send: (chunks) => {
      sent.push(Buffer.from(Batch.concat(chunks)).toString("hex"))
      return Effect.void
    },
    close: () => Effect.void,
    unread: () => 0,
    incomplete: () => undefined,
    destroy: () => {},
    isOpen: () => true
  }
  const negotiated: Handshake.Negotiated = {
    role: "listener",
    remoteZid: ZenohId.random(),
    remoteWhatami: 1,
    batchSize: 65535,
    resolution: 0x0a,
    snModulus: 2 ** 28,
    patch: 1,
    remoteLeaseMillis: 10_000,
    localInitialSn: 0,
    remoteInitialSn: 0,
    leftover: []
  }
  const remote = new Remote(link, negotiated, {
    maxMessageSize: 1 << 20,
    keepAliveMillis: 2_500,
    subscriptions: () => [],
    deliver: () => undefined,
    remoteSubscriptionsChanged: () => {}
  })
  const keepAlives = () => sent.filter((b) => b === KEEP_ALIVE).length
  const receive = (hex: string) => Queue.offer(inbox, [Buffer.from(hex, "hex")])
  return { remote, sent, keepAlives, receive }
})

describe("cadences", () => {
  it.effect("KEEP_ALIVE after a quarter lease without sending anything, not while sending", () =>
    Effect.gen(function*() {
      const { remote, keepAlives } = yield* setup
      yield* Effect.forkChild(remote.keepAlive)
      yield* TestClock.adjust(2_499)
      assert.strictEqual(keepAlives(), 0)
      yield* TestClock.adjust(1)
      assert.strictEqual(keepAlives(), 1)
      yield* TestClock.adjust(2_500)
      assert.strictEqual(keepAlives(), 2)
      // Something sent during the next interval: no KEEP_ALIVE at its end.
      yield* TestClock.adjust(1_000)
      void remote.sendPut("k", [new Uint8Array(8)], 8, { timestamp: undefined, encoding: undefined, extensions: [] })
      yield* TestClock.adjust(1_500)
      assert.strictEqual(keepAlives(), 2)
      yield* TestClock.adjust(2_500)
      assert.strictEqual(keepAlives(), 3)
    }))

  it.effect("the peer is dropped after a whole lease of silence; anything received renews it", () =>
    Effect.gen(function*() {
      const { remote, receive } = yield* setup
      yield* Effect.forkChild(Effect.ignore(remote.receive))
      const lease = yield* Effect.forkChild(remote.watchLease)
      yield* TestClock.adjust(7_500)
      yield* receive("04") // a KEEP_ALIVE
      yield* TestClock.adjust(10_000)
      assert.isUndefined(lease.pollUnsafe(), "renewed at 7.5 s: still alive at 17.5 s")
      yield* TestClock.adjust(2_500)
      const exit = yield* Fiber.await(lease)
      assert(Exit.isFailure(exit))
      const error = exit.cause.reasons[0]
      assert(error?._tag === "Fail")
      assert.strictEqual(error.error._tag, "ZenohLeaseExpired")
      assert.strictEqual(error.error.leaseMillis, 10_000)
    }))

  it.effect("a link error ends the receive loop with it", () =>
    Effect.gen(function*() {
      const { remote } = yield* setup
      const failing = new Remote(
        { ...remote.link, readLease: Effect.fail(new ZenohLinkError({ peer: "memory", operation: "read", reason: "gone" })) },
        remote.negotiated,
        { maxMessageSize: 1, keepAliveMillis: 1, subscriptions: () => [], deliver: () => undefined, remoteSubscriptionsChanged: () => {} }
      )
      const error = yield* Effect.flip(failing.receive)
      assert.strictEqual(error._tag, "ZenohLinkError")
    }))
})
