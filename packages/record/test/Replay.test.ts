// Replay's timeline on virtual time: which recorded observation answers at
// which playback time, segments at resets, --rate and --loop, and actions
// matched to the recorded ones by the observation they were computed from.
import { Observation, Tensor } from "@chiral/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import type { Episode, ObservationEntry, RecordedAction } from "../src/Episode.js"
import * as Replay from "../src/Replay.js"

const ms = 1_000_000n

const entry = (seq: number, atMillis: number, reply: ObservationEntry["reply"]): ObservationEntry => ({
  seq,
  logTime: BigInt(atMillis) * ms,
  reply,
  connection: "test",
  timestamp: seq,
  cameraTimestamps: { cam: seq / 10 },
  info: reply === "reset_response" ? { segment: seq } : undefined,
  reward: undefined,
  terminated: undefined,
  truncated: undefined
})

const action = (seq: number, values: Array<number>): RecordedAction => ({
  logTime: 0n,
  type: "apply_action",
  connection: "test",
  dtype: "float32",
  shape: [values.length],
  values,
  obsTimestamps: { cam: seq / 10 },
  seq
})

/** Two segments: a reset at 0 ms then observations at 100 and 200 ms; a reset at 1000 ms then one at 1050 ms. */
const episode: Episode = {
  path: "test.mcap",
  metadata: { robot: "test" },
  observations: [
    entry(1, 0, "reset_response"),
    entry(2, 100, "obs_response"),
    entry(3, 200, "obs_response"),
    entry(4, 1000, "reset_response"),
    entry(5, 1050, "obs_response")
  ],
  actions: [action(2, [1, 2]), action(2, [3, 4]), action(3, [NaN, 0])],
  records: [],
  observation: (seq) => Effect.succeed(Observation.make({ timestamp: seq }))
}

const seqs = (obs: Observation) => obs.timestamp

describe("Replay", () => {
  it.effect("observations follow the recorded timing from each reset; the segment's last is held", () =>
    Effect.gen(function*() {
      const { handlers } = Replay.make(episode)
      assert.deepStrictEqual(yield* handlers.getMetadata!, { robot: "test" })
      const reset = yield* handlers.reset
      assert.strictEqual(seqs(reset.obs), 1)
      assert.deepStrictEqual(reset.info, { segment: 1 })
      assert.strictEqual(seqs(yield* handlers.getObs!), 1)
      yield* TestClock.adjust(99)
      assert.strictEqual(seqs(yield* handlers.getObs!), 1)
      yield* TestClock.adjust(1)
      assert.strictEqual(seqs(yield* handlers.getObs!), 2)
      yield* TestClock.adjust(150)
      assert.strictEqual(seqs(yield* handlers.getObs!), 3)
      // Past the segment's end (the next reset is not played without a reset request).
      yield* TestClock.adjust(5000)
      assert.strictEqual(seqs(yield* handlers.getObs!), 3)
      const second = yield* handlers.reset
      assert.strictEqual(seqs(second.obs), 4)
      yield* TestClock.adjust(50)
      assert.strictEqual(seqs(yield* handlers.getObs!), 5)
      // After the last segment the recording starts over.
      assert.strictEqual(seqs((yield* handlers.reset).obs), 1)
    }))

  it.effect("--rate 2 plays twice as fast; --loop plays the segment again", () =>
    Effect.gen(function*() {
      const fast = Replay.make(episode, { rate: 2 }).handlers
      yield* fast.reset
      yield* TestClock.adjust(50)
      assert.strictEqual(seqs(yield* fast.getObs!), 2)

      const looping = Replay.make(episode, { loop: true }).handlers
      yield* looping.reset
      yield* TestClock.adjust(210)
      assert.strictEqual(seqs(yield* looping.getObs!), 1)
      yield* TestClock.adjust(100)
      assert.strictEqual(seqs(yield* looping.getObs!), 2)
    }))

  it.effect("actions are compared with the ones recorded for the same observation, in order", () =>
    Effect.gen(function*() {
      const seen: Array<Replay.ActionComparison> = []
      const replay = Replay.make(episode, { onAction: (c) => Effect.sync(() => seen.push(c)) })
      const apply = (values: Array<number>, cam: number) =>
        replay.handlers.applyAction(Tensor.make("float32", [values.length], Float32Array.from(values)), {
          obsTimestamps: { cam },
          connection: "test"
        })
      yield* apply([1, 2.5], 0.2)
      yield* apply([3, 4], 0.2)
      yield* apply([5, 6], 0.2) // a third: nothing recorded for it
      yield* apply([NaN, 0.25], 0.3) // NaN against NaN is no difference
      yield* apply([0, 0], 9) // an observation the recording never served
      assert.deepStrictEqual(
        seen.map((c) => [c.seq, c.index, c.maxAbsDiff]),
        [[2, 0, 0.5], [2, 1, 0], [2, 2, undefined], [3, 0, 0.25], [undefined, 0, undefined]]
      )
      const stats = replay.stats()
      assert.deepStrictEqual([stats.actions, stats.compared, stats.maxAbsDiff], [5, 3, 0.5])
    }))
})
