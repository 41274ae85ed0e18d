// `mpath-watchdog demo`: the project's main job, live, in the test VM. It
// builds the fault rig, shows what a hung path does to reads without the
// watchdog (they wait as long as the path does), then runs the Watchdog under a
// verified read and write load, hangs the same path, and narrates detection,
// fail, I/O going on, resume and reinstate, with measured timings; on a
// terminal, a live panel shows the paths, the I/O in flight, a latency
// sparkline per path and the recent decisions.
import { DirectDevice } from '../io/direct-device';
import { Watchdog } from '../watchdog/watchdog';
import type { PathFailedEvent, PathReinstatedEvent } from '../watchdog/events';
import { EXIT, parse, parseDuration, positionals } from './args';
import { COMMON_OPTIONS, type Command } from './command';
import { createDemoRig, type DemoPath, type DemoRig } from './demo-rig';
import { CliError, errorLine, type CliIo } from './output';
import { DemoView, TickLatency } from './demo-view';
import { ChecksummedBlocks } from './verified-blocks';

const BLOCK = 4096;
/** Checksummed blocks of the verified load (4 MiB). */
const BLOCKS = 1024;
/** Concurrent readers and writers of the load. */
const READERS = 4;
const WRITERS = 2;
/** Panel refresh, and the sparkline's width in ticks (10 s). */
const TICK_MS = 250;
const SPARK_WIDTH = 40;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves when cond() holds (polled every 10 ms); CliError after `ms`. */
async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new CliError(`demo: no ${what} within ${(ms / 1000).toFixed(0)} s`);
    await sleep(10);
  }
}

/** The demo's measured results. */
export interface DemoSummary {
  /** Reads started on the hung path without the watchdog, and how many were still pending after the wait. */
  baseline: { reads: number; stuck: number; waitedMs: number };
  faultToFailMs: number;
  /** Fault to the first read completed after the fail. */
  faultToFirstGoodReadMs: number;
  /** Longest time with no read completing, while the path hung. */
  longestStallMs: number;
  resumeToReinstateMs: number;
  reads: number;
  writes: number;
  hedged: number;
  /** I/O errors, watchdog errors and reads that did not match what was written. */
  errors: number;
  /** Reads checked against the last acknowledged write, during the load and in the final read-back of every block. */
  verified: number;
  /** Blocks that did not read back as last written at the end. */
  mismatches: number;
}

/** Writes the checksummed blocks through the map, then shows reads on a hung path waiting with no watchdog. */
async function baseline(rig: DemoRig, victim: DemoPath, blocks: ChecksummedBlocks, waitMs: number, say: (s: string) => void): Promise<DemoSummary['baseline']> {
  const dev = await DirectDevice.open(rig.mapPath, { queueDepth: 32 });
  try {
    await blocks.fill(dev);
    say(`wrote ${BLOCKS} checksummed blocks (${(BLOCKS * BLOCK) >> 20} MiB) through the map`);
    say('');
    say(`1. WITHOUT the watchdog: hang path ${victim.name} (dmsetup suspend --noflush ${victim.dmName}), then read`);
    await rig.hang(victim);
    const t0 = performance.now();
    const n = 8;
    let pending = n;
    const reads: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) reads.push(dev.read(dev.alloc(BLOCK), i * BLOCK).finally(() => void pending--));
    await sleep(waitMs);
    const stuck = pending;
    say(`   after ${(waitMs / 1000).toFixed(1)} s, ${stuck} of ${n} reads are still waiting: dm-multipath has no timer of its own,`);
    say('   so a read routed to a silent path waits as long as the path does (on a SAN: SCSI timeouts,');
    say('   retries and error handling, often minutes). The other reads went to the healthy path.');
    await rig.heal(victim);
    await Promise.all(reads);
    say(`   path resumed: the stuck reads completed ${((performance.now() - t0) / 1000).toFixed(1)} s after they were issued`);
    return { reads: n, stuck, waitedMs: waitMs };
  } finally {
    await dev.close();
  }
}

/** Runs the demo on a fresh rig; prints the narrative (and, when live, the panel) through `view`. */
export async function runDemo(options: { timeoutMs: number; baselineMs: number }, view: DemoView): Promise<DemoSummary> {
  const t00 = performance.now();
  const secs = (t: number): string => `${((t - t00) / 1000).toFixed(2).padStart(6)} s`;
  const say = (s: string): void => view.say(s);
  const at = (s: string): void => say(`[${secs(performance.now())}] ${s}`);
  const rig = await createDemoRig('mpw-demo');
  say('mpath-watchdog demo: a per-I/O latency watchdog for dm-multipath, on a real kernel');
  const [victim, other] = rig.paths;
  const blocks = new ChecksummedBlocks({ blocks: BLOCKS, blockSize: BLOCK });
  let wd: Watchdog | undefined;
  let load: { stop: () => Promise<void> } | undefined;
  let ticker: NodeJS.Timeout | undefined;
  try {
    say(`rig: map ${rig.map} (bio-based, round-robin) over two paths to one LUN (WWID ${victim.disk.wwid}):`);
    for (const p of rig.paths) say(`     ${p.name} (${p.devno}) = dm-linear ${p.dmName} over ${p.disk.name} (${p.disk.devno})`);
    const base = await baseline(rig, victim, blocks, options.baselineMs, say);

    say('');
    say(`2. WITH the watchdog: timeout ${options.timeoutMs} ms, hedged reads, ${READERS} readers and ${WRITERS} writers, every block checksummed`);
    const w = new Watchdog({ map: rig.map, timeoutMs: options.timeoutMs, hedgeReads: true, holdDownMs: 2000, probeIntervalMs: 250, reinstateAfter: 3 });
    wd = w;
    const done: number[] = [];
    const errors: string[] = [];
    const decisions: string[] = [];
    const decide = (line: string): void => {
      decisions.push(`${secs(performance.now())}  ${line}`);
      if (decisions.length > 4) decisions.shift();
      at(line);
    };
    let failed: { at: number; e: PathFailedEvent } | undefined;
    let reinstated: { at: number; e: PathReinstatedEvent } | undefined;
    let lateSeen = false;
    w.on('io-late', (e) => {
      if (lateSeen) return;
      lateSeen = true;
      const who = e.paths.map((p) => p.name).join(', ') || 'no path yet';
      decide(`io-late: a ${e.op} at offset ${e.offset} is ${e.lateByMs.toFixed(0)} ms past its deadline; attribution (${e.attribution.method}) names ${who}`);
    });
    w.on('path-failed', (e) => {
      failed ??= { at: performance.now(), e };
      decide(`path-failed: ${e.path.name} (${e.path.devno}) failed by ${e.action}, ${e.sinceFaultMs.toFixed(0)} ms after the first sign of the fault`);
    });
    w.on('path-reinstated', (e) => {
      reinstated ??= { at: performance.now(), e };
      decide(`path-reinstated: ${e.path.name} after ${e.evidence.fastProbes} fast probes`);
    });
    w.on('last-path-kept', (e) => decide(`last-path-kept: ${e.path.name} stays, ${e.usablePaths} usable path(s) left`));
    w.on('error', (e) => {
      errors.push(`${e.during}: ${errorLine(e.error)}`);
      at(`error during ${e.during}: ${errorLine(e.error)}`);
    });
    await w.start();
    load = blocks.run(w, { writers: WRITERS, readers: READERS }, (kind, t) => { if (kind === 'read') done.push(t); });

    if (view.live) {
      const lat = rig.paths.map((p) => new TickLatency(p.name, SPARK_WIDTH));
      let drawing = false;
      ticker = setInterval(() => {
        if (drawing) return;
        drawing = true;
        void Promise.all(lat.map((l) => l.tick())).then(() => {
          const s = w.stats();
          const rows = rig.paths.map((p, i) => {
            const ps = s.paths.find((x) => x.devno === p.devno);
            const p50 = ps && ps.samples > 0 ? `${ps.p50Ms.toFixed(1)} ms` : '-';
            return ` ${p.name.padEnd(5)} ${(ps?.state ?? '?').padEnd(7)} |${(lat[i] as TickLatency).spark()}| ${p50}`;
          });
          view.panel([
            `── live ${secs(performance.now())} ── map ${rig.map} ── timeout ${options.timeoutMs} ms ──`,
            ` path  state   |latency per ${TICK_MS} ms, last ${(SPARK_WIDTH * TICK_MS) / 1000} s (log 1 ms..2 s)| p50`,
            ...rows,
            ` in flight ${s.inflight} (${s.late} late) · reads ${blocks.reads} · writes ${blocks.writes} · hedged ${s.hedged} · errors ${blocks.errors.length + errors.length}`,
            ' recent decisions:',
            ...(decisions.length === 0 ? ['   (none yet)'] : decisions.map((d) => `   ${d}`)),
          ]);
        }).finally(() => { drawing = false; });
      }, TICK_MS);
    }
    const progress = (label: string): void => {
      const s = w.stats();
      const paths = s.paths.map((p) => `${p.name} ${p.state}`).join(', ');
      at(`${label}: ${blocks.reads} reads, ${blocks.writes} writes, p50 ${s.p50Ms.toFixed(1)} ms, in flight ${s.inflight} (${s.late} late), paths: ${paths}`);
    };
    await sleep(2000);
    progress('healthy');

    const tFault = performance.now();
    await rig.hang(victim);
    at(`FAULT: path ${victim.name} hangs (suspend --noflush ${victim.dmName})`);
    await until('path-failed', () => failed !== undefined, 30_000);
    const f = failed as { at: number; e: PathFailedEvent };
    await until('read after the fail', () => done.some((t) => t > f.at), 30_000);
    const firstGood = done.find((t) => t > f.at) as number;
    at(`first read completed after the fail: ${(firstGood - tFault).toFixed(0)} ms after the fault`);
    const before = blocks.reads + blocks.writes;
    await sleep(2000);
    progress(`on ${other.name} alone`);
    at(`${blocks.reads + blocks.writes - before} I/Os in 2 s while ${victim.name} is still hung; ${w.stats().hedged} late reads were hedged to ${other.name}`);

    const tHeal = performance.now();
    await rig.heal(victim);
    at(`RESUME: path ${victim.name} answers again (dmsetup resume ${victim.dmName})`);
    await until('path-reinstated', () => reinstated !== undefined, 30_000);
    const r = reinstated as { at: number; e: PathReinstatedEvent };
    await sleep(1000);
    progress('recovered');
    await load.stop();
    if (ticker) clearInterval(ticker);
    ticker = undefined;
    view.close();
    const final = await blocks.verifyAll(w);
    at(`read back all ${final.checked} blocks through the map: ${final.bad.length} not as last written`);

    let longestStallMs = 0;
    let prev = tFault;
    for (const t of done) {
      if (t < tFault) continue;
      if (t > f.at + 2000) break;
      longestStallMs = Math.max(longestStallMs, t - prev);
      prev = t;
    }
    return {
      baseline: base,
      faultToFailMs: f.at - tFault,
      faultToFirstGoodReadMs: firstGood - tFault,
      longestStallMs,
      resumeToReinstateMs: r.at - tHeal,
      reads: blocks.reads,
      writes: blocks.writes,
      hedged: w.stats().hedged,
      errors: errors.length + blocks.errors.length,
      verified: blocks.verified + final.checked,
      mismatches: final.bad.length,
    };
  } finally {
    if (ticker) clearInterval(ticker);
    view.close();
    // Resume first: a reader or stop() waiting on the hung path then finishes.
    for (const p of rig.paths) await rig.heal(p).catch(() => undefined);
    await load?.stop();
    await wd?.stop({ signal: AbortSignal.timeout(5000) }).catch(() => undefined);
    await rig.teardown();
    say(`[${secs(performance.now())}] rig removed`);
  }
}

/** The summary block of the narrative. */
export function formatSummary(s: DemoSummary, timeoutMs: number): string {
  const ok = (b: boolean): string => (b ? 'ok' : 'FAILED');
  return [
    'summary',
    `  without the watchdog:     ${s.baseline.stuck} of ${s.baseline.reads} reads stuck for ${(s.baseline.waitedMs / 1000).toFixed(1)} s, until the path came back`,
    `  with it, fault -> fail:   ${s.faultToFailMs.toFixed(0)} ms (timeout ${timeoutMs} ms)`,
    `  fault -> first good read: ${s.faultToFirstGoodReadMs.toFixed(0)} ms (first read completed after the fail)`,
    `  longest read stall:       ${s.longestStallMs.toFixed(0)} ms with no read completing`,
    `  resume -> reinstate:      ${s.resumeToReinstateMs.toFixed(0)} ms (hold-down 2000 ms, 3 fast probes)`,
    `  reads completed:          ${s.reads} (${s.hedged} hedged)`,
    `  writes completed:         ${s.writes}`,
    `  errors:                   ${s.errors} ${ok(s.errors === 0)}`,
    `  data verified:            ${s.verified} reads checked, ${s.mismatches} blocks not as last written ${ok(s.mismatches === 0)}`,
  ].join('\n');
}

const OPTIONS = {
  ...COMMON_OPTIONS, timeout: { type: 'string', default: '1s' }, baseline: { type: 'string', default: '3s' }, plain: { type: 'boolean', default: false },
} as const;

/** The live panel needs a terminal at the far end: the VM runner says whether its own stdout is one (the guest console always is). */
export function wantLive(isTTY: boolean | undefined, env: NodeJS.ProcessEnv, plain: boolean): boolean {
  return !plain && isTTY === true && env['MPW_HOST_TTY'] !== '0' && env['TERM'] !== 'dumb' && env['CI'] === undefined;
}

/** The demo subcommand. */
export const demoCommand: Command = {
  name: 'demo',
  summary: 'the live demo (run it in the test VM: npm run demo)',
  help: `usage: mpath-watchdog demo [--timeout 1s] [--baseline 3s]

The live demo. Needs root and two scsi_debug disks showing one LUN, as the test
VM has (run it with: npm run demo). It builds a bio-based multipath map over two
dm-linear path devices, writes checksummed blocks, and then:
  1. without the watchdog, hangs one path and shows reads waiting on it;
  2. with the watchdog, runs a verified read and write load, hangs the same path,
     shows the detection, the fail and I/O going on, resumes the path and shows
     the reinstatement, reads every block back, and prints the measured timings.
On a terminal a live panel, redrawn 4 times a second, shows the paths and their
state, the I/O in flight, a latency sparkline per path and the recent decisions;
otherwise (or with --plain) the narrative is plain text.
Everything it made is removed at the end, also after an error. Exit 0 when the
path was failed and reinstated with no error and every block verified.

options:
  --timeout DUR   the watchdog's timeout (default 1s)
  --baseline DUR  how long part 1 waits on the hung path (default 3s)
  --plain         no live panel, plain text only
  -h, --help      this text`,
  async run(argv, io: CliIo) {
    const { values, positionals: pos } = parse('demo', argv, OPTIONS);
    positionals('demo', pos, []);
    const timeoutMs = parseDuration(values.timeout, 'timeout', 'demo');
    const baselineMs = parseDuration(values.baseline, 'baseline', 'demo');
    const view = new DemoView(io.stdout, wantLive(io.stdout.isTTY, process.env, values.plain));
    const summary = await runDemo({ timeoutMs, baselineMs }, view);
    io.stdout.write(`\n${formatSummary(summary, timeoutMs)}\n`);
    return summary.errors === 0 && summary.mismatches === 0 ? EXIT.ok : EXIT.failure;
  },
};
