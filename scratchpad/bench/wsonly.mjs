// WebSocket getObs round trips only, against the bench server child (for --cpu-prof).
import { spawn } from "node:child_process"
import { NodeServices, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { PolicyClient } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
const cams = Number(process.env.CAMS ?? 8), size = (process.env.SIZE ?? "640x480").split("x").map(Number)
const child = spawn(process.execPath, [...(process.env.SERVER_PROF ? ["--cpu-prof", "--cpu-prof-dir=/tmp/bx/prof-server"] : []), "apps/cli/dist/bench/Server.js", JSON.stringify({ protocol: "websocket", host: "127.0.0.1", cameras: cams, width: size[0], height: size[1], depth: true, fps: 30 })], { stdio: ["pipe", "pipe", "inherit"] })
const ready = await new Promise((res) => child.stdout.once("data", (d) => res(JSON.parse(String(d).split("\n")[0]).ready)))
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1]
const N = Number(process.env.N ?? 60)
const prog = Effect.gen(function*() {
  const client = yield* PolicyClient.make({ quiet: true })
  const ws = Effect.gen(function*() { const t = performance.now(); yield* client.getObs; return performance.now() - t })
  for (let i = 0; i < 5; i++) yield* ws
  for (let rep = 0; rep < 3; rep++) {
    const b = []; for (let i = 0; i < N; i++) b.push(yield* ws)
    console.log(`ws ${med(b).toFixed(3)} ms (p90 ${[...b].sort((x,y)=>x-y)[Math.floor(N*0.9)].toFixed(3)})`)
  }
}).pipe(Effect.scoped, Effect.provide(WebSocketTransport.layerClient(ready.address)), Effect.provide(NodeServices.layer), Effect.ensuring(Effect.sync(() => child.stdin.end())))
NodeRuntime.runMain(prog)
