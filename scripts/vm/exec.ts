// execa is ESM-only; this CommonJS build reaches it through one dynamic import.
import type { Options, Result } from 'execa' with { 'resolution-mode': 'import' };

/** Runs a command to completion and returns its result; rejects with execa's error. */
export async function run(file: string, args: readonly string[], options: Options = {}): Promise<Result> {
  const { execa } = await import('execa');
  return execa(file, args, options);
}
