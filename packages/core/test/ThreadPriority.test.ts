// ThreadPriority: the calling thread's nice value or real-time policy changes,
// no other thread's nor a child process's; without the right (or without
// chrt) nothing changes, or only the nice value, and the answer says so.
import * as Fs from "node:fs"
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

/** Runs `prioritizeCurrentThread` on a fresh worker, `setup` first: what it got and the policies seen after. */
const prioritizeOnWorker = (setup = "") =>
  Effect.promise(() =>
    new Promise<{
      got: ThreadPriority.Obtained
      worker: { policy: number; rtPriority: number }
      nice: number
      child: { policy: number; rtPriority: number }
      thread: { policy: number; rtPriority: number }
    }>((resolve, reject) => {
      const worker = new Worker(
        `
        const { parentPort, workerData } = require("node:worker_threads")
        const { execFileSync } = require("node:child_process")
        import(workerData.module).then((ThreadPriority) => {
          ${setup}
          const got = ThreadPriority.prioritizeCurrentThread()
          const worker = ThreadPriority.currentThreadPolicy()
          const nice = require("node:os").getPriority(ThreadPriority.currentThreadId())
          // A process started from this thread: its own stat, read by itself.
          const stat = execFileSync(process.execPath, ["-e", "process.stdout.write(require('fs').readFileSync('/proc/self/stat', 'latin1'))"], { encoding: "latin1" })
          const child = ThreadPriority.policyOfStat(stat)
          // A thread started from this thread: its own stat, read by itself.
          const nested = new (require("node:worker_threads").Worker)("const { parentPort } = require('node:worker_threads'); parentPort.postMessage(require('fs').readFileSync('/proc/thread-self/stat', 'latin1'))", { eval: true })
          nested.once("message", (stat) => {
            void nested.terminate()
            parentPort.postMessage({ got, worker, nice, child, thread: ThreadPriority.policyOfStat(stat) })
          })
        })
        `,
        {
          eval: true,
          workerData: { module: new URL("../dist/ThreadPriority.js", import.meta.url).href }
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

  it.effect.skipIf(!linux)("real-time where allowed: this thread only, not what it starts", () =>
    Effect.gen(function*() {
      const { child, got, thread, worker } = yield* prioritizeOnWorker()
      assert.deepStrictEqual(ThreadPriority.currentThreadPolicy(), { policy: 0, rtPriority: 0 })
      // A child process or a thread started from it never inherits it (reset-on-fork).
      assert.deepStrictEqual(child, { policy: 0, rtPriority: 0 })
      assert.deepStrictEqual(thread, { policy: 0, rtPriority: 0 })
      if (got._tag === "Realtime") {
        assert.deepStrictEqual(worker, { policy: ThreadPriority.SCHED_FIFO, rtPriority: 1 })
      } else {
        // not permitted here (or no chrt): an ordinary thread, maybe niced
        assert.deepStrictEqual(worker, { policy: 0, rtPriority: 0 })
      }
    }))

  it.effect.skipIf(!linux)("CHIRAL_DISPATCH_PRIORITY=nice: an ordinary thread, niced where allowed", () =>
    Effect.gen(function*() {
      const { got, worker } = yield* prioritizeOnWorker(`process.env.CHIRAL_DISPATCH_PRIORITY = "nice"`)
      assert.notStrictEqual(got._tag, "Realtime")
      assert.deepStrictEqual(worker, { policy: 0, rtPriority: 0 })
    }))

  it.effect.skipIf(!linux)("CHIRAL_DISPATCH_PRIORITY=normal: nothing changes", () =>
    Effect.gen(function*() {
      const { got, nice, worker } = yield* prioritizeOnWorker(`process.env.CHIRAL_DISPATCH_PRIORITY = "normal"`)
      assert.deepStrictEqual(got, { _tag: "Unchanged", because: "asked" })
      assert.deepStrictEqual(worker, { policy: 0, rtPriority: 0 })
      assert.strictEqual(nice, Os.getPriority(process.pid))
    }))

  it.effect.skipIf(!linux)("real-time is asked for only with the right to it", () =>
    Effect.gen(function*() {
      const { got } = yield* prioritizeOnWorker()
      if (!ThreadPriority.mayUseRealtime(1)) assert.notStrictEqual(got._tag, "Realtime")
      else if (["/usr/bin/chrt", "/bin/chrt"].some((p) => Fs.existsSync(p))) assert.strictEqual(got._tag, "Realtime")
    }))
})
