// Boots the guest under qemu (TCG: the stock kernel hangs under this host's
// KVM), streams its console and enforces the hard deadline. A guest process in
// uninterruptible sleep cannot outlive the deadline: qemu itself is killed.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VmError, EXIT_DEADLINE, EXIT_RUNNER_FAILURE } from './errors';
import type { GuestKernel } from './kernel';
import { checkPlainPath } from './plain-path';

/** The guest kernel oopsed or panicked before stage 2 reported "booted": an emulator crash, not the job's. */
export class BootCrashError extends VmError {}

/** What one boot needs. */
export interface BootOptions {
  kernel: GuestKernel;
  /** The initramfs built by ensureInitramfs. */
  initrd: string;
  /** The stage-2 script, as a path in the host's (and so the guest's) root. */
  stage2: string;
  /** The job script the guest runs. */
  job: string;
  /** A host directory for the run's own files (the ttyS1 report). */
  runDir: string;
  /** Hard deadline for the whole boot, job and power-off, in milliseconds. */
  deadlineMs: number;
  /** Guest memory in MiB. */
  memoryMiB: number;
  /** Guest CPUs. */
  cpus: number;
  /** Where the guest console goes. */
  out: NodeJS.WritableStream;
  /** The guest's storage topology (scripts/guest-setup.sh). */
  topology: Topology;
  /** Show the kernel's boot messages. */
  verbose: boolean;
  /** Stops the run early (kills qemu). */
  signal?: AbortSignal;
  /** The host directory that is the guest's root (lower layer of its overlay); the host's / when absent. */
  root?: string;
  /** Host directories put at a path in the guest's root, each with a tmpfs overlay of its own. */
  binds?: readonly Bind[];
}

/** A host directory shown at a path in the guest (scripts/vm/init.sh). */
export interface Bind {
  /** The host path. */
  from: string;
  /** The guest path. */
  to: string;
}

/** The guest's storage: scsi_debug paths only, or also two iSCSI paths over loopback. */
export type Topology = 'scsi_debug' | 'iscsi';

/** How a boot ended. */
export interface BootResult {
  /** The job's exit status. */
  exitCode: number;
  /** Milliseconds from qemu's spawn to its exit. */
  elapsedMs: number;
  /** The reports read from ttyS1, in order. */
  reports: string[];
}

const QEMU = process.env.MPW_QEMU || 'qemu-system-x86_64';
const TAIL_BYTES = 4096;

/** The qemu argument vector for one boot; exported so tests can inspect it. */
/**
 * One host thread for all vCPUs under Linux 7.x, one each for older kernels.
 * Debian's 7.3 oopsed on `int3` twice in CI under Debian 12's QEMU 7.2 with
 * multi-threaded TCG, once in early boot (sched_clock_cpu) and once 60 s into
 * a run, in __ip_local_out right after nft rules were loaded: an int3 left by
 * the kernel's live code patching (text_poke_bp, as a static key such as
 * nf_hooks_needed flips) hit on another vCPU after the patch was done. Single-
 * threaded TCG runs the vCPUs in turn, so none can run stale translated code.
 * 6.1 never showed it in many more runs, and keeps both host threads.
 */
export function tcgThreads(release: string): 'single' | 'multi' {
  const major = Number(/^(\d+)\./.exec(release)?.[1] ?? 0);
  return major >= 7 ? 'single' : 'multi';
}

export function qemuArgs(o: BootOptions, reportFile: string): string[] {
  for (const p of [o.stage2, o.job, o.kernel.modulesDir, ...(o.root ? [o.root] : []), ...(o.binds ?? []).flatMap((b) => [b.from, b.to])]) {
    checkPlainPath(p);
  }
  const append = [
    'console=ttyS0',
    'panic=-1',
    o.verbose ? 'loglevel=7' : 'quiet loglevel=3',
    `mpw_stage2=${o.stage2}`,
    `mpw_job=${o.job}`,
    `mpw_modules=${o.kernel.modulesDir}`,
    `mpw_topology=${o.topology}`,
    ...(o.root ? [`mpw_root=${o.root}`] : []),
    ...(o.binds?.length ? [`mpw_binds=${o.binds.map((b) => `${b.from}:${b.to}`).join(',')}`] : []),
  ].join(' ');
  return [
    '-accel', `tcg,thread=${tcgThreads(o.kernel.release)}`,
    '-cpu', 'max',
    '-m', String(o.memoryMiB),
    '-smp', String(o.cpus),
    '-display', 'none',
    '-monitor', 'none',
    '-no-reboot',
    '-nic', 'none',
    '-serial', 'stdio',
    '-serial', `file:${reportFile}`,
    '-kernel', o.kernel.vmlinuz,
    '-initrd', o.initrd,
    '-append', append,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
  ];
}

function parseReports(text: string): string[] {
  return text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
}

/** Boots the guest, runs the job and returns its exit status; throws VmError on any runner-side failure. */
export async function boot(o: BootOptions): Promise<BootResult> {
  const reportFile = join(o.runDir, 'report');
  const started = Date.now();
  const child = spawn(QEMU, qemuArgs(o, reportFile), { stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('latin1')).slice(-TAIL_BYTES);
  };
  child.stdout.on('data', (c: Buffer) => { keep(c); o.out.write(c); });
  child.stderr.on('data', (c: Buffer) => { keep(c); process.stderr.write(c); });

  let killedFor: 'deadline' | 'abort' | undefined;
  const kill = (why: 'deadline' | 'abort'): void => {
    if (killedFor) return;
    killedFor = why;
    child.kill('SIGKILL');
  };
  const timer = setTimeout(() => kill('deadline'), o.deadlineMs);
  const onAbort = (): void => kill('abort');
  o.signal?.addEventListener('abort', onAbort, { once: true });

  const exit = await new Promise<{ code: number | null; error?: NodeJS.ErrnoException }>((resolve) => {
    child.once('error', (error: NodeJS.ErrnoException) => resolve({ code: null, error }));
    child.once('close', (code) => resolve({ code }));
  });
  clearTimeout(timer);
  o.signal?.removeEventListener('abort', onAbort);
  const elapsedMs = Date.now() - started;

  if (exit.error) {
    if (exit.error.code === 'ENOENT') {
      throw new VmError(`${QEMU} not found: install qemu (apt-get install qemu-system-x86)`);
    }
    throw new VmError(`cannot start ${QEMU}: ${exit.error.message}`);
  }
  const reports = parseReports(await readFile(reportFile, 'latin1').catch(() => ''));
  const last = reports.at(-1) ?? '';
  const consoleTail = `--- last guest console lines ---\n${tail.split(/\r?\n/).slice(-15).join('\n')}`;
  if (killedFor === 'deadline') {
    const stage = last === 'ready' ? 'the command was still running' : last === 'booted' ? 'the guest set-up was still running' : 'the guest had not booted';
    throw new VmError(`deadline of ${Math.round(o.deadlineMs / 1000)} s passed and ${stage}: killed qemu (pid ${child.pid})\n${consoleTail}`, EXIT_DEADLINE);
  }
  if (killedFor === 'abort') throw new VmError('run aborted: killed qemu', EXIT_RUNNER_FAILURE);
  const m = /^exit (\d+)$/.exec(last);
  if (m?.[1]) return { exitCode: Number(m[1]), elapsedMs, reports };
  if (last === 'setup-failed') throw new VmError(`the guest set-up failed (scripts/guest-setup.sh)\n${consoleTail}`);
  if (last === 'booted' || last === 'ready') {
    throw new VmError(`the guest stopped before the command reported its exit status (qemu exit code ${exit.code})\n${consoleTail}`);
  }
  if (last === '' && /\b(Oops:|Kernel panic)/.test(tail)) {
    throw new BootCrashError(`the guest kernel crashed while booting, before stage 2 (qemu exit code ${exit.code})\n${consoleTail}`);
  }
  throw new VmError(`the VM did not boot (qemu exit code ${exit.code}, no report from the guest)\n${consoleTail}`);
}
