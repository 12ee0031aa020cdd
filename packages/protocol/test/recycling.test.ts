import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import {
  CameraFrame,
  decodeFrame,
  encodeFrame,
  frameAlignment,
  type Lease,
  Lending,
  lending,
  type Observation,
  ReceivePool,
  Tensor
} from "@chiral/protocol"
import { collectUntil } from "@chiral/testing/Collector"

const detached = (buffer: ArrayBuffer) => (buffer as ArrayBuffer & { readonly detached: boolean }).detached

describe("ReceivePool", () => {
  it("hands out fresh memory, then reuses what is put back for a request of about its size", () => {
    const pool = new ReceivePool({ maxFree: 2, minBytes: 1024 })
    const a = pool.take(100_000)
    assert.strictEqual(a.byteLength, 100_000)
    assert.strictEqual(a.byteOffset, 0)
    assert.isTrue(pool.owns(a.buffer))
    pool.put(a.buffer as ArrayBuffer)
    const b = pool.take(99_000)
    assert.strictEqual(b.buffer, a.buffer, "a slightly smaller request reuses the buffer")
    assert.deepStrictEqual(pool.stats(), { reused: 1, fresh: 1, kept: 1, dropped: 0, free: 0 })
    assert.strictEqual(pool.collectAfter(1000), 1000, "a collection is asked for after half the pool's worth")
  })

  it("does not give a much larger buffer to a small request, nor a smaller one to a large request", () => {
    const pool = new ReceivePool({ maxFree: 2, minBytes: 1024 })
    const big = pool.take(1_000_000)
    pool.put(big.buffer as ArrayBuffer)
    assert.notStrictEqual(pool.take(100_000).buffer, big.buffer)
    assert.notStrictEqual(pool.take(1_200_000).buffer, big.buffer)
    assert.strictEqual(pool.take(1_000_000).buffer, big.buffer)
  })

  it("keeps at most maxFree buffers, dropping the oldest", () => {
    const pool = new ReceivePool({ maxFree: 2, minBytes: 1024 })
    const buffers = [10_000, 200_000, 3_000_000].map((n) => pool.take(n).buffer as ArrayBuffer)
    for (const b of buffers) pool.put(b)
    assert.strictEqual(pool.stats().free, 2)
    assert.strictEqual(pool.stats().dropped, 1)
    assert.notStrictEqual(pool.take(10_000).buffer, buffers[0], "the oldest went")
    assert.strictEqual(pool.take(200_000).buffer, buffers[1])
    assert.strictEqual(pool.take(3_000_000).buffer, buffers[2])
  })

  it("neither keeps nor owns small or detached buffers", () => {
    const pool = new ReceivePool({ maxFree: 2, minBytes: 1024 })
    const small = pool.take(100)
    assert.isFalse(pool.owns(small.buffer))
    pool.put(small.buffer as ArrayBuffer)
    const big = pool.take(10_000).buffer as ArrayBuffer
    ;(big as ArrayBuffer & { transfer(): ArrayBuffer }).transfer()
    pool.put(big)
    assert.strictEqual(pool.stats().free, 0)
    assert.strictEqual(pool.stats().dropped, 2)
    assert.isFalse(pool.owns(new ArrayBuffer(10_000)))
  })
})

/** A watcher driven by hand: `collect(view)` is what a collection of `view` would report. */
const handDriven = () => {
  const watched = new Map<object, Lease>()
  let report: (lease: Lease) => void = () => {}
  const lending = new Lending((collected) => {
    report = collected
    return { register: (view, lease) => void watched.set(view, lease) }
  })
  const collect = (view: object) => {
    const lease = watched.get(view)
    assert.isDefined(lease, "a tracked view")
    watched.delete(view)
    report(lease!)
  }
  return { lending, collect, watched }
}

describe("Lending", () => {
  it("releases the memory only after the frame and every tracked view are collected, detaching the old buffer", () => {
    const { collect, lending } = handDriven()
    const released: Array<ArrayBuffer> = []
    const frame = new Uint8Array(64).fill(7)
    const buffer = frame.buffer
    assert.isTrue(lending.lend(frame, (memory) => released.push(memory)))
    assert.isTrue(lending.isLent(buffer))
    const image = new Uint8Array(buffer, 8, 16)
    const depth = new Float32Array(buffer, 32, 8)
    lending.track(image)
    lending.track(depth)
    lending.track(new Uint8Array(16)) // not over the lent buffer: not tracked
    const readersOwn = new Uint8Array(buffer, 8, 4) // built by a reader: not tracked

    collect(frame)
    collect(image)
    assert.strictEqual(released.length, 0, "depth still reads the memory")
    assert.strictEqual(depth.length, 8)
    collect(depth)
    assert.strictEqual(released.length, 1)
    assert.strictEqual(released[0]!.byteLength, 64)
    assert.strictEqual(new Uint8Array(released[0]!)[0], 7, "the same bytes, moved")
    assert.isTrue(detached(buffer))
    assert.strictEqual(readersOwn.length, 0, "a reader's own view reads as empty, never as the next message")
    assert.strictEqual(readersOwn[0], undefined)
    assert.isFalse(lending.isLent(buffer))
  })

  it("does not lend a buffer twice, nor a SharedArrayBuffer", () => {
    const { lending } = handDriven()
    const frame = new Uint8Array(64)
    assert.isTrue(lending.lend(frame, () => {}))
    assert.isFalse(lending.lend(frame.subarray(8), () => {}))
    assert.isFalse(lending.lend(new Uint8Array(new SharedArrayBuffer(64)), () => {}))
  })

  it("gives nothing back for a buffer somebody else moved away", () => {
    const { collect, lending } = handDriven()
    const released: Array<ArrayBuffer> = []
    const frame = new Uint8Array(64)
    lending.lend(frame, (memory) => released.push(memory))
    const theirs = (frame.buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer()
    collect(frame)
    assert.strictEqual(released.length, 0)
    assert.strictEqual(lending.lost, 1)
    assert.strictEqual(theirs.byteLength, 64)
  })

  it("asks for a collection once collectAfter bytes (at least 64 MiB) are lent with none back; memory back starts the count again", () => {
    const { collect, lending } = handDriven()
    const MiB = 1024 * 1024
    // zero-filled by the allocator, never touched: cheap however large
    const lend = (collectAfter?: number) => {
      const frame = new Uint8Array(24 * MiB)
      lending.lend(frame, () => {}, collectAfter)
      return frame
    }
    const first = lend(48 * MiB)
    lend(48 * MiB)
    assert.strictEqual(lending.collectionsAsked, 0, "48 MiB: below the 64 MiB floor")
    lend(48 * MiB)
    assert.strictEqual(lending.collectionsAsked, 1, "72 MiB lent, none back")
    lend(48 * MiB)
    collect(first)
    assert.strictEqual(lending.released, 1)
    lend(48 * MiB)
    lend(48 * MiB)
    assert.strictEqual(lending.collectionsAsked, 1, "the count started again when memory came back")
    lend(48 * MiB)
    assert.strictEqual(lending.collectionsAsked, 2)
    for (let i = 0; i < 4; i++) lend()
    assert.strictEqual(lending.collectionsAsked, 2, "never without collectAfter")
  })

  it("announces twice as much after an announcement that brought nothing back, keeps that scale, up to 8× what is lent out and 1 GiB", () => {
    const { collect, lending } = handDriven()
    const MiB = 1024 * 1024
    const frames: Array<Uint8Array> = []
    // one announcement per 72 MiB lent with none back: three 24 MiB frames (never touched: cheap)
    const lendThree = () => {
      for (let i = 0; i < 3; i++) {
        const frame = new Uint8Array(24 * MiB)
        frames.push(frame)
        lending.lend(frame, () => {}, 64 * MiB)
      }
      return lending.lastAnnounced / MiB
    }
    const giveBackAll = () => {
      while (frames.length > 0) collect(frames.shift()!)
    }
    assert.strictEqual(lending.lastAnnounced, 0)
    assert.strictEqual(lendThree(), 128, "the first: the memory lent out (72 MiB), at least 128 MiB")
    assert.strictEqual(lendThree(), 2 * 144, "nothing came back: twice the 144 MiB lent out")
    assert.strictEqual(lendThree(), 4 * 216)
    assert.strictEqual(lendThree(), 1024, "8 × 288 MiB: no more than 1 GiB")
    assert.strictEqual(lendThree(), 1024)
    giveBackAll()
    assert.strictEqual(lendThree(), 8 * 72, "memory came back: the same scale again, which stopped at 8×")
    assert.strictEqual(lending.collectionsAsked, 6)
  })

  it("survives a release that throws (it runs as a finalization callback)", () => {
    const { collect, lending } = handDriven()
    const frame = new Uint8Array(64)
    lending.lend(frame, () => {
      throw new Error("the session's thread is gone")
    })
    collect(frame)
    assert.strictEqual(lending.released, 1)
  })
})

// ── with the real collector ──────────────────────────────────────────────────

const observationFrame = (seed: number): Uint8Array => {
  const h = 48, w = 64
  const obs: Observation = {
    timestamp: seed,
    cameras: [0, 1].map((c) =>
      CameraFrame.make({
        name: `cam${c}`,
        timestamp: seed,
        image: Tensor.make("uint8", [h, w, 3], new Uint8Array(h * w * 3).fill(seed + c)),
        depth: Tensor.make("float32", [h, w], new Float32Array(h * w).fill(seed + c + 0.5)),
        intrinsics: [600, 0, 32, 0, 600, 24, 0, 0, 1]
      })
    ),
    proprios: [],
    extra: {}
  }
  return encodeFrame({ type: "obs_response", obs })
}

/** What a transport does with a received frame: into pooled memory, aligned, lent out. */
const receive = (pool: ReceivePool, bytes: Uint8Array): Uint8Array => {
  const offset = frameAlignment(bytes)
  const memory = pool.take(offset + bytes.byteLength)
  memory.set(bytes, offset)
  const frame = memory.subarray(offset, offset + bytes.byteLength)
  lending.lend(frame, pool.put)
  return frame
}

/** Decodes `frame` and keeps only camera 1's depth: everything else becomes garbage. */
const keepOneDepth = (frame: Uint8Array): Float32Array => {
  const decoded = decodeFrame(frame)
  if (Result.isFailure(decoded) || decoded.success.type !== "obs_response") return assert.fail("an obs_response")
  const depth = decoded.success.obs.cameras[1]!.depth!.data
  assert.instanceOf(depth, Float32Array)
  assert.strictEqual((depth as Float32Array).buffer, frame.buffer, "a view into the frame, not a copy")
  return depth as Float32Array
}

describe("decodeFrame on a lent frame", () => {
  it("keeps its memory from reuse while one tensor is held, and recycles it once that is collected", async () => {
    const pool = new ReceivePool({ maxFree: 2, minBytes: 1024 })
    let held: Float32Array | undefined = keepOneDepth(receive(pool, observationFrame(1)))
    const released = lending.released
    // The frame and every other tensor are garbage now; the memory must stay lent.
    assert.isFalse(await collectUntil(() => pool.stats().kept > 0, 5), "memory released while a view is held")
    // Later messages get other memory, and the held view keeps its values.
    for (let seed = 10; seed < 14; seed++) keepOneDepth(receive(pool, observationFrame(seed)))
    assert.isTrue(await collectUntil(() => pool.stats().kept >= 4), "the later messages' memory came back")
    for (let seed = 20; seed < 24; seed++) keepOneDepth(receive(pool, observationFrame(seed)))
    assert.isTrue(pool.stats().reused > 0, "memory was recycled")
    assert.isTrue(held.every((v) => v === 2.5), "the held depth is unchanged")
    assert.isTrue(lending.isLent(held.buffer), "and its memory is still lent")
    assert.isAtMost(pool.stats().free, 2, "the pool stays bounded")

    held = undefined
    const kept = pool.stats().kept
    assert.isTrue(await collectUntil(() => lending.released > released + 8 && pool.stats().kept > kept))
  })
})
