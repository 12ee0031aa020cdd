/**
 * The most common pairing, a Python policy and a TypeScript robot: the Python
 * reference's own client (get_obs, then one put_action, at 30 Hz) against
 * `chiral serve` and against the Python reference's server, both serving the
 * same small robot (2 cameras 64×48 RGB + depth, two 7-vectors), in rounds
 * that alternate so both servers see the same machine load.
 *
 * A third server in each round, the floor (`FloorServer`): a bare `ws`
 * server answering every get_obs with the bytes chiral serve sent, nothing
 * else done; what a Node WebSocket robot cannot go below on this machine in
 * this run, so chiral serve's distance from it is chiral's own part and the
 * floor's distance from the Python server is the platform's.
 *
 * The reference is whatever `import chiral` finds for the interpreter named by
 * CHIRAL_REFERENCE_PYTHON (default python3), e.g. with the reference on
 * PYTHONPATH; without it the comparison is skipped with a note. The scripts it
 * runs are in python/ next to this module's source.
 */
import { execFile } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { encodeFrame } from "@chiral/protocol"
import { Duration, Effect, FileSystem, Schedule } from "effect"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import { WebSocket } from "ws"
import { statFields } from "./MachineLimits.js"

export interface Latency {
  readonly n: number
  readonly p50_ms: number
  readonly p90_ms: number
  readonly p99_ms: number
}

/** CPU a server process used while the client ran, ms per second of the run. */
export interface ServerCpu {
  /** Every thread of the process. */
  readonly total: number
  /** Its main thread: the one that answers requests in both servers. */
  readonly main: number
}

/**
 * Which of a server's two client runs: the first, from its start (a
 * just-started Node server is still compiling its request path: V8 optimizes
 * a function only after it has run a number of times, `V8Flags`), or the
 * second, right after the first on the same server.
 */
export type Phase = "from start" | "warmed"

const phases: ReadonlyArray<Phase> = ["from start", "warmed"]

/** The servers of a round, in the order they run. */
export type Server = "Python reference" | "chiral serve" | "Node ws floor"

export interface Round {
  readonly server: Server
  readonly phase: Phase
  readonly latency: Latency | string
  /** Absent where /proc cannot tell (not Linux). */
  readonly cpu?: ServerCpu | undefined
}

/**
 * CPU time of process `pid` so far, ms, from Linux's /proc: user + system
 * time (fields 14 and 15 of each thread's `stat`, in clock ticks of 10 ms,
 * USER_HZ 100 on Linux) over its threads, and its main thread's apart;
 * undefined where there is no /proc.
 */
export const processCpu = (pid: number): { readonly total: number; readonly main: number } | undefined => {
  try {
    let total = 0
    let main = 0
    for (const tid of Fs.readdirSync(`/proc/${pid}/task`)) {
      const fields = statFields(`/proc/${pid}/task/${tid}/stat`)
      const ms = (Number(fields[11]) + Number(fields[12])) * 10
      total += ms
      if (tid === String(pid)) main = ms
    }
    return Number.isFinite(total) ? { total, main } : undefined
  } catch {
    return undefined
  }
}

export const python = process.env.CHIRAL_REFERENCE_PYTHON ?? "python3"

/** Why the reference cannot run here, or undefined when `import chiral` works. */
export const unavailable: Effect.Effect<string | undefined> = Effect.callback((resume) => {
  execFile(python, ["-c", "import chiral, numpy"], { timeout: 30_000 }, (error, _out, stderr) =>
    resume(Effect.succeed(
      error === null
        ? undefined
        : `${python}: import chiral failed (${
          stderr.trim().split("\n").pop() ?? error.message
        }); set CHIRAL_REFERENCE_PYTHON and PYTHONPATH to the Python reference`
    )))
})

/** A port free on 127.0.0.1 now (the OS picks it). */
export const freePort: Effect.Effect<number> = Effect.callback((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

const accepting = (port: number) =>
  Effect.callback<void, Error>((resume) => {
    const socket = Net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.void)
    })
    socket.once("error", (error) => resume(Effect.fail(error)))
  })

export interface Options {
  /** The repository root (where apps/ is). */
  readonly root: string
  /** Alternations: each runs the client against the three servers. */
  readonly rounds: number
  readonly seconds: number
}

/** How to start a server on `port`. */
const serverCommand = (options: Options, server: Server, port: number, replyFile: string | undefined) => {
  const quiet = { stdout: "ignore", stderr: "ignore", forceKillAfter: Duration.seconds(2) } as const
  switch (server) {
    case "chiral serve":
      return ChildProcess.make(process.execPath, [
        Path.join(options.root, "apps", "cli", "bin", "chiral.js"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--cameras",
        "2",
        "--size",
        "64x48",
        "--depth"
      ], quiet)
    case "Python reference":
      return ChildProcess.make(
        python,
        [Path.join(pythonScripts(options), "reference_server.py"), "--port", String(port)],
        quiet
      )
    case "Node ws floor":
      return ChildProcess.make(process.execPath, [
        Path.join(options.root, "apps", "cli", "dist", "bench", "FloorServer.js"),
        String(port),
        replyFile ?? ""
      ], quiet)
  }
}

const pythonScripts = (options: Options) => Path.join(options.root, "apps", "cli", "src", "bench", "python")

/**
 * The bytes of one obs_response from the server on `port`, as its WebSocket
 * message carried them (the floor answers with them).
 */
export const captureReply = (port: number): Effect.Effect<Uint8Array, Error> =>
  Effect.callback<Uint8Array, Error>((resume) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    ws.on("open", () => ws.send(encodeFrame({ type: "obs_request" })))
    ws.on("message", (data: Buffer) => {
      ws.close()
      resume(Effect.succeed(new Uint8Array(data)))
    })
    ws.on("error", (error) => resume(Effect.fail(error)))
    return Effect.sync(() => ws.terminate())
  }).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(30),
      orElse: () => Effect.fail(new Error("no obs_response within 30 s"))
    })
  )

/** A round's runs on one server, and (chiral serve's) one reply it sent, for the floor. */
interface ServerRuns {
  readonly runs: ReadonlyArray<Round>
  readonly reply?: Uint8Array | undefined
}

/**
 * One server in a scope, once it accepts connections; then the client's two
 * runs against it, one after the other: from the server's start, then on the
 * server warmed by the first; then, from chiral serve, one reply captured.
 * The floor answers with `replyFile`'s bytes.
 */
const round = (
  options: Options,
  server: Server,
  replyFile?: string
): Effect.Effect<ServerRuns, never, ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
    const port = yield* freePort
    const serverProcess = yield* spawner.spawn(serverCommand(options, server, port, replyFile))
    yield* accepting(port).pipe(
      Effect.retry({ schedule: Schedule.spaced(Duration.millis(100)), times: 300 })
    )
    // A moment for the server's camera loop to have produced frames.
    yield* Effect.sleep(Duration.millis(500))
    const clientRun = (phase: Phase) =>
      Effect.gen(function*() {
        const cpuBefore = processCpu(serverProcess.pid)
        const started = performance.now()
        const output = yield* spawner.string(
          ChildProcess.make(python, [
            Path.join(pythonScripts(options), "latency_client.py"),
            `ws://127.0.0.1:${port}`,
            "--hz",
            "30",
            "--seconds",
            String(options.seconds)
          ], { stderr: "pipe" }),
          { includeStderr: true }
        ).pipe(
          // A client that hangs (a server that accepts and never answers) ends its run, not the bench.
          Effect.timeoutOrElse({
            duration: Duration.seconds(options.seconds + 60),
            orElse: () => Effect.fail(new Error(`the client did not finish within ${options.seconds + 60} s`))
          })
        )
        const seconds = (performance.now() - started) / 1000
        const cpuAfter = processCpu(serverProcess.pid)
        const latency = parseResult(output)
        if (typeof latency === "string") return failedRun(server, phase, latency)
        const cpu = cpuBefore === undefined || cpuAfter === undefined ? undefined : {
          total: (cpuAfter.total - cpuBefore.total) / seconds,
          main: (cpuAfter.main - cpuBefore.main) / seconds
        }
        return { server, phase, latency, cpu } satisfies Round
      }).pipe(Effect.catch((error: unknown) => Effect.succeed(failedRun(server, phase, messageOf(error)))))
    const runs = [yield* clientRun("from start"), yield* clientRun("warmed")]
    const reply = server === "chiral serve"
      ? yield* captureReply(port).pipe(Effect.orElseSucceed(() => undefined))
      : undefined
    return { runs, reply }
  }).pipe(
    Effect.scoped,
    Effect.catch((error: unknown) =>
      Effect.succeed({ runs: phases.map((phase) => failedRun(server, phase, messageOf(error))) })
    )
  )

const isLatency = (u: unknown): u is Latency =>
  typeof u === "object" && u !== null &&
  (["n", "p50_ms", "p90_ms", "p99_ms"] as const).every((k) => typeof (u as Record<string, unknown>)[k] === "number")

/**
 * The client's result in its output (stdout and stderr together): the last
 * line that is a JSON object of n, p50_ms, p90_ms and p99_ms; or, when there
 * is none (the client failed), why, with its last line of output (a
 * traceback's last line says what went wrong).
 */
export const parseResult = (output: string): Latency | string => {
  const lines = output.split("\n").map((line) => line.trim()).filter((line) => line.length > 0)
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const value: unknown = JSON.parse(lines[i]!)
      if (isLatency(value)) return value
    } catch {
      // not this line
    }
  }
  const last = lines.at(-1)
  return last === undefined
    ? "the client printed nothing"
    : `the client printed no result; its last line: ${last.slice(0, 300)}`
}

const messageOf = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** A run that has no figures, and why. */
const failedRun = (server: Server, phase: Phase, why: string): Round => ({ server, phase, latency: `failed: ${why}` })

/**
 * Client against the reference server, then `chiral serve`, then the floor
 * answering with chiral serve's reply of that round, `rounds` times; two
 * runs each. The reply goes to the floor in a temporary file, removed with
 * the comparison.
 */
export const compare = (options: Options) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const directory = yield* fs.makeTempDirectoryScoped({ prefix: "chiral-floor-" })
    const rounds: Array<Round> = []
    for (let i = 0; i < options.rounds; i++) {
      rounds.push(...(yield* round(options, "Python reference")).runs)
      const chiral = yield* round(options, "chiral serve")
      rounds.push(...chiral.runs)
      if (chiral.reply === undefined) {
        rounds.push(...phases.map((phase) => failedRun("Node ws floor", phase, "no reply captured from chiral serve")))
        continue
      }
      const replyFile = Path.join(directory, `reply-${i + 1}.bin`)
      yield* fs.writeFile(replyFile, chiral.reply)
      rounds.push(...(yield* round(options, "Node ws floor", replyFile)).runs)
    }
    return rounds
  }).pipe(Effect.scoped)

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const servers: ReadonlyArray<Server> = ["Python reference", "chiral serve", "Node ws floor"]

/** One server's runs of one phase: how many had figures, and the medians of their p50, p99 and CPU. */
interface Summary {
  readonly server: Server
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly cpu: ServerCpu | undefined
}

/** A server's CPU while the client ran, when known: what it takes from the cores the client shares. */
const cpuText = (cpu: ServerCpu | undefined) =>
  cpu === undefined ? "" : `  server CPU ${cpu.total.toFixed(0)} ms/s (main thread ${cpu.main.toFixed(0)})`

/** A median, or a dash where no run had figures. */
const figure = (ms: number) => Number.isNaN(ms) ? "—" : ms.toFixed(2)

const signed = (ms: number) => `${ms >= 0 ? "+" : "−"}${Math.abs(ms).toFixed(2)}`

/**
 * The rounds as lines; then, for each phase (from the server's start, then
 * warmed) and each server, the median over its rounds of p50 and of p99 (and
 * of its CPU, ms per second of the client's run, where known); then chiral
 * serve's difference and the target (p50 no higher than the Python reference
 * server's in the same run); then, where the floor ran, its distance from the
 * Python server (the platform's part) and chiral serve's from it (chiral's).
 */
export const format = (rounds: ReadonlyArray<Round>): string => {
  const seen = new Map<string, number>()
  const lines = rounds.map((r) => {
    const key = `${r.server}/${r.phase}`
    const n = (seen.get(key) ?? 0) + 1
    seen.set(key, n)
    return `round ${n}  ${r.server.padEnd(16)}  ${r.phase.padEnd(10)}  ${
      typeof r.latency === "string"
        ? r.latency
        : `get_obs p50 ${r.latency.p50_ms.toFixed(2)}  p90 ${r.latency.p90_ms.toFixed(2)}  p99 ${
          r.latency.p99_ms.toFixed(2)
        } ms  (${r.latency.n} calls)${cpuText(r.cpu)}`
    }`
  })
  const medians = (phase: Phase) => (server: Server): Summary => {
    const runs = rounds.filter((r) => r.server === server && r.phase === phase)
    const ok = runs.flatMap((r) => typeof r.latency !== "string" ? [r.latency] : [])
    const cpus = runs.flatMap((r) => typeof r.latency !== "string" && r.cpu ? [r.cpu] : [])
    return {
      server,
      n: ok.length,
      p50: median(ok.map((l) => l.p50_ms)),
      p99: median(ok.map((l) => l.p99_ms)),
      cpu: cpus.length === 0 ? undefined : { total: median(cpus.map((c) => c.total)), main: median(cpus.map((c) => c.main)) }
    }
  }
  for (const phase of phases) {
    if (!rounds.some((r) => r.phase === phase)) continue
    // Every server that has runs in this phase: the floor runs only where chiral serve's reply was captured.
    const summary = servers
      .filter((server) => server !== "Node ws floor" || rounds.some((r) => r.server === server && r.phase === phase))
      .map(medians(phase))
    lines.push(`median over rounds, ${phase.padEnd(12)}  p50     p99`)
    for (const m of summary) {
      lines.push(
        `  ${m.server.padEnd(30)} ${figure(m.p50).padStart(5)}  ${figure(m.p99).padStart(6)} ms  (${m.n} rounds)${
          cpuText(m.cpu)
        }`
      )
    }
    const [py, ts, floor] = summary as [Summary, Summary, Summary | undefined]
    lines.push(
      py.n === 0 || ts.n === 0
        ? `${phase}: no comparison: a server has no successful round`
        : `${phase}: chiral serve − Python reference: p50 ${signed(ts.p50 - py.p50)} ms, p99 ${signed(ts.p99 - py.p99)} ms ` +
          `(target: chiral serve's p50 ≤ the Python reference's ${ts.p50 <= py.p50 ? "✓" : "✗"})`
    )
    if (floor !== undefined && floor.n > 0 && py.n > 0 && ts.n > 0) {
      lines.push(
        `${phase}: the floor (a bare ws server sending chiral serve's reply) − Python reference: p50 ${
          signed(floor.p50 - py.p50)
        } ms; chiral serve − the floor: p50 ${signed(ts.p50 - floor.p50)} ms, p99 ${signed(ts.p99 - floor.p99)} ms`
      )
    }
  }
  return lines.join("\n")
}
