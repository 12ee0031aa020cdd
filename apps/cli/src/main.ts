// The `chiral` command. Each subcommand is its own module under commands/;
// adding one is one import and one line in `subcommands`.
import "./V8Flags.js" // first: V8 settings apply to what is allocated after them
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { Command } from "effect/cli"
import { bench } from "./commands/Bench.js"
import { decode } from "./commands/Decode.js"
import { probe } from "./commands/Probe.js"
import { record } from "./commands/Record.js"
import { replay } from "./commands/Replay.js"
import { serve } from "./commands/Serve.js"
import { view } from "./commands/View.js"
import * as Presenter from "./Presenter.js"

const subcommands = [
  decode,
  serve,
  probe,
  bench,
  record,
  replay,
  view
] as const

const chiral = Command.make("chiral").pipe(
  Command.withDescription(
    "chiral for TypeScript: stream robot observations to a policy and actions back, wire-compatible with the Python and C++ chiral."
  ),
  Command.withSubcommands(subcommands)
)

chiral.pipe(
  Command.run({ version: "0.1.0" }),
  Effect.provide(Presenter.layer),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
