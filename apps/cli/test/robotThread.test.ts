// RobotThread.raise, on a worker thread of its own (the built dist/): the
// test runner's thread is left alone. Where Linux would let a real-time
// thread take a whole core, the robot's thread is not made real-time.
import { Worker } from "node:worker_threads"
import { ThreadPriority } from "@chiral/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"

const linux = process.platform === "linux"

/** `raise(priority, () => unthrottled)` on a fresh worker: what it said, and the policy the kernel then has for that thread. */
const raiseOnWorker = (priority: string, unthrottled: boolean) =>
  Effect.promise(() =>
    new Promise<{ said: string; policy: { policy: number; rtPriority: number } | undefined }>((resolve, reject) => {
      const worker = new Worker(
        `
        const { parentPort, workerData } = require("node:worker_threads")
        Promise.all([import(workerData.robotThread), import(workerData.threadPriority)]).then(([RobotThread, ThreadPriority]) => {
          const said = RobotThread.raise(workerData.priority, () => workerData.unthrottled)
          parentPort.postMessage({ said, policy: ThreadPriority.currentThreadPolicy() })
        })
        `,
        {
          eval: true,
          // the built packages, not the test runner's source condition
          execArgv: [],
          workerData: {
            robotThread: new URL("../dist/RobotThread.js", import.meta.url).href,
            threadPriority: new URL("../../../packages/core/dist/ThreadPriority.js", import.meta.url).href,
            priority,
            unthrottled
          }
        }
      )
      worker.once("message", (result) => {
        void worker.terminate()
        resolve(result)
      })
      worker.once("error", reject)
    })
  )

describe("RobotThread.raise", () => {
  it.effect("normal: nothing is changed, and it says so", () =>
    Effect.gen(function*() {
      const { policy, said } = yield* raiseOnWorker("normal", false)
      assert.strictEqual(said, "normal")
      if (linux) assert.strictEqual(policy?.policy, 0)
    }))

  it.effect.skipIf(!linux)("realtime where real-time threads may take a whole core: not real-time, and says why", () =>
    Effect.gen(function*() {
      const { policy, said } = yield* raiseOnWorker("realtime", true)
      assert.strictEqual(policy?.policy, 0)
      assert.match(said, /; not real-time: sched_rt_runtime_us is -1, and nothing would stop this thread if it stopped blocking$/)
    }))

  it.effect.skipIf(!linux)("realtime otherwise: real-time where this process may", () =>
    Effect.gen(function*() {
      const { policy, said } = yield* raiseOnWorker("realtime", false)
      if (ThreadPriority.realtimeAvailable()) {
        assert.strictEqual(said, "real-time (SCHED_FIFO 1)")
        assert.deepStrictEqual(policy, { policy: ThreadPriority.SCHED_FIFO, rtPriority: 1 })
      } else {
        assert.strictEqual(policy?.policy, 0)
        assert.notInclude(said, "real-time (")
      }
    }))
})
