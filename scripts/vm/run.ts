#!/usr/bin/env node
// `npm run vm -- [options] <command> [args…]`: boots the test VM, runs the
// command as root in the project's root and exits with its status.
import { realpathSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { VmError, runMain } from './errors';
import { ensureInitramfs } from './initramfs';
import { buildInRoot, rootBuildDir } from './chroot';
import { checkPlainPath } from './plain-path';
import { DEFAULT_KERNEL, ensureKernel, parseKernelSpec } from './kernel';
import { BootCrashError, boot, type Bind } from './qemu';
import { passedEnv } from './passed-env';
import { ROOT_NAMES, ensureRoot } from './root';

const PROJECT_ROOT = resolve(__dirname, '..', '..', '..');
const STAGE2 = join(PROJECT_ROOT, 'scripts', 'vm', 'stage2.sh');

const USAGE = `usage: npm run vm -- [options] <command> [args…]

Boots a qemu guest on Debian's stock kernel (host root shared read-only over 9p,
tmpfs overlay), loads dm-multipath and friends, creates two scsi_debug paths to one
LUN, runs <command> as root in the project root and exits with its status.

options:
  --deadline SECONDS   hard deadline for boot, command and power-off; qemu is killed
                       after it and the runner exits 124 (default 300)
  --memory MIB         guest memory (default 2048)
  --cpus N             guest CPUs (default 2)
  --topology NAME      scsi_debug (default): two scsi_debug paths to one LUN;
                       iscsi: also a LIO target on 127.0.0.1 and 127.0.0.2 with
                       open-iscsi logged in to both, and udevd running
  --kernel K           the Debian kernel to boot: a major.minor (6.1, 6.12, 7.3),
                       a suite (bookworm, trixie, trixie-backports) or newest
                       (default ${DEFAULT_KERNEL})
  --root NAME          the guest's userland: host (default: this machine's root) or
                       trixie (Debian 13, made with mmdebstrap and cached; the addon
                       is built in it into build-trixie/); the checkout is at the
                       same path either way
  --env NAME=VALUE     set a variable for the command (repeatable)
  --verbose            show the kernel's boot messages
  --fetch-kernel-only  fetch and unpack the guest kernel, build the initramfs, exit
  -h, --help           this text

exit status: the command's; 124 when the deadline killed the guest; 125 when the VM
could not be prepared, booted or set up.`;

const OPTIONS = {
  deadline: { type: 'string' },
  memory: { type: 'string' },
  cpus: { type: 'string' },
  env: { type: 'string', multiple: true },
  topology: { type: 'string' },
  kernel: { type: 'string' },
  root: { type: 'string' },
  verbose: { type: 'boolean' },
  'fetch-kernel-only': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Splits argv into the runner's options and the guest command (from the first positional or `--`). */
export function splitArgv(argv: readonly string[]): { options: string[]; command: string[] } {
  const takesValue = new Set(Object.entries(OPTIONS).filter(([, o]) => o.type === 'string').map(([k]) => `--${k}`));
  let i = 0;
  while (i < argv.length) {
    const a = argv[i] as string;
    if (a === '--') return { options: argv.slice(0, i), command: argv.slice(i + 1) };
    if (!a.startsWith('-')) break;
    i += takesValue.has(a) ? 2 : 1;
  }
  return { options: argv.slice(0, i), command: argv.slice(i) };
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new VmError(`--${name} must be a positive integer, got '${value}'`, 2);
  return n;
}

/** The guest's job script: environment, cwd, then exec of the command. */
export function jobScript(command: readonly string[], cwd: string, env: Record<string, string>): string {
  const lines = ['#!/bin/sh', `cd ${shellQuote(cwd)} || exit 125`];
  for (const [k, v] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new VmError(`bad variable name '${k}'`, 2);
    lines.push(`export ${k}=${shellQuote(v)}`);
  }
  lines.push(`exec ${command.map(shellQuote).join(' ')}`);
  return lines.join('\n') + '\n';
}

async function main(argv: string[]): Promise<number> {
  const split = splitArgv(argv);
  let values;
  try {
    ({ values } = parseArgs({ args: split.options, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new VmError(`${(err as Error).message}\n\n${USAGE}`, 2);
  }
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const deadlineS = positiveInt('deadline', values.deadline, 300);
  const memoryMiB = positiveInt('memory', values.memory, 2048);
  const cpus = positiveInt('cpus', values.cpus, 2);
  const topology = values.topology ?? 'scsi_debug';
  if (topology !== 'scsi_debug' && topology !== 'iscsi') throw new VmError(`--topology must be scsi_debug or iscsi, got '${topology}'`, 2);
  const kernelSpec = parseKernelSpec(values.kernel ?? DEFAULT_KERNEL);
  const rootName = values.root ?? 'host';
  if (!(ROOT_NAMES as readonly string[]).includes(rootName)) throw new VmError(`--root must be one of ${ROOT_NAMES.join(', ')}, got '${rootName}'`, 2);
  if (!values['fetch-kernel-only'] && split.command.length === 0) throw new VmError(`no command given\n\n${USAGE}`, 2);
  // Before any download: these end up on the kernel command line.
  checkPlainPath(PROJECT_ROOT);
  checkPlainPath(tmpdir());
  const log = (line: string): void => void process.stderr.write(`vm: ${line}\n`);

  const kernel = await ensureKernel(kernelSpec, log);
  const initrd = await ensureInitramfs(kernel);
  const root = rootName === 'host' ? undefined : checkPlainPath(await ensureRoot(rootName, log));
  if (root) await buildInRoot(rootName);
  if (values['fetch-kernel-only']) {
    log(`kernel ${kernel.release} at ${kernel.vmlinuz}; initramfs ${initrd}${root ? `; root ${root}` : ''}`);
    return 0;
  }

  // The guest console is a tty whatever the host's stdout is; a live view asks MPW_HOST_TTY instead.
  const env = passedEnv(values.env ?? [], { MPW_HOST_TTY: process.stdout.isTTY ? '1' : '0' });

  // The run's files must be visible in the guest; the guest's /tmp is the host's /tmp.
  const runDir = await mkdtemp(join(tmpdir(), 'mpw-vm-'));
  const ac = new AbortController();
  const onSignal = (): void => ac.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const job = join(runDir, 'job.sh');
    await writeFile(job, jobScript(split.command, PROJECT_ROOT, env), { mode: 0o755 });
    // Another root sees none of the host's files: the checkout, the kernel's
    // modules and this run's job are put back at their own paths, and the
    // addon built for that root over the checkout's build/.
    const binds: Bind[] = root ? [
      { from: PROJECT_ROOT, to: PROJECT_ROOT },
      { from: kernel.modulesDir, to: kernel.modulesDir },
      { from: runDir, to: runDir },
      { from: rootBuildDir(rootName), to: join(PROJECT_ROOT, 'build') },
    // The host side through realpath: an absolute symlink in it would resolve inside the initramfs.
    ].map((b) => ({ from: checkPlainPath(realpathSync(b.from)), to: checkPlainPath(b.to) })) : [];
    const started = Date.now();
    const attempt = (): ReturnType<typeof boot> => boot({
      kernel, initrd, stage2: STAGE2, job, runDir, ...(root ? { root } : {}), binds,
      deadlineMs: Math.max(1, deadlineS * 1000 - (Date.now() - started)), memoryMiB, cpus, topology,
      out: process.stdout, verbose: values.verbose ?? false, signal: ac.signal,
    });
    let result;
    try {
      result = await attempt();
    } catch (e) {
      // A kernel crash before the job could start is the emulator's (seen once in this
      // project's CI: Debian's 7.3 under Debian 12's QEMU 7.2 TCG, an int3 oops in
      // sched_clock_cpu 2 s into boot). One more boot, within the same deadline; a
      // second crash fails the run.
      if (!(e instanceof BootCrashError)) throw e;
      log(`${e.message.split('\n')[0]}; booting once more`);
      result = await attempt();
    }
    log(`guest exited ${result.exitCode} after ${(result.elapsedMs / 1000).toFixed(1)} s (boot, command and power-off)`);
    return result.exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await rm(runDir, { recursive: true, force: true });
  }
}

if (require.main === module) runMain('vm', main);
