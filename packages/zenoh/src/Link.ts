/**
 * A TCP link: one `node:net` socket as a scoped resource with a pull-based reader that yields
 * whole batches and a writer that hands buffers to the kernel without copying them.
 *
 * Reading: the socket flows into a small inbox and is paused once the inbox holds `highWaterMark`
 * bytes that nobody pulled, so a slow consumer pushes back on the sender through TCP.
 * A link we connect reads into reused memory (`ReadMemory`, through `onread`; unless `connect`
 * is given `reuseReadMemory: false`): a fresh 64 KiB chunk per read is what cost an observation
 * received into recycled memory its page faults (fresh memory costs ~24× a copy into touched
 * memory here), and with a fresh buffer per message the reads in 64 KiB steps made a 17 MB round
 * trip slower (`chiral bench --protocol zenoh`, 5 alternating rounds:
 * p50 13–20 → 10–16 ms, p99 28–54 → 24–38 ms, ~120 MB less resident). Batches are lent
 * (`readLease`) and the memory under them comes back once released. An accepted socket cannot
 * be given `onread` (`net.Server` has no such option), so a listener's links keep Node's chunk
 * per read, and their batches are the holder's to keep.
 * Writing queues each call's chunks behind the ones before, so the batches of one message —
 * every fragment of it — go out back to back even when several fibers send; the returned Effect
 * waits until the last buffer was handed to the kernel, after which the caller may reuse it. A
 * message that fits 2 MiB with nothing queued is written at once (corked, one `writev`); a larger
 * one goes over several turns of the event loop (`bytesPerTurn`), so the robot's thread reads an
 * action that arrives meanwhile. Paced so (`chiral bench --protocol zenoh`, 8 cameras, 3
 * alternating rounds at 100 Hz against the whole message in one corked write): the robot's
 * loop's 1 ms timer p99 2.0–2.3 against 3.9–4.4 ms, action |jitter| p99 2.1–2.9 against
 * 3.5–4.9 ms, round trip p50 level (4.8–5.0 against 5.1–5.2 ms); 2 rounds at 30 Hz level. An
 * earlier pacing by loop turns alone (neither starting in an immediate nor waiting for the
 * socket to write the turn before) was measured worse: round trip p50 10.5 against 9.5 ms,
 * jitter p99 6.2 against 4.8 (10 rounds at 30 Hz, on a slower boot).
 */
import { Effect, Scope } from "effect"
import * as Net from "node:net"
import { BatchSplitter } from "./Batch.js"
import { totalLength } from "./Fragmenter.js"
import { type BatchLease, copyOut, owned, ReadMemory } from "./ReadMemory.js"
import { ZenohLinkError } from "./ZenohError.js"

export interface Link {
  /** `host:port` of the remote end, for errors and logs. */
  readonly peer: string
  /** The next batch body, in memory of its own (a copy); fails when the connection ends (cleanly or not). */
  readonly readBatch: Effect.Effect<Uint8Array, ZenohLinkError>
  /**
   * The next batch body as views of the received memory (no copy; usually one part), lent: unless
   * `owned`, the parts are valid until `release` and must be copied to be kept. Release it as soon
   * as the bytes were used: the memory under it is reused only then.
   */
  readonly readLease: Effect.Effect<BatchLease, ZenohLinkError>
  /**
   * The next batch body as views that stay valid for good (their memory is never reused, so this
   * costs fresh memory on a link that reads into reused memory; prefer `readLease`).
   */
  readonly readBatchParts: Effect.Effect<ReadonlyArray<Uint8Array>, ZenohLinkError>
  /**
   * Queues `chunks` when called (not when the result runs), behind what was queued before: the
   * order of calls is the order on the wire, and no other call's chunks come between them. The returned Effect waits until the last chunk was
   * handed to the kernel and fails when the link closed first; interrupting it does not take the
   * write back (a Zenoh sequence number was spent on it).
   */
  readonly send: (chunks: ReadonlyArray<Uint8Array>) => Effect.Effect<void, ZenohLinkError>
  /** Ends the write side after queued data, waiting at most `timeoutMillis`, then destroys the socket. */
  readonly close: (timeoutMillis: number) => Effect.Effect<void>
  /** Destroys the socket at once. */
  readonly destroy: () => void
  readonly isOpen: () => boolean
  /** Bytes received and not yet returned as batches (for diagnostics; at most about `highWaterMark` while nobody pulls). */
  readonly unread: () => number
  /** The batch being received, when its bytes have only partly arrived (for diagnostics). */
  readonly incomplete: () => { readonly announced: number; readonly received: number } | undefined
}

/**
 * Bytes received and not yet taken as batches at which reading pauses: about one large
 * observation (8 cameras 640×480 + depth: 17.2 MB). With 4 MiB, once the waiting bytes were
 * counted in full, a client reassembling into fresh memory fell ~0.5 Hz behind a 30 Hz stream
 * (3 alternating rounds); with 16 MiB it kept up as before.
 */
const DEFAULT_HIGH_WATER_MARK = 16 * 1024 * 1024

export const peerName = (socket: Net.Socket): string => {
  const host = socket.remoteAddress ?? "?"
  const name = host.includes(":") ? `[${host}]` : host
  return `${name}:${socket.remotePort ?? "?"}`
}

/**
 * Wraps a connected socket. The scope destroys the socket when it closes (a graceful `close`
 * should have run first when there was something left to say).
 */
export const fromSocket = (
  socket: Net.Socket,
  options?: { readonly highWaterMark?: number | undefined }
): Effect.Effect<Link, never, Scope.Scope> => fromSocketReading(socket, undefined, options?.highWaterMark)

/**
 * `fromSocket` for a socket created with `onread` from `intake` (see `readingInto`), or with `data`
 * events when `intake` is undefined.
 */
const fromSocketReading = (
  socket: Net.Socket,
  intake: Intake | undefined,
  highWaterMark = DEFAULT_HIGH_WATER_MARK
): Effect.Effect<Link, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => makeUnsafe(socket, intake, highWaterMark)),
    (link) => Effect.sync(link.destroy)
  )

const makeUnsafe = (socket: Net.Socket, intake: Intake | undefined, highWaterMark: number): Link => {
  const peer = peerName(socket)
  socket.setNoDelay(true)
  const reader = makeReader(socket, peer, highWaterMark, intake)
  const isOpen = () => !socket.destroyed && socket.writable

  const destroy = () => {
    if (!socket.destroyed) socket.destroy()
    reader.endWith("connection closed locally")
  }

  const sender = makeSend(socket, peer, isOpen)

  const close: Link["close"] = (timeoutMillis) =>
    Effect.callback<void>((resume) => {
      if (socket.destroyed) return resume(Effect.void)
      sender.flush()
      socket.end(() => resume(Effect.void))
    }).pipe(
      Effect.timeoutOrElse({ duration: timeoutMillis, orElse: () => Effect.void }),
      Effect.ensuring(Effect.sync(destroy))
    )

  return {
    peer,
    readBatch: Effect.map(reader.readLease, copyOut),
    readLease: reader.readLease,
    readBatchParts: Effect.map(reader.readLease, (lease) => lease.parts),
    send: sender.send,
    close,
    destroy,
    isOpen,
    unread: reader.unread,
    incomplete: reader.incomplete
  }
}

/**
 * Reads of a socket created with `onread` (`readingInto`): the memory they go into, and where
 * their chunks go (held here until the link's reader attaches).
 */
interface Intake {
  readonly memory: ReadMemory
  readonly early: Array<Uint8Array>
  deliver: (chunk: Uint8Array) => void
}

/** Bytes per read block: a few 64 KiB batches, and reads of up to that much at once. */
const READ_BLOCK = 256 * 1024

/**
 * Reused read memory for a socket about to be created: pass `onread` to `Net.createConnection`
 * and `intake` to `fromSocketReading`. Enough free blocks are kept to refill a full inbox.
 */
const readingInto = (highWaterMark = DEFAULT_HIGH_WATER_MARK): { intake: Intake; onread: Net.OnReadOpts } => {
  const memory = new ReadMemory({ blockSize: READ_BLOCK, maxFree: Math.ceil(highWaterMark / READ_BLOCK) + 2 })
  const early: Array<Uint8Array> = []
  const intake: Intake = { memory, early, deliver: (chunk) => early.push(chunk) }
  const onread: Net.OnReadOpts = {
    buffer: memory.nextReadBuffer,
    callback: (n: number, buffer: Uint8Array) => {
      intake.deliver(memory.filled(n, buffer))
      return true
    }
  }
  return { intake, onread }
}

/** How a link's read error starts when the peer opened with HTTP (see `httpOpening`). */
export const speaksHttp = "the peer speaks HTTP"

/**
 * The first line of `chunk` when it opens an HTTP request or response (a web
 * or WebSocket peer on a Zenoh port, or a Zenoh client pointed at a web
 * port), else undefined. Never a Zenoh opening: a first batch is an INIT of a
 * few dozen bytes, and these letters as its length would announce 17–22 KB.
 */
export const httpOpening = (chunk: Uint8Array): string | undefined => {
  const head = Buffer.from(chunk.buffer, chunk.byteOffset, Math.min(chunk.byteLength, 96)).toString("latin1")
  if (!/^(HTTP\/\d|(GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|TRACE) \S)/.test(head)) return undefined
  const line = head.split("\r\n", 1)[0]!
  return line.length > 60 ? `${line.slice(0, 60)}…` : line
}

/**
 * The reading half: received chunks wait in an inbox (the socket is paused while it holds
 * `highWaterMark` bytes nobody pulled), and are cut into batches on demand. With an `intake`
 * the chunks are views of reused memory: they hold their block until the splitter passed them,
 * and each batch is lent (`ReadMemory.lease`) from the moment it is cut, so bytes read meanwhile
 * never land under it. Without, they are Node's own chunks and each batch is the holder's.
 */
const makeReader = (socket: Net.Socket, peer: string, highWaterMark: number, intake: Intake | undefined) => {
  const memory = intake?.memory
  const splitter = new BatchSplitter(memory?.passed)
  let inboxBytes = 0
  const inbox: Array<Uint8Array> = []
  let paused = false
  let ended: ZenohLinkError | undefined
  let waiter: ((effect: Effect.Effect<BatchLease, ZenohLinkError>) => void) | undefined

  const wake = () => {
    if (waiter === undefined) return
    const next = nextBatch()
    if (next === undefined) return
    const resume = waiter
    waiter = undefined
    resume(next)
  }

  const endWith = (reason: string, cause?: unknown) => {
    ended ??= new ZenohLinkError({ peer, operation: "read", reason, cause })
    wake()
  }

  /** Bytes received and not yet taken as batches: in the inbox and in the splitter. */
  const unread = () => splitter.pending + inboxBytes
  // The first bytes say whether the peer speaks HTTP; such a peer's bytes are not batches.
  let opened = false
  let http = false
  const received = (chunk: Uint8Array) => {
    if (http) return
    if (!opened) {
      opened = true
      const line = httpOpening(chunk)
      if (line !== undefined) {
        http = true
        return endWith(`${speaksHttp} ("${line}")`)
      }
    }
    inbox.push(chunk)
    inboxBytes += chunk.length
    if (unread() >= highWaterMark && !paused) {
      paused = true
      socket.pause()
    }
    wake()
  }
  if (intake === undefined) socket.on("data", received)
  else {
    intake.deliver = received
    for (const chunk of intake.early.splice(0)) received(chunk)
  }
  socket.on("end", () => endWith("connection closed by the peer"))
  socket.on("error", (error) => endWith(error.message, error))
  socket.on("close", () => endWith("connection closed"))

  /** A batch if one is complete, the end-of-stream failure if nothing more can come, else undefined. */
  const nextBatch = (): Effect.Effect<BatchLease, ZenohLinkError> | undefined => {
    if (inbox.length > 0) {
      for (const chunk of inbox) splitter.push(chunk)
      inbox.length = 0
      inboxBytes = 0
    }
    const body = splitter.nextParts()
    // What waits here counts, pulled or not: a consumer that pulls steadily but slower than
    // the sender must not let it grow. Without a whole batch waiting, reading must go on.
    if (paused && (body === undefined || splitter.pending < highWaterMark)) {
      paused = false
      socket.resume()
    }
    if (body !== undefined) return Effect.succeed(memory === undefined ? owned(body) : memory.lease(body))
    if (ended !== undefined) {
      const pending = splitter.pending
      splitter.clear()
      memory?.settle()
      return Effect.fail(
        pending > 0
          ? new ZenohLinkError({
            peer,
            operation: "read",
            reason: `connection ended inside a batch (${pending} bytes of an incomplete batch)`
          })
          : ended
      )
    }
    return undefined
  }

  const readLease: Link["readLease"] = Effect.callback<BatchLease, ZenohLinkError>((resume) => {
    const next = nextBatch()
    if (next !== undefined) return resume(next)
    waiter = resume
    return Effect.sync(() => {
      if (waiter === resume) waiter = undefined
    })
  })

  const incomplete: Link["incomplete"] = () => {
    const announced = splitter.announced
    const received = splitter.pending + inboxBytes - 2
    return announced === undefined || received >= announced ? undefined : { announced, received }
  }

  return { readLease, unread, incomplete, endWith }
}

/**
 * Bytes of queued chunks handed to the socket per turn of the event loop (at least one chunk). A
 * 17 MB reply written in one go holds the robot's thread for the whole copy into the kernel
 * (~0.3 ms per megabyte here, up to 12 ms under load), and an action arriving meanwhile waits
 * that long to be read. See `WsConnection`'s `fragmentBytesPerTurn` for the same pacing.
 */
const bytesPerTurn = 2 * 1024 * 1024

type Written = (error?: Error | null) => void

/** `first` (if any), then `second`, for one write's callback. */
const both = (first: Written | undefined, second: Written): Written =>
  first === undefined ? second : (error) => {
    first(error)
    second(error)
  }

/** A `send` not yet wholly handed to the socket. */
interface Queued {
  readonly chunks: ReadonlyArray<Uint8Array>
  /** The next chunk to hand over. */
  next: number
  /** Called back with the last chunk's write (the kernel took it), or with why it never will be. */
  readonly done: Written
}

/**
 * The writing half. Each call queues its chunks behind the ones before, in order: a message
 * that fits one turn (`bytesPerTurn`) with nothing queued is written at once, corked, as one
 * `writev`; a larger one goes over several turns, the first in an immediate (one queued from an
 * I/O callback, such as the request just read, runs before the loop polls again), each later one
 * once the last chunk of the turn before was written (its own write's callback: Node emits
 * 'drain' only after a write that filled its buffer, never after a small one left waiting) and
 * the loop has polled since. The Effect waits for the last chunk's callback (the kernel took it)
 * or fails when the link closed first. `flush` hands over all that is queued at once (before
 * the write side is ended).
 */
const makeSend = (socket: Net.Socket, peer: string, isOpen: () => boolean) => {
  const queue: Array<Queued> = []
  let scheduled = false

  const failAll = (error: Error) => {
    for (const queued of queue.splice(0)) queued.done(error)
  }

  /**
   * Hands queued chunks to the socket, corked, up to `limit` bytes (at least one chunk); the last
   * chunk of a turn that leaves more queued is written with `turnWritten`. Whether more is queued.
   */
  const handOver = (limit: number): boolean => {
    let handed = 0
    socket.cork()
    try {
      while (queue.length > 0) {
        const head = queue[0]!
        const chunk = head.chunks[head.next++]!
        handed += chunk.byteLength
        const entryDone = head.next === head.chunks.length
        const following = entryDone ? queue[1]?.chunks[0] : head.chunks[head.next]
        const turnEnds = following !== undefined && handed + following.byteLength > limit
        const entryWritten = entryDone ? head.done : undefined
        socket.write(chunk, turnEnds ? both(entryWritten, turnWritten) : entryWritten)
        if (entryDone) queue.shift()
        if (turnEnds) return true
      }
      return false
    } finally {
      socket.uncork()
    }
  }

  /** `handOver`, where a throw leaves part of a message on the wire: nothing after it could be read. */
  const handOverOrDestroy = (limit: number): boolean => {
    try {
      return handOver(limit)
    } catch (cause) {
      socket.destroy()
      failAll(cause instanceof Error ? cause : new Error(String(cause)))
      return false
    }
  }

  const turnWritten: Written = (error) => {
    if (error !== undefined && error !== null) {
      socket.destroy()
      scheduled = false
      return failAll(error)
    }
    setImmediate(() => setImmediate(turn))
  }
  const turn = () => {
    if (!isOpen()) {
      scheduled = false
      return failAll(new Error("the connection is closed"))
    }
    if (!handOverOrDestroy(bytesPerTurn)) scheduled = false
  }

  const enqueue = (chunks: ReadonlyArray<Uint8Array>, done: Written): boolean => {
    if (!isOpen()) return false
    if (chunks.length === 0) {
      done()
      return true
    }
    queue.push({ chunks, next: 0, done })
    if (scheduled) return true
    if (queue.length === 1 && totalLength(chunks) <= bytesPerTurn) {
      handOverOrDestroy(Number.POSITIVE_INFINITY)
      return true
    }
    scheduled = true
    setImmediate(turn)
    return true
  }

  const send: Link["send"] = (chunks) => {
    // Outcome of the flush, recorded by the write callback; the Effect reads or awaits it.
    let outcome: Effect.Effect<void, ZenohLinkError> | undefined
    let resume: ((effect: Effect.Effect<void, ZenohLinkError>) => void) | undefined
    const settle = (effect: Effect.Effect<void, ZenohLinkError>) => {
      if (outcome !== undefined) return
      outcome = effect
      resume?.(effect)
    }
    const failed = (reason: string, cause?: unknown) =>
      Effect.fail(new ZenohLinkError({ peer, operation: "write", reason, cause }))
    const queued = enqueue(chunks, (error) => settle(error ? failed(error.message, error) : Effect.void))
    if (!queued) settle(failed("the connection is closed"))
    return Effect.callback<void, ZenohLinkError>((r) => {
      if (outcome !== undefined) return r(outcome)
      resume = r
    })
  }

  const flush = () => {
    if (queue.length > 0 && isOpen()) handOverOrDestroy(Number.POSITIVE_INFINITY)
  }

  return { send, flush }
}

/** The code of a socket error (`ECONNREFUSED`, `ENOTFOUND`, …), if it has one. */
const codeOf = (error: Error): string | undefined => {
  const code = (error as NodeJS.ErrnoException).code
  return typeof code === "string" ? code : undefined
}

/**
 * Connects to `host:port`; the socket is destroyed when the scope closes. It reads into reused
 * memory (see `readLease`), or with `reuseReadMemory: false` into Node's fresh chunk per read
 * (every batch then the holder's to keep); `highWaterMark` (bytes, default 16 MiB) is where
 * reading pauses. `lookup` resolves a host name (`net.connect`'s; default the system's
 * resolver). A failure carries the socket error's `code` (`ENOTFOUND` for a name that does not
 * resolve); a timeout before the name was resolved says so, with `code` `ETIMEOUT`.
 */
export const connect = (options: {
  readonly host: string
  readonly port: number
  readonly timeoutMillis: number
  readonly highWaterMark?: number | undefined
  readonly reuseReadMemory?: boolean | undefined
  readonly lookup?: Net.LookupFunction | undefined
}): Effect.Effect<Link, ZenohLinkError, Scope.Scope> => {
  const peer = `${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}`
  // An IP address needs no resolving; a name is resolved once `lookup` is emitted without an error.
  let resolved = Net.isIP(options.host) !== 0
  return Effect.acquireRelease(
    Effect.callback<{ readonly socket: Net.Socket; readonly intake: Intake | undefined }, ZenohLinkError>((resume) => {
      const reading = options.reuseReadMemory === false ? undefined : readingInto(options.highWaterMark)
      const socket = Net.createConnection({
        host: options.host,
        port: options.port,
        onread: reading?.onread,
        ...(options.lookup === undefined ? {} : { lookup: options.lookup })
      })
      const intake = reading?.intake
      socket.on("lookup", (error: Error | null) => {
        if (error === null) resolved = true
      })
      const onError = (error: Error) => {
        socket.destroy()
        resume(
          Effect.fail(
            new ZenohLinkError({ peer, operation: "connect", reason: error.message, code: codeOf(error), cause: error })
          )
        )
      }
      socket.once("error", onError)
      socket.once("connect", () => {
        socket.off("error", onError)
        // Until the Link attaches its own handler, an early error must not crash the process.
        socket.on("error", () => {})
        resume(Effect.succeed({ socket, intake }))
      })
      return Effect.sync(() => socket.destroy())
    }).pipe(
      Effect.timeoutOrElse({
        duration: options.timeoutMillis,
        orElse: () =>
          Effect.fail(
            resolved
              ? new ZenohLinkError({ peer, operation: "connect", reason: `timed out after ${options.timeoutMillis} ms` })
              : new ZenohLinkError({
                peer,
                operation: "connect",
                reason: `no answer from the resolver within ${options.timeoutMillis} ms`,
                code: "ETIMEOUT"
              })
          )
      })
    ),
    ({ socket }) => Effect.sync(() => socket.destroy())
  ).pipe(Effect.flatMap(({ intake, socket }) => fromSocketReading(socket, intake, options.highWaterMark)))
}

/**
 * Listens on `host:port` and calls `onConnection` for every accepted socket. The server stops
 * when the scope closes; accepted sockets are the callback's to own.
 */
export const listen = (options: {
  readonly host: string
  readonly port: number
  readonly onConnection: (socket: Net.Socket) => void
}): Effect.Effect<{ readonly host: string; readonly port: number }, ZenohLinkError, Scope.Scope> => {
  const name = `${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}`
  // Sockets still open when the server stops are destroyed, or `server.close` would wait for them.
  const accepted = new Set<Net.Socket>()
  return Effect.acquireRelease(
    Effect.callback<Net.Server, ZenohLinkError>((resume) => {
      const server = Net.createServer({ noDelay: true }, (socket) => {
        socket.on("error", () => {}) // the Link reports errors once it wraps the socket
        accepted.add(socket)
        socket.once("close", () => accepted.delete(socket))
        options.onConnection(socket)
      })
      const onError = (error: Error) => {
        server.close()
        resume(Effect.fail(new ZenohLinkError({ peer: name, operation: "listen", reason: error.message, cause: error })))
      }
      server.once("error", onError)
      server.listen({ host: options.host, port: options.port }, () => {
        server.off("error", onError)
        server.on("error", () => {})
        resume(Effect.succeed(server))
      })
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        for (const socket of accepted) socket.destroy()
      })
  ).pipe(
    Effect.map((server) => {
      const address = server.address() as Net.AddressInfo
      return { host: address.address, port: address.port }
    })
  )
}
