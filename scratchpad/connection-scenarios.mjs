// The client-side scenarios of issue 10, against a real `chiral serve` child
// process, for any build of the repo (to compare before and after):
//
//   node scratchpad/connection-scenarios.mjs ROOT frozen SECONDS [PING]   # SIGSTOP the server for SECONDS
//   node scratchpad/connection-scenarios.mjs ROOT restart [PING]          # SIGKILL it, start it again
//
// ROOT is a built checkout (`npm run build`); PING is "interval,timeout" in
// seconds for the WebSocket client (default: the client's own defaults).
// Prints one JSON object. The server logs every applied action with its
// camera timestamps (`--log-actions`); an action is stale when it is applied
// more than 1 s after the newest capture it was computed from (both on the
// monotonic clock the server stamps with).
import { spawn } from "node:child_process"

const [root, scenario, ...rest] = process.argv.slice(2)
const freezeSeconds = scenario === "frozen" ? Number(rest[0]) : 0
const pingArg = scenario === "frozen" ? rest[1] : rest[0]
const ping = pingArg === undefined ? {} : (([i, t]) => ({ pingInterval: `${i} seconds`, pingTimeout: `${t} seconds` }))(pingArg.split(",").map(Number))
const port = 24000 + Math.floor(Math.random() * 900)
const uri = `ws://127.0.0.1:${port}`

const { Effect, Exit, Logger, SubscriptionRef } = await import(`${root}/node_modules/effect/dist/index.js`)
const { PolicyClient } = await import(`${root}/packages/core/dist/index.js`)
const { WebSocketTransport } = await import(`${root}/packages/websocket/dist/index.js`)

const nowSeconds = () => Number(process.hrtime.bigint()) / 1e9
const applied = [] // { at, staleness, value }
const logs = []

const startServer = () =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [
      `${root}/apps/cli/dist/main.js`, "serve", "--host", "127.0.0.1", "--port", String(port),
      "--cameras", "1", "--size", "64x48", "--fps", "30", "--log-actions"
    ], { stdio: ["ignore", "pipe", "pipe"] })
    let pending = ""
    child.stdout.on("data", (chunk) => {
      pending += chunk.toString()
      let nl
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl)
        pending = pending.slice(nl + 1)
        if (!line.startsWith("{")) continue
        const at = nowSeconds()
        const { action, obs_timestamps } = JSON.parse(line)
        const newest = Math.max(...Object.values(obs_timestamps).map(Number))
        applied.push({ at, staleness: Number.isFinite(newest) ? at - newest : NaN, value: action[0] })
      }
    })
    child.stderr.on("data", (chunk) => {
      if (chunk.toString().includes("listening on")) resolve(child)
    })
  })

const logger = Logger.make(({ logLevel, message }) => {
  logs.push(`${(nowSeconds()).toFixed(1)} ${logLevel}: ${Array.isArray(message) ? message.join(" ") : String(message)}`)
})

const row = (v) => [v, 0, 0, 0, 0, 0, 0]
const get = (ref) => ref === undefined ? undefined : SubscriptionRef.getUnsafe(ref)

const frozen = (client, server) =>
  Effect.gen(function*() {
    yield* client.startObsStream(30)
    yield* Effect.exit(client.putActions(Array.from({ length: 10 * (freezeSeconds + 60) }, (_, i) => row(i))))
    yield* client.startActionDispatch(10)
    yield* Effect.sleep("3 seconds")
    const stopped = nowSeconds()
    server.kill("SIGSTOP")
    let detectedAfter = null
    for (let t = 0; t < freezeSeconds * 10; t++) {
      yield* Effect.sleep("100 millis")
      if (detectedAfter === null && get(client.connectionState) !== undefined && get(client.connectionState) !== "connected") {
        detectedAfter = nowSeconds() - stopped
      }
    }
    const sentBeforeResume = get(client.dispatched)
    const resumed = nowSeconds()
    server.kill("SIGCONT")
    yield* Effect.sleep("8 seconds")
    // a new plan after the resume: does it reach the robot?
    const put = yield* Effect.exit(client.putActions([10_000, 10_001, 10_002].map(row)))
    yield* Effect.sleep("2 seconds")
    const afterResume = applied.filter((a) => a.at >= resumed)
    const stale = afterResume.filter((a) => a.staleness > 1)
    return {
      scenario: `server frozen (SIGSTOP) for ${freezeSeconds} s`,
      ping: pingArg ?? "client default",
      detected_after_s: detectedAfter === null ? null : Number(detectedAfter.toFixed(1)),
      applied_before_freeze: applied.filter((a) => a.at < stopped).length,
      stale_applied_at_resume: stale.length,
      stale_max_s: stale.length === 0 ? null : Number(Math.max(...stale.map((a) => a.staleness)).toFixed(1)),
      stale_burst_ms: stale.length === 0 ? null : Math.round((Math.max(...stale.map((a) => a.at)) - Math.min(...stale.map((a) => a.at))) * 1000),
      client_dispatched_before_resume: sentBeforeResume,
      client_dropped: client.droppedActions === undefined ? "n/a" : (yield* client.droppedActions),
      new_plan_after_resume: Exit.isSuccess(put) ? "accepted" : `refused: ${put.cause}`,
      new_plan_applied: applied.filter((a) => a.value >= 10_000).length,
      state_at_end: get(client.connectionState) ?? "n/a",
      reconnects: get(client.reconnects) ?? "n/a"
    }
  })

const restart = (client, server) =>
  Effect.gen(function*() {
    yield* Effect.exit(client.putActions(Array.from({ length: 300 }, (_, i) => row(i))))
    yield* client.startActionDispatch(10)
    yield* Effect.sleep("3 seconds")
    const killed = nowSeconds()
    server.kill("SIGKILL")
    yield* Effect.sleep("500 millis")
    // while the server is down
    const putWhileDown = yield* Effect.exit(client.putActions([20_000, 20_001].map(row)))
    const pendingWhileDown = yield* client.pendingActions
    const getObsWhileDown = yield* Effect.exit(client.getObs)
    yield* Effect.sleep("1 second")
    const next = yield* Effect.promise(startServer)
    const restarted = nowSeconds()
    let ok = 0
    let failed = 0
    let firstOkAfter = null
    for (let i = 0; i < 50; i++) {
      const exit = yield* Effect.exit(client.getObs)
      if (Exit.isSuccess(exit)) {
        ok++
        if (firstOkAfter === null) firstOkAfter = nowSeconds() - restarted
      } else failed++
      yield* Effect.sleep("100 millis")
    }
    const afterRestart = applied.filter((a) => a.at >= restarted)
    return {
      result: {
        scenario: "server killed (SIGKILL), restarted 1.5 s later on the same port",
        put_actions_while_down: Exit.isSuccess(putWhileDown) ? "succeeded" : String(putWhileDown.cause).split("\n")[0],
        pending_actions_while_down: pendingWhileDown,
        get_obs_while_down: Exit.isSuccess(getObsWhileDown) ? "succeeded" : String(getObsWhileDown.cause).split("\n")[0],
        get_obs_after_restart: `${ok} of ${ok + failed} succeeded`,
        first_success_after_restart_s: firstOkAfter === null ? null : Number(firstOkAfter.toFixed(2)),
        old_actions_applied_by_new_server: afterRestart.filter((a) => a.value < 20_000).length,
        client_dropped: client.droppedActions === undefined ? "n/a" : (yield* client.droppedActions),
        reconnects: get(client.reconnects) ?? "n/a",
      },
      next
    }
  })

let server = await startServer()
const program = Effect.gen(function*() {
  const client = yield* PolicyClient.make({ quiet: true, ...(process.env.REQUEST_TIMEOUT ? { requestTimeout: `${process.env.REQUEST_TIMEOUT} seconds` } : {}) })
  if (scenario === "frozen") return yield* frozen(client, server)
  const { next, result } = yield* restart(client, server)
  server = next
  return result
}).pipe(
  Effect.scoped,
  Effect.provide(WebSocketTransport.layerClient(uri, ping)),
  Effect.provide(Logger.layer([logger]))
)
const result = await Effect.runPromise(program).catch((error) => ({ error: String(error) }))
server.kill("SIGKILL")
console.log(JSON.stringify({ root, ...result, client_log: logs }, null, 2))
process.exit(0)
