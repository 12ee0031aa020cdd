/**
 * Row-major matrices as the wire carries them (K 3×3, T 4×4 as 9 and 16
 * float64). Callers may give flat values or rows.
 */
export type MatrixInput = ArrayLike<number> | ReadonlyArray<ArrayLike<number>>

/** A fresh row-major Float64Array of n×n values, or a reason why `input` is not one. */
export const toRowMajor = (input: MatrixInput, n: number): Float64Array | string => {
  const flat = input.length === n && typeof input[0] !== "number" && input[0] !== undefined
    ? flatten(input as ReadonlyArray<ArrayLike<number>>, n)
    : input
  if (typeof flat === "string") return flat
  if (flat.length !== n * n) return `expected ${n}×${n} = ${n * n} values, got ${flat.length}`
  const out = new Float64Array(n * n)
  for (let i = 0; i < n * n; i++) {
    const v = (flat as ArrayLike<number>)[i]
    if (typeof v !== "number") return `value ${i} is not a number`
    out[i] = v
  }
  return out
}

const flatten = (rows: ReadonlyArray<ArrayLike<number>>, n: number): ArrayLike<number> | string => {
  const out = new Array<number>(n * n)
  for (let r = 0; r < n; r++) {
    const row = rows[r]!
    if (row.length !== n) return `row ${r} has ${row.length} values, expected ${n}`
    for (let c = 0; c < n; c++) out[r * n + c] = row[c]!
  }
  return out
}

export const identity = (n: number): Float64Array => {
  const out = new Float64Array(n * n)
  for (let i = 0; i < n; i++) out[i * n + i] = 1
  return out
}
