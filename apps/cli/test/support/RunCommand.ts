// Runs a `chiral` subcommand in-process with its console captured, so a test
// can read what it printed (stdout and stderr separately) and wait for a line.
import { NodeServices } from "@effect/platform-node"
import { Console, Deferred, Effect, Exit, Fiber } from "effect"
import { Command } from "effect/cli"

export interface Output {
  readonly stdout: Array<string>
  readonly stderr: Array<string>
}

export interface Captured extends Output {
  readonly console: Console.Console
  /** Completes with the first stderr line containing `text` (already printed or to come). */
  readonly stderrLine: (text: string) => Effect.Effect<string>
}

export const capture = (): Captured => {
  const stdout: Array<string> = []
  const stderr: Array<string> = []
  const waiting: Array<{ readonly text: string; readonly found: Deferred.Deferred<string> }> = []
  const sink = (lines: Array<string>, isErr: boolean) => (...xs: ReadonlyArray<unknown>) => {
    const line = xs.map(String).join(" ")
    lines.push(line)
    if (isErr) for (const w of waiting) if (line.includes(w.text)) Deferred.doneUnsafe(w.found, Exit.succeed(line))
  }
  const console: Console.Console = {
    ...globalThis.console,
    log: sink(stdout, false),
    info: sink(stdout, false),
    error: sink(stderr, true),
    warn: sink(stderr, true)
  }
  const stderrLine = (text: string) =>
    Effect.suspend(() => {
      const seen = stderr.find((line) => line.includes(text))
      if (seen !== undefined) return Effect.succeed(seen)
      const found = Deferred.makeUnsafe<string>()
      waiting.push({ text, found })
      return Deferred.await(found)
    })
  return { stdout, stderr, console, stderrLine }
}

// oxlint-disable-next-line typescript/no-explicit-any
type AnyCommand = Command.Command<any, any, any, any, any>

/** Runs the command to its end: its exit and everything it printed. */
export const run = (command: AnyCommand, args: ReadonlyArray<string>) => {
  const out = capture()
  return Command.runWith(command, { version: "test" })(args).pipe(
    Effect.provide(NodeServices.layer),
    Effect.provideService(Console.Console, out.console),
    Effect.exit,
    Effect.map((exit) => ({ exit, stdout: out.stdout, stderr: out.stderr }))
  ) as Effect.Effect<{ exit: Exit.Exit<void, unknown>; stdout: Array<string>; stderr: Array<string> }>
}

/**
 * Starts `chiral serve <args>` in a fiber of the test's scope and waits for its
 * listening line; returns the address it printed and what it prints.
 */
export const startServe = (command: AnyCommand, args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const out = capture()
    const fiber = yield* Command.runWith(command, { version: "test" })(args).pipe(
      Effect.provide(NodeServices.layer),
      Effect.provideService(Console.Console, out.console),
      Effect.forkScoped
    )
    const line = yield* out.stderrLine("listening on ").pipe(
      Effect.raceFirst(Effect.flatMap(Fiber.await(fiber), (exit) =>
        Effect.die(new Error(`serve ended before listening: ${String(exit)}; stderr: ${out.stderr.join(" | ")}`))))
    )
    const address = /listening on (\S+)/.exec(line)![1]!
    return { address, output: out as Output, fiber }
  })

/**
 * Starts a long-running command in a fiber of the test's scope and waits for
 * the stderr line containing `marker`; returns the `ws://…` address on that
 * line and what the command prints.
 */
export const startCommand = (command: AnyCommand, args: ReadonlyArray<string>, marker: string) =>
  Effect.gen(function*() {
    const out = capture()
    const fiber = yield* Command.runWith(command, { version: "test" })(args).pipe(
      Effect.provide(NodeServices.layer),
      Effect.provideService(Console.Console, out.console),
      Effect.forkScoped
    )
    const line = yield* out.stderrLine(marker).pipe(
      Effect.raceFirst(Effect.flatMap(Fiber.await(fiber), (exit) =>
        Effect.die(new Error(`command ended before "${marker}": ${String(exit)}; stderr: ${out.stderr.join(" | ")}`))))
    )
    const address = /(ws:\/\/[^\s,)]+|tcp\/[^\s,)]+)/.exec(line.slice(line.indexOf(marker)))![1]!
    return { address, output: out as Output, fiber }
  })
