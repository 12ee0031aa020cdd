/**
 * `npm run example:eval`: a scripted evaluation. Starts `chiral serve --task`
 * (a simulated arm whose joints follow the actions, and a reach task: get
 * every joint within 0.02 rad of a target) as a process of its own, runs a
 * scripted policy for a few episodes with `Evaluation.runEpisodes`, and
 * prints the results table (`--json`: the results as JSON).
 *
 * The policy is proportional control toward the target, in chunks: from the
 * joint positions it observes, each of the next CHUNK actions closes GAIN of
 * the remaining error. It takes INFERENCE_MS per call, like a small model;
 * the evaluation asks for the next chunk when fewer than REFILL_BELOW actions
 * wait, so the arm keeps moving while the policy "thinks", and each chunk is
 * time-aligned: actions whose time passed during inference are dropped
 * (the `late` column), never sent late.
 *
 *     npm run example:eval                      # 5 episodes, table on stdout
 *     npx node apps/examples/dist/eval.js [episodes] [--json]
 */
import "./NodeVersion.js" // first: see there
import { fileURLToPath } from "node:url"
import { Evaluation, EvaluationResult, PolicyClient } from "@chiral/core"
import type { Observation } from "@chiral/protocol"
import { WebSocketTransport } from "@chiral/websocket"
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Deferred, Effect, Fiber, Stream } from "effect"
import { ChildProcess, ChildProcessSpawner } from "effect/process"

const TARGET = [0.4, -0.3, 0.2, 0, 0.3, -0.2, 0.1] // rad, one per joint
const TOLERANCE = 0.02 // rad
const ACTION_HZ = 20
const CHUNK = 10 // actions per policy call
const GAIN = 0.35 // of the remaining error, per action
const INFERENCE_MS = 60 // per policy call
const REFILL_BELOW = 4 // actions waiting when the next inference starts
const MAX_STEPS = 300 // per episode (15 s at 20 Hz)

const jointPositions = (obs: Observation): ReadonlyArray<number> => {
  const joints = obs.proprios.find((p) => p.name === "joint_pos")
  if (joints === undefined) throw new Error("the robot has no joint_pos proprio")
  return Array.from(joints.data.data as Float32Array)
}

/** Proportional control toward TARGET: action i commands q + (target − q)·(1 − (1 − GAIN)^(i+1)). */
export const proportional: Evaluation.Policy = (obs) =>
  Effect.sleep(INFERENCE_MS).pipe(Effect.as(
    Array.from({ length: CHUNK }, (_, i) =>
      jointPositions(obs).map((q, j) => TARGET[j]! + (q - TARGET[j]!) * (1 - GAIN) ** (i + 1)))
  ))

/** Runs the evaluation against the robot at `uri`. */
export const evaluate = (uri: string, episodes: number) =>
  Effect.gen(function*() {
    const client = yield* PolicyClient.make({ quiet: true })
    return yield* Evaluation.runEpisodes(client, {
      episodes,
      policy: proportional,
      hz: ACTION_HZ,
      maxSteps: MAX_STEPS,
      refillBelow: REFILL_BELOW
    })
  }).pipe(Effect.scoped, Effect.provide(WebSocketTransport.layerClient(uri)))

/** `chiral serve --task …` on a free loopback port; completes with its address. */
const startRobot = Effect.gen(function*() {
  const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
  const chiral = fileURLToPath(new URL("../../cli/bin/chiral.js", import.meta.url))
  const robot = yield* spawner.spawn(ChildProcess.make(process.execPath, [
    chiral,
    "serve",
    ...["--host", "127.0.0.1", "--port", "0", "--cameras", "2", "--size", "160x120", "--fps", "30"],
    ...["--target", TARGET.join(","), "--tolerance", String(TOLERANCE), "--seed", "1"]
  ]))
  const address = yield* Deferred.make<string>()
  const output = yield* robot.stderr.pipe(
    Stream.decodeText(),
    Stream.splitLines,
    Stream.runForEach((line) => {
      const listening = /listening on (\S+)/.exec(line)
      if (listening !== null) Deferred.doneUnsafe(address, Effect.succeed(listening[1]!))
      return Console.error(`[robot] ${line}`)
    }),
    Effect.forkScoped
  )
  return yield* Deferred.await(address).pipe(
    Effect.raceFirst(Effect.andThen(Fiber.await(output), Effect.fail("chiral serve exited before listening")))
  )
})

const program = Effect.gen(function*() {
  const args = process.argv.slice(2)
  const json = args.includes("--json")
  const episodes = Number(args.find((a) => !a.startsWith("--")) ?? 5)
  if (!(Number.isInteger(episodes) && episodes >= 1)) return yield* Effect.fail(`episodes must be an integer ≥ 1, got ${episodes}`)
  const uri = yield* startRobot
  yield* Console.error(
    `policy: proportional control toward [${TARGET.join(", ")}], chunks of ${CHUNK}, ${INFERENCE_MS} ms per inference, next chunk when fewer than ${REFILL_BELOW} actions wait; ${ACTION_HZ} Hz, time-aligned`
  )
  const result = yield* evaluate(uri, episodes)
  yield* Console.log(json ? EvaluationResult.toJson(result) : EvaluationResult.formatTable(result))
  // Leaving the scope stops the robot (SIGTERM).
}).pipe(Effect.scoped)

if (import.meta.main) program.pipe(Effect.provide(NodeServices.layer), NodeRuntime.runMain)
