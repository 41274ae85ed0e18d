// What every subcommand provides to the dispatcher in main.ts.
import type { CliIo } from './output';

/** A subcommand: its name, a one-line summary, its --help text, and the code that runs it. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  /** The full --help text (usage line first). */
  readonly help: string;
  /** Runs with the arguments after the subcommand's name; resolves to the exit status. Throws UsageError or a runtime error. */
  run(argv: readonly string[], io: CliIo): Promise<number>;
}

/** Options every subcommand accepts. */
export const COMMON_OPTIONS = { help: { type: 'boolean', short: 'h' } } as const;

/** --json, for subcommands that print data. */
export const JSON_OPTION = { json: { type: 'boolean' } } as const;
