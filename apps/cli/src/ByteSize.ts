/**
 * Sizes on the command line: `--max-message-size 1GiB`, `300MB`, `16777216`.
 * Binary units (KiB, MiB, GiB: powers of 1024) and decimal ones (KB, MB, GB:
 * powers of 1000), case-insensitive, an optional `B`; a plain number is bytes.
 */

const units: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1000,
  kb: 1000,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3
}

/**
 * The size `text` gives, in bytes (a whole number from 1 to `max`; default 4 GiB, beyond what one
 * Zenoh payload can carry), or why it is not one.
 */
export const parseByteSize = (flag: string, text: string, max = 4 * 1024 ** 3): number | string => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const unit = match === null ? undefined : units[match[2]!.toLowerCase()]
  if (match === null || unit === undefined) {
    return `--${flag} ${JSON.stringify(text)}: expected a size such as 1GiB, 300MB or 16777216 (bytes)`
  }
  const bytes = Math.floor(Number(match[1]) * unit)
  if (!(bytes >= 1 && bytes <= max)) return `--${flag} ${text}: expected from 1 byte to ${formatBytes(max)}`
  return bytes
}

/** `bytes` for people: `1 GiB`, `256 MiB`, `294.0 MB`, `512 bytes`. */
export const formatBytes = (bytes: number): string => {
  for (const [unit, size] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`
  }
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${bytes} bytes`
}
