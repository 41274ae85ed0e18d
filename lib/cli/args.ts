// Argument helpers shared by the subcommands: util.parseArgs with one error
// type for every usage mistake, and the value parsers (durations, counts,
// HOST:PORT) that turn text into checked numbers before anything runs.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { durationProblem } from '../check';

/** Exit statuses of the CLI. */
export const EXIT = {
  /** Done. */
  ok: 0,
  /** The command was understood but failed (dm refused, map missing, I/O error). */
  failure: 1,
  /** Bad arguments: nothing was done. */
  usage: 2,
} as const;

/** A mistake in the command line; the CLI prints it with a pointer to --help and exits 2. */
export class UsageError extends Error {
  /** The subcommand whose arguments were wrong ('' for the top level). */
  readonly command: string;

  constructor(command: string, message: string) {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}

/** The option table util.parseArgs takes. */
export type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/** What {@link parse} returns for option table O. */
export type Parsed<O extends OptionsConfig> = ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>;

/** util.parseArgs (strict, positionals allowed) with its errors turned into UsageError. */
export function parse<O extends OptionsConfig>(command: string, argv: readonly string[], options: O): Parsed<O> {
  try {
    return parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (e) {
    // parseArgs's messages end with a hint about '--' that does not fit here.
    const msg = (e as Error).message.replace(/\. To specify a positional argument starting with a '-'.*$/s, '');
    throw new UsageError(command, msg);
  }
}

/** Checks the number of positionals and names the missing one. */
export function positionals(command: string, got: readonly string[], names: readonly string[], optional: readonly string[] = []): string[] {
  if (got.length < names.length) throw new UsageError(command, `missing ${names[got.length]}`);
  if (got.length > names.length + optional.length) throw new UsageError(command, `unexpected argument '${got[names.length + optional.length]}'`);
  return [...got];
}

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000 };

/** Parses `500ms`, `2s`, `1.5s`, `1m` or plain milliseconds (`500`) into ms, within the watchdog's duration bounds; UsageError otherwise. */
export function parseDuration(text: string, flag: string, command = ''): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * (UNITS[m[2] ?? 'ms'] as number) : NaN;
  if (!(ms > 0) || !Number.isFinite(ms)) {
    throw new UsageError(command, `--${flag}: expected a duration such as 500ms, 2s or 1m (plain numbers are ms), got '${text}'`);
  }
  const problem = durationProblem(ms);
  if (problem) throw new UsageError(command, `--${flag}: ${problem}, got '${text}'`);
  return ms;
}

/** Parses an integer >= min. */
export function parseCount(text: string, flag: string, min: number, command = ''): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(command, `--${flag}: expected an integer >= ${min}, got '${text}'`);
  return n;
}

/** Parses a finite number > min. */
export function parseNumber(text: string, flag: string, min: number, command = ''): number {
  const n = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : NaN;
  if (!(n > min) || !Number.isFinite(n)) throw new UsageError(command, `--${flag}: expected a number > ${min}, got '${text}'`);
  return n;
}

/** Where the metrics server listens. */
export interface HostPort {
  host: string;
  port: number;
}

/** Parses `HOST:PORT`, `[::1]:PORT` or `:PORT` (loopback: metrics are not for every network unless asked); port 0 picks a free one. */
export function parseHostPort(text: string, flag: string, command = ''): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(command, `--${flag}: expected HOST:PORT (e.g. 127.0.0.1:9100), got '${text}'`);
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '127.0.0.1' : host, port };
}

/** One of a fixed set of words. */
export function parseChoice<T extends string>(text: string, flag: string, choices: readonly T[], command = ''): T {
  if (!(choices as readonly string[]).includes(text)) throw new UsageError(command, `--${flag}: expected ${choices.join(', ')}, got '${text}'`);
  return text as T;
}
