/**
 * Example policy client, the TypeScript twin of chiral's
 * examples/python/client_example.py. Three loops run at once:
 *
 *   1. obs stream      — fetches the latest observation at 30 Hz
 *   2. policy loop     — reads the latest observation, predicts a chunk of
 *                        actions, queues them
 *   3. action dispatch — sends one queued action to the robot at 10 Hz
 *
 * It stops once 200 actions have really been sent. Start server.js first:
 *
 *     npx node apps/examples/dist/client.js [uri] [actions]    # default ws://localhost:8765 200
 */
import "./NodeVersion.js" // first: see there
import { type ClientDrops, PolicyClient } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { Observation } from "@chiral/protocol"
import { NodeRuntime } from "@effect/platform-node"
import { Console, Duration, Effect, Option, Stream, SubscriptionRef } from "effect"

const ACTION_HZ = 10 // actions sent to the robot per second
const OBS_HZ = 30 // observations fetched per second
const CHUNK_SIZE = 10 // actions predicted per policy call
const DOF = 7
const TOTAL_STEPS = 200 // actions to dispatch before stopping

/** How Python prints a value (the reference example's output format). */
const py = (u: unknown): string =>
  typeof u === "string"
    ? `'${u}'`
    : Array.isArray(u)
    ? `[${u.map(py).join(", ")}]`
    : u === true
    ? "True"
    : u === false
    ? "False"
    : u === null || u === undefined
    ? "None"
    : String(u)
/** An f-string's `{value}`: strings as they are, everything else as Python prints it. */
const show = (u: unknown): string => (typeof u === "string" ? u : py(u))

/**
 * The latest observation, or the next one: after a reconnection there is none
 * until the robot now connected has sent its first.
 */
const latestObservation = (client: PolicyClient.PolicyClientApi) =>
  SubscriptionRef.changes(client.latestObs).pipe(
    Stream.filter(Option.isSome),
    Stream.runHead,
    Effect.map((latest) => Option.getOrThrow(Option.flatten(latest)))
  )

/** Every action the client dropped instead of sending (late, replaced, its connection lost, …). */
const droppedTotal = (drops: ClientDrops) =>
  drops.late + drops.replaced + drops.overflow + drops.robotSilent + drops.stalled + drops.disconnected +
  drops.earlierConnection + drops.reset

/**
 * Predicts a chunk of actions from the latest observation whenever fewer than
 * `total` are sent or still to be sent: actions queued when the connection is
 * lost are dropped, never sent late, and are predicted anew from the new
 * connection's observations. Each action queued is either sent or counted as
 * dropped, so what was queued less what was dropped never overshoots (sent
 * and waiting counts, read one after the other, could miss one in between).
 */
const policyLoop = (client: PolicyClient.PolicyClientApi, total: number) =>
  Effect.gen(function*() {
    let inference = 0
    let queued = 0
    for (;;) {
      const obs = yield* latestObservation(client)
      const wanted = total - (queued - droppedTotal(yield* client.droppedActions))
      if (wanted <= 0) {
        yield* Effect.sleep(Duration.seconds(1 / ACTION_HZ))
        continue
      }

      // Show that real observation data is arriving (first two cameras for brevity).
      const cameras = obs.cameras.slice(0, 2).map((c) =>
        `${c.name}@${c.timestamp.toFixed(3)}s img=(${c.image.shape.join(", ")})`
      )
      yield* Console.log(`[policy #${inference++}] obs ts=${obs.timestamp.toFixed(3)}  cameras: ${cameras.join(", ")}`)

      // ── policy inference goes here: model.predict(obs) → CHUNK_SIZE × DOF ──
      const n = Math.min(CHUNK_SIZE, wanted)
      const actions = Array.from({ length: n }, () => new Float32Array(DOF))

      // stamped with the observation they came from (the reference stamps at send time)
      yield* client.putActions(actions, { obsTimestamps: Observation.timestamps(obs) })
      queued += n
      // Pace inference so the action queue doesn't grow unboundedly
      // (in practice this is bounded by GPU compute time).
      yield* Effect.sleep(Duration.seconds((CHUNK_SIZE / ACTION_HZ) * 0.9))
    }
  })

/** Runs the policy until `total` actions were sent, then closes (on the transport the caller provides). */
export const program = (total = TOTAL_STEPS) =>
  Effect.gen(function*() {
    const client = yield* PolicyClient.PolicyClient

    const meta = yield* client.getMetadata
    yield* Console.log(`cameras: ${show(meta["cameras"] ?? [])}  action_shape: ${show(meta["action_shape"] ?? [1, DOF])}\n`)

    yield* client.reset

    yield* client.startObsStream(OBS_HZ)
    yield* client.startActionDispatch(ACTION_HZ)
    const start = performance.now()
    yield* Effect.forkScoped(policyLoop(client, total))

    // Wait until enough actions have been dispatched (sent, not merely queued).
    yield* SubscriptionRef.changes(client.dispatched).pipe(
      Stream.takeUntil((sent) => sent >= total),
      Stream.runDrain
    )
    const sent = yield* SubscriptionRef.get(client.dispatched)
    const elapsed = (performance.now() - start) / 1000
    yield* Console.log(`\ndispatched ${sent} actions in ${elapsed.toFixed(1)}s  (${(sent / elapsed).toFixed(1)} Hz)`)
    // Leaving the scope stops the loops and closes the connection.
  }).pipe(Effect.scoped, Effect.provide(PolicyClient.PolicyClient.layer()))

/** Connects to `ws://…` `uri`. (zenoh_client.ts: the same policy on Zenoh.) */
export const run = (uri: string, total = TOTAL_STEPS) =>
  program(total).pipe(Effect.provide(WebSocketTransport.layerClient(uri)))

if (import.meta.main) {
  const [uri = "ws://localhost:8765", actions = String(TOTAL_STEPS)] = process.argv.slice(2)
  NodeRuntime.runMain(run(uri, Number(actions)))
}
