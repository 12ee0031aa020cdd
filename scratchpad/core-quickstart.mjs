// Checks the README-style snippets from the core report: a robot and a policy in one process.
import { Effect, Layer, Schedule, Stream, SubscriptionRef } from "effect"
import { PolicyClient, PolicyServer, WebSocketTransport } from "../packages/core/dist/index.js"

// ── robot ──
const robot = Effect.gen(function*() {
  const server = yield* PolicyServer.PolicyServer
  let t = 0
  yield* Effect.gen(function*() {
    t += 1 / 30
    yield* server.updateImage("cam_0", new Uint8Array(480 * 640 * 3).fill(t * 10))
    yield* server.updateExtrinsics("cam_0", [1, 0, 0, 0.1 * Math.sin(t), 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    yield* server.updateProprio("joint_pos", [0, 1, 2, 3, 4, 5, 6])
  }).pipe(Effect.repeat(Schedule.spaced("33 millis")))
}).pipe(Effect.provide(PolicyServer.PolicyServer.layer({
  cameras: [{ name: "cam_0", height: 480, width: 640, hasDepth: true }],
  proprios: [{ name: "joint_pos", size: 7 }],
  handlers: {
    getMetadata: Effect.succeed({ action_shape: [1, 7], cameras: ["cam_0"] }),
    reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs, info: {} })),
    applyAction: (action, { obsTimestamps }) => Effect.log(`action ${action.shape} from obs @ ${obsTimestamps.cam_0?.toFixed(3)}`)
  }
}).pipe(Layer.provide(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 8799 })))))

// ── policy ──
const policy = Effect.gen(function*() {
  const env = yield* PolicyClient.PolicyClient
  console.log("metadata", yield* env.getMetadata)
  yield* env.reset
  yield* env.startObsStream(30)
  yield* env.startActionDispatch(10)
  yield* env.observations.pipe(
    Stream.take(3),
    Stream.runForEach((obs) => env.putActions(Array.from({ length: 10 }, () => new Float32Array(7)), { mode: "replace" }))
  )
  yield* SubscriptionRef.changes(env.dispatched).pipe(Stream.takeUntil((n) => n >= 5), Stream.runDrain)
  console.log("dispatched", yield* SubscriptionRef.get(env.dispatched))
}).pipe(Effect.provide(PolicyClient.PolicyClient.layer().pipe(Layer.provide(WebSocketTransport.layerClient("ws://127.0.0.1:8799")))))

// the policy first: shows the waiting line, then connects once the robot is up
Effect.runPromise(Effect.gen(function*() {
  const fiber = yield* Effect.forkChild(Effect.delay(robot, "300 millis"))
  yield* policy
  yield* Effect.sleep("10 millis")
}).pipe(Effect.scoped)).then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })
