#!/usr/bin/env node
// The `mpath-watchdog` command: dispatches to one module per subcommand and
// owns the exit statuses (0 ok, 1 runtime failure, 2 usage error) and the
// one-line error report.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compiledDmVersion } from '../index';
import { EXIT, UsageError, parse } from './args';
import type { Command } from './command';
import { createCommand, removeCommand } from './create';
import { demoCommand } from './demo';
import { errorLine, isExpectedError, type CliIo } from './output';
import { failCommand, reinstateCommand } from './path-action';
import { statusCommand } from './status';
import { watchCommand } from './watch';

/** Every subcommand, in the order --help lists them. */
export const COMMANDS: readonly Command[] = [statusCommand, watchCommand, failCommand, reinstateCommand, createCommand, removeCommand, demoCommand];

/** The top-level --help text. */
export const USAGE = `usage: mpath-watchdog [--version] [--help] <command> [args]

A per-I/O latency watchdog for dm-multipath.

commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(10)}  ${c.summary}`).join('\n')}

'mpath-watchdog <command> --help' describes a command.

exit status: 0 ok, 1 the command failed (device-mapper refused, map missing,
not root, I/O error), 2 bad arguments (nothing was done).

options:
  --version   print the package version and the dm ioctl interface it was built for
  -h, --help  this text`;

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

const PROCESS_IO: CliIo = { stdout: process.stdout, stderr: process.stderr };

/** Runs the CLI with argv (without node and script) and resolves to the exit status; never rejects. */
export async function main(argv: readonly string[], io: CliIo = PROCESS_IO): Promise<number> {
  const name = argv[0];
  const command = COMMANDS.find((c) => c.name === name);
  try {
    if (!command) {
      const { values, positionals } = parse('', argv, { version: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
      if (positionals.length > 0) throw new UsageError('', `unknown command '${positionals[0]}'`);
      if (values.version) {
        const dm = compiledDmVersion();
        io.stdout.write(`mpath-watchdog ${packageVersion()} (dm ioctl ${dm.major}.${dm.minor}.${dm.patch})\n`);
      } else {
        io.stdout.write(`${USAGE}\n`);
      }
      return EXIT.ok;
    }
    const rest = argv.slice(1);
    const end = rest.indexOf('--');
    const flags = end < 0 ? rest : rest.slice(0, end);
    if (flags.includes('--help') || flags.includes('-h')) {
      io.stdout.write(`${command.help}\n`);
      return EXIT.ok;
    }
    return await command.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      const who = e.command ? `mpath-watchdog ${e.command}` : 'mpath-watchdog';
      io.stderr.write(`${who}: ${e.message}\n${who} --help shows the usage\n`);
      return EXIT.usage;
    }
    const who = command ? `mpath-watchdog ${command.name}` : 'mpath-watchdog';
    io.stderr.write(`${who}: ${errorLine(e)}\n`);
    // An error we did not foresee is a bug: its stack helps whoever reports it.
    if (!isExpectedError(e) && e instanceof Error && e.stack) io.stderr.write(`${e.stack}\n`);
    return EXIT.failure;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    // Reads abandoned on a hung path may keep handles alive: the status is final, so leave now.
    process.exit(code);
  });
}
