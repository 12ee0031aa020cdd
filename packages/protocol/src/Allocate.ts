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
