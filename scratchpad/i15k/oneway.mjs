// One-way latency of a small message between two idle Node processes over
// loopback TCP (Nagle off), sent on a grid at HZ (timer 2 ms early, then a
// spin to the due time, as chiral's dispatcher does). Nothing else runs: what
// a 5-byte action costs on this machine before any robot or transport work.
//   node scratchpad/i15k/oneway.mjs HZ [COUNT]
// Prints "n N one-way ms p50 … p90 … p99 … max …" (monotonic clock, shared by both processes).
import net from "node:net"
import { spawn } from "node:child_process"

const now = () => Number(process.hrtime.bigint()) / 1e6
const quantiles = (xs) => {
  xs.sort((a, b) => a - b)
  const q = (p) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))].toFixed(3)
  return `n ${xs.length} one-way ms p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} max ${q(1)}`
}

if (process.argv[2] === "receiver") {
  const latencies = []
  const server = net.createServer((socket) => {
    socket.setNoDelay(true)
    socket.on("data", (data) => {
      const at = now()
      for (const line of data.toString().split("\n")) if (line) latencies.push(at - Number(line))
    })
    socket.on("end", () => {
      console.log(quantiles(latencies))
      process.exit(0)
    })
  }).listen(0, "127.0.0.1", () => console.log(server.address().port))
} else {
  const hz = Number(process.argv[2] ?? 10)
  const count = Number(process.argv[3] ?? hz * 10)
  const receiver = spawn(process.execPath, [new URL(import.meta.url).pathname, "receiver"], { stdio: ["ignore", "pipe", "inherit"] })
  receiver.stdout.once("data", (port) => {
    const socket = net.connect(Number(port.toString()), "127.0.0.1", () => {
      socket.setNoDelay(true)
      receiver.stdout.pipe(process.stdout)
      const start = now()
      let k = 0
      const tick = () => {
        const due = start + ++k * 1000 / hz
        setTimeout(() => {
          while (now() < due);
          socket.write(now() + "\n")
          if (k < count) tick()
          else socket.end()
        }, Math.max(0, due - now() - 2))
      }
      tick()
    })
  })
}
