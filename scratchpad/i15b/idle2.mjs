import { Effect, Duration, Scheduler } from "effect"
const mode = process.argv[2]
const period = 1000 / 30
const cbSleep = Effect.callback((resume) => { const t = setTimeout(() => resume(Effect.void), period); return Effect.sync(() => clearTimeout(t)) })
if (mode === "callback") Effect.runFork(Effect.forever(cbSleep))
if (mode === "callback-loop") Effect.runFork(Effect.whileLoop({ while: () => true, body: () => cbSleep, step: () => {} }))
if (mode === "sleep-sync-sched") Effect.runFork(Effect.forever(Effect.sleep(Duration.millis(period))).pipe(Effect.provideService(Scheduler.Scheduler, new Scheduler.MixedScheduler("sync"))))
if (mode === "callback-sync-sched") Effect.runFork(Effect.forever(cbSleep).pipe(Effect.provideService(Scheduler.Scheduler, new Scheduler.MixedScheduler("sync"))))
setTimeout(() => process.exit(0), 14000)
