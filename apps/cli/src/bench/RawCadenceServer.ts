/**
 * The robot of the plain-socket action baseline (`RawCadence`), run as a
 * child process so that its event loop is a process of its own, as a
 * robot's is. Plain Node (no Effect): a `node:net` server where byte 1 asks
 * for one `bytes`-byte answer (the observation) and byte 2 followed by a
 * little-endian uint32 is action number n, stamped on arrival with the
 * monotonic clock (`process.hrtime`, shared by the processes of a machine).
 * Over IPC: it sends `{ port }` once listening; asked "arrivals", it answers
 * `{ arrivals: [[n, ms], …] }`. It exits when its parent goes.
 *
 * It answers from one buffer that never changes, as `chiral bench`'s
 * simulated robot does (its frames are written once and handed over without
 * a copy, `SimulatedRobot`): neither robot copies camera data per frame.
 */
import { monotonicMillis as now } from "@chiral/core/PreciseTimer"
import * as Net from "node:net"

const bytes = Number(process.argv[2])
const host = process.argv[3] ?? "127.0.0.1"

const payload = Buffer.allocUnsafeSlow(bytes)
for (let i = 0; i < bytes; i++) payload[i] = (i * 31) & 255
const arrivals: Array<readonly [number, number]> = []

const server = Net.createServer((socket) => {
  socket.setNoDelay(true)
  let pending: Buffer = Buffer.alloc(0)
  socket.on("data", (chunk: Buffer) => {
    const at = now()
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    let i = 0
    while (i < pending.length) {
      if (pending[i] === 1) {
        socket.write(payload)
        i++
      } else if (pending[i] === 2) {
        if (pending.length - i < 5) break
        arrivals.push([pending.readUInt32LE(i + 1), at])
        i += 5
      } else {
        socket.destroy(new Error(`unexpected byte ${pending[i]}`))
        return
      }
    }
    pending = pending.subarray(i)
  })
  socket.on("error", () => socket.destroy())
})
server.listen(0, host, () => process.send?.({ port: (server.address() as Net.AddressInfo).port }))
process.on("message", (message) => {
  if (message === "arrivals") process.send?.({ arrivals })
})
process.on("disconnect", () => process.exit(0))
