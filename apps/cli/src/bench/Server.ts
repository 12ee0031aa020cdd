/**
 * The server side of `chiral bench`, run as a child process so that the
 * client's work (receiving and decoding 17 MB observations, collecting
 * garbage) never delays the server's clock readings, as it would on a shared
 * event loop.
 *
 * It serves the simulated robot of `chiral serve` over the chosen protocol and
 * the raw-TCP baseline answering the same number of bytes per request, and
 * talks to the parent in JSON lines:
 *  - stdout `{"ready":{"address","raw_port","frame_bytes","robot_thread"}}`
 *    once serving (`robot_thread`: how its main thread is scheduled, as
 *    `RobotThread.raise` says);
 *  - stdin `arrivals` → stdout `{"arrivals":[[first action value, ms], …]}`:
 *    every action that reached the robot's handler since the last such
 *    request (the gate let it through), with its arrival time
 *    on the monotonic clock (`process.hrtime`, shared by all processes of the
 *    machine), taken as it reaches the robot's `applyAction`;
 *  - stdin `rss` → stdout `{"rss":bytes}`;
 *  - stdin `faults` → stdout `{"faults":n}`: this process's minor page faults so far;
 *  - stdin `loop` → stdout `{"loop":EventLoopFigures}`: how its main thread
 *    ran since the last such request (or its start).
 * It exits when its stdin closes, so it never outlives the parent.
 *
 * The arrival time is read as the action reaches the simulated robot's
 * handler, before its arm moves (`onAction`): what chiral delivers, not the
 * simulated robot's own work. (Until 2026-12-01 it was read where the robot
 * printed its action log, after moving the arm and writing its proprios:
 * 0.14 ms later at p50, up to 0.8 ms at p99, on the 2-core machine.)
 */
import "../V8Flags.js" // first: V8 settings apply to what is allocated after them
import { encodeFrameParts, stringifyJson, Tensor } from "@chiral/protocol"
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Logger } from "effect"
import * as RobotThread from "../RobotThread.js"
import * as SimulatedRobot from "../SimulatedRobot.js"
import * as EventLoopWatch from "./EventLoopWatch.js"
import { minorFaults } from "./MachineLimits.js"
import { isProtocol, protocols } from "./Protocols.js"
import * as RawTcp from "./RawTcp.js"

export interface ServerOptions {
  readonly protocol: string
  readonly host: string
  readonly cameras: number
  readonly width: number
  readonly height: number
  readonly depth: boolean
  /** Sensor rate of the simulated robot. */
  readonly fps: number
  /** How far to raise this process's main thread (`chiral serve --priority`); default normal. */
  readonly priority?: RobotThread.Priority | undefined
}

/** Monotonic clock in ms, comparable across processes of this machine. */
export const monotonicMillis = (): number => Number(process.hrtime.bigint()) / 1e6

const emit = (value: unknown) => process.stdout.write(`${stringifyJson(value)}\n`)

const main = (options: ServerOptions) => {
  if (!isProtocol(options.protocol)) return Effect.die(`unknown protocol ${options.protocol}`)
  const entry = protocols[options.protocol]
  return Effect.gen(function*() {
    // First: chrt forks this process, cheaper before the robot's buffers exist.
    const robotThread = RobotThread.raise(options.priority ?? "normal")
    let arrivals: Array<readonly [number, number]> = []
    const loop = EventLoopWatch.watch()
    const robot = yield* SimulatedRobot.make({
      cameras: options.cameras,
      width: options.width,
      height: options.height,
      depth: options.depth,
      fps: options.fps,
      onAction: (action) => {
        const t = monotonicMillis()
        arrivals.push([Number(Tensor.toArray(action)[0] ?? 0), t])
      }
    })
    const obs = yield* robot.server.makeObs()
    const frameBytes = encodeFrameParts({ type: "obs_response", obs }).reduce((n, part) => n + part.byteLength, 0)
    const rawPort = yield* RawTcp.serve(frameBytes, options.host)
    const port = entry.portOf(robot.server.address)
    emit({
      ready: {
        address: entry.address({ host: options.host, port: port ?? 0 }),
        raw_port: rawPort,
        frame_bytes: frameBytes,
        robot_thread: robotThread
      }
    })

    // Commands from the parent, until it closes our stdin.
    yield* Effect.callback<void>((resume) => {
      let pending = ""
      const onData = (chunk: Buffer) => {
        pending += chunk.toString("utf8")
        let newline: number
        while ((newline = pending.indexOf("\n")) >= 0) {
          const command = pending.slice(0, newline).trim()
          pending = pending.slice(newline + 1)
          if (command === "arrivals") {
            const taken = arrivals
            arrivals = []
            emit({ arrivals: taken })
          } else if (command === "superseded") {
            emit({ superseded: Effect.runSync(robot.server.actionStats).dropped.superseded })
          } else if (command === "rss") emit({ rss: process.memoryUsage.rss() })
          else if (command === "faults") emit({ faults: minorFaults() })
          else if (command === "loop") emit({ loop: loop.take() })
        }
      }
      const onEnd = () => resume(Effect.void)
      process.stdin.on("data", onData)
      process.stdin.once("end", onEnd)
      process.stdin.once("close", onEnd)
      return Effect.sync(() => {
        process.stdin.off("data", onData)
        process.stdin.off("end", onEnd)
        process.stdin.off("close", onEnd)
        process.stdin.pause()
      })
    })
  }).pipe(
    Effect.scoped,
    // Outside the scope: the listener lives as long as the whole program.
    Effect.provide(entry.server({ host: options.host, port: 0 }))
  )
}

const options = JSON.parse(process.argv[2] ?? "{}") as ServerOptions
main(options).pipe(
  Effect.provideService(Logger.LogToStderr, true),
  NodeRuntime.runMain
)
