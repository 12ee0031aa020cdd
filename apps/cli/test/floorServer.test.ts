// The floor of the bench's Python-client comparison: a bare ws server that
// answers every obs_request with the bytes it was given, and metadata with an
// empty map; captureReply takes one reply as the server sent it. The floor runs
// from dist/, so this needs `tsc -b` first (CI builds before testing).
import { CameraFrame, decodeFrame, encodeFrame, Observation, Tensor } from "@chiral/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Result, Schedule } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { WebSocket } from "ws"
import { captureReply, freePort } from "../src/bench/PythonClient.js"

const floorScript = Path.join(Path.dirname(fileURLToPath(import.meta.url)), "..", "dist", "bench", "FloorServer.js")

/** The floor on a free port, answering with `reply`, stopped with the scope. */
const floor = (reply: Uint8Array) =>
  Effect.gen(function*() {
    const directory = Fs.mkdtempSync(Path.join(Os.tmpdir(), "chiral-floor-test-"))
    const file = Path.join(directory, "reply.bin")
    Fs.writeFileSync(file, reply)
    const port = yield* freePort
    yield* Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, [floorScript, String(port), file], { stdio: "ignore" })),
      (child: ChildProcess) =>
        Effect.sync(() => {
          child.kill("SIGKILL")
          Fs.rmSync(directory, { recursive: true, force: true })
        })
    )
    return port
  })

const metadataOf = (port: number) =>
  Effect.callback<Uint8Array, Error>((resume) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`)
    ws.on("open", () => {
      // an action first: dropped, no answer
      ws.send(encodeFrame({ type: "apply_action", action: Tensor.make("float32", [7], new Float32Array(7)), obsTimestamps: {} }))
      ws.send(encodeFrame({ type: "metadata" }))
    })
    ws.on("message", (data: Buffer) => {
      ws.close()
      resume(Effect.succeed(new Uint8Array(data)))
    })
    ws.on("error", (error) => resume(Effect.fail(error)))
    return Effect.sync(() => ws.terminate())
  })

const observation = Observation.make({
  timestamp: 12.5,
  cameras: [CameraFrame.make({ name: "cam_0", timestamp: 12.25, image: Tensor.make("uint8", [4, 3, 3], new Uint8Array(4 * 3 * 3).fill(7)) })]
})

describe("FloorServer", () => {
  it.live("answers obs_request with the bytes it was given and metadata with {}; captureReply takes them back", () =>
    Effect.gen(function*() {
      const reply = encodeFrame({ type: "obs_response", obs: observation })
      const port = yield* floor(reply)
      // the child needs a moment to listen: retried until it answers (generous: a busy machine)
      const captured = yield* captureReply(port).pipe(
        Effect.retry({ schedule: Schedule.spaced(Duration.millis(100)), times: 300 })
      )
      assert.deepStrictEqual(captured, reply)
      const metadata = decodeFrame(yield* metadataOf(port))
      assert.isTrue(Result.isSuccess(metadata))
      assert.deepStrictEqual(Result.getOrThrow(metadata), { type: "metadata_response", data: {} })
    }).pipe(Effect.scoped), 60_000)
})
