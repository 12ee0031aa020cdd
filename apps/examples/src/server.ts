/**
 * Example robot server, the TypeScript twin of chiral's
 * examples/python/server_example.py.
 *
 * Eight cameras (480×640 RGB + float32 depth) whose drivers deliver a frame
 * every 1/30 s, extrinsics that move every frame (wrist cameras), and the
 * joint_pos / joint_vel proprios. Observations are served on demand; actions
 * arrive on their own, one `apply_action` at a time, and each is printed:
 *
 *     action=   1  apply= 0.00ms  avg= 0.00ms
 *
 * Run it, then the client (or `npm run example` for both; `npx node` runs npm's
 * node@24 of the devDependencies, plain `node` will do from Node 22 on):
 *
 *     npx node apps/examples/dist/server.js [port] [host]      # default 8765 0.0.0.0
 *     npx node apps/examples/dist/client.js ws://localhost:8765
 */
import "./NodeVersion.js" // first: see there
import { Cadence, PolicyServer } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { NodeRuntime } from "@effect/platform-node"
import { Console, Duration, Effect, Ref } from "effect"

const H = 480
const W = 640
const CAMERAS = ["cam_0", "cam_1", "cam_2", "cam_3", "cam_4", "cam_5", "cam_6", "cam_7"]
const DOF = 7 // joint-space dimensionality
const FPS = 30

const INTRINSICS = [[600, 0, 320], [0, 600, 240], [0, 0, 1]]

// Simulated sensor data: a few random frames made once and replayed, so the
// example spends its CPU on serving rather than on random numbers. A real
// driver hands over each new frame it captures.
const randomImage = () => Uint8Array.from({ length: H * W * 3 }, () => Math.random() * 256)
const randomDepth = () => Float32Array.from({ length: H * W }, () => 0.5 + Math.random() * 4.5) // metres
const IMAGES = Array.from({ length: 4 }, randomImage)
const DEPTHS = Array.from({ length: 4 }, randomDepth)

/** A camera driver at 30 Hz: new image and depth, and the pose of the moving camera. */
const cameraLoop = (robot: PolicyServer.PolicyServerApi, name: string) => {
  let frame = 0
  return Effect.gen(function*() {
    const t = frame / FPS
    // `copy: false`: the server keeps these buffers as they are (we never write to them again).
    yield* robot.updateImage(name, IMAGES[frame % IMAGES.length]!, { copy: false })
    yield* robot.updateDepth(name, DEPTHS[frame % DEPTHS.length]!, { copy: false })
    // Update extrinsics every frame for moving cameras (e.g. wrist).
    yield* robot.updateExtrinsics(name, [[1, 0, 0, 0.1 * Math.sin(t)], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    frame++
  }).pipe(Effect.repeat(Cadence.fixed(Duration.millis(1000 / FPS))))
}

/** Serves the robot on the transport the caller provides, until interrupted (Ctrl-C). */
export const program =
  Effect.gen(function*() {
    // Applied actions and the time spent applying them, for the printout.
    const stats = yield* Ref.make({ count: 0, totalMs: 0 })

    const robot = yield* PolicyServer.make({
      cameras: CAMERAS.map((name) => ({ name, height: H, width: W, channels: 3, hasDepth: true, intrinsics: INTRINSICS })),
      proprios: [{ name: "joint_pos", size: DOF }, { name: "joint_vel", size: DOF }],
      handlers: {
        getMetadata: Effect.succeed({ cameras: CAMERAS, action_shape: [1, DOF] }),

        reset: Effect.gen(function*() {
          yield* Ref.set(stats, { count: 0, totalMs: 0 })
          const server = yield* PolicyServer.PolicyServer
          return { obs: yield* server.makeObs(), info: {} }
        }),

        // getObs: the default, a snapshot of every camera and proprio.

        applyAction: (_action) =>
          Effect.gen(function*() {
            const t0 = performance.now()
            // ── hardware command goes here: robot.sendJointCommand(action) ──
            const ms = performance.now() - t0

            const { count, totalMs } = yield* Ref.updateAndGet(stats, (s) => ({
              count: s.count + 1,
              totalMs: s.totalMs + ms
            }))
            yield* Console.log(
              `action=${String(count).padStart(4)}  apply=${ms.toFixed(2).padStart(5)}ms  avg=${
                (totalMs / count).toFixed(2).padStart(5)
              }ms`
            )
          })
      }
    })

    // One driver per camera. joint_pos / joint_vel would come from the robot's
    // joint driver (robot.updateProprio("joint_pos", q)); here they stay zero.
    yield* Effect.forEach(CAMERAS, (name) => Effect.forkScoped(cameraLoop(robot, name)))
    yield* Console.log(`listening on ${robot.address}`)
    return yield* Effect.never
  }).pipe(Effect.scoped)

/** Serves the robot on `ws://host:port`. (zenoh_server.ts: the same robot on Zenoh.) */
export const serve = (port: number, host: string) =>
  program.pipe(Effect.provide(WebSocketTransport.layerServer({ host, port })))

if (import.meta.main) {
  const [port = "8765", host = "0.0.0.0"] = process.argv.slice(2)
  NodeRuntime.runMain(serve(Number(port), host))
}
