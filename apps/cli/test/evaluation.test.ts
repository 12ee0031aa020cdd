// An evaluation (Evaluation.runEpisodes) against `chiral serve --task` over a
// real WebSocket: a proportional policy reaches the target in every episode,
// a policy that holds still runs out of steps, the server's truncation ends an
// episode, the results are a typed value that survives JSON, and an
// interrupted evaluation leaves the dispatcher stopped and the queue empty.
// Nothing here depends on how fast the machine is: episodes end on the
// robot's state or on counts.
import { Evaluation, EvaluationResult, PolicyClient } from "@chiral/core"
import type { Observation } from "@chiral/protocol"
import { WebSocketTransport } from "@chiral/websocket"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Stream, SubscriptionRef } from "effect"
import { serve } from "../src/commands/Serve.js"
import { startServe } from "./support/RunCommand.js"

const robot = ["--host", "127.0.0.1", "--port", "0", "--cameras", "1", "--size", "16x12", "--fps", "50", "--task"]

const connect = (address: string) =>
  PolicyClient.make({ quiet: true, requestTimeout: "10 seconds" }).pipe(
    Effect.provide(WebSocketTransport.layerClient(address))
  )

const jointsOf = (obs: Observation): Float32Array => obs.proprios.find((p) => p.name === "joint_pos")!.data.data as Float32Array

/** Proportional control toward `target` in chunks of `length`: each action closes `gain` of the remaining error. */
const proportional = (target: number, gain: number, length: number): Evaluation.Policy => (obs) =>
  Effect.sync(() => {
    const q = Array.from(jointsOf(obs))
    return Array.from({ length }, (_, i) => q.map((x) => target + (x - target) * (1 - gain) ** (i + 1)))
  })

/** Commands where the arm already is: it never moves. */
const hold: Evaluation.Policy = (obs) => Effect.sync(() => Array.from({ length: 5 }, () => Array.from(jointsOf(obs))))

describe("evaluation against chiral serve --task", () => {
  it.live("a proportional policy reaches the target in every episode; results as a typed value and as JSON", () =>
    Effect.gen(function*() {
      const { address } = yield* startServe(serve, [...robot, "--max-step", "0.2", "--tolerance", "0.05", "--seed", "7"])
      const client = yield* connect(address)
      const episodes: Array<EvaluationResult.Episode> = []
      const result = yield* Evaluation.runEpisodes(client, {
        episodes: 3,
        policy: proportional(0, 0.3, 10),
        hz: 50,
        maxSteps: 400,
        progress: false,
        onEpisode: (episode) => Effect.sync(() => episodes.push(episode))
      })
      assert.deepStrictEqual(result.episodes, episodes)
      for (const [i, episode] of result.episodes.entries()) {
        assert.strictEqual(episode.episode, i + 1)
        assert.strictEqual(episode.end, "terminated")
        assert.isTrue(episode.success)
        assert.strictEqual(episode.reward, 1)
        assert.isBelow(episode.steps, 400)
        assert.isAbove(episode.steps, 0)
        assert.isAtLeast(episode.inferences, 1)
        // each episode started where its seed says (episode k of seed 7), reached within 0.05 rad
        assert.strictEqual(episode.resetInfo["episode"], i + 1)
        assert.isAtMost(episode.info["distance"] as number, 0.05)
        // every action was timed: its observation's age when it left, on the capture clock
        assert.strictEqual(episode.actionAgeMillis.count, episode.steps)
        assert.isAbove(episode.actionAgeMillis.p50!, 0)
        assert.isAtLeast(episode.actionAgeMillis.p99!, episode.actionAgeMillis.p50!)
      }
      assert.strictEqual(result.summary.successes, 3)
      assert.strictEqual(result.summary.successRate, 1)
      assert.strictEqual(result.summary.actionAgeMillis.count, result.episodes.reduce((n, e) => n + e.steps, 0))
      assert.deepStrictEqual(EvaluationResult.fromJson(EvaluationResult.toJson(result)), result)
      const table = EvaluationResult.formatTable(result)
      assert.match(table, /^episode\s+end\s+success/)
      assert.include(table, "3/3")
    }).pipe(Effect.scoped))

  it.live("episodes end on steps, on the server's truncation, on a predicate; never more actions than maxSteps", () =>
    Effect.gen(function*() {
      const { address } = yield* startServe(serve, [...robot, "--truncate-after", "30"])
      const client = yield* connect(address)
      const steps = yield* Evaluation.runEpisodes(client, { episodes: 2, policy: hold, hz: 100, maxSteps: 12, progress: false })
      assert.deepStrictEqual(steps.episodes.map((e) => [e.end, e.success, e.steps]), [["steps", false, 12], ["steps", false, 12]])
      assert.strictEqual(steps.summary.successRate, 0)

      const truncated = yield* Evaluation.runEpisodes(client, { episodes: 1, policy: hold, hz: 100, progress: false })
      const [episode] = truncated.episodes
      assert.strictEqual(episode!.end, "truncated")
      assert.isAtLeast(episode!.steps, 30)
      assert.isFalse(episode!.success)

      // the user's predicate sees the server's info
      const predicate = yield* Evaluation.runEpisodes(client, {
        episodes: 1,
        policy: hold,
        hz: 100,
        progress: false,
        until: (_obs, status) => ((status?.info["steps"] as number) ?? 0) >= 5
      })
      assert.strictEqual(predicate.episodes[0]!.end, "predicate")
      assert.isAtLeast(predicate.episodes[0]!.steps, 5)
    }).pipe(Effect.scoped))

  it.live("interrupted mid-episode: the dispatcher stops and the queue is emptied", () =>
    Effect.gen(function*() {
      const { address } = yield* startServe(serve, robot)
      const client = yield* connect(address)
      const running = yield* Evaluation.runEpisodes(client, {
        episodes: 5,
        policy: hold,
        hz: 100,
        refillBelow: 3,
        progress: false
      }).pipe(Effect.forkScoped)
      // under way: actions are going out
      yield* SubscriptionRef.changes(client.dispatched).pipe(Stream.takeUntil((n) => n >= 10), Stream.runDrain)
      yield* Fiber.interrupt(running)
      assert.isTrue(Exit.isFailure(yield* Fiber.await(running)))
      assert.strictEqual(yield* client.pendingActions, 0)
      // nothing is dispatched any more: a queued action stays queued
      yield* client.putAction(Array.from({ length: 7 }, () => 0))
      const before = yield* SubscriptionRef.get(client.dispatched)
      yield* Effect.sleep("100 millis")
      assert.strictEqual(yield* client.pendingActions, 1)
      assert.strictEqual(yield* SubscriptionRef.get(client.dispatched), before)
    }).pipe(Effect.scoped))

  it.live("refuses options that make no sense", () =>
    Effect.gen(function*() {
      const { address } = yield* startServe(serve, robot)
      const client = yield* connect(address)
      const exit = yield* Effect.exit(Evaluation.runEpisodes(client, { episodes: 0, policy: hold, hz: 10, progress: false }))
      assert.isTrue(Exit.isFailure(exit))
      assert.match(String(Exit.isFailure(exit) ? exit.cause : ""), /episodes must be an integer ≥ 1/)
    }).pipe(Effect.scoped))
})
