// The README's "Using it from TypeScript" program, run as a user runs it
// (`node my-policy.ts`, Node running TypeScript itself, the @chiral/*
// packages through this repository's node_modules, so their dist/: built by
// `npm install`) against a live robot: it must exit 0 with its chunk sent.
// It once ended its scope right after queuing the chunk, so every action was
// dropped unsent.
import { assert, describe, it } from "@effect/vitest"
import * as Pair from "@chiral/testing/Pair"
import { WebSocketTransport } from "@chiral/websocket"
import { Effect, Queue } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = new URL("../../../", import.meta.url).pathname

/** The first ```ts block of the README section `heading`. */
const readmeProgram = (heading: string): string => {
  const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
  const section = readme.slice(readme.indexOf(heading))
  const block = /```ts\n([\s\S]*?)```/.exec(section)
  assert.isNotNull(block, `no ts block under ${heading}`)
  return block![1]!
}

/** Writes `source` as my-policy.ts in a directory of its own that sees this repository's packages; runs it with this Node. */
const runAsUser = (source: string) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "chiral-readme-"))
      Fs.symlinkSync(Path.join(root, "node_modules"), Path.join(dir, "node_modules"))
      Fs.writeFileSync(Path.join(dir, "package.json"), JSON.stringify({ type: "module" }))
      Fs.writeFileSync(Path.join(dir, "my-policy.ts"), source)
      return dir
    }),
    (dir) =>
      Effect.callback<{ readonly code: number | null; readonly output: string }>((resume) => {
        const child = ChildProcess.spawn(process.execPath, [Path.join(dir, "my-policy.ts")], { cwd: dir })
        let output = ""
        child.stdout.on("data", (d) => (output += d))
        child.stderr.on("data", (d) => (output += d))
        child.on("close", (code) => resume(Effect.succeed({ code, output })))
        return Effect.sync(() => child.kill())
      }),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

describe("README", () => {
  it.live("the TypeScript program runs as written and its chunk of 8 actions is sent to the robot", () =>
    Effect.gen(function*() {
      const { recorder, server } = yield* Pair.startServerOnly()
      const program = readmeProgram("## Using it from TypeScript")
      assert.include(program, "ws://robot:8765")
      const { code, output } = yield* runAsUser(program.replace("ws://robot:8765", server.address))
      assert.strictEqual(code, 0, output)
      // Nothing left in the client's queue when it closed, and the robot got the
      // chunk: all 8 applied, or 7 where the last one reached it together with
      // the close (a robot drops what still waits when its connection ends).
      assert.notInclude(output, "queued actions dropped")
      assert.isAtLeast(yield* Queue.size(recorder.actions), 7, output)
    }).pipe(Effect.scoped, Effect.provide(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 }))))
})
