// `chiral bench --json` on a tiny workload: the shape of what it prints, never
// its numbers (no timed assertions; the benchmark itself runs in `npm run bench`).
// The bench server runs as a child process from dist/, so this needs `tsc -b` first
// (CI builds before testing).
import * as fs from "node:fs"
import { ThreadPriority } from "@chiral/core"
import { assert, describe, it } from "@effect/vitest"
import { ZenohTransport } from "@chiral/zenoh-transport"
import { Effect, Exit, Layer } from "effect"
import {
  arrivalTicks,
  cadence,
  percentiles,
  quantile,
  skippedTicks,
  splitByTransfers,
  ticksOfDues,
  transfersOf
} from "../src/bench/Stats.js"
import * as KernelThreads from "../src/bench/KernelThreads.js"
import { bench } from "../src/commands/Bench.js"
import * as SimulatedRobot from "../src/SimulatedRobot.js"
import { run } from "./support/RunCommand.js"

const isNumber = (u: unknown): u is number => typeof u === "number" && Number.isFinite(u)

describe("chiral bench", () => {
  it.live("--json prints one object of the documented shape", () =>
    Effect.gen(function*() {
      const out = yield* run(bench, [
        "--cameras",
        "1",
        "--size",
        "32x24",
        "--requests",
        "5",
        "--duration",
        "3",
        "--action-hz",
        "20",
        "--robot-priority",
        "realtime",
        "--json"
      ])
      assert.isTrue(Exit.isSuccess(out.exit), out.stderr.join("\n"))
      assert.strictEqual(out.stdout.length, 1, out.stdout.join("\n"))
      const result = JSON.parse(out.stdout[0]!)
      assert.deepStrictEqual(Object.keys(result), [
        "workload",
        "obs_round_trip_ms",
        "raw_tcp_round_trip_ms",
        "ratio_to_raw_tcp",
        "throughput_mb_s",
        "obs_hz",
        "action_cadence",
        "action_sends",
        "rss_mb",
        "page_faults_per_obs",
        "action_jitter_by_stream_phase",
        "action_gaps",
        "server_event_loop",
        "robot_thread",
        "kernel_threads"
      ])
      const { workload } = result
      assert.deepInclude(workload, { cameras: 1, width: 32, height: 24, depth: true })
      // 32×24×3 image + 32×24×4 depth + 2×7×4 proprios, plus the header
      assert.isAbove(workload.frame_bytes, 32 * 24 * 7 + 56)
      assert.deepStrictEqual(Object.keys(result.obs_round_trip_ms), ["p50", "p90", "p99", "max"])
      assert.isTrue(Object.values(result.obs_round_trip_ms).every(isNumber))
      assert.deepStrictEqual(Object.keys(result.raw_tcp_round_trip_ms), ["p50", "p90", "p99"])
      assert.isTrue(Object.values(result.raw_tcp_round_trip_ms).every(isNumber))
      assert.isTrue(isNumber(result.ratio_to_raw_tcp) && isNumber(result.throughput_mb_s) && isNumber(result.obs_hz))
      assert.deepStrictEqual(Object.keys(result.action_cadence), [
        "hz",
        "count",
        "interval_ms_p50",
        "jitter_ms_p50",
        "jitter_ms_p99",
        "jitter_ms_max",
        "drift_ms"
      ])
      assert.strictEqual(result.action_cadence.hz, 20)
      // a 3 s run at 20 Hz dispatches about 60 actions, all of which reach the server
      // (10 at least: a busy machine can stall a process for a second or two)
      assert.isAtLeast(result.action_cadence.count, 10)
      // the client's own record of its sends: the same figures
      assert.deepStrictEqual(Object.keys(result.action_sends), Object.keys(result.action_cadence))
      assert.strictEqual(result.action_sends.hz, 20)
      assert.isAtLeast(result.action_sends.count, 10)
      assert.isTrue(isNumber(result.action_sends.jitter_ms_p99))
      assert.deepStrictEqual(Object.keys(result.rss_mb), ["start", "end"])
      assert.isTrue(isNumber(result.rss_mb.start) && isNumber(result.rss_mb.end))
      // Linux: minor faults read from /proc in both processes of the run
      assert.deepStrictEqual(Object.keys(result.page_faults_per_obs), ["client", "server"])
      if (process.platform === "linux") {
        assert.isTrue(isNumber(result.page_faults_per_obs.client) && isNumber(result.page_faults_per_obs.server))
      }
      // every action that arrived is on one side or the other of the stream's transfers
      const phases = result.action_jitter_by_stream_phase
      assert.deepStrictEqual(Object.keys(phases), ["transfers", "during_transfer", "between_transfers"])
      assert.deepStrictEqual(Object.keys(phases.during_transfer), ["count", "jitter_ms_p99"])
      assert.strictEqual(phases.during_transfer.count + phases.between_transfers.count, result.action_cadence.count)
      // the stream's requests were recorded while actions went: 30 Hz for about 3 s
      assert.isAtLeast(phases.transfers, 10)
      // the worker dispatcher reports its ticks, and the server its superseded actions
      assert.deepStrictEqual(Object.keys(result.action_gaps), ["superseded", "ticks_skipped"])
      assert.isTrue(isNumber(result.action_gaps.superseded) && isNumber(result.action_gaps.ticks_skipped))
      // the robot's loop was watched over the stream: a 1 ms timer never fires sooner than every millisecond
      assert.deepStrictEqual(Object.keys(result.server_event_loop), ["timer_ms_p99", "timer_ms_max", "runqueue_ms_per_s"])
      assert.isAtLeast(result.server_event_loop.timer_ms_p99, 1)
      assert.isAtLeast(result.server_event_loop.timer_ms_max, result.server_event_loop.timer_ms_p99)
      if (process.platform === "linux") assert.isTrue(isNumber(result.server_event_loop.runqueue_ms_per_s))
      // the bench's robot was asked to run its thread real-time: it says what it got
      assert.match(result.robot_thread, /^(real-time \(SCHED_FIFO 1\)|at nice -?\d+|at normal priority)/)
      if (ThreadPriority.realtimeAvailable() && !ThreadPriority.realtimeUnthrottled()) {
        assert.strictEqual(result.robot_thread, "real-time (SCHED_FIFO 1)")
      }
      // the kernel's busy threads, if any took 1 ms/s: named, with their share and runs
      if (result.kernel_threads !== null) {
        for (const t of result.kernel_threads) {
          assert.deepStrictEqual(Object.keys(t), ["name", "ms_per_s", "mean_run_ms"])
          assert.isAtLeast(t.ms_per_s, 1)
        }
      }
    }), { timeout: 60_000 })

  it.live("a server's address says its protocol: tcp/host:port is measured over Zenoh without --protocol", () =>
    Effect.gen(function*() {
      const transport = yield* Layer.build(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 }))
      const robot = yield* SimulatedRobot.make({ cameras: 1, width: 8, height: 6 }).pipe(Effect.provideContext(transport))
      const out = yield* run(bench, [robot.server.address, "--requests", "3", "--duration", "1", "--timeout", "60", "--json"])
      assert.isTrue(Exit.isSuccess(out.exit), out.stderr.join("\n"))
      assert.isTrue(isNumber(JSON.parse(out.stdout[0]!).obs_round_trip_ms.p50))
      // not our robot: how its thread runs is not known here
      assert.isNull(JSON.parse(out.stdout[0]!).robot_thread)
      const mismatch = yield* run(bench, [robot.server.address, "--protocol", "websocket"])
      assert.isTrue(Exit.isFailure(mismatch.exit))
      assert.match(
        mismatch.stderr.join("\n"),
        /^chiral bench: --protocol websocket does not match "tcp\/127\.0\.0\.1:\d+": WebSocket addresses look like ws:\/\/host:8765/
      )
    }).pipe(Effect.scoped), { timeout: 60_000 })

  it.effect("rejects a bad size in one line", () =>
    Effect.gen(function*() {
      const out = yield* run(bench, ["--size", "64by48"])
      assert.isTrue(Exit.isFailure(out.exit))
      assert.match(out.stderr.join("\n"), /^chiral bench: --size "64by48": expected WIDTHxHEIGHT/)
    }))

  it.effect("a running server's own cameras are measured: the flags of the bench's own robot are refused with a URI, not ignored", () =>
    Effect.gen(function*() {
      const out = yield* run(bench, ["ws://127.0.0.1:1", "--cameras", "2", "--no-depth", "--action-hz", "30", "--robot-priority", "nice"])
      assert.isTrue(Exit.isFailure(out.exit))
      assert.match(
        out.stderr.join("\n"),
        /^chiral bench: --cameras, --no-depth, --action-hz, --robot-priority set the bench's own robot; a running server is measured with its own cameras, and no action is sent to it/
      )
    }))
})

describe("bench statistics", () => {
  it("a transfer runs from a request to the first answer after it; one without is on its way to the end", () => {
    assert.deepStrictEqual(transfersOf([10, 40, 70], [5, 15, 47]), [[10, 15], [40, 47], [70, Infinity]])
    assert.deepStrictEqual(transfersOf([], [1]), [])
  })

  it("samples split by whether their tick fell within a transfer (ends included)", () => {
    const transfers = [[10, 15], [40, 47]] as const
    const { between, during } = splitByTransfers([5, 10, 15, 16, 45, 50], [1, 2, 3, 4, 5, 6], transfers)
    assert.deepStrictEqual(during, [2, 3, 5])
    assert.deepStrictEqual(between, [1, 4, 6])
    // arrivals out of order are judged by their own tick
    const shuffled = splitByTransfers([45, 5, 12], [5, 1, 2], transfers)
    assert.deepStrictEqual([shuffled.during.sort(), shuffled.between], [[2, 5], [1]])
  })

  it("percentiles by nearest rank", () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i)
    assert.deepStrictEqual(percentiles(samples), { p50: 50, p90: 90, p99: 99, max: 100 })
    assert.isNaN(quantile([], 0.5))
  })

  it("cadence: jitter against the grid from the origin, drift from first to last arrival", () => {
    // 10 Hz from origin 1000: on time, 2 ms late, on time, then one tick lost (the last arrives a period late)
    const stats = cadence([1000.5, 1102, 1200.5, 1400.5], 10, 1000)
    assert.strictEqual(stats.count, 4)
    assert.strictEqual(stats.interval_ms_p50, 101.5)
    assert.strictEqual(stats.jitter_ms_p50, 0.5)
    assert.strictEqual(stats.jitter_ms_max, 100.5)
    assert.strictEqual(stats.drift_ms, 100)
  })

  it("cadence: drift by the actions' numbers, so a superseded action adds none and a skipped tick a period", () => {
    // 10 Hz: actions 0–4 due at ticks 0–4; action 2 superseded (it arrived with 3, and the server kept 3)
    const superseded = cadence([1000.5, 1100.5, 1300.5, 1400.5], 10, 1000, [0, 1, 3, 4], [0, 1, 3, 4])
    assert.strictEqual(superseded.drift_ms, 0)
    // by position, the gap would read as a period of drift
    assert.strictEqual(cadence([1000.5, 1100.5, 1300.5, 1400.5], 10, 1000, [0, 1, 3, 4]).drift_ms, 100)
    // tick 2 skipped by the dispatcher: actions 2 and 3 went at ticks 3 and 4, a period late
    assert.strictEqual(cadence([1000.5, 1100.5, 1300.5, 1400.5], 10, 1000, [0, 1, 3, 4], [0, 1, 2, 3]).drift_ms, 100)
  })

  it("cadence on given ticks: an empty tick does not make the later arrivals late", () => {
    // tick 2 dropped: the arrivals of ticks 3 and 4 are on time for their own ticks
    const stats = cadence([1000.5, 1101, 1300.5, 1400.5], 10, 1000, [0, 1, 3, 4])
    assert.strictEqual(stats.jitter_ms_max, 1)
    assert.strictEqual(stats.jitter_ms_p50, 0.5)
    // by position instead, the last two would be a period late
    assert.strictEqual(cadence([1000.5, 1101, 1300.5, 1400.5], 10, 1000).jitter_ms_max, 100.5)
  })

  it("arrivals take the tick their send was due at: a tick the dispatcher skipped makes no later arrival late", () => {
    // 10 Hz from 1000: actions 0–3 sent at ticks 0, 1, 3, 4 (tick 2 skipped: the dispatcher stalled)
    const sent = ticksOfDues([1000, 1100.2, 1299.8, 1400], 10, 1000)
    assert.deepStrictEqual(sent, [0, 1, 3, 4])
    assert.strictEqual(skippedTicks(sent), 1)
    const arrivals = [[7, 1000.5], [8, 1100.7], [9, 1300.5], [10, 1400.6]] as const
    const ticks = arrivalTicks(arrivals, 7, sent)
    assert.deepStrictEqual(ticks, [0, 1, 3, 4])
    assert.closeTo(cadence(arrivals.map(([, t]) => t), 10, 1000, ticks).jitter_ms_max, 0.7, 1e-9)
    // by number alone (no dues reported) the last two look a period late
    assert.deepStrictEqual(arrivalTicks(arrivals, 7, undefined), [0, 1, 2, 3])
    assert.strictEqual(skippedTicks(undefined), undefined)
    assert.strictEqual(skippedTicks(ticksOfDues([1000, 1100, 1200], 10, 1000)), 0)
  })
})

describe("KernelThreads.between", () => {
  const times = (name: string, runMs: number, runs: number) => ({ name, runNs: runMs * 1e6, runs })
  const before: KernelThreads.Snapshot = {
    at: 1000,
    threads: new Map([
      [77, times("kdamond.0", 100, 10)],
      [12, times("kworker/0:1", 5, 100)],
      [99, times("ksoftirqd/1", 1, 1)],
      [300, times("khugepaged", 50, 7)],
      [400, times("kworker/0:0", 900, 1000)]
    ])
  }
  const after: KernelThreads.Snapshot = {
    at: 3000,
    threads: new Map([
      [77, times("kdamond.0", 180, 14)], // 80 ms in 4 runs over 2 s
      [12, times("kworker/0:1", 6, 300)], // 1 ms in 200 runs: 0.5 ms/s, under the floor
      [200, times("kworker/1:3", 10, 40)], // started meanwhile: counted from zero
      [300, times("khugepaged", 60, 7)], // one run that held its CPU across both snapshots: 10 ms
      [400, times("kworker/u4:0", 3, 3)] // the pid of another, ended: counted from zero
    ])
  }

  it("CPU per second and per run, busiest first; light, ended and idle threads left out", () => {
    assert.deepStrictEqual(KernelThreads.between(before, after), [
      { name: "kdamond.0", ms_per_s: 40, mean_run_ms: 20 },
      { name: "kworker/1:3", ms_per_s: 5, mean_run_ms: 0.25 },
      { name: "khugepaged", ms_per_s: 5, mean_run_ms: 10 }
    ])
    assert.deepStrictEqual(KernelThreads.between(before, after, 1, 4)[3], { name: "kworker/u4:0", ms_per_s: 1.5, mean_run_ms: 1 })
    assert.deepStrictEqual(KernelThreads.between(before, after, 1, 1).map((t) => t.name), ["kdamond.0"])
    assert.deepStrictEqual(KernelThreads.between(after, after), [])
    assert.strictEqual(
      KernelThreads.describe(KernelThreads.between(before, after)),
      "kdamond.0 40 ms/s in runs of 20 ms, kworker/1:3 5 ms/s in runs of 0.25 ms, khugepaged 5 ms/s in runs of 10 ms"
    )
    assert.strictEqual(KernelThreads.describe([]), "none over 1 ms/s")
  })

  // Where /proc shows kernel threads at all: not in a container's PID namespace.
  const visible = process.platform === "linux" && fs.existsSync("/proc/2/stat") &&
    fs.readFileSync("/proc/2/stat", "latin1").includes("(kthreadd)")
  it.effect.skipIf(!visible)("a snapshot of this machine holds kernel threads only", () =>
    Effect.sync(() => {
      const snap = KernelThreads.snapshot()!
      assert.isAbove(snap.threads.size, 0)
      // kthreadd (pid 2) is a kernel thread; this process is not
      assert.isTrue(snap.threads.has(2))
      assert.isFalse(snap.threads.has(process.pid))
    }))
})
