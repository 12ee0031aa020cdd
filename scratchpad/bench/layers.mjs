// Where a getObs round trip goes: raw TCP vs transport-level request→frame vs decode vs PolicyClient.getObs.
import { spawn } from "node:child_process"
import { NodeServices, NodeRuntime } from "@effect/platform-node"
import { Effect, Stream, Queue, Result } from "effect"
import { PolicyClient, ClientTransport } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { encodeFrame, decodeFrame } from "@chiral/protocol"
import * as RawTcp from "../../apps/cli/dist/bench/RawTcp.js"
const cams = Number(process.env.CAMS ?? 8), size = (process.env.SIZE ?? "640x480").split("x").map(Number)
const child = spawn(process.execPath, ["apps/cli/dist/bench/Server.js", JSON.stringify({ protocol: "websocket", host: "127.0.0.1", cameras: cams, width: size[0], height: size[1], depth: true, fps: 30 })], { stdio: ["pipe", "pipe", "inherit"] })
const ready = await new Promise((res) => child.stdout.once("data", (d) => res(JSON.parse(String(d).split("\n")[0]).ready)))
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1]
const N = Number(process.env.N ?? 40)
const req = encodeFrame({ type: "obs_request" })
const prog = Effect.gen(function*() {
  const raw = yield* RawTcp.connect(ready.raw_port, ready.frame_bytes)
  const transport = yield* ClientTransport
  const conn = yield* transport.connect
  const q = yield* Queue.unbounded()
  yield* Effect.forkScoped(Stream.runForEach(conn.frames, (f) => Queue.offer(q, f)))
  const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provide(WebSocketTransport.layerClient(ready.address)))
  const frameTrip = Effect.gen(function*() { const t = performance.now(); yield* conn.send(req); const f = yield* Queue.take(q); const t1 = performance.now(); const r = decodeFrame(f); const t2 = performance.now(); if (Result.isFailure(r)) throw new Error("bad"); return [t1 - t, t2 - t1] })
  const ws = Effect.gen(function*() { const t = performance.now(); yield* client.getObs; return performance.now() - t })
  for (let i = 0; i < 5; i++) { yield* raw.roundTrip; yield* frameTrip; yield* ws }
  for (let rep = 0; rep < 3; rep++) {
    const a = []; for (let i = 0; i < N; i++) a.push(yield* raw.roundTrip)
    const b = [], c = []; for (let i = 0; i < N; i++) { const [x, y] = yield* frameTrip; b.push(x); c.push(y) }
    const d = []; for (let i = 0; i < N; i++) d.push(yield* ws)
    console.log(`raw ${med(a).toFixed(3)}  transport ${med(b).toFixed(3)} + decode ${med(c).toFixed(3)}  getObs ${med(d).toFixed(3)}`)
  }
}).pipe(Effect.scoped, Effect.provide(WebSocketTransport.layerClient(ready.address)), Effect.provide(NodeServices.layer), Effect.ensuring(Effect.sync(() => child.stdin.end())))
NodeRuntime.runMain(prog)
