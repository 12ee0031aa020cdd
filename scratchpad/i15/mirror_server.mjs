// The Python bench robot (apps/cli/src/bench/python/reference_server.py) in chiral-ts, handler for handler:
// 2 cameras 64x48 RGB + float32 depth rewritten at 30 Hz, joint_pos/joint_vel[7] never written, apply_action does nothing.
import "../../apps/cli/dist/V8Flags.js"
import { Cadence, PolicyServer } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { NodeRuntime } from "@effect/platform-node"
import { Duration, Effect } from "effect"
const port = Number(process.argv[2]), W = 64, H = 48, N = 2
const eye = (n) => Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)))
const program = Effect.gen(function*() {
  const robot = yield* PolicyServer.make({
    cameras: Array.from({ length: N }, (_, c) => ({ name: `cam_${c}`, height: H, width: W, channels: 3, hasDepth: true, intrinsics: eye(3), extrinsics: eye(4) })),
    proprios: [{ name: "joint_pos", size: 7 }, { name: "joint_vel", size: 7 }],
    handlers: {
      getMetadata: Effect.succeed({ action_shape: [1, 7] }),
      reset: Effect.gen(function*() { const s = yield* PolicyServer.PolicyServer; return { obs: yield* s.makeObs(), info: {} } }),
      applyAction: () => Effect.void
    }
  })
  let frame = 0
  const images = Array.from({ length: 256 }, (_, v) => new Uint8Array(W * H * 3).fill(v))
  const depths = Array.from({ length: N }, (_, c) => new Float32Array(W * H).fill(1 + c))
  yield* Effect.forkScoped(Effect.suspend(() => {
    const f = frame++
    return Effect.forEach(Array.from({ length: N }, (_, c) => c), (c) =>
      Effect.andThen(robot.updateImage(`cam_${c}`, images[(f + c) % 256], { copy: false }), robot.updateDepth(`cam_${c}`, depths[c], { copy: false })), { discard: true })
  }).pipe(Effect.repeat(Cadence.fixed(Duration.millis(1000 / 30)))))
  return yield* Effect.never
}).pipe(Effect.scoped, Effect.provide(WebSocketTransport.layerServer({ host: "127.0.0.1", port })))
NodeRuntime.runMain(program)
