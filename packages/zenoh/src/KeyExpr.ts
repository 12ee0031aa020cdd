/**
 * Key expressions: validation, canonical form and intersection, following the Rust
 * `zenoh-keyexpr` rules.
 *
 * A key is `/`-separated non-empty chunks. `*` is one whole chunk, `**` zero or more chunks,
 * `$*` any substring inside one chunk. A chunk starting with `@` is verbatim: only the same
 * chunk matches it (`*` and `**` do not). `#` and `?` are forbidden, `$` only appears as `$*`.
 */
import { Result } from "effect"
import { ZenohKeyExprError } from "./ZenohError.js"

const invalid = (keyExpr: string, reason: string) => Result.fail(new ZenohKeyExprError({ keyExpr, reason }))

/** Checks one chunk; returns a reason when it is not valid. */
const chunkProblem = (chunk: string): string | undefined => {
  if (chunk.length === 0) return "empty chunk (leading, trailing or doubled '/')"
  if (chunk === "*" || chunk === "**") return undefined
  for (let i = 0; i < chunk.length; i++) {
    const c = chunk.charCodeAt(i)
    if (c === 0x23 /* # */ || c === 0x3f /* ? */) return `forbidden character '${chunk[i]}' in chunk '${chunk}'`
    if (c === 0x24 /* $ */ && chunk.charCodeAt(i + 1) !== 0x2a) return `'$' not followed by '*' in chunk '${chunk}'`
    if (c === 0x2a /* * */ && chunk.charCodeAt(i - 1) !== 0x24) {
      return `'*' inside chunk '${chunk}' (use a whole '*' chunk or '$*')`
    }
  }
  return undefined
}

/**
 * Validates `keyExpr` and returns its canonical form: `$*$*` → `$*`, a chunk that is only `$*`
 * → `*`, runs of `**` collapse, and `*` chunks inside a run of `**` move before it
 * (`**` + `*` → `*` + `**`).
 */
export const canonize = (keyExpr: string): Result.Result<string, ZenohKeyExprError> => {
  if (keyExpr.length === 0) return invalid(keyExpr, "empty key expression")
  const chunks = keyExpr.split("/")
  const out: Array<string> = []
  let pendingDoubleWild = false
  for (const raw of chunks) {
    const problem = chunkProblem(raw)
    if (problem !== undefined) return invalid(keyExpr, problem)
    let chunk = raw
    while (chunk.includes("$*$*")) chunk = chunk.replaceAll("$*$*", "$*")
    if (chunk === "$*") chunk = "*"
    if (chunk === "**") {
      pendingDoubleWild = true
    } else if (chunk === "*") {
      out.push("*")
    } else {
      if (pendingDoubleWild) out.push("**")
      pendingDoubleWild = false
      out.push(chunk)
    }
  }
  if (pendingDoubleWild) out.push("**")
  return Result.succeed(out.join("/"))
}

/** Canonizes or throws the `ZenohKeyExprError` (for call sites that already validated). */
export const canonizeUnsafe = (keyExpr: string): string => {
  const result = canonize(keyExpr)
  if (Result.isFailure(result)) throw result.failure
  return result.success
}

/** True when the key expression has no wildcard, i.e. names exactly one key. */
export const isConcrete = (keyExpr: string): boolean => !keyExpr.includes("*")

const isVerbatim = (chunk: string): boolean => chunk.charCodeAt(0) === 0x40 /* @ */

// --- chunk intersection with `$*` -------------------------------------------------------------

const STAR = -1

/** A chunk as tokens: char codes, or STAR for `$*`. */
const tokens = (chunk: string): Array<number> => {
  const out: Array<number> = []
  for (let i = 0; i < chunk.length; i++) {
    const c = chunk.charCodeAt(i)
    if (c === 0x24 && chunk.charCodeAt(i + 1) === 0x2a) {
      out.push(STAR)
      i++
    } else {
      out.push(c)
    }
  }
  return out
}

/** Do two `$*` patterns share a string? Memoized over (i, j): linear in the product of lengths. */
const patternsIntersect = (a: Array<number>, b: Array<number>): boolean => {
  const width = b.length + 1
  const memo = new Int8Array((a.length + 1) * width) // 0 unknown, 1 yes, 2 no
  const go = (i: number, j: number): boolean => {
    const key = i * width + j
    const known = memo[key]!
    if (known !== 0) return known === 1
    let r: boolean
    if (i === a.length && j === b.length) r = true
    else if (i < a.length && a[i] === STAR) r = go(i + 1, j) || (j < b.length && go(i, j + 1))
    else if (j < b.length && b[j] === STAR) r = go(i, j + 1) || (i < a.length && go(i + 1, j))
    else if (i === a.length || j === b.length) r = false
    else r = a[i] === b[j] && go(i + 1, j + 1)
    memo[key] = r ? 1 : 2
    return r
  }
  return go(0, 0)
}

const chunksIntersect = (a: string, b: string): boolean => {
  if (a === b) return true
  if (isVerbatim(a) || isVerbatim(b)) return false
  if (a === "*" || b === "*") return true
  if (!a.includes("$*") && !b.includes("$*")) return false
  return patternsIntersect(tokens(a), tokens(b))
}

/**
 * True when some concrete key matches both canonical key expressions. For a subscription `sub`
 * and a published concrete key `key`, `intersects(sub, key)` says whether the sample is delivered.
 */
export const intersects = (a: string, b: string): boolean => {
  if (a === b) return true
  const ca = a.split("/")
  const cb = b.split("/")
  const width = cb.length + 1
  const memo = new Int8Array((ca.length + 1) * width)
  const go = (i: number, j: number): boolean => {
    const key = i * width + j
    const known = memo[key]!
    if (known !== 0) return known === 1
    let r: boolean
    if (i === ca.length) r = allDoubleWild(cb, j)
    else if (j === cb.length) r = allDoubleWild(ca, i)
    else if (ca[i] === "**") r = go(i + 1, j) || (!isVerbatim(cb[j]!) && go(i, j + 1))
    else if (cb[j] === "**") r = go(i, j + 1) || (!isVerbatim(ca[i]!) && go(i + 1, j))
    else r = chunksIntersect(ca[i]!, cb[j]!) && go(i + 1, j + 1)
    memo[key] = r ? 1 : 2
    return r
  }
  return go(0, 0)
}

const allDoubleWild = (chunks: Array<string>, from: number): boolean => {
  for (let k = from; k < chunks.length; k++) if (chunks[k] !== "**") return false
  return true
}
