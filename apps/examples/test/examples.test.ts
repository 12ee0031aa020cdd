// The example server and client, run in one process over real loopback for a
// short run (20 actions), printing what the reference examples print.
import { assert, describe, it } from "@effect/vitest"
import { Console, Effect, Fiber, Logger, Schedule } from "effect"
import * as Client from "../src/client.js"
import * as Server from "../src/server.js"
import * as ZenohClient from "../src/zenoh_client.js"
import * as ZenohServer from "../src/zenoh_server.js"

/** A console that keeps every printed line (a log call with "\n" inside gives several). */
const capture = () => {
  const lines: Array<string> = []
  const push = (...xs: ReadonlyArray<unknown>) => void lines.push(...xs.map(String).join(" ").split("\n"))
  const console: Console.Console = { ...globalThis.console, log: push, info: push, error: push, warn: push }
  return { lines, console }
}

/** A logger that keeps every message, as one line each. */
const captureLogs = (lines: Array<string>) =>
  Logger.layer([Logger.make((options) => void lines.push(String(options.message)))])

/**
 * How many actions the server applied and dropped as late, from the line it
 * logs when the client's connection closes. Of actions that arrive together
 * the server applies only the newest, and one still waiting when the
 * connection ends is dropped: with server and client in one process on a busy
 * machine, two 10 Hz actions can arrive together (seen in loaded runs), or the
 * last one with the client's close.
 */
const actionCounts = (logs: ReadonlyArray<string>) =>
  Effect.map(lineMatching(logs, /connection closed: .*\(\d+ actions applied/), (line) => {
    const count = (pattern: RegExp) => Number(pattern.exec(line)?.[1] ?? 0)
    // superseded, or still waiting when the connection ended: both late by then
    const late = count(/(\d+) superseded/) + count(/(\d+) dropped as it closed/)
    return { line, applied: count(/(\d+) actions applied/), superseded: late }
  })

/** Waits (bounded) until `lines` has a line matching `pattern`. */
const lineMatching = (lines: ReadonlyArray<string>, pattern: RegExp) =>
  Effect.suspend(() => {
    const line = lines.find((l) => pattern.test(l))
    return line === undefined ? Effect.fail("not yet" as const) : Effect.succeed(line)
  }).pipe(Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 500 }))

describe("examples", () => {
  it.live("server + client: metadata line, one line per policy call, dispatched N actions; the server prints each action", () =>
    Effect.gen(function*() {
      const server = capture()
      const logs: Array<string> = []
      yield* Server.serve(0, "127.0.0.1").pipe(
        Effect.provideService(Console.Console, server.console),
        Effect.provide(captureLogs(logs)),
        Effect.forkScoped
      )
      const listening = yield* lineMatching(server.lines, /^listening on ws:\/\/127\.0\.0\.1:\d+$/)
      const uri = listening.slice("listening on ".length)

      const client = capture()
      yield* Client.run(uri, 20).pipe(Effect.provideService(Console.Console, client.console))
      const out = client.lines

      const cams = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `'cam_${i}'`).join(", ")
      assert.strictEqual(out[0], `cameras: [${cams}]  action_shape: [1, 7]`)
      assert.strictEqual(out[1], "")
      const policy = out.filter((l) => l.startsWith("[policy #"))
      // Two chunks of 10, and one more per action dropped as late (the robot never gets it).
      assert.deepStrictEqual(policy.slice(0, 2).map((l) => l.slice(0, l.indexOf("]") + 1)), ["[policy #0]", "[policy #1]"])
      for (const line of policy) {
        assert.match(
          line,
          /^\[policy #\d\] obs ts=\d+\.\d{3} {2}cameras: cam_0@\d+\.\d{3}s img=\(480, 640, 3\), cam_1@\d+\.\d{3}s img=\(480, 640, 3\)$/
        )
      }
      assert.strictEqual(out.at(-2), "")
      assert.match(out.at(-1)!, /^dispatched 20 actions in \d+\.\ds {2}\(\d+\.\d Hz\)$/)

      // Every action reached the server: each applied one printed in the reference's format.
      const { applied, line, superseded } = yield* actionCounts(logs)
      assert.strictEqual(applied + superseded, 20, line)
      const actions = server.lines.filter((l) => l.startsWith("action="))
      assert.strictEqual(actions.length, applied)
      actions.forEach((line, i) =>
        assert.match(line, new RegExp(`^action=${String(i + 1).padStart(4)} {2}apply= *\\d+\\.\\d\\dms {2}avg= *\\d+\\.\\d\\dms$`))
      )
    }), 60_000)

  it.live("the client finishes across a robot restart: what was queued for the lost robot is predicted anew, and every action it counts reached a robot", () =>
    Effect.gen(function*() {
      const first = capture()
      const logs: Array<string> = []
      const robot = (console: Console.Console, port: number) =>
        Server.serve(port, "127.0.0.1").pipe(
          Effect.provideService(Console.Console, console),
          Effect.provide(captureLogs(logs)),
          Effect.forkScoped
        )
      const before = yield* robot(first.console, 0)
      const listening = yield* lineMatching(first.lines, /^listening on ws:\/\/127\.0\.0\.1:\d+$/)
      const uri = listening.slice("listening on ".length)
      const port = Number(uri.slice(uri.lastIndexOf(":") + 1))

      const client = capture()
      const run = yield* Client.run(uri, 30).pipe(Effect.provideService(Console.Console, client.console), Effect.forkChild)
      yield* lineMatching(first.lines, /^action= {3}5 /)
      yield* Fiber.interrupt(before)
      const second = capture()
      const after = yield* robot(second.console, port)
      yield* Fiber.join(run)
      yield* Fiber.interrupt(after)
      const dispatched = client.lines.find((l) => l.startsWith("dispatched"))
      assert.match(dispatched ?? client.lines.join("\n"), /^dispatched 30 actions in \d+\.\ds {2}\(\d+\.\d Hz\)$/)
      const applied = [first, second].map((robot) => robot.lines.filter((l) => l.startsWith("action=")).length)
      // Sent to the first robot but not read before it went: at most the few in flight.
      assert.isAtLeast(applied[0]! + applied[1]!, 25, JSON.stringify(applied))
      assert.isAbove(applied[1]!, 0)
    }).pipe(Effect.scoped), 120_000)

  it.live("the Zenoh pair: same robot and policy over tcp/host:port, every action arrives", () =>
    Effect.gen(function*() {
      const server = capture()
      const logs: Array<string> = []
      yield* ZenohServer.serve(0, "127.0.0.1").pipe(
        Effect.provideService(Console.Console, server.console),
        Effect.provide(captureLogs(logs)),
        Effect.forkScoped
      )
      const listening = yield* lineMatching(server.lines, /^listening on tcp\/127\.0\.0\.1:\d+$/)
      const uri = listening.slice("listening on ".length)

      const client = capture()
      yield* ZenohClient.run(uri, 10).pipe(Effect.provideService(Console.Console, client.console))
      assert.match(client.lines[0]!, /^cameras: \['cam_0', .*\]  action_shape: \[1, 7\]$/)
      assert.match(client.lines.at(-1)!, /^dispatched 10 actions in \d+\.\ds {2}\(\d+\.\d Hz\)$/)
      const { applied, line, superseded } = yield* actionCounts(logs)
      assert.strictEqual(applied + superseded, 10, line)
      assert.strictEqual(server.lines.filter((l) => l.startsWith("action=")).length, applied)
    }), 60_000)
})
