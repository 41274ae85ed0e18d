// Output helpers: where the CLI writes, how an error becomes one line, and how
// a watchdog event becomes one JSON line.
import { SyscallError } from '../errors';
import { LastPathError } from '../multipath/map';
import { MultipathParseError, MultipathValueError } from '../multipath/tokens';
import { IoArgumentError } from '../io/errors';

/** Where a command writes; tests pass collectors, the binary passes process streams. */
export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown };
}

/** A runtime failure the CLI itself detects (not a usage mistake): printed as one line, exit 1. */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

/** True for errors whose message is the whole story: no stack trace is printed for them. */
export function isExpectedError(e: unknown): boolean {
  return e instanceof SyscallError || e instanceof MultipathValueError || e instanceof MultipathParseError
    || e instanceof IoArgumentError || e instanceof CliError || e instanceof LastPathError;
}

/** The one line printed for an error: its message, and the errno code when the message does not already carry it. */
export function errorLine(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: unknown }).code;
  const first = e.message.split('\n')[0] ?? '';
  return typeof code === 'string' && !first.includes(code) ? `${first} (${code})` : first;
}

/** An Error as plain JSON fields (name, message, and code/errno/syscall/device when present). */
export function errorJson(e: unknown): Record<string, unknown> {
  if (!(e instanceof Error)) return { message: String(e) };
  const out: Record<string, unknown> = { name: e.name, message: e.message };
  for (const k of ['code', 'errno', 'syscall', 'device'] as const) {
    const v = (e as unknown as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** One JSON line: `{"time":ISO,"event":name,...fields}`; Errors become objects, bigints strings. */
export function jsonLine(event: string, fields: object, time: Date = new Date()): string {
  return `${JSON.stringify({ time: time.toISOString(), event, ...fields }, (_k, v: unknown) => {
    if (typeof v === 'bigint') return v.toString();
    if (v instanceof Error) return errorJson(v);
    return v;
  })}\n`;
}

/** Left-aligned columns, two spaces apart. */
export function columns(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n');
}
