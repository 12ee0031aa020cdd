// ThreadPriority: the calling thread's nice value changes, no other thread's;
// without the right to raise it, nothing changes and the answer says so.
import * as Os from "node:os"
import { Worker } from "node:worker_threads"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ThreadPriority from "../src/ThreadPriority.js"

const linux = process.platform === "linux"

/** Runs `raiseCurrentThread` on a fresh worker (the built module): its tid, the nice it reports, the nice the kernel has. */
const raiseOnWorker = (levels?: ReadonlyArray<number>) =>
  Effect.promise(() =>
    new Promise<{ tid: number | undefined; reported: number | undefined; actual: number | undefined }>((resolve, reject) => {
      const worker = new Worker(
        `
        const { parentPort, workerData } = require("node:worker_threads")
        const os = require("node:os")
        import(workerData.module).then((ThreadPriority) => {
          const tid = ThreadPriority.currentThreadId()
          const reported = ThreadPriority.raiseCurrentThread(workerData.levels)
          parentPort.postMessage({ tid, reported, actual: tid === undefined ? undefined : os.getPriority(tid) })
        })
        `,
        {
          eval: true,
          workerData: { module: new URL("../dist/ThreadPriority.js", import.meta.url).href, levels }
        }
      )
      worker.once("message", (result) => {
        void worker.terminate()
        resolve(result)
      })
      worker.once("error", reject)
    })
  )

describe("ThreadPriority", () => {
  it.effect.skipIf(!linux)("names the calling thread", () =>
    Effect.sync(() => {
      // On the main thread the thread id is the process id.
      assert.strictEqual(ThreadPriority.currentThreadId(), process.pid)
    }))

  it.effect.skipIf(!linux)("changes the calling thread only, and reports what it got", () =>
    Effect.gen(function*() {
      const before = Os.getPriority(process.pid)
      const { actual, reported, tid } = yield* raiseOnWorker()
      assert.isNumber(tid)
      assert.notStrictEqual(tid, process.pid)
      assert.strictEqual(Os.getPriority(process.pid), before)
      if (reported === undefined) {
        // not permitted here: the worker kept the process's nice value
        assert.strictEqual(actual, before)
      } else {
        assert.strictEqual(actual, reported)
        assert.isBelow(reported, before)
      }
    }))

  it.effect.skipIf(!linux)("a level that is not allowed changes nothing", () =>
    Effect.gen(function*() {
      // Nice values end at -20: a level beyond is refused, even to root.
      const { actual, reported } = yield* raiseOnWorker([-100])
      assert.isUndefined(reported)
      assert.strictEqual(actual, Os.getPriority(process.pid))
    }))
})
