#!/usr/bin/env node
// `node dist/scripts/vm/chroot.js --root NAME [--build] [--deadline S] -- <command…>`:
// runs a command on this machine's kernel in another Debian userland (scripts/vm/root.ts),
// with the project's checkout at the same path and the addon built against that
// userland's headers and liburing, into build-NAME/ (shown as build/ inside), so the
// host's own build is left alone.
//
// Mounts live in a private mount and PID namespace (unshare): nothing leaks into the
// host's mount table, and the deadline's SIGKILL of unshare takes every process in the
// namespace with it (--kill-child kills its PID 1, and the kernel the rest).
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { constants } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { EXIT_DEADLINE, EXIT_RUNNER_FAILURE, VmError, runMain } from './errors';
import { passedEnv } from './passed-env';
import { checkPlainPath } from './plain-path';
import { ROOTS, ensureRoot } from './root';

const PROJECT_ROOT = resolve(__dirname, '..', '..', '..');

/** Where the addon built for root `name` lives in the checkout. */
export function rootBuildDir(name: string): string {
  return join(PROJECT_ROOT, `build-${name}`);
}

// $1 root, $2 project, $3 build dir; then the command. PID 1 of the new namespace.
const ENTER = `set -e
R=$1 P=$2 B=$3; shift 3
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mkdir -p "$R$P"
mount --bind "$P" "$R$P"
mkdir -p "$R$P/build"
mount --bind "$B" "$R$P/build"
# Not exec: this shell stays PID 1 of the namespace, so the command is not init
# (init ignores signals it has no handler for, SIGSEGV from kill included).
chroot "$R" /bin/sh -c 'cd "$0" && exec "$@"' "$P" "$@"
`;

/** Runs `command` in root `name` with a hard deadline; resolves to its exit status. */
export async function runInRoot(name: string, command: readonly string[], deadlineMs: number,
  env: Record<string, string> = {}): Promise<number> {
  const root = checkPlainPath(await ensureRoot(name, (l) => void process.stderr.write(`chroot: ${l}\n`)));
  const build = rootBuildDir(name);
  await mkdir(build, { recursive: true });
  const child = spawn('unshare', ['--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child',
    'sh', '-c', ENTER, 'mpw-enter', root, checkPlainPath(PROJECT_ROOT), build, ...command], {
    stdio: 'inherit',
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8', ...env },
  });
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, deadlineMs);
  // A runner killed by a signal takes the namespace with it (SIGKILL of unshare
  // --kill-child kills its PID 1, and the kernel every process in it).
  const onSignal = (): void => void child.kill('SIGKILL');
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const code = await new Promise<number>((res, rej) => {
    child.once('error', (e: NodeJS.ErrnoException) =>
      rej(new VmError(e.code === 'ENOENT' ? 'unshare not found: install util-linux' : `cannot start unshare: ${e.message}`)));
    child.once('close', (c, sig) => res(c ?? (sig ? 128 + (constants.signals[sig] ?? 0) : EXIT_RUNNER_FAILURE)));
  }).finally(() => {
    clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  });
  if (timedOut) throw new VmError(`deadline of ${Math.round(deadlineMs / 1000)} s passed in the ${name} root: killed`, EXIT_DEADLINE);
  return code;
}

/** Builds the addon in root `name` (against its Node headers and liburing) into build-NAME/; incremental. */
export async function buildInRoot(name: string, deadlineMs = 600_000): Promise<void> {
  const gyp = 'node_modules/node-gyp/bin/node-gyp.js';
  // configure only when build-NAME/ has no Makefile yet; make rebuilds what changed.
  const script = `[ -f build/Makefile ] || node ${gyp} configure --nodedir=/usr --loglevel=warn; node ${gyp} build --loglevel=warn`;
  const code = await runInRoot(name, ['sh', '-c', script], deadlineMs);
  if (code !== 0) throw new VmError(`building the addon in the ${name} root failed (exit ${code})`);
}

const USAGE = `usage: node dist/scripts/vm/chroot.js --root NAME [--build] [--deadline S] [--env N=V…] -- <command> [args…]

Runs <command> in the cached Debian userland NAME (${Object.keys(ROOTS).join(', ')}) on this
machine's kernel, in the project's checkout; --build first builds the addon there.`;

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: {
      root: { type: 'string' }, build: { type: 'boolean' }, deadline: { type: 'string' },
      env: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' },
    } });
  } catch (err) {
    throw new VmError(`${(err as Error).message}\n\n${USAGE}`, 2);
  }
  const { values, positionals } = parsed;
  if (values.help) { process.stdout.write(`${USAGE}\n`); return 0; }
  const name = values.root;
  if (!name || !ROOTS[name]) throw new VmError(`--root must name one of ${Object.keys(ROOTS).join(', ')}\n\n${USAGE}`, 2);
  const deadline = Number(values.deadline ?? 1200);
  if (!Number.isInteger(deadline) || deadline <= 0) throw new VmError(`--deadline must be a positive integer, got '${values.deadline}'`, 2);
  const env = passedEnv(values.env ?? []);
  if (values.build) await buildInRoot(name, deadline * 1000);
  if (positionals.length === 0) return 0;
  return runInRoot(name, positionals, deadline * 1000, env);
}

if (require.main === module) runMain('chroot', main);
