// The suite's Python-client comparison alone: node scratchpad/i15/pybench.mjs [rounds] [seconds]
import * as Path from "node:path"
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect } from "effect"
import * as PythonClient from "../../apps/cli/dist/bench/PythonClient.js"
const [rounds = "2", seconds = "10"] = process.argv.slice(2)
Effect.gen(function*() {
  const missing = yield* PythonClient.unavailable
  if (missing) return yield* Console.log(`skipped: ${missing}`)
  yield* Console.log(PythonClient.format(yield* PythonClient.compare({ root: Path.resolve("."), rounds: Number(rounds), seconds: Number(seconds) })))
}).pipe(Effect.provide(NodeServices.layer), NodeRuntime.runMain)
