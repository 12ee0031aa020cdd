// GC activity per phase: raw-TCP round trips alone, then WebSocket getObs alone (run with --trace-gc).
import { spawn } from "node:child_process"
import { NodeServices, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { PolicyClient } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import * as RawTcp from "../../apps/cli/dist/bench/RawTcp.js"
const child = spawn(process.execPath, ["apps/cli/dist/bench/Server.js", JSON.stringify({ protocol: "websocket", host: "127.0.0.1", cameras: 8, width: 640, height: 480, depth: true, fps: Number(process.env.FPS ?? 30) })], { stdio: ["pipe", "pipe", "inherit"] })
const ready = await new Promise((res) => child.stdout.once("data", (d) => res(JSON.parse(String(d).split("\n")[0]).ready)))
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1]
const N = 30
const prog = Effect.gen(function*() {
  const raw = yield* RawTcp.connect(ready.raw_port, ready.frame_bytes)
  const client = yield* PolicyClient.make({ quiet: true })
  const ws = Effect.gen(function*() { const t = performance.now(); yield* client.getObs; return performance.now() - t })
  for (let i = 0; i < 5; i++) { yield* raw.roundTrip; yield* ws }
  console.log("=== raw phase")
  const a = []; for (let i = 0; i < N; i++) a.push(yield* raw.roundTrip)
  console.log("=== raw", med(a).toFixed(2), "ws phase")
  const b = []; for (let i = 0; i < N; i++) b.push(yield* ws)
  console.log("=== ws", med(b).toFixed(2))
}).pipe(Effect.scoped, Effect.provide(WebSocketTransport.layerClient(ready.address)), Effect.provide(NodeServices.layer), Effect.ensuring(Effect.sync(() => child.stdin.end())))
NodeRuntime.runMain(prog)
