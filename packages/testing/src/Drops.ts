/** `droppedActions()` as a test expects it: every reason 0 but those given. */
import type { ClientDrops } from "@chiral/core"

export const drops = (some: Partial<ClientDrops>): ClientDrops => ({
  late: 0,
  replaced: 0,
  overflow: 0,
  robotSilent: 0,
  stalled: 0,
  disconnected: 0,
  earlierConnection: 0,
  reset: 0,
  ...some
})
