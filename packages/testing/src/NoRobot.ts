// A client transport with no robot behind it: every connect fails at once
// with an InvalidAddress TransportError, which PolicyClient does not retry,
// so making a client through it fails straight away (after what making a
// client does first, such as warming its thread's young generation).
import { ClientTransport, TransportError } from "@chiral/core"
import { Effect } from "effect"

export const address = "nowhere"

export const clientTransport = ClientTransport.of({
  address,
  connect: Effect.fail(new TransportError({ reason: "InvalidAddress", address, detail: "no such robot" })),
  waitingMessage: `waiting for ${address}`
})
