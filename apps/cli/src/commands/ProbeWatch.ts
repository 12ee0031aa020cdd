/**
 * `chiral probe --watch`: the live health check of a robot. Requests an
 * observation every 1/hz s (the obs stream's fixed grid) and prints one line
 * per second until interrupted: the observation rate, the round trip's p50
 * and max, failed requests, the connection's state (and how long a request
 * has waited for its answer, once that is over 1 s) and how many times the
 * client has reconnected. While the client reconnects the requests pause; the
 * lines keep coming, so a restart of the robot shows from a shell.
 */
import { Cadence, type PolicyClient } from "@chiral/core"
import { Cause, Console, Duration, Effect, Exit, Option, Stream, SubscriptionRef } from "effect"

/** One second's report, as `--json` prints it (one object per line). */
export interface WatchLine {
  /** Wall-clock time of the report (ISO 8601). */
  readonly time: string
  /** Observations received in the last second, per second. */
  readonly obs_hz: number
  /** Round trip of those requests, ms (null when none came back). */
  readonly latency_ms: { readonly p50: number | null; readonly max: number | null }
  /** Requests that failed in the last second (timed out, or no connection). */
  readonly failed: number
  readonly state: PolicyClient.ConnectionState
  /**
   * How long the robot has answered nothing on the live connection, s, from
   * the first request sent after its last answer and across requests that
   * timed out, once that is over 1 s (null otherwise): a robot that stopped
   * answering (its process stopped, a loop blocked) keeps its connection
   * open, so `state` stays `connected` until keepalive gives it up.
   */
  readonly unanswered_s: number | null
  readonly reconnects: number
}

/** A request unanswered this long (ms) is said on the line. */
const unansweredAfterMillis = 1000

interface Window {
  started: number
  latencies: Array<number>
  failed: number
}

const p50 = (values: ReadonlyArray<number>): number | null => {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)]!
}

const round = (x: number | null, digits = 2) => x === null ? null : Number(x.toFixed(digits))

const ms = (x: number | null) => x === null ? "—" : `${x < 10 ? x.toFixed(2) : x.toFixed(1)} ms`

export const formatLine = (line: WatchLine): string =>
  `${line.time.slice(11, 19)}  obs ${line.obs_hz.toFixed(1)} Hz  latency p50 ${ms(line.latency_ms.p50)}  max ${
    ms(line.latency_ms.max)
  }  failed ${line.failed}  ${line.state}${
    line.unanswered_s === null ? "" : ` (no answer for ${line.unanswered_s.toFixed(1)} s)`
  }  reconnects ${line.reconnects}`

/** Runs until interrupted; `json`: one `WatchLine` object per line. */
export const watch = (client: PolicyClient.PolicyClientApi, hz: number, json: boolean): Effect.Effect<never> =>
  Effect.gen(function*() {
    let window: Window = { started: performance.now(), latencies: [], failed: 0 }
    /**
     * Since when the robot has answered nothing (performance.now() ms): the
     * first request sent after its last answer, kept across requests that
     * time out; undefined once it answers, or while there is no connection.
     */
    let waitingSince: number | undefined
    const timed = Effect.suspend(() => {
      const start = performance.now()
      waitingSince ??= start
      return client.getObs.pipe(
        Effect.onExit((exit) =>
          Effect.sync(() => {
            if (Exit.isSuccess(exit)) window.latencies.push(performance.now() - start)
            const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : Option.none()
            if (Option.isSome(error)) window.failed++
            // Only a request that timed out on the live connection goes on the silence: anything
            // else came back (an answer, one that could not be read) or had no connection to wait on.
            const timedOut = Option.exists(error, (e) => e.reason === "Timeout")
            if (!timedOut || SubscriptionRef.getUnsafe(client.connectionState) !== "connected") {
              waitingSince = undefined
            }
          })
        )
      )
    })
    const connected = SubscriptionRef.changes(client.connectionState).pipe(
      Stream.filter((state) => state === "connected"),
      Stream.runHead
    )
    // Requests on the grid; without a connection, wait for the next one.
    const requests = Effect.flatMap(Cadence.periodOf(hz), (period) =>
      Cadence.untilDisconnected("probe --watch", timed, period).pipe(
        Effect.andThen(connected),
        Effect.forever
      ))
    yield* Effect.forkChild(requests)

    const report = Effect.gen(function*() {
      const now = performance.now()
      const done = window
      window = { started: now, latencies: [], failed: 0 }
      const seconds = Math.max(1e-3, (now - done.started) / 1000)
      const line: WatchLine = {
        time: new Date().toISOString(),
        obs_hz: Number((done.latencies.length / seconds).toFixed(1)),
        latency_ms: {
          p50: round(p50(done.latencies)),
          max: round(done.latencies.length === 0 ? null : Math.max(...done.latencies))
        },
        failed: done.failed,
        state: yield* SubscriptionRef.get(client.connectionState),
        unanswered_s: waitingSince === undefined || now - waitingSince < unansweredAfterMillis ||
            SubscriptionRef.getUnsafe(client.connectionState) !== "connected"
          ? null
          : round((now - waitingSince) / 1000, 1),
        reconnects: yield* SubscriptionRef.get(client.reconnects)
      }
      yield* Console.log(json ? JSON.stringify(line) : formatLine(line))
    })
    // One line per second, on a grid from the start.
    yield* Effect.sleep(Duration.seconds(1))
    yield* Effect.repeat(report, Cadence.fixed(Duration.seconds(1)))
    return yield* Effect.never
  })
