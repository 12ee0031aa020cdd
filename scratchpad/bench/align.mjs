// Are received depth maps views into the received frame (aligned) or copies?
import { spawn } from "node:child_process"
import { NodeServices, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { PolicyClient } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
const child = spawn(process.execPath, ["apps/cli/dist/bench/Server.js", JSON.stringify({ protocol: "websocket", host: "127.0.0.1", cameras: 8, width: 640, height: 480, depth: true, fps: 30 })], { stdio: ["pipe", "pipe", "inherit"] })
const ready = await new Promise((res) => child.stdout.once("data", (d) => res(JSON.parse(String(d).split("\n")[0]).ready)))
const prog = Effect.gen(function*() {
  const client = yield* PolicyClient.make({ quiet: true })
  const obs = yield* client.getObs
  const img = obs.cameras[0].image.data.buffer
  console.log(obs.cameras.map((c) => `${c.name}: image ${c.image.data.byteOffset % 8} depth ${c.depth.data.byteOffset % 8} same buffer ${c.depth.data.buffer === img}`).join("\n"))
  console.log("buffer bytes", img.byteLength)
}).pipe(Effect.scoped, Effect.provide(WebSocketTransport.layerClient(ready.address)), Effect.provide(NodeServices.layer), Effect.ensuring(Effect.sync(() => child.stdin.end())))
NodeRuntime.runMain(prog)
