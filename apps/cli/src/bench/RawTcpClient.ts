/**
 * The raw-TCP baseline's client, plain Node (no Effect: it runs on a worker
 * thread whose heap must stay next to empty, see `RawTcp.connect`). It reads
 * (`onread`) straight into one fresh buffer per answer, so the only copy is
 * the kernel's.
 */
import * as Net from "node:net"

/** A buffer of `size` bytes whose contents are never read before being written (no zero-fill). */
const scratch = (size: number): Uint8Array => Buffer.allocUnsafeSlow(size)

export type RawClientReply = { readonly ready: true } | { readonly ms: number } | { readonly error: string }

/** Connects; `onReady` once connected (or with why not). */
export const startClient = (
  options: { readonly port: number; readonly bytes: number; readonly host: string },
  onReady: (error?: Error) => void
): { readonly roundTrip: (done: (error: Error | undefined, ms: number) => void) => void } => {
  const bytes = options.bytes
  let target = scratch(1)
  let received = bytes
  let done: ((error?: Error) => void) | undefined
  const spill = scratch(64 * 1024)
  const socket = Net.connect({
    host: options.host,
    port: options.port,
    onread: {
      // Where the next read lands: the rest of the current answer, or a spill
      // buffer between answers (never empty: a zero-length read buffer fails).
      buffer: () => (received < bytes ? target.subarray(received) : spill),
      callback: (n, buffer) => {
        // A read that landed in the spill buffer (the first of an answer) is copied over.
        if (buffer === spill && received < bytes) target.set(spill.subarray(0, Math.min(n, bytes - received)), received)
        received += n
        if (received >= bytes && done !== undefined) {
          const finish = done
          done = undefined
          finish()
        }
        return true
      }
    }
  })
  socket.setNoDelay(true)
  socket.once("connect", () => onReady())
  socket.once("error", (error) => {
    const finish = done
    done = undefined
    if (finish !== undefined) finish(error)
    else onReady(error)
  })
  return {
    roundTrip: (finished) => {
      target = scratch(bytes)
      received = 0
      const start = performance.now()
      done = (error) => finished(error, performance.now() - start)
      socket.write(request)
    }
  }
}

const request = new Uint8Array([1])
