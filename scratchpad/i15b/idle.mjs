import { Effect, Duration } from "effect"
import * as Cadence from "../../packages/core/dist/Cadence.js"
const mode = process.argv[2]
if (mode === "interval") setInterval(() => {}, 33.333)
if (mode === "cadence") Effect.runFork(Effect.repeat(Effect.void, Cadence.fixed(Duration.millis(1000 / 30))))
if (mode === "sleep") Effect.runFork(Effect.forever(Effect.sleep(Duration.millis(1000 / 30))))
setTimeout(() => process.exit(0), 14000)
