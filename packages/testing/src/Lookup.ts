// A resolver for `net.connect`'s `lookup` option that answers from a script
// instead of the machine's DNS, so tests of host names that do not resolve
// depend on neither the network nor timing.
import type * as Net from "node:net"

/**
 * One answer: an IPv4 address to resolve to, a resolver error code
 * (`ENOTFOUND`, `EAI_AGAIN`, …) to fail with as `dns.lookup` does, or
 * `"never"`: no answer at all (a resolver that hangs).
 */
export type Answer = string

export interface Scripted {
  readonly lookup: Net.LookupFunction
  /** The host names asked for, in order. */
  readonly asked: ReadonlyArray<string>
}

/** The error `dns.lookup` fails with for `code` (what `net.connect` then emits). */
export const resolveError = (code: string, hostname: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`getaddrinfo ${code} ${hostname}`), {
    code,
    errno: code === "ENOTFOUND" ? -3008 : -3001,
    syscall: "getaddrinfo",
    hostname
  })

/** Answers each lookup with the next of `answers`; the last one repeats. */
export const scripted = (...answers: ReadonlyArray<Answer>): Scripted => {
  const asked: Array<string> = []
  const lookup = ((hostname: string, options: { readonly all?: boolean }, callback: (...args: Array<unknown>) => void) => {
    const answer = answers[Math.min(asked.length, answers.length - 1)]!
    asked.push(hostname)
    if (answer === "never") return
    const isAddress = /^\d+\.\d+\.\d+\.\d+$/.test(answer)
    process.nextTick(() => {
      if (!isAddress) callback(resolveError(answer, hostname))
      else if (options.all === true) callback(null, [{ address: answer, family: 4 }])
      else callback(null, answer, 4)
    })
  }) as Net.LookupFunction
  return { lookup, asked }
}
