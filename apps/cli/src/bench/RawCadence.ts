/**
 * A machine limit for action timing: how late actions reach a robot that is
 * streaming large observations, over plain Node sockets (no chiral, no
 * Effect, no framing). A robot process (`RawCadenceServer`) answers each
 * request with `bytes` bytes and stamps 5-byte actions as they arrive; a
 * policy (`RawCadenceClient`, worker threads) streams observations at
 * `obsHz` on its socket and writes actions to the same socket from another
 * thread at `actionHz`, as chiral's dispatcher worker does. At 100 Hz beside
 * a 30 Hz stream the ticks fall at every phase of the stream's cycle, so the
 * figures say what this machine allows whatever an action's phase, and how
 * much a tick that falls while an observation is on its way costs.
 */
import { type ChildProcess, fork } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import { Duration, Effect, Schedule, type Scope } from "effect"
import type { StreamJob, StreamReport } from "./RawCadenceClient.js"
import { percentiles, splitByTransfers } from "./Stats.js"

export interface RawCadenceOptions {
  /** Bytes per observation. */
  readonly bytes: number
  readonly obsHz: number
  readonly actionHz: number
  /** How long actions are sent, s. */
  readonly seconds: number
  readonly host?: string | undefined
}

/** |arrival − due| of actions, ms. */
export interface Lateness {
  readonly count: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

export interface RawCadence {
  readonly options: RawCadenceOptions
  /** Actions sent, and arrived. */
  readonly sent: number
  readonly arrived: number
  readonly all: Lateness
  /** Actions whose tick fell while an observation was on its way (asked, not yet all received). */
  readonly duringTransfer: Lateness
  /** The others. */
  readonly betweenTransfers: Lateness
}

const lateness = (samples: ReadonlyArray<number>): Lateness => {
  const { max, p50, p99 } = percentiles(samples)
  return { count: samples.length, p50, p99, max }
}

/**
 * The figures of a run: action n was due at `origin` + n periods (ms) and
 * arrived as `arrivals` says ([n, ms]); `transfers` are the observations'
 * [asked, received] (ms), in order.
 */
export const summarize = (
  options: RawCadenceOptions,
  origin: number,
  sent: number,
  arrivals: ReadonlyArray<readonly [number, number]>,
  transfers: ReadonlyArray<readonly [number, number]>
): RawCadence => {
  const period = 1000 / options.actionHz
  const dues = arrivals.map(([n]) => origin + n * period)
  const { between, during } = splitByTransfers(dues, arrivals.map(([, at], k) => Math.abs(at - dues[k]!)), transfers)
  return {
    options,
    sent,
    arrived: arrivals.length,
    all: lateness([...during, ...between]),
    duringTransfer: lateness(during),
    betweenTransfers: lateness(between)
  }
}

/** A built module next to this one in dist/ (under vitest this module is the TypeScript source). */
const builtEntry = (name: string): string => {
  const here = fileURLToPath(import.meta.url)
  return here.endsWith(".ts")
    ? Path.join(Path.dirname(here), "..", "..", "dist", "bench", `${name}.js`)
    : Path.join(Path.dirname(here), `${name}.js`)
}

/**
 * The next message of `peer` (a child process or a worker), as `read` takes
 * it; a failure if `peer` fails or exits first. `ask` runs once listening
 * (its `fail` for a request that cannot be sent). Listeners are removed
 * however it ends.
 */
const nextMessage = <A>(
  peer: ChildProcess | Worker,
  what: string,
  read: (message: unknown) => Effect.Effect<A, Error>,
  ask?: (fail: (error: Error) => void) => void
) =>
  Effect.callback<A, Error>((resume) => {
    const off = () => {
      peer.off("message", onMessage)
      peer.off("error", onError)
      peer.off("exit", onExit)
    }
    const onMessage = (message: unknown) => {
      off()
      resume(read(message))
    }
    const onError = (error: Error) => {
      off()
      resume(Effect.fail(error))
    }
    const onExit = (code: number | null) => {
      off()
      resume(Effect.fail(new Error(`${what} exited (${code})`)))
    }
    peer.on("message", onMessage)
    peer.on("error", onError)
    peer.on("exit", onExit)
    ask?.(onError)
    return Effect.sync(off)
  })

const robotName = "the baseline's robot process"

/** Starts the robot process (killed with the scope) and waits for its port. */
const startRobot = (bytes: number, host: string) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => fork(builtEntry("RawCadenceServer"), [String(bytes), host], { execArgv: [], stdio: "inherit" })),
      // SIGKILL: a stopped process would hold SIGTERM until continued, and this process with it
      (child) => Effect.sync(() => child.kill("SIGKILL"))
    )
    const port = yield* nextMessage(child, robotName, (message) => Effect.succeed((message as { port: number }).port))
    return { child, port }
  })

const arrivalsOf = (child: ChildProcess) =>
  nextMessage(
    child,
    robotName,
    (message) => Effect.succeed((message as { arrivals: ReadonlyArray<readonly [number, number]> }).arrivals),
    (fail) => child.send("arrivals", (error) => error === null ? undefined : fail(error))
  )

/** Runs the policy's threads until the last action is sent; they end with the scope. */
const runPolicy = (job: StreamJob) =>
  Effect.acquireRelease(
    Effect.sync(() => new Worker(builtEntry("RawCadenceClient"), { workerData: job, execArgv: [] })),
    (worker) => Effect.promise(() => worker.terminate())
  ).pipe(
    Effect.flatMap((worker) =>
      nextMessage(worker, "the baseline's policy thread", (message) => {
        const report = message as StreamReport | { readonly error: string }
        return "error" in report ? Effect.fail(new Error(report.error)) : Effect.succeed(report)
      })
    )
  )

/** Time allowed beyond the run's own length before it counts as stuck (a stopped process, a lost answer), s. */
const graceSeconds = 30

/**
 * One run (about `seconds` + 1 s, and up to 2 s more while the last
 * actions arrive). Fails if the robot process or a policy
 * thread fails or exits, or if the run has not ended `graceSeconds` after
 * its length.
 */
export const measure = (options: RawCadenceOptions): Effect.Effect<RawCadence, Error, Scope.Scope> =>
  run(options).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(options.seconds + graceSeconds),
      orElse: () =>
        Effect.fail(new Error(`the plain-socket baseline did not end within ${options.seconds + graceSeconds} s`))
    })
  )

const run = (options: RawCadenceOptions): Effect.Effect<RawCadence, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? "127.0.0.1"
    const robot = yield* startRobot(options.bytes, host)
    const ticks = Math.round(options.seconds * options.actionHz)
    const report = yield* runPolicy({
      role: "stream",
      port: robot.port,
      host,
      bytes: options.bytes,
      obsHz: options.obsHz,
      actionHz: options.actionHz,
      ticks,
      settleMillis: 500
    })
    // The last actions may still be on their way (the robot's process may
    // not have run yet): asked again until every one is in, for up to 2 s.
    const arrivals = yield* arrivalsOf(robot.child).pipe(
      Effect.repeat({ until: (list) => list.length >= ticks, schedule: Schedule.spaced("50 millis"), times: 40 })
    )
    return summarize(options, report.origin, ticks, arrivals, report.transfers)
  })

const ms = (x: number) => Number.isFinite(x) ? x.toFixed(2) : "—"

export const format = (r: RawCadence): string => {
  const mb = (r.options.bytes / 1e6).toFixed(1)
  const share = r.all.count === 0 ? 0 : Math.round(100 * r.duringTransfer.count / r.all.count)
  return `actions at ${r.options.actionHz} Hz beside a ${r.options.obsHz} Hz stream of ${mb} MB, plain sockets ` +
    `(${r.arrived} of ${r.sent} arrived): |jitter| p50 ${ms(r.all.p50)}  p99 ${ms(r.all.p99)}  max ${ms(r.all.max)} ms; ` +
    `ticks while an observation was on its way (${share}%) p99 ${ms(r.duringTransfer.p99)} ms, ` +
    `the others p99 ${ms(r.betweenTransfers.p99)} ms`
}
