/**
 * How the `chiral` command shows a mistake on its command line: the error,
 * then where the flags are explained, on stderr. Effect's default prints the
 * whole help (about 60 lines for `serve`) before the error, which then sits
 * below the fold of a terminal; `--help` still prints it all.
 */
import { Console, Context, Effect } from "effect"
import { CliError, CliOutput, type HelpDoc, TerminalCapabilities } from "effect/cli"

/**
 * An unknown flag that begins a known one is an abbreviation: that flag is
 * the suggestion (`--prot` → `--protocol`), not the nearest by spelling
 * (`--port`), which stays as Effect's suggestion otherwise.
 */
export const withPrefixSuggestions = (
  errors: ReadonlyArray<CliError.NonShowHelpErrors>,
  helpDoc: HelpDoc.HelpDoc
): ReadonlyArray<CliError.NonShowHelpErrors> =>
  errors.map((error) => {
    if (error._tag !== "UnrecognizedOption" || !error.option.startsWith("--")) return error
    const given = error.option.slice(2)
    const extended = helpDoc.flags.map((flag) => flag.name).filter((name) => name.startsWith(given))
    return extended.length === 0
      ? error
      : new CliError.UnrecognizedOption({ ...error, suggestions: extended.map((name) => `--${name}`) })
  })

export const presenter: CliOutput.Presenter = {
  present: (event) =>
    event._tag !== "InvalidInvocation"
      ? CliOutput.defaultPresenter.present(event)
      : Effect.gen(function*() {
        const context = yield* Effect.context<never>()
        const formatter = Context.getOrUndefined(context, CliOutput.Formatter) ??
          CliOutput.defaultFormatter({ colors: Context.get(context, TerminalCapabilities.TerminalCapabilities).canColor })
        yield* Console.error(formatter.formatErrors(withPrefixSuggestions(event.errors, event.helpDoc)))
        yield* Console.error(`\nSee \`${[...event.commandPath, "--help"].join(" ")}\` for its flags and examples.`)
      })
}

export const layer = CliOutput.layerPresenter(presenter)
