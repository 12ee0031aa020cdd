// A recording survives its recorder's death: what was handed to the file
// reaches it within the flush bound without a close.
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import * as Episode from "../src/Episode.js"
import { EpisodeWriter, type Timer } from "../src/EpisodeWriter.js"

const tempFile = (name: string) => path.join(fs.mkdtempSync(path.join(os.tmpdir(), "chiral-durable-")), name)

const onDisk = (file: string) => fs.statSync(file).size

/** Waits until `condition` holds (a condition, not a delay; the test's limit bounds a hang). */
const until = (condition: () => boolean) =>
  Effect.sync(condition).pipe(Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(10) }))

describe("durable recording", () => {
  it.live("what is handed to the file is written when the flush timer fires, armed for at most 1 s, without a close", () =>
    Effect.gen(function*() {
      const file = tempFile("timed.mcap")
      const armed: Array<{ readonly fire: () => void; readonly millis: number }> = []
      const timer: Timer = (fire, millis) => {
        armed.push({ fire, millis })
        return () => undefined
      }
      const writer = yield* Effect.promise(() => EpisodeWriter.open(file, { compression: "none" }, timer))
      // The header is staged: not on disk yet, a flush armed.
      assert.strictEqual(onDisk(file), 0)
      assert.strictEqual(armed.length, 1)
      assert.isAtMost(armed[0]!.millis, 1000)
      armed[0]!.fire()
      yield* until(() => onDisk(file) === Number(writer.bytes))
      const header = onDisk(file)
      assert.isAbove(header, 0)

      yield* Effect.promise(() => writer.metadata("chiral.test", new Map([["n", "1"]])))
      assert.strictEqual(armed.length, 2)
      assert.isAtMost(armed[1]!.millis, 1000)
      assert.strictEqual(onDisk(file), header)
      armed[1]!.fire()
      yield* until(() => onDisk(file) === Number(writer.bytes))
      assert.isAbove(onDisk(file), header)

      yield* Effect.promise(() => writer.close())
      const episode = yield* Episode.open(file)
      assert.deepStrictEqual(episode.records.map((r) => r.name), ["chiral.test"])
    }).pipe(Effect.scoped))
})
