import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import * as P from "@chiral/protocol"

it.effect("smoke", () => Effect.sync(() => { assert.isDefined(P) }))
