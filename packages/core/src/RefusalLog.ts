/**
 * How the robot's refusals of clients (`onConnect` failing) are logged. A
 * refused client reconnects by itself, again and again until it is let in
 * (`ClientConnection`: about once a second at the default schedule's cap),
 * and a warning with the handler error's stack at each attempt buried the
 * robot's log. So a refusal is said once per host and reason, at warning
 * level and in one line; the same refusal again is a debug line, counted;
 * and when that host's client is let in, its "connection opened" line says
 * how many refusals came before.
 *
 * The stack is kept where it helps: the warning for a defect in `onConnect`
 * (it threw, or died) carries its cause.
 */
import { Cause, Effect } from "effect"
import * as CloseReason from "./CloseReason.js"
import type { Connection } from "./Transport.js"

/** Hosts remembered at once; beyond that the oldest is forgotten (its next refusal is a warning again). */
const maxHosts = 256

export interface RefusalLog {
  /** Logs the refusal of `connection` for `cause` (`onConnect`'s failure). */
  readonly refused: (connection: Connection, cause: Cause.Cause<unknown>) => Effect.Effect<void>
  /**
   * `connection` was let in: forgets its host's refusals, and says how many
   * there were (" after 7 refusals"; "" when none).
   */
  readonly admitted: (connection: Connection) => string
}

/** The host of a peer (`host:port`, `[v6]:port`), which a reconnecting client keeps while its port changes. */
export const hostOf = (peer: string): string => peer.replace(/:\d+$/, "")

/**
 * A refusal's reason as repeats are told apart: a peer's port, which changes
 * at every reconnection, left out (`refused 10.0.0.7:51234` and `refused
 * 10.0.0.7:51240` are the same refusal).
 */
export const sameReason = (reason: string): string =>
  reason.replace(/(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]|localhost):\d{1,5}\b/g, "$1")

/** Reasons remembered per host; beyond, the oldest is forgotten. */
const maxReasons = 8

export const make = (): RefusalLog => {
  // host → the reasons said for it, and the refusals since it was last let in
  const hosts = new Map<string, { readonly said: Set<string>; count: number }>()
  const hostFor = (connection: Connection) => hostOf(connection.peer ?? connection.id)
  return {
    refused: (connection, cause) =>
      Effect.suspend(() => {
        const host = hostFor(connection)
        let refusals = hosts.get(host)
        if (refusals === undefined) {
          if (hosts.size >= maxHosts) hosts.delete(hosts.keys().next().value!)
          refusals = { said: new Set(), count: 0 }
          hosts.set(host, refusals)
        }
        refusals.count++
        const reason = CloseReason.messageOf(cause)
        const key = sameReason(reason)
        // A shared connection (a Zenoh router's session) is not closed: its clients go unanswered.
        const outcome = connection.shared === true ? "its messages go unanswered (a shared connection stays open)" : "closing it"
        if (refusals.said.has(key)) {
          return Effect.logDebug(
            `chiral: onConnect refused ${connection.id}: ${reason}; ${outcome} (${refusals.count} refusals of ${host} since it was last let in)`
          )
        }
        if (refusals.said.size >= maxReasons) refusals.said.delete(refusals.said.values().next().value!)
        refusals.said.add(key)
        const line =
          `chiral: onConnect refused ${connection.id}: ${reason}; ${outcome} (the same refusal of ${host} again is logged at debug level)`
        // A failure is how onConnect refuses; a defect (it threw, or died) may be a bug, whose stack helps.
        return Cause.hasDies(cause) ? Effect.logWarning(line, cause) : Effect.logWarning(line)
      }),
    admitted: (connection) => {
      const host = hostFor(connection)
      const count = hosts.get(host)?.count ?? 0
      hosts.delete(host)
      return count === 0 ? "" : ` after ${count} refusal${count === 1 ? "" : "s"}`
    }
  }
}
