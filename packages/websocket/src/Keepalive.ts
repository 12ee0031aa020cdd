/**
 * Server-side liveness: a ping every `interval`, and a peer that then stays
 * silent for `timeout` (no pong, no message, no ping of its own) is cut off.
 * The references get the same from the Python websockets library's defaults
 * (`ping_interval=20`, `ping_timeout=20`, closing with 1011 "keepalive ping
 * timeout"), so a frozen, half-open or vanished client is noticed within
 * interval + timeout.
 *
 * Only whole frames count as hearing from the peer: the bytes of an
 * unfinished frame do not, so a connection stalled in the middle of a frame
 * (or dribbling one) is closed by the same rule, and a pong cannot arrive
 * inside a frame that never ends.
 *
 * While the server itself has stopped reading the socket (its reader is
 * paused because this client's earlier frames are still being worked
 * through), the peer's answer cannot be seen; the connection is then not
 * judged, and the next round checks again.
 */
import type * as NodeWS from "@effect/platform-node/NodeWS"
import { Duration, Effect, type Scope } from "effect"
import { describe } from "./WsConnection.js"

export interface KeepaliveOptions {
  /** Time between pings. 0 turns keepalive off. Default 20 s (python websockets' `ping_interval`). */
  readonly pingInterval?: Duration.Input | undefined
  /** How long after a ping the peer may stay silent. Default 20 s (python websockets' `ping_timeout`). */
  readonly pingTimeout?: Duration.Input | undefined
}

export const defaultPingInterval = Duration.seconds(20)
export const defaultPingTimeout = Duration.seconds(20)

/**
 * The interval and timeout; undefined when keepalive is off (interval 0 or
 * infinite); a message saying why when a duration is negative or malformed.
 */
export const resolve = (
  options: KeepaliveOptions
): { readonly interval: Duration.Duration; readonly timeout: Duration.Duration } | string | undefined => {
  const interval = Duration.fromInput(options.pingInterval ?? defaultPingInterval)
  const timeout = Duration.fromInput(options.pingTimeout ?? defaultPingTimeout)
  if (interval._tag === "None" || Duration.toMillis(interval.value) < 0) {
    return `pingInterval ${String(options.pingInterval)}: expected a duration ≥ 0`
  }
  if (timeout._tag === "None" || !(Duration.toMillis(timeout.value) > 0)) {
    return `pingTimeout ${String(options.pingTimeout)}: expected a positive duration`
  }
  if (Duration.isZero(interval.value) || !Duration.isFinite(interval.value)) return undefined
  return { interval: interval.value, timeout: timeout.value }
}

/** Resumes after the event loop has polled for I/O once (`setImmediate` runs after the poll phase). */
const ioTurn = Effect.callback<void>((resume) => {
  const immediate = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(immediate))
})

/**
 * Pings `ws` every `interval` for as long as the scope is open; when the peer
 * stays silent for `timeout` after a ping, logs why, closes it with 1011 and
 * cuts the socket (a silent peer will not finish a close handshake), then
 * returns.
 */
export const run = (
  ws: NodeWS.WebSocket,
  id: string,
  settings: { readonly interval: Duration.Duration; readonly timeout: Duration.Duration }
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    let heard = false
    let onHeard: (() => void) | undefined
    const hear = () => {
      heard = true
      onHeard?.()
    }
    ws.on("pong", hear)
    ws.on("ping", hear)
    ws.on("message", hear)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        ws.off("pong", hear)
        ws.off("ping", hear)
        ws.off("message", hear)
      })
    )
    const answered = Effect.callback<void>((resume) => {
      if (heard) return resume(Effect.void)
      onHeard = () => resume(Effect.void)
      return Effect.sync(() => {
        onHeard = undefined
      })
    })
    const timeoutText = Duration.format(settings.timeout)
    while (true) {
      yield* Effect.sleep(settings.interval)
      heard = false
      try {
        ws.ping()
      } catch {
        return // the socket is closing; its reader reports how
      }
      yield* Effect.timeoutOption(answered, settings.timeout)
      onHeard = undefined
      // Timers run before I/O in each turn of the event loop: after a stall of
      // this process (a long GC, a busy machine, SIGSTOP) the timeout can fire
      // while the pong waits unread in the socket. Let I/O run first.
      if (!heard) yield* Effect.andThen(ioTurn, ioTurn)
      if (heard || ws.isPaused) continue
      yield* Effect.logWarning(`chiral: no answer from ${id} within ${timeoutText} of a ping: closing it (keepalive timeout)`)
      try {
        ws.close(1011, "keepalive ping timeout")
      } catch (cause) {
        yield* Effect.logDebug(`chiral: close of ${id} failed: ${describe(cause)}`)
      }
      ws.terminate()
      return
    }
  })
