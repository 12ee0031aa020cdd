/**
 * The policy of the plain-socket action baseline (`RawCadence`), plain Node
 * on worker threads (no Effect: heaps next to empty). The stream thread
 * connects, asks for an observation at `obsHz` on a fixed grid and reads
 * each into one reused buffer (`onread`: only the kernel copies); the tick
 * thread writes action n (5 bytes) to the same socket's descriptor at tick n
 * of its grid, as a dispatcher worker writes to the policy's connection,
 * timed by the dispatchers' own `PreciseTimer` (which imports nothing).
 */
import * as PreciseTimer from "@chiral/core/PreciseTimer"
import * as Fs from "node:fs"
import * as Net from "node:net"
import { parentPort, Worker, workerData } from "node:worker_threads"

export interface StreamJob {
  readonly role: "stream"
  readonly port: number
  readonly host: string
  readonly bytes: number
  readonly obsHz: number
  readonly actionHz: number
  readonly ticks: number
  /** How long the stream runs before the first tick, ms. */
  readonly settleMillis: number
}

interface TickJob {
  readonly role: "ticks"
  readonly fd: number
  readonly hz: number
  readonly ticks: number
  /** Tick 0's time, monotonic ms. */
  readonly origin: number
}

export interface StreamReport {
  /** Tick 0's time (monotonic ms); tick n is due n periods later. */
  readonly origin: number
  /** Each observation: when it was asked for and when its last byte arrived (monotonic ms). */
  readonly transfers: ReadonlyArray<readonly [number, number]>
}

const now = PreciseTimer.monotonicMillis
/** How long an action may wait for room in the socket before the run fails (ms): the robot stopped reading. */
const fullSocketMillis = 5000
const sleeper = new Int32Array(new SharedArrayBuffer(4))

const runTicks = (job: TickJob) => {
  const period = 1000 / job.hz
  const message = Buffer.alloc(5)
  message[0] = 2
  let n = 0
  const next = () => {
    if (n >= job.ticks) return parentPort!.postMessage("done")
    PreciseTimer.at(job.origin + n * period, () => {
      message.writeUInt32LE(n, 1)
      // The socket is non-blocking: when its buffer is full, wait a millisecond
      // at a time for the kernel to take it, for at most `fullSocketMillis`.
      const giveUp = now() + fullSocketMillis
      for (let written = 0; written < message.length;) {
        try {
          written += Fs.writeSync(job.fd, message, written)
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "EAGAIN" || now() > giveUp) throw error
          Atomics.wait(sleeper, 0, 0, 1)
        }
      }
      n++
      next()
    })
  }
  next()
}

const runStream = (job: StreamJob) => {
  const target = Buffer.allocUnsafeSlow(job.bytes)
  const spill = Buffer.allocUnsafeSlow(64 * 1024)
  const transfers: Array<readonly [number, number]> = []
  let received = job.bytes
  let asked = 0
  let streaming = true
  let done = false
  let onAnswer: (() => void) | undefined
  let ticks: Worker | undefined
  // The first failure is the run's: the tick thread stops, the report says why.
  const fail = (error: Error) => {
    if (done) return
    done = true
    // as in `finish`: the tick thread ends before the descriptor is closed
    void (ticks?.terminate() ?? Promise.resolve(0)).then(() => socket.destroy())
    parentPort!.postMessage({ error: error.message })
  }
  const socket = Net.connect({
    host: job.host,
    port: job.port,
    onread: {
      buffer: () => (received < job.bytes ? target.subarray(received) : spill),
      callback: (n) => {
        received += n
        if (received >= job.bytes && onAnswer !== undefined) {
          const answered = onAnswer
          onAnswer = undefined
          answered()
        }
        return true
      }
    }
  })
  socket.setNoDelay(true)
  const period = 1000 / job.obsHz
  socket.once("connect", () => {
    const start = now()
    let slot = 0
    const ask = () => {
      asked = now()
      received = 0
      onAnswer = () => {
        transfers.push([asked, now()])
        if (!streaming) return
        slot = Math.max(slot + 1, Math.ceil((now() - start) / period))
        setTimeout(ask, Math.max(0, start + slot * period - now()))
      }
      socket.write(request)
    }
    ask()
    const origin = start + job.settleMillis
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd
    const tickThread = new Worker(new URL(import.meta.url), {
      workerData: { role: "ticks", fd, hz: job.actionHz, ticks: job.ticks, origin } satisfies TickJob
    })
    ticks = tickThread
    // The tick thread writes to this socket's descriptor: the socket is
    // destroyed only once that thread has ended, so no write can reach a
    // descriptor number the process has reused.
    socket.once("close", () => {
      if (!done) fail(new Error("the baseline's robot closed the connection"))
    })
    tickThread.once("message", () => {
      streaming = false
      const finish = () => {
        done = true
        void tickThread.terminate().then(() => {
          socket.destroy()
          parentPort!.postMessage({ origin, transfers } satisfies StreamReport)
        })
      }
      if (onAnswer === undefined) finish()
      else {
        const last = onAnswer
        onAnswer = () => {
          last()
          finish()
        }
      }
    })
    tickThread.once("error", fail)
  })
  socket.once("error", fail)
}

const request = new Uint8Array([1])
const job = workerData as StreamJob | TickJob
if (job.role === "ticks") runTicks(job)
else runStream(job)
