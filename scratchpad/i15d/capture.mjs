// node scratchpad/i15d/capture.mjs PORT FILE: one obs_response from the server on PORT, as sent, into FILE
// (what apps/cli/dist/bench/FloorServer.js PORT2 FILE answers with).
import * as Fs from "node:fs"
import { Effect } from "effect"
import { captureReply } from "../../apps/cli/dist/bench/PythonClient.js"
const [port, file] = process.argv.slice(2)
Fs.writeFileSync(file, await Effect.runPromise(captureReply(Number(port))))
