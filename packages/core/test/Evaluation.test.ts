// Evaluation.runEpisodes on virtual time (TestClock) over the in-memory
// transport, against the test robot: the policy is asked for a chunk only
// when more actions are needed, above all in the last steps before maxSteps;
// an episode the server ended keeps the status that ended it; a lost
// connection stops the evaluation with the finished episodes' results.
// Counts and the virtual clock decide, never the machine's speed.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Queue, Scope } from "effect"
import { TestClock } from "effect/testing"
import { ActionPlan, Evaluation, type Handlers, PolicyClient, PolicyServer } from "../src/index.js"
import * as Pair from "@chiral/testing/Pair"
import * as Robot from "@chiral/testing/Robot"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 16; i++) yield* Effect.yieldNow
})

/** Runs `effect` while virtual time moves on in 1 ms steps (every fiber running in between), until it is done. */
const runOnVirtualTime = <A, E>(effect: Effect.Effect<A, E>, limitMillis = 20_000) =>
  Effect.gen(function*() {
    let done = false
    const fiber = yield* Effect.forkChild(Effect.ensuring(effect, Effect.sync(() => (done = true))), { startImmediately: true })
    for (let t = 0; t < limitMillis && !done; t++) {
      yield* TestClock.adjust(1)
      yield* settle
    }
    return yield* Fiber.join(fiber)
  })

/** The test robot whose wrist camera takes a frame every 20 ms, so observations carry their time. */
const startFilmedPair = Effect.gen(function*() {
  const pair = yield* Pair.startPair()
  yield* pair.server.updateImage("wrist", new Uint8Array(72)).pipe(
    Effect.andThen(Effect.sleep("20 millis")),
    Effect.forever,
    Effect.forkScoped({ startImmediately: true })
  )
  return pair
})

/** An instant policy: chunks of `length` zero actions, counting its calls; past `limit` calls it fails, so a loop cannot spin for ever. */
const countingPolicy = (length: number, limit = 40) => {
  const calls = { count: 0 }
  const policy: Evaluation.Policy<string> = () =>
    ++calls.count > limit
      ? Effect.fail(`the policy was asked ${calls.count} times`)
      : Effect.succeed(Array.from({ length }, () => [0, 0, 0, 0, 0, 0, 0]))
  return { calls, policy }
}

describe("Evaluation.runEpisodes (TestClock, in-memory transport)", () => {
  for (const mode of ["time-aligned", "replace", "append"] as const satisfies ReadonlyArray<ActionPlan.ChunkMode>) {
    it.effect(`${mode}: the last steps before maxSteps ask the policy no more than they need`, () =>
      Effect.gen(function*() {
        const { client, recorder } = yield* startFilmedPair
        const { calls, policy } = countingPolicy(10)
        const result = yield* runOnVirtualTime(Evaluation.runEpisodes(client, {
          episodes: 2,
          policy,
          hz: 20,
          maxSteps: 15,
          refillBelow: 4,
          mode,
          progress: false
        }))
        for (const episode of result.episodes) {
          assert.strictEqual(episode.end, "steps")
          assert.strictEqual(episode.steps, 15)
          // 10 actions a chunk: the second fills the last steps, none is asked for them after
          assert.strictEqual(episode.inferences, 2)
          // 15 ticks of 50 ms, and the wait for the last chunk's first slot
          assert.isBelow(episode.duration, 1)
        }
        assert.strictEqual(calls.count, result.episodes.reduce((n, e) => n + e.inferences, 0))
        // never more than maxSteps reached the robot
        assert.strictEqual(yield* Queue.size(recorder.actions), 30)
      }).pipe(Effect.scoped, Effect.provide(Pair.memory())))
  }

  it.effect("an episode the server ended keeps the status that ended it, whatever the server says after", () =>
    Effect.gen(function*() {
      // a server that starts its next episode as soon as one ends (as many simulators do):
      // its first observation after the reset says the task is done, the next ones say nothing is
      let observations = 0
      const handlers: Handlers<never, PolicyServer.PolicyServer> = {
        getMetadata: Effect.succeed({ action_shape: [7] }),
        reset: Effect.gen(function*() {
          const server = yield* PolicyServer.PolicyServer
          return { obs: yield* server.makeObs({ extra: { reward: 0, terminated: false } }), info: {} }
        }),
        getObs: Effect.gen(function*() {
          const server = yield* PolicyServer.PolicyServer
          const done = ++observations === 1
          return yield* server.makeObs({ extra: { reward: done ? 1 : 0, terminated: done, info: { success: done } } })
        }),
        applyAction: () => Effect.void
      }
      yield* PolicyServer.make({ cameras: Robot.cameras, proprios: Robot.proprios, handlers })
      const client = yield* PolicyClient.make({ quiet: true })
      const { policy } = countingPolicy(2)
      const result = yield* runOnVirtualTime(Evaluation.runEpisodes(client, { episodes: 1, policy, hz: 20, progress: false }))
      const [episode] = result.episodes
      assert.isAbove(observations, 1)
      assert.deepStrictEqual([episode!.end, episode!.success, episode!.reward, episode!.info], ["terminated", true, 1, { success: true }])
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("the robot's action shape is read first: a policy's chunk of another width stops it, nothing sent", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* startFilmedPair
      // the test robot's metadata says action_shape [7]; this policy answers with 8 values
      const policy: Evaluation.Policy = () => Effect.succeed([[0, 0, 0, 0, 0, 0, 0, 0]])
      const exit = yield* Effect.exit(runOnVirtualTime(Evaluation.runEpisodes(client, {
        episodes: 2,
        policy,
        hz: 20,
        maxSteps: 5,
        progress: false
      })))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
      const stopped = (error as { value: Evaluation.EvaluationError }).value
      assert.strictEqual(stopped.episode, 1)
      assert.strictEqual(stopped.cause._tag, "RequestError")
      assert.strictEqual(stopped.cause.reason, "Malformed")
      assert.strictEqual(yield* Queue.size(recorder.actions), 0)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))

  it.effect("a connection lost mid-episode stops the evaluation; its error carries the episodes finished before", () =>
    Effect.gen(function*() {
      const serving = yield* Scope.make()
      yield* Pair.startServerOnly().pipe(Scope.provide(serving))
      const client = yield* PolicyClient.make({ quiet: true })
      const told: Array<number> = []
      // the robot goes away during the second episode, while the policy computes
      const policy: Evaluation.Policy = (_obs, { episode, inference }) =>
        Effect.as(
          episode === 2 && inference === 1 ? Scope.close(serving, Exit.void) : Effect.void,
          Array.from({ length: 10 }, () => [0, 0, 0, 0, 0, 0, 0])
        )
      const exit = yield* Effect.exit(runOnVirtualTime(Evaluation.runEpisodes(client, {
        episodes: 3,
        policy,
        hz: 20,
        maxSteps: 12,
        mode: "append",
        progress: false,
        onEpisode: (episode) => Effect.sync(() => told.push(episode.episode))
      })))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
      assert.isTrue(error !== undefined && error._tag === "Some")
      const stopped = (error as { value: Evaluation.EvaluationError }).value
      assert.strictEqual(stopped._tag, "EvaluationError")
      assert.strictEqual(stopped.episode, 2)
      assert.strictEqual(stopped.cause._tag, "RequestError")
      assert.strictEqual(stopped.cause.reason, "Disconnected")
      assert.deepStrictEqual(stopped.result.episodes.map((e) => [e.episode, e.end, e.steps]), [[1, "steps", 12]])
      assert.strictEqual(stopped.result.summary.episodes, 1)
      assert.deepStrictEqual(told, [1])
      assert.match(stopped.message, /^evaluation stopped in episode 2: .*Disconnected.*; 1 episode finished before/)
    }).pipe(Effect.scoped, Effect.provide(Pair.memory())))
})
