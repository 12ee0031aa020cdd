/**
 * The actions waiting for dispatch. A sliding Queue: beyond `capacity` the
 * oldest waiting actions are dropped (they are the stalest), so a runaway
 * policy cannot grow memory without bound. `replace` swaps the whole plan in
 * one synchronous step, so the dispatcher never sees half an old chunk and half
 * a new one.
 */
import type { Tensor } from "@chiral/protocol"
import { Effect, Option, Queue } from "effect"
import { type Action, toTensor } from "./Action.js"

export type PutMode = "append" | "replace"

export interface ActionQueue {
  /** Appends one action. */
  readonly put: (action: Action) => Effect.Effect<void>
  /** Appends a chunk, or replaces everything waiting with it. */
  readonly putAll: (chunk: Iterable<Action>, mode?: PutMode) => Effect.Effect<void>
  /** The next action, if any (never waits). */
  readonly poll: Effect.Effect<Option.Option<Tensor>>
  readonly size: Effect.Effect<number>
  /** Drops every waiting action. */
  readonly clear: Effect.Effect<void>
}

export const defaultCapacity = 10_000

const drain = (queue: Queue.Queue<Tensor>): void => {
  while (Queue.takeUnsafe(queue) !== undefined) {
    // each take releases one slot
  }
}

export const make = (capacity = defaultCapacity): Effect.Effect<ActionQueue> =>
  Effect.map(Queue.sliding<Tensor>(capacity), (queue) => ({
    put: (action) =>
      Effect.sync(() => {
        Queue.offerUnsafe(queue, toTensor(action))
      }),
    putAll: (chunk, mode = "append") =>
      Effect.sync(() => {
        // convert first: a bad action must not leave the queue half replaced
        const actions = Array.from(chunk, toTensor)
        if (mode === "replace") drain(queue)
        Queue.offerAllUnsafe(queue, actions)
      }),
    poll: Queue.poll(queue),
    size: Queue.size(queue),
    clear: Effect.sync(() => drain(queue))
  }))
