// How long PolicyClient takes to connect (worker thread vs main thread), against the bench server.
import { spawn } from "node:child_process"
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { PolicyClient } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
const child = spawn(process.execPath, ["apps/cli/dist/bench/Server.js", JSON.stringify({ protocol: "websocket", host: "127.0.0.1", cameras: 1, width: 64, height: 48, depth: true, fps: 30 })], { stdio: ["pipe", "pipe", "inherit"] })
const ready = await new Promise((res) => child.stdout.once("data", (d) => res(JSON.parse(String(d).split("\n")[0]).ready)))
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1]
const prog = Effect.gen(function*() {
  for (const thread of ["worker", "main", "worker", "main"]) {
    const times = []
    for (let i = 0; i < 20; i++) {
      const t = performance.now()
      yield* Effect.scoped(Effect.andThen(PolicyClient.make({ quiet: true }), (c) => c.getMetadata)).pipe(Effect.provide(WebSocketTransport.layerClient(ready.address, { thread })))
      times.push(performance.now() - t)
    }
    console.log(`${thread}: connect + metadata + close median ${med(times).toFixed(1)} ms`)
  }
}).pipe(Effect.ensuring(Effect.sync(() => child.stdin.end())))
NodeRuntime.runMain(prog)
