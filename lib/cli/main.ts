#!/usr/bin/env node
// The `mpath-watchdog` command. Subcommands arrive with the watchdog; today it
// reports what it was built against.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compiledDmVersion } from '../index';

const USAGE = `usage: mpath-watchdog [--version] [--help] <command>

A per-I/O latency watchdog for dm-multipath.

options:
  --version   print the package version and the dm ioctl interface it was built for
  -h, --help  this text`;

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

/** Runs the CLI with argv (without node and script) and returns the exit status. */
export function main(argv: string[]): number {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { version: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`mpath-watchdog: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.version) {
    const dm = compiledDmVersion();
    process.stdout.write(`mpath-watchdog ${packageVersion()} (dm ioctl ${dm.major}.${dm.minor}.${dm.patch})\n`);
    return 0;
  }
  if (positionals.length > 0) {
    process.stderr.write(`mpath-watchdog: unknown command '${positionals[0]}'\n${USAGE}\n`);
    return 2;
  }
  process.stdout.write(`${USAGE}\n`);
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
