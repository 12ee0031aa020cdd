import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import { KeyExpr } from "@chiral/zenoh"

const canon = (k: string) => {
  const r = KeyExpr.canonize(k)
  return Result.isSuccess(r) ? r.success : `ERROR: ${r.failure.reason}`
}

describe("KeyExpr", () => {
  it.effect("canonical forms", () =>
    Effect.sync(() => {
      const table: Array<[string, string]> = [
        ["chiral/c2s", "chiral/c2s"],
        ["a/**/**/b", "a/**/b"],
        ["**/**", "**"],
        ["**/*", "*/**"],
        ["a/**/*/b", "a/*/**/b"],
        ["**/*/**/*", "*/*/**"],
        ["hello/foo$*$*/bar", "hello/foo$*/bar"],
        ["hello/$*/bye", "hello/*/bye"],
        ["hello/$*$*/bye", "hello/*/bye"],
        ["$*$*$*/hello/$*$*/bye/$*$*", "*/hello/*/bye/*"],
        ["@robot/a", "@robot/a"]
      ]
      for (const [input, expected] of table) assert.strictEqual(canon(input), expected, input)
    }))

  it.effect("invalid key expressions are rejected with a reason", () =>
    Effect.sync(() => {
      for (const bad of ["", "/a", "a/", "a//b", "a/b#", "a?b", "a/b$", "a/$x", "a/*b", "a/b*", "*$*", "$**", "**$*"]) {
        assert.match(canon(bad), /^ERROR: /, bad)
      }
      const r = KeyExpr.canonize("a//b")
      assert(Result.isFailure(r))
      assert.strictEqual(r.failure._tag, "ZenohKeyExprError")
      assert.strictEqual(r.failure.keyExpr, "a//b")
    }))

  it.effect("intersections", () =>
    Effect.sync(() => {
      const yes: Array<[string, string]> = [
        ["a", "a"],
        ["a/b", "a/b"],
        ["*", "abc"],
        ["ab$*", "abcd"],
        ["ab$*d", "abcd"],
        ["ab$*", "ab"],
        ["a/*/c/*/e", "a/b/c/d/e"],
        ["a/$*b/c/$*d/e", "a/xb/c/xd/e"],
        ["ab$*cd", "abxxcxxcd"],
        ["**", "abc"],
        ["**", "a/b/c"],
        ["ab/**", "ab"],
        ["**/xyz", "a/b/xyz/d/e/f/xyz"],
        ["**/xyz$*xyz", "a/b/xyzdefxyz"],
        ["a/**/c/**/e", "a/b/b/b/c/d/d/d/e"],
        ["a/**/c/**/e", "a/c/e"],
        ["a/**/c/*/e/*", "a/b/b/b/c/d/d/c/d/e/f"],
        ["x/*", "x/abc$*"],
        ["x/$*abc", "x/abc$*"],
        ["x/a$*d$*e", "x/a$*e"],
        ["x/a$*d$*e", "x/a$*c$*e"],
        ["chiral/*", "chiral/c2s"],
        ["chiral/**", "chiral"],
        ["chiral/**", "chiral/a/b"],
        ["@r/**", "@r/x"],
        ["@r", "@r"]
      ]
      const no: Array<[string, string]> = [
        ["ab/*", "ab"],
        ["a/*/c/*/e", "a/c/e"],
        ["a/*/c/*/e", "a/b/c/d/x/e"],
        ["ab$*cd", "abxxcxxd"],
        ["ab$*cd", "abxxcxxcdx"],
        ["**/xyz$*xyz", "a/b/xyz/d/e/f/xyz"],
        ["a/**/c/*/e/*", "a/b/b/b/c/d/d/c/d/d/e/f"],
        ["x/abc", "abc"],
        ["*", "x/abc"],
        ["x/c$*", "x/abc$*"],
        ["x/$*d", "x/$*e"],
        ["*/c2s", "x/y/c2s"],
        ["chiral/c2s", "chiral/s2c"],
        // verbatim chunks: only themselves
        ["*", "@r"],
        ["**", "@r/x"],
        ["a/**", "a/@r"],
        ["$*", "@r"],
        ["@r", "@s"]
      ]
      for (const [a, b] of yes) {
        assert.isTrue(KeyExpr.intersects(a, b), `${a} ∩ ${b}`)
        assert.isTrue(KeyExpr.intersects(b, a), `${b} ∩ ${a}`)
      }
      for (const [a, b] of no) {
        assert.isFalse(KeyExpr.intersects(a, b), `${a} ∩ ${b}`)
        assert.isFalse(KeyExpr.intersects(b, a), `${b} ∩ ${a}`)
      }
    }))

  it.effect("long wildcard chains stay fast (memoized, no exponential blow-up)", () =>
    Effect.sync(() => {
      const a = Array.from({ length: 40 }, () => "**/x").join("/")
      const b = Array.from({ length: 60 }, () => "x").join("/") + "/y"
      assert.isFalse(KeyExpr.intersects(a + "/z", b))
      assert.isTrue(KeyExpr.intersects(a + "/**", b))
    }))
})
