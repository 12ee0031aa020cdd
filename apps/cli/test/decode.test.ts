import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Console, Effect, Exit } from "effect"
import { Command } from "effect/cli"
import { CommandFailed, decode } from "../src/commands/Decode.js"

// The golden frames live with the codec's tests (copied from ../shared/vectors).
const vectorsDir = fileURLToPath(new URL("../../../packages/protocol/test/fixtures/vectors/", import.meta.url))
const vectors = JSON.parse(fs.readFileSync(path.join(vectorsDir, "vectors.json"), "utf8")) as Record<string, Record<string, unknown>>

/** Runs `chiral decode <args>` in-process, capturing what it prints. */
const run = (args: ReadonlyArray<string>) => {
  const out: Array<string> = []
  const err: Array<string> = []
  const line = (sink: Array<string>) => (...xs: ReadonlyArray<unknown>) => void sink.push(xs.map(String).join(" "))
  const console: Console.Console = {
    ...globalThis.console,
    log: line(out),
    info: line(out),
    error: line(err),
    warn: line(err)
  }
  return Command.runWith(decode, { version: "test" })(args).pipe(
    Effect.provide(NodeServices.layer),
    Effect.provideService(Console.Console, console),
    Effect.exit,
    Effect.map((exit) => ({ exit, stdout: out.join("\n"), stderr: err }))
  )
}

describe("chiral decode --json", () => {
  for (const [name, entry] of Object.entries(vectors)) {
    it.effect(`${name} prints exactly its vectors.json entry`, () =>
      Effect.gen(function*() {
        const { exit, stderr, stdout } = yield* run([path.join(vectorsDir, `${name}.bin`), "--json"])
        assert.isTrue(Exit.isSuccess(exit))
        assert.deepStrictEqual(stderr, [])
        const { origin: _origin, ...expected } = entry
        assert.deepStrictEqual(JSON.parse(stdout), expected)
      }))
  }
})

// Frames modelled on field faults (copied from ../shared/field): non-finite values must
// reach the JSON as themselves, and the JSON must parse.
const fieldDir = fileURLToPath(new URL("../../../packages/protocol/test/fixtures/field/", import.meta.url))

describe("chiral decode --json on non-finite values", () => {
  it.effect("float16 +Inf and NaN in a proprio: the output parses and keeps them apart", () =>
    Effect.gen(function*() {
      const { exit, stderr, stdout } = yield* run([path.join(fieldDir, "obs_proprio_float16_nonfinite.bin"), "--json"])
      assert.isTrue(Exit.isSuccess(exit))
      assert.deepStrictEqual(stderr, [])
      const printed = JSON.parse(stdout) as { obs: { proprios: Record<string, unknown> } }
      assert.deepStrictEqual(printed.obs.proprios, {
        h: { dtype: "float16", shape: [4], data: [1, -2, "Infinity", "NaN"] },
        b: { dtype: "bool", shape: [3], data: [true, false, true] }
      })
    }))

  it.effect("a float32 action [NaN, +Inf, -Inf, -0, 3.4e38, 1, 2] from Python's encoder: parses, each value distinct", () =>
    Effect.gen(function*() {
      const { exit, stdout } = yield* run([path.join(fieldDir, "apply_action_nonfinite.bin"), "--json"])
      assert.isTrue(Exit.isSuccess(exit))
      const printed = JSON.parse(stdout) as { type: string; action: { data: Array<unknown> }; obs_timestamps: unknown }
      assert.strictEqual(printed.type, "apply_action")
      const data = printed.action.data
      assert.deepStrictEqual(data.slice(0, 3), ["NaN", "Infinity", "-Infinity"])
      assert.isTrue(Object.is(data[3], -0))
      assert.deepStrictEqual(data.slice(4), [Math.fround(3.4e38), 1, 2])
      assert.deepStrictEqual(printed.obs_timestamps, { cam_0: 12.5 })
    }))

  it.effect("the summary counts NaN apart and shows the infinities as the range", () =>
    Effect.gen(function*() {
      const { stdout } = yield* run([path.join(fieldDir, "obs_proprio_float16_nonfinite.bin")])
      assert.include(stdout.split("\n"), "  proprios[0] \"h\"  float16 [4]  min -2  max Infinity  (1 NaN)")
    }))
})

describe("chiral decode", () => {
  it.effect("summarizes type, header fields and each tensor's dtype, shape, min and max", () =>
    Effect.gen(function*() {
      const { exit, stdout } = yield* run([path.join(vectorsDir, "obs_response_dtypes.bin")])
      assert.isTrue(Exit.isSuccess(exit))
      const lines = stdout.split("\n")
      assert.strictEqual(lines[0], "obs_response  (580 bytes: header 530, payload 46)")
      assert.include(lines, "timestamp  5.5")
      assert.include(lines, "  cameras[0] \"ir_cam\"  timestamp 99")
      assert.include(lines, "    intrinsics  [615.25, 0, 320.5; 0, 614.75, 240.125; 0, 0, 1]")
      assert.include(lines, "    image  uint8 [2, 3, 1]  min 139  max 235")
      assert.include(lines, "    depth  uint16 [2, 3]  min 1048  max 3859")
      assert.include(lines, "  proprios[0] \"ee_pose\"  float32 [7]  min 0  max 6")
      assert.include(lines, "extra  {\"frame_id\":17,\"source\":\"sim\"}")
    }))

  it.effect("summarizes legacy step responses and actions", () =>
    Effect.gen(function*() {
      const step = yield* run([path.join(vectorsDir, "cpp_step_response.bin")])
      assert.include(step.stdout.split("\n"), "reward  1.5")
      assert.include(step.stdout.split("\n"), "truncated  true")
      const action = yield* run([path.join(vectorsDir, "cpp_action.bin")])
      assert.include(action.stdout.split("\n"), "action  float32 [2, 3]  min -6  max 4.5")
    }))

  for (const bad of ["image_past_payload", "deep_nesting", "header_len_huge", "empty"]) {
    it.effect(`a malformed frame (${bad}) fails with one line on stderr`, () =>
      Effect.gen(function*() {
        const file = path.join(vectorsDir, "bad", `${bad}.bin`)
        const { exit, stderr, stdout } = yield* run([file])
        assert.isTrue(Exit.isFailure(exit))
        assert.strictEqual(stdout, "")
        assert.strictEqual(stderr.length, 1)
        assert.notInclude(stderr[0]!, "\n")
        assert.isTrue(stderr[0]!.startsWith(`chiral decode: ${file}: `))
        const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
        assert.instanceOf(error?._tag === "Fail" ? error.error : undefined, CommandFailed)
      }))
  }

  it.effect("names the field at fault", () =>
    Effect.gen(function*() {
      const { stderr } = yield* run([path.join(vectorsDir, "bad", "image_past_payload.bin")])
      assert.match(stderr[0]!, /cameras\[0\]\.image_offset: bytes 8\.\.20 reach past the end of the 12-byte payload$/)
    }))

  it.effect("a missing file fails with one line on stderr", () =>
    Effect.gen(function*() {
      const { exit, stderr } = yield* run(["/nonexistent/frame.bin"])
      assert.isTrue(Exit.isFailure(exit))
      assert.deepStrictEqual(stderr, ["chiral decode: cannot read /nonexistent/frame.bin: no such file"])
    }))

  it.effect("--help explains the argument, --json and gives examples", () =>
    Effect.gen(function*() {
      const { stdout } = yield* run(["--help"])
      assert.include(stdout, "decode [flags] <frame>")
      assert.include(stdout, "--json")
      assert.include(stdout, "vectors.json")
      assert.include(stdout, "chiral decode obs_response.bin --json")
    }))
})
