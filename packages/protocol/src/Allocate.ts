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
 * Just under glibc's ceiling for its dynamic mmap threshold,
 * `DEFAULT_MMAP_THRESHOLD_MAX` (4 MiB × sizeof(long): 32 MiB on 64-bit
 * systems, glibc malloc/malloc.c), less room for the chunk's header.
 */
const thresholdRaiser = 32 * 1024 * 1024 - 64 * 1024

let retaining = false

/**
 * Asks the C allocator to keep freed receive buffers for the next ones instead
 * of handing them back to the kernel, once per process (later calls do
 * nothing). Without it, a client receiving 17.2 MB observations had each one
 * land in memory the kernel had just mapped afresh often enough for 700–1770
 * minor page faults per observation (4 KiB each, 2,500–4,400 for a wholly
 * fresh buffer) on the 2-core machine of issue 15, where a fresh buffer costs
 * up to 24× the copy into it.
 *
 * How: glibc serves a block above its mmap threshold with a mapping of its own
 * and unmaps it on `free`, and it trims the heap's top back to the kernel once
 * more than twice that threshold lies free there. When a mapped block of at
 * most 32 MiB is freed, it raises the threshold to that block's size and the
 * trim threshold to twice it (mallopt(3), "M_MMAP_THRESHOLD": the dynamic
 * threshold). So this allocates one block of just under 32 MiB, never touched
 * (no page is faulted in), and frees it at once (`transfer(0)` frees an
 * ArrayBuffer's memory there and then): 17 MB observations then come from the
 * heap, and up to about 64 MiB freed at its top stays in the process. The price is
 * that much memory the process keeps after freeing it. Elsewhere (musl, macOS,
 * a glibc told `MALLOC_MMAP_THRESHOLD_`, which turns the dynamic threshold
 * off) it only maps and unmaps 32 MiB once.
 *
 * Only the main thread's heap benefits: a worker thread's allocations come
 * from a glibc arena of its own, whose 64 MiB heaps are unmapped whenever they
 * fall empty, so buffers received on another thread should be allocated on
 * the main thread (as the Zenoh client's session thread gets them).
 */
export const retainFreedBuffers = (): void => {
  if (retaining || nodeBuffer === undefined) return
  retaining = true
  const block = nodeBuffer.allocUnsafeSlow(thresholdRaiser).buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer }
  block.transfer?.(0)
}
