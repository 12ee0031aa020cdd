/**
 * Buffers that are about to be overwritten completely need no zero-filling;
 * for a 17 MB frame the zero-fill costs about as much as the copy itself.
 * Node's allocUnsafeSlow gives such memory (unpooled, offset 0); elsewhere we
 * fall back to an ordinary, zeroed ArrayBuffer. Callers must write every byte.
 */
type BufferCtor = { allocUnsafeSlow(size: number): Uint8Array }

const nodeBuffer = (globalThis as { Buffer?: BufferCtor }).Buffer

/** Below this, zero-filling is cheap and a plain ArrayBuffer avoids the Buffer detour. */
const threshold = 4 * 1024

/** An ArrayBuffer of exactly `size` bytes whose contents are unspecified. */
export const uninitialized = (size: number): ArrayBuffer => {
  if (nodeBuffer === undefined || size < threshold) return new ArrayBuffer(size)
  const b = nodeBuffer.allocUnsafeSlow(size)
  // allocUnsafeSlow owns its ArrayBuffer outright (offset 0, exact length).
  return b.byteOffset === 0 && b.buffer.byteLength === size ? b.buffer as ArrayBuffer : new ArrayBuffer(size)
}

/**
 * glibc's ceiling for its dynamic mmap threshold, `DEFAULT_MMAP_THRESHOLD_MAX`
 * (4 MiB × sizeof(long) on 64-bit systems: 32 MiB; 512 KiB on 32-bit ones,
 * where this does nothing), less 64 KiB so that the mapped block, its header
 * and page rounding included, stays within it even with 64 KiB pages.
 */
const thresholdRaiser = 32 * 1024 * 1024 - 64 * 1024

let retaining = false

/** Frees `buffer`'s memory there and then (`transfer(0)`, ES2024), rather than at a later collection. */
const freeNow = (buffer: ArrayBuffer): void => {
  ;(buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer }).transfer?.(0)
}

/**
 * Asks the C allocator to keep more of the freed receive buffers for the next
 * ones instead of handing them back to the kernel, once per process (later
 * calls do nothing). A page the kernel maps afresh faults on its first write:
 * 4,200 minor faults for a wholly fresh 17.2 MB observation, which cost up to
 * 24× the copy into it on the 2-core machine of issue 15.
 *
 * glibc serves a block above its mmap threshold (128 KiB at first) with a
 * mapping of its own, unmapped on `free`, and once more than its trim
 * threshold (twice the mmap threshold) lies free at the top of its heap it
 * hands all of that back but 128 KiB. Freeing a mapped block of at most
 * 32 MiB raises the mmap threshold to that block's size (mallopt(3),
 * "M_MMAP_THRESHOLD": the dynamic threshold). A client's first freed 17.2 MB
 * observation does that by itself, and then every two freed together at the
 * heap's top (34.4 MB) were handed back; V8 frees received buffers in batches
 * (at each young-generation collection, every few observations). This raises
 * the thresholds as far as glibc goes, to just under 32 MiB and 64 MiB: it
 * allocates one block of just under 32 MiB, never touched (no page is faulted
 * in), and frees it at once (`transfer(0)` frees an ArrayBuffer's memory there
 * and then). Up to three 17.2 MB observations freed together then stay in the
 * process (four are handed back: `reserveHeapFor` keeps more), and messages
 * larger than 32 MiB are still mapped afresh each time. Measured (`chiral bench`, 8 cameras 640×480 + depth,
 * 6–15 s runs, WebSocket): 670–1750 client page faults per observation in five
 * runs of six before, 4–6 in twelve of twelve after.
 *
 * The settings are the process's, whoever allocates. Where more is freed at
 * once, or messages are larger, the environment can tell glibc at start-up:
 * `MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824` (see the
 * README's performance section); that, like any of `MALLOC_TRIM_THRESHOLD_`,
 * `MALLOC_TOP_PAD_`, `MALLOC_MMAP_MAX_` or their `GLIBC_TUNABLES` forms, turns
 * the dynamic threshold off, and this then does nothing. Elsewhere (musl,
 * macOS) it only maps and unmaps 32 MiB once.
 *
 * Only the main thread's heap benefits: a worker thread's allocations come
 * from a glibc arena of its own, whose heaps are unmapped whenever they fall
 * empty, so buffers received on another thread are better allocated on the
 * main thread (as the Zenoh client's session thread gets them).
 */
export const retainFreedBuffers = (): void => {
  if (retaining || nodeBuffer === undefined) return
  retaining = true
  try {
    freeNow(nodeBuffer.allocUnsafeSlow(thresholdRaiser).buffer as ArrayBuffer)
  } catch {
    // Out of address space (a strict overcommit policy): nothing is lost but the tuning.
  }
}

/** Messages smaller than this gain nothing from a reservation: sixteen of them fit under the trim threshold. */
const reserveFrom = 4 * 1024 * 1024

/** Messages a reservation has room for (a client's heap held 10–11 observations at once, measured). */
const reservedMessages = 12

/** Reservations a process makes, at most: each keeps its memory once used (see `reserveHeapFor`). */
const maxReservations = 3

/** The message size the last reservation made room for, headroom included (bytes). */
let reservedFor = 0

/** Blocks kept below the heap's top for good (never touched: address space only, no memory). */
const pins: Array<ArrayBuffer> = []

/**
 * Lays out room in the main heap for 12 messages of about `messageBytes`
 * below a block that stays, so that freed messages are never the heap's top
 * and are kept for the next ones: `retainFreedBuffers` keeps up to 64 MiB
 * freed together at the top, and V8 frees received buffers in batches (at each
 * young-generation collection) that at 17.2 MB a message went past that often
 * enough for the Zenoh client's heap to be trimmed and grown again about once
 * a second: 7–1790 page faults per observation by run, over 350 in about half
 * of them. With
 * the room laid out, 7–16 in every run (`chiral bench --protocol zenoh`, 8
 * cameras 640×480 + depth, 10–15 s runs; the README's performance section).
 *
 * How: it allocates the 12 messages' memory and then one more block, which
 * comes from the heap's top once the room has taken every free block large
 * enough, keeps that last block, and frees the 12: they form one free block
 * below it, which later messages are cut from (glibc hands out the smallest
 * free block that fits before it grows the heap). None of it is touched here
 * (a few pages of headers), so it takes no memory until messages are received
 * into it. What they used stays with the process for good, even after the
 * client disconnects: up to 12 messages' worth (206 MB at 17.2 MB), about as
 * much as the messages it held at once took anyway. Not guaranteed: where the
 * heap already had free blocks for the room and the last block too, or a
 * buffer was freed while it was being laid out (by a thread of V8's), the last
 * block lands elsewhere and the room is trimmed as before.
 *
 * Room for a size an eighth larger than asked (headers and alignment make
 * messages vary by a few bytes); a larger message lays out room again, at
 * most 3 times in a process (each room kept). Only for messages of 4 MiB
 * (fewer than 16 fit under the trim threshold) to 32 MiB (larger ones are
 * mapped on their own whatever is laid out); one room per process, shared by
 * its clients. On another C allocator it keeps one block of address space,
 * untouched, per call that lays out room.
 */
export const reserveHeapFor = (messageBytes: number): void => {
  if (nodeBuffer === undefined || messageBytes < reserveFrom || messageBytes > thresholdRaiser) return
  if (messageBytes <= reservedFor || pins.length >= maxReservations) return
  const roomFor = Math.min(thresholdRaiser, messageBytes + Math.ceil(messageBytes / 8))
  reservedFor = roomFor
  retainFreedBuffers()
  try {
    const room = Array.from({ length: reservedMessages }, () => uninitialized(roomFor))
    pins.push(uninitialized(roomFor))
    for (const block of room) freeNow(block)
  } catch {
    // Out of address space: nothing is lost but the layout.
  }
}

/**
 * Fresh memory for one received message of `size` bytes, every byte of which
 * the caller writes before it is read: `uninitialized` memory, after laying
 * out room for messages of its size (`reserveHeapFor`), so that it reuses
 * what earlier messages freed. On the thread that keeps the message (a worker
 * thread's heap is not kept: see `retainFreedBuffers`).
 */
export const freshMessage = (size: number): Uint8Array => {
  reserveHeapFor(size)
  return new Uint8Array(uninitialized(size))
}

/**
 * Whether this thread's young generation was warmed (`warmYoungGeneration`):
 * one flag per thread even when several copies of this package are loaded,
 * as `lending` is, so that a second copy does not pay for it again.
 */
const warmed = Symbol.for("@chiral/protocol/youngGenerationWarmed")

/** The V8 of this Node thread, or undefined elsewhere (Node before 22.3 has no `getBuiltinModule`). */
const nodeV8 = (): typeof import("node:v8") | undefined => {
  const process = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
  return process?.getBuiltinModule?.("node:v8") as typeof import("node:v8") | undefined
}

/**
 * Bytes V8 gives each element of an array: 8, or 4 in a build with pointer
 * compression (Node's own builds have none; Electron's do).
 */
const slotBytes = (): number => {
  const variables = (globalThis as { process?: { config?: { variables?: Record<string, unknown> } } }).process?.config
    ?.variables
  const compressed = variables?.v8_enable_pointer_compression
  return compressed === 1 || compressed === true || compressed === "true" ? 4 : 8
}

/** Elements of each short-lived array the warm-up allocates: about 8 KiB, well inside the young generation's limit for one object. */
const warmupArraySlots = 1022

/** Bytes V8's young generation holds, both semispaces (`new_space`'s `space_size`), or undefined where that cannot be read. */
const youngGenerationBytes = (v8: typeof import("node:v8")): number | undefined => {
  try {
    return v8.getHeapSpaceStatistics().find((space) => space.space_name === "new_space")?.space_size
  } catch {
    // Runtimes that stand in for `node:v8` without implementing it (Bun's throws "not implemented").
    return undefined
  }
}

/**
 * Touches every page of V8's young generation once, on this thread, at once
 * (later calls do nothing), so that serving does not fault them in a few at
 * a time afterwards. Loading a program's modules grows the young generation
 * (to 64 MiB in `chiral serve`), touching only part of it; a server then
 * allocates a few KB per request into pages the kernel has yet to map, each
 * costing a minor page fault, until the first collection that cycles through
 * them, which at robot rates comes only after 10 s or more. Measured on the
 * 2-core machine of issue 15 (`chiral serve`, 2 cameras 64×48 with depth, the
 * Python reference's client at 30 Hz, first 10 s after start): 2.3 page
 * faults per get_obs before, none after the first hundred requests with this;
 * the request's bytes read to the reply handed to the kernel, p50 0.39–0.44 ms
 * before, 0.23–0.30 ms after.
 *
 * How: allocates short-lived arrays worth the young generation's size, and
 * again if the collections this causes grew it (as V8 does when much
 * survived the collections before: at most 3 rounds). Nothing it allocates
 * stays, but the pages do: the process's resident memory grows by the young
 * generation's size (64 MiB in `chiral serve`) until V8 gives them back,
 * which it does by itself after some 30 s of little allocation (seen with
 * `scratchpad/i15o/stats-hook.mjs`; what it takes again from then on is
 * grown as it is needed). Cost, once: 110 ms and 6,900 page faults in
 * `chiral serve` (64 MiB, one round); 0.2–0.6 s where the first round grew
 * it from 64 to 128 MiB (a test's burst of long-lived objects). Outside Node
 * it does nothing.
 */
export const warmYoungGeneration = (): void => {
  const flags = globalThis as Record<symbol, boolean | undefined>
  if (flags[warmed] === true) return
  flags[warmed] = true
  const v8 = nodeV8()
  if (v8 === undefined) return
  const arrayBytes = 16 + warmupArraySlots * slotBytes()
  // Each array is stored where the next one replaces it: V8's escape analysis
  // cannot remove an allocation that is stored at a computed index.
  const recent: Array<unknown> = new Array(8)
  for (let round = 0; round < 3; round++) {
    const size = youngGenerationBytes(v8)
    if (size === undefined) return
    for (let bytes = 0, i = 0; bytes < size; bytes += arrayBytes, i++) recent[i & 7] = new Array(warmupArraySlots)
    if ((youngGenerationBytes(v8) ?? 0) <= size) return
  }
}
