// Property tests are reproducible in CI: a fixed fast-check seed unless
// CHIRAL_SEED asks for another (CHIRAL_SEED=random explores new cases).
import * as fc from "fast-check"

const wanted = process.env.CHIRAL_SEED
if (wanted !== "random") {
  fc.configureGlobal({ seed: wanted === undefined ? 20261124 : Number(wanted) })
}
