/**
 * Every action passes this gate before a handler sees it: validation
 * (`ActionSpec`: finite values, shape, bounds), the stale-action guard
 * (`ActionGuard`: age of its newest obs timestamp), and, when one controlling
 * client at a time is asked for, the controller check; in that order, so an
 * invalid action is reported as invalid whoever sent it. An accepted action
 * feeds the watchdog and the stats; a refused one is counted and logged once
 * per burst: the first refusal of a run from one connection is logged with
 * its reason, the rest are counted, and the run's total is logged when it
 * ends (an action from that connection is accepted, or it closes).
 *
 * Transport-independent: the same gate protects WebSocket and Zenoh robots,
 * and reference clients as well as ours (they send the same obs_timestamps).
 */
import type { Observation, ObsTimestamps, Tensor } from "@chiral/protocol"
import { Clock, Duration, Effect, Schema, type Scope } from "effect"
import * as ActionGuard from "./ActionGuard.js"
import * as ActionSpec from "./ActionSpec.js"
import { type ActionStats, Counters, type RefusalReason, refusalReasons } from "./ActionStats.js"
import * as CameraState from "./CameraState.js"
import { ConfigError } from "./SensorError.js"
import * as Watchdog from "./Watchdog.js"

export interface ActionGateConfig {
  /** The robot's action spec; without one only non-finite values are refused. */
  readonly actionSpec?: ActionSpec.ActionSpec | undefined
  /** Drop actions whose newest obs timestamp is older than this on arrival. Default: no limit. */
  readonly maxActionAge?: Duration.Input | undefined
  /** Actions with `obs_timestamps: {}` when `maxActionAge` is set. Default "accept" (see `ActionGuard`). */
  readonly unstampedActions?: ActionGuard.UnstampedActions | undefined
  /**
   * One controlling client at a time: the first connection whose action is
   * accepted takes control and keeps it until it closes; actions and resets
   * from the others are refused (reason `notController`) while their
   * observation and metadata requests are still answered. A client's other
   * connections (`Connection.client`: our Zenoh client's dispatcher session
   * and its own) share its control. Default false.
   */
  readonly singleController?: boolean | undefined
  /** The watchdog: once actions have been arriving, a gap this long runs `onActionTimeout`. Default: off. */
  readonly actionTimeout?: Duration.Input | undefined
}

/** An action the gate refused; it never reached a handler. */
export class ActionRefused extends Schema.TaggedError<ActionRefused>()("ActionRefused", {
  reason: Schema.Literals(["stale", "invalid", "notController"]),
  /** The connection it came from. */
  connection: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `${this.reason} action from ${this.connection}: ${this.detail}`
  }
}

export interface ConnectionGate {
  /** Succeeds when the action may go to the handler; a refusal is already counted and logged. */
  readonly admit: (action: Tensor, obsTimestamps: ObsTimestamps) => Effect.Effect<void, ActionRefused>
  /**
   * Counts and logs `count` actions from this connection dropped because a
   * newer one arrived with them (`NewestAction`); they never reach `admit`.
   * `kept`: the newer one's obs timestamps (its age is said with the burst).
   */
  readonly supersede: (count: number, kept: ObsTimestamps) => Effect.Effect<void>
  /**
   * Counts and logs `count` actions from this connection that were waiting to
   * be applied when it ended (`NewestAction`); they never reach `admit`.
   */
  readonly disconnected: (count: number) => Effect.Effect<void>
  /**
   * Succeeds when this connection may reset the robot. A reset moves the
   * robot as an action does: with one controlling client
   * (`singleController`), a client without control may not reset while
   * another has it (refused with reason `notController`, logged here; no
   * action is counted).
   */
  readonly admitReset: Effect.Effect<void, ActionRefused>
  /** Counts an accepted action whose handler failed (the connection logs the failure). */
  readonly failed: Effect.Effect<void>
  /** Runs the handler of an accepted action as activity for the watchdog (`Watchdog.whileApplying`). */
  readonly whileApplying: <A, E, R>(apply: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Runs an admitted reset as activity for the watchdog (`Watchdog.whileResetting`). */
  readonly whileResetting: <A, E, R>(reset: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** An observation about to be sent to a client: the oldest camera stamps the server gave bound what it may be sent back (`ActionGuard.judge`). */
  readonly served: (obs: Observation) => void
  /**
   * Actions from this connection accepted (their handler's failures
   * included), whose handler failed, refused by the gate, and superseded so far.
   */
  readonly counts: () => {
    readonly accepted: number
    readonly failed: number
    readonly refused: number
    readonly superseded: number
    /** Waiting to be applied when the connection ended. */
    readonly disconnected: number
  }
}

export interface ActionGate {
  /** The gate of one connection; closing the scope ends its bursts and releases control. */
  readonly open: (connection: Watchdog.ConnectionInfo) => Effect.Effect<ConnectionGate, never, Scope.Scope>
  readonly stats: Effect.Effect<ActionStats>
  /** The connection in control (`singleController`), if any. */
  readonly controller: Effect.Effect<Watchdog.ConnectionInfo | undefined>
}

const one: Record<RefusalReason, string> = {
  stale: "a stale action",
  invalid: "an invalid action",
  notController: "an action without control"
}
const many: Record<RefusalReason, string> = {
  stale: "stale actions",
  invalid: "invalid actions",
  notController: "actions without control"
}

/** Checks the config; the duration options must be positive. */
const durationOption = (name: string, input: Duration.Input | undefined) => {
  if (input === undefined) return undefined
  const duration = Duration.fromInput(input)
  if (duration._tag === "None" || !(Duration.toMillis(duration.value) > 0)) {
    return new ConfigError({ sensor: name, reason: `expected a positive duration, got ${String(input)}` })
  }
  return duration.value
}

/** The checks that do not depend on who holds control. */
interface Rules {
  readonly spec: ActionSpec.ActionSpec | undefined
  readonly maxAgeSeconds: number | undefined
  readonly dropUnstamped: boolean
  /** The robot's camera names: only their stamps came from its capture clock. */
  readonly cameras: ReadonlySet<string>
  /**
   * The earliest stamp of `camera` this server can have given (s): the older
   * of its first image written here and the oldest stamp it sent in an
   * observation (a `getObs` may stamp cameras itself); while it has neither,
   * when the server started (`ActionGuard.judge`).
   */
  readonly earliestStamp: (camera: string) => number | undefined
  /** Notes the camera stamps of an observation sent. */
  readonly served: (obs: Observation) => void
}

/** `Rules.earliestStamp` and `served`, from the cameras' first frames and the observations sent. */
const stampBounds = (firstFrameAt: (camera: string) => number | undefined, startedAt: number) => {
  const oldestServed = new Map<string, number>()
  return {
    earliestStamp: (camera: string): number | undefined => {
      const first = firstFrameAt(camera)
      const sent = oldestServed.get(camera)
      // nothing of it given yet: no stamp of it can be this server's, and none from before it started is
      return first === undefined ? sent ?? startedAt : sent === undefined ? first : Math.min(first, sent)
    },
    served: (obs: Observation): void => {
      for (const camera of obs.cameras) {
        const t = camera.timestamp
        if (!(t > 0)) continue
        const before = oldestServed.get(camera.name)
        if (before === undefined || t < before) oldestServed.set(camera.name, t)
      }
    }
  }
}

/**
 * The names in `obsTimestamps` that are not cameras of this robot, or
 * undefined when there are none (the usual case: no allocation).
 */
const unknownNames = (obsTimestamps: ObsTimestamps, cameras: ReadonlySet<string>): Array<string> | undefined => {
  let unknown: Array<string> | undefined
  for (const name in obsTimestamps) if (!cameras.has(name)) (unknown ??= []).push(name)
  return unknown
}

/** The entries of `obsTimestamps` under this robot's camera names. */
const camerasOnly = (obsTimestamps: ObsTimestamps, cameras: ReadonlySet<string>): ObsTimestamps => {
  const kept: Record<string, number> = {}
  for (const name in obsTimestamps) if (cameras.has(name)) kept[name] = obsTimestamps[name]!
  return kept
}

type Inspection =
  | { readonly refuse: RefusalReason; readonly detail: string }
  | { readonly refuse?: undefined; readonly ageSeconds: number | undefined }

/** Validation, then the stale-action guard, at `now` (seconds, capture clock). */
const inspect = (rules: Rules, action: Tensor, obsTimestamps: ObsTimestamps, now: number): Inspection => {
  const invalid = ActionSpec.problem(action, rules.spec)
  if (invalid !== undefined) return { refuse: "invalid", detail: invalid }
  const verdict = ActionGuard.judge(obsTimestamps, now, rules.maxAgeSeconds, rules.earliestStamp)
  switch (verdict._tag) {
    case "Invalid":
      return { refuse: "invalid", detail: verdict.detail }
    case "Stale":
      return { refuse: "stale", detail: verdict.detail }
    case "Unstamped":
      return rules.dropUnstamped
        ? { refuse: "stale", detail: "no obs timestamps, and unstampedActions is \"drop\"" }
        : { ageSeconds: undefined }
    case "Fresh":
      return { ageSeconds: verdict.ageSeconds }
  }
}

/**
 * One connection's runs of refusals: the first refusal of a run is logged
 * with its reason, the rest only counted, and the run's total is logged when
 * it ends.
 */
class Runs {
  private readonly counts: Record<RefusalReason, number> = { stale: 0, invalid: 0, notController: 0 }
  private open = 0
  private readonly id: string
  constructor(id: string) {
    this.id = id
  }

  /** Counts one refusal; the log line when it starts a run. */
  refused(reason: RefusalReason, detail: string): Effect.Effect<void> {
    if (this.counts[reason]++ > 0) return Effect.void
    this.open++
    return Effect.logWarning(
      `chiral: refused ${one[reason]} from ${this.id}: ${detail} (further ${many[reason]} from it are counted, and logged as one line when the run ends)`
    )
  }

  /** Ends every open run, logging the total of those longer than one. */
  end(): Effect.Effect<void> {
    if (this.open === 0) return Effect.void
    const lines: Array<string> = []
    for (const reason of refusalReasons) {
      const n = this.counts[reason]
      if (n > 1) lines.push(`chiral: ${n} ${many[reason]} from ${this.id} dropped in a row`)
      this.counts[reason] = 0
    }
    this.open = 0
    return Effect.forEach(lines, (line) => Effect.logWarning(line), { discard: true })
  }
}

/** After a connection's first burst, its bursts are summed into at most one line per this many ms. */
const burstReportMillis = 10_000

/**
 * One connection's bursts: actions that arrived together, of which only the
 * newest was applied. The first burst is logged at once; later ones are
 * summed into at most one line every 10 s, said when the 10 s are up
 * (`due`), and what is left when the connection closes into a last one. A
 * busy server (a 17 MB reply being written while actions arrive at 100 Hz)
 * can supersede an action every few ticks, and a line per burst would bury
 * everything else in the log.
 */
class Bursts {
  private bursts = 0
  private actions = 0
  private reportedAt: number | undefined
  private readonly id: string
  constructor(id: string) {
    this.id = id
  }

  /**
   * One burst in which `count` older actions were dropped, at `now` (ms);
   * `kept` says how old the newest's observation is, for the first line.
   */
  superseded(count: number, now: number, kept: () => string): Effect.Effect<void> {
    this.bursts++
    this.actions += count
    if (this.reportedAt !== undefined) return this.due(now)
    this.reportedAt = now
    this.bursts = 0
    this.actions = 0
    return Effect.logWarning(
      `chiral: ${count + 1} actions from ${this.id} arrived together (held up on their way: this server, or something between it and the client, was stopped, blocked or busy); kept the newest, ${kept()}, dropped the ${count} older as superseded (later bursts from it are summed up every ${burstReportMillis / 1000} s)`
    )
  }

  /**
   * When the bursts counted but not yet said are due to be said (ms, the
   * clock of `superseded`), or undefined when none wait.
   */
  dueAt(): number | undefined {
    return this.bursts === 0 || this.reportedAt === undefined ? undefined : this.reportedAt + burstReportMillis
  }

  /** Says the bursts counted since the last line if their time has come (`now`, ms). */
  due(now: number): Effect.Effect<void> {
    const at = this.dueAt()
    if (at === undefined || now < at) return Effect.void
    const since = at - burstReportMillis
    this.reportedAt = now
    return this.report(`in the last ${Math.round((now - since) / 1000)} s`)
  }

  /** Logs the bursts not yet reported. */
  end(): Effect.Effect<void> {
    return this.bursts === 0 ? Effect.void : this.report("before it closed")
  }

  /** One line for the bursts counted since the last report (`when`: over what time), and a fresh count. */
  private report(when: string): Effect.Effect<void> {
    const line = `chiral: ${this.bursts} ${
      this.bursts === 1 ? "burst" : "bursts"
    } of actions arriving together, ${this.actions} superseded from ${this.id} ${when}`
    this.bursts = 0
    this.actions = 0
    return Effect.logWarning(line)
  }
}

/** The config checked: the rules and the watchdog's timeout. */
const checkConfig = (
  config: ActionGateConfig,
  cameras: ReadonlyArray<string>,
  firstFrameAt: (camera: string) => number | undefined
) =>
  Effect.gen(function*() {
    const spec = config.actionSpec
    const invalidSpec = spec === undefined ? undefined : ActionSpec.validate(spec)
    if (invalidSpec !== undefined) return yield* invalidSpec
    const maxAge = durationOption("maxActionAge", config.maxActionAge)
    if (maxAge instanceof ConfigError) return yield* maxAge
    const timeout = durationOption("actionTimeout", config.actionTimeout)
    if (timeout instanceof ConfigError) return yield* timeout
    const rules: Rules = {
      spec,
      maxAgeSeconds: maxAge === undefined ? undefined : Duration.toMillis(maxAge) / 1000,
      dropUnstamped: maxAge !== undefined && config.unstampedActions === "drop",
      cameras: new Set(cameras),
      ...stampBounds(firstFrameAt, yield* CameraState.captureTime)
    }
    return { rules, timeout }
  })

/** What the connections of one server share. */
interface Shared {
  readonly rules: Rules
  readonly single: boolean
  readonly counters: Counters
  readonly watchdog: Watchdog.Watchdog | undefined
  /** The connection in control (`singleController`), if any. */
  controller: Watchdog.ConnectionInfo | undefined
  /** The connection whose action was accepted last, and when (s, capture clock). */
  lastActor: { readonly connection: Watchdog.ConnectionInfo; readonly at: number } | undefined
}

/**
 * Two connections whose actions are accepted within this many seconds of each
 * other are acting at once: without `singleController` their actions
 * interleave on the robot (a trial: a second policy started by mistake moved
 * the arm between the first one's targets, ~20 Hz of alternating commands,
 * with nothing in the log but two "connection opened" lines).
 */
const actingTogetherSeconds = 1

/**
 * The watchdog fired: a controller that has stopped acting loses control.
 * Its connection can stay open long after its client is gone (a half-open
 * TCP connection lasts until the keepalive gives it up, up to 40 s), and a
 * policy that reconnected meanwhile would be refused all that time. The
 * robot holds (`onActionTimeout`); the next client whose action is accepted
 * takes control, the silent one's own included.
 */
const lapseControl = (shared: Shared): Effect.Effect<void> =>
  Effect.suspend(() => {
    const controller = shared.controller
    if (controller === undefined) return Effect.void
    shared.controller = undefined
    return Effect.logWarning(`chiral: ${controller.id} lost control of the robot: it stopped acting (actionTimeout)`)
  })

/** The gate of one connection: its counts and runs of refusals, and control taken and released. */
const openConnection = (shared: Shared, connection: Watchdog.ConnectionInfo) =>
  Effect.gen(function*() {
    let accepted = 0
    let failed = 0
    let refused = 0
    let superseded = 0
    let ended = 0
    const runs = new Runs(connection.id)
    const bursts = new Bursts(connection.id)

    const refuse = (reason: RefusalReason, detail: string): Effect.Effect<never, ActionRefused> => {
      shared.counters.drop(reason)
      refused++
      return Effect.andThen(
        runs.refused(reason, detail),
        Effect.fail(new ActionRefused({ reason, connection: connection.id, detail }))
      )
    }

    let saidActingTogether = false
    /** Said once per connection: its actions are applied while another connection's are (any client may act). */
    const actingTogether = (now: number): Effect.Effect<void> => {
      const last = shared.lastActor
      shared.lastActor = { connection, at: now }
      if (shared.single || saidActingTogether || last === undefined || Watchdog.sameClient(last.connection, connection)) {
        return Effect.void
      }
      if (!(now - last.at < actingTogetherSeconds)) return Effect.void
      saidActingTogether = true
      return Effect.logWarning(
        `chiral: actions from ${connection.id} are being applied while ${last.connection.id}'s are: their actions interleave on the robot (any client may act; singleController, --single-controller, lets one act at a time)`
      )
    }

    const accept = (ageSeconds: number | undefined, now: number): Effect.Effect<void> => {
      shared.counters.accept(ageSeconds === undefined ? undefined : ageSeconds * 1000)
      accepted++
      let effect = Effect.andThen(runs.end(), actingTogether(now))
      if (shared.single && shared.controller === undefined) {
        shared.controller = connection
        effect = Effect.andThen(effect, Effect.logInfo(`chiral: ${connection.id} has control of the robot (single controller)`))
      }
      return shared.watchdog === undefined ? effect : Effect.andThen(effect, shared.watchdog.feed(connection))
    }

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const ended = Effect.andThen(runs.end(), bursts.end())
        // a client that reconnects acts after its own earlier connection, not beside it
        if (shared.lastActor?.connection === connection) shared.lastActor = undefined
        if (shared.controller !== connection) return ended
        shared.controller = undefined
        return Effect.andThen(ended, Effect.logInfo(`chiral: ${connection.id} released control of the robot`))
      })
    )

    /** With a single controller, the connection in control when it is another client's; undefined otherwise. */
    const otherInControl = (): Watchdog.ConnectionInfo | undefined => {
      const controller = shared.controller
      return shared.single && controller !== undefined && !Watchdog.sameClient(controller, connection) ? controller : undefined
    }

    let namedUnknown = false
    /**
     * Stamps under names that are not this robot's cameras did not come from
     * its capture clock (a client stamping with its own clock, say): they are
     * left out of the action's age, once logged per connection.
     */
    const ownStamps = (obsTimestamps: ObsTimestamps): readonly [ObsTimestamps, Effect.Effect<void>] => {
      // A server that declares no cameras (its getObs builds observations itself,
      // as `chiral replay` does, with another robot's recorded stamps) has no
      // capture clock to judge them by: all are left out, which is no news.
      if (shared.rules.cameras.size === 0) return [{}, Effect.void]
      const unknown = unknownNames(obsTimestamps, shared.rules.cameras)
      if (unknown === undefined) return [obsTimestamps, Effect.void]
      const warn = namedUnknown ? Effect.void : Effect.logWarning(
        `chiral: ${connection.id} stamps its actions with ${
          unknown.map((n) => JSON.stringify(n)).join(", ")
        }, not a camera of this robot (${
          [...shared.rules.cameras].join(", ") || "it has none"
        }): such stamps do not count in an action's age (logged once per connection)`
      )
      namedUnknown = true
      return [camerasOnly(obsTimestamps, shared.rules.cameras), warn]
    }

    const admit = (action: Tensor, stamps: ObsTimestamps): Effect.Effect<void, ActionRefused> =>
      Effect.flatMap(CameraState.captureTime, (now) => {
        const [obsTimestamps, warned] = ownStamps(stamps)
        const inspection = inspect(shared.rules, action, obsTimestamps, now)
        if (inspection.refuse !== undefined) return Effect.andThen(warned, refuse(inspection.refuse, inspection.detail))
        const controller = otherInControl()
        if (controller !== undefined) return Effect.andThen(warned, refuse("notController", `${controller.id} has control`))
        return Effect.andThen(warned, accept(inspection.ageSeconds, now))
      })

    /** How old the kept action's observation is, and what becomes of it: said with a burst, which is how late actions come. */
    const keptAge = (stamps: ObsTimestamps, now: number): string => {
      const verdict = ActionGuard.judge(camerasOnly(stamps, shared.rules.cameras), now, undefined)
      const limit = shared.rules.maxAgeSeconds
      if (verdict._tag === "Invalid") return `whose timestamps are not valid (${verdict.detail})`
      if (verdict._tag !== "Fresh") return "whose age cannot be told (no timestamps of this robot's cameras)"
      if (verdict.ageSeconds < 0) {
        return `stamped ${(-verdict.ageSeconds).toFixed(2)} s in the future (not this robot's capture clock)`
      }
      const age = `computed from an observation ${verdict.ageSeconds.toFixed(2)} s old`
      return limit === undefined
        ? `${age} (no maxActionAge: applied however old)`
        : `${age} (maxActionAge ${limit} s judges it)`
    }

    // Bursts counted but not said wait for their line at most 10 s, not for
    // the next burst or the close, which may be hours away. The timer arms
    // itself again when it finds nothing due yet: a burst may have said the
    // summary before the timer ran (late behind a busy event loop) and others
    // been counted since, or the wall clock stepped back while it slept.
    const scope = yield* Effect.scope
    let summaryArmed = false
    const armSummary = (now: number): Effect.Effect<void> => {
      const dueAt = bursts.dueAt()
      if (summaryArmed || dueAt === undefined) return Effect.void
      summaryArmed = true
      return Effect.sleep(Math.max(0, dueAt - now)).pipe(
        Effect.andThen(Clock.currentTimeMillis),
        Effect.flatMap((at) => {
          summaryArmed = false
          return Effect.andThen(bursts.due(at), armSummary(at))
        }),
        Effect.forkIn(scope),
        Effect.asVoid
      )
    }

    const supersede = (count: number, kept: ObsTimestamps): Effect.Effect<void> =>
      Effect.flatMap(Effect.zip(Clock.currentTimeMillis, CameraState.captureTime), ([now, capture]) => {
        shared.counters.drop("superseded", count)
        superseded += count
        return Effect.andThen(bursts.superseded(count, now, () => keptAge(kept, capture)), armSummary(now))
      })

    const disconnected = (count: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        shared.counters.drop("disconnected", count)
        ended += count
        return Effect.logWarning(
          `chiral: dropped ${count === 1 ? "an action" : `${count} actions`} from ${connection.id} that arrived as its connection ended, not applied`
        )
      })

    const admitReset = Effect.suspend(() => {
      const controller = otherInControl()
      if (controller === undefined) return Effect.void
      // short: the client is told it in a WebSocket close reason (123 bytes at most)
      const detail = `${controller.id} has control of the robot`
      return Effect.andThen(
        Effect.logWarning(`chiral: refused a reset from ${connection.id}: ${detail}`),
        Effect.fail(new ActionRefused({ reason: "notController", connection: connection.id, detail }))
      )
    })

    const handlerFailed = Effect.sync(() => {
      shared.counters.failed++
      failed++
    })

    return {
      admit,
      supersede,
      disconnected,
      admitReset,
      failed: handlerFailed,
      whileApplying: (apply) => shared.watchdog === undefined ? apply : shared.watchdog.whileApplying(connection, apply),
      whileResetting: (reset) => shared.watchdog === undefined ? reset : shared.watchdog.whileResetting(connection, reset),
      served: (obs) => shared.rules.served(obs),
      counts: () => ({ accepted, failed, refused, superseded, disconnected: ended })
    } satisfies ConnectionGate
  })

/**
 * Builds the gate of one server with `cameras` (their names) and when each
 * was first written (`firstFrameAt`). `onActionTimeout` runs when the
 * watchdog fires (after the gate has logged it).
 */
export const make = <R>(
  config: ActionGateConfig,
  onActionTimeout: (event: Watchdog.ActionTimeout) => Effect.Effect<void, unknown, R>,
  cameras: ReadonlyArray<string>,
  firstFrameAt: (camera: string) => number | undefined
): Effect.Effect<ActionGate, ConfigError, Scope.Scope | R> =>
  Effect.gen(function*() {
    const { rules, timeout } = yield* checkConfig(config, cameras, firstFrameAt)
    const watchdog = timeout === undefined ? undefined : yield* Watchdog.make(timeout, (event) =>
      Effect.andThen(
        Effect.logWarning(
          `chiral: no action for ${Duration.format(Duration.millis(Math.round(event.silentMillis)))} (the last from ${event.last.id}): running onActionTimeout`
        ),
        // suspended: a handler that throws instead of failing must not escape before the line and the lapse
        Effect.andThen(lapseControl(shared), Effect.suspend(() => onActionTimeout(event)))
      ))
    const shared: Shared = {
      rules,
      single: config.singleController === true,
      counters: new Counters(),
      watchdog,
      controller: undefined,
      lastActor: undefined
    }
    return {
      open: (connection) => openConnection(shared, connection),
      stats: Effect.sync(() => shared.counters.snapshot()),
      controller: Effect.sync(() => shared.controller)
    } satisfies ActionGate
  })
