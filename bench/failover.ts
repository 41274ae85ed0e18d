// bench/failover: how fast the watchdog gets a hung path out of the way, on the
// fault rig of lib/cli/demo-rig.ts (bio-mode multipath over two dm-linear path devices;
// a hang is a noflush suspend of one path device). For each timeout, under a
// QD4 read load through the Watchdog with hedged reads, it measures from the
// fault to: the path-failed event; the path shown failed in the dm status
// (polled through the addon's ioctl); and the first read completed after the
// fail. The peer, in the same run, is the same load with no watchdog: nothing
// fails the path, and a read stuck on it waits for the whole hang (capped).
// multipathd is no peer here: its checkers work on SCSI devices and never see
// the rig's suspended dm-linear path device.
// Run in the VM:
//   node dist/scripts/vm/run.js --deadline 900 -- node dist/bench/failover.js [repetitions, default 3]
import { DeviceMapper } from '../lib/dm';
import { DirectDevice } from '../lib/io';
import { MultipathMap } from '../lib/multipath/map';
import { Watchdog } from '../lib/watchdog/watchdog';
import { createRig, waitFor, type Rig, type RigPath } from '../test/vm/helpers/rig';

const BLOCK = 4096;
const QD = 4;
const BLOCKS = 1024;
const TIMEOUTS = [200, 500, 1000];
/** How long the no-watchdog peer's hang lasts before it is healed. */
const PEER_CAP_MS = 10_000;

/** One failover, ms from the fault (null: did not happen in the run). */
interface Run {
  failMs: number | null;
  statusMs: number | null;
  goodReadMs: number | null;
  /** The longest any caller waited for one read during the hang. */
  maxWaitMs: number;
  /** The path failed was the one hung. */
  rightPath: boolean;
}

/** Something that reads a block. */
type ReadFn = (buf: Buffer, offset: number) => Promise<unknown>;

/** QD readers until stopped: completion times, and the start of every read still pending. */
function readLoad(read: ReadFn, alloc: (n: number) => Buffer) {
  const done: number[] = [];
  const pending = new Set<{ start: number }>();
  const errors: unknown[] = [];
  let maxWait = 0;
  let running = true;
  const workers = Array.from({ length: QD }, async () => {
    const buf = alloc(BLOCK);
    while (running) {
      const rec = { start: performance.now() };
      pending.add(rec);
      try {
        await read(buf, Math.floor(Math.random() * BLOCKS) * BLOCK);
        const now = performance.now();
        done.push(now);
        maxWait = Math.max(maxWait, now - rec.start);
      } catch (e) {
        errors.push(e);
      } finally {
        pending.delete(rec);
      }
    }
  });
  return {
    done,
    errors,
    /** Longest wait so far, counting reads still pending at `at`. */
    maxWaitAt: (at: number): number => Math.max(maxWait, ...[...pending].map((p) => at - p.start)),
    stop: async (): Promise<void> => {
      running = false;
      await Promise.all(workers);
    },
  };
}

/** Polls the map's status through the ioctl until `devno` shows failed; resolves with the time seen, or null after `capMs`. */
async function watchStatus(mp: MultipathMap, devno: string, capMs: number, stop: () => boolean): Promise<number | null> {
  const end = performance.now() + capMs;
  while (performance.now() < end && !stop()) {
    const st = await mp.status();
    const p = st.groups.flatMap((g) => g.paths).find((x) => x.device === devno);
    if (p?.state === 'failed') return performance.now();
    await new Promise((r) => setTimeout(r, 5));
  }
  return null;
}

async function bothUsable(mp: MultipathMap): Promise<boolean> {
  const st = await mp.status();
  return st.groups.flatMap((g) => g.paths).every((p) => p.state === 'active');
}

async function watchdogRun(rig: Rig, mp: MultipathMap, path: RigPath, timeoutMs: number): Promise<Run> {
  const wd = new Watchdog({ map: rig.map, timeoutMs, hedgeReads: true, holdDownMs: 500, probeIntervalMs: 200, reinstateAfter: 3 });
  let failedAt: number | null = null;
  let failedDevno = '';
  let reinstated = false;
  const errors: string[] = [];
  wd.on('path-failed', (e) => {
    if (failedAt === null) {
      failedAt = performance.now();
      failedDevno = e.path.devno;
    }
  });
  wd.on('path-reinstated', () => { reinstated = true; });
  wd.on('error', (e) => errors.push(`${e.during}: ${e.error.message}`));
  await wd.start();
  const load = readLoad((b, o) => wd.read(b, o), (n) => wd.alloc(n));
  let tFault = 0;
  try {
    await waitFor('healthy reads', () => load.done.length >= 50, 30_000);
    let statusDone = false;
    tFault = performance.now();
    await rig.hang(path);
    const status = watchStatus(mp, path.devno, 20_000, () => statusDone);
    await waitFor('path-failed', () => failedAt !== null, 20_000).catch(() => undefined);
    const fail = failedAt as number | null;
    if (fail !== null) await waitFor('a good read after the fail', () => load.done.some((t) => t > fail), 20_000).catch(() => undefined);
    const statusAt = await status.finally(() => { statusDone = true; });
    const good = fail === null ? undefined : load.done.find((t) => t > fail);
    const maxWaitMs = load.maxWaitAt(performance.now());
    await rig.heal(path);
    await waitFor('path-reinstated', () => reinstated, 30_000).catch(() => undefined);
    await waitFor('both paths usable', () => bothUsable(mp), 30_000);
    if (errors.length > 0 || load.errors.length > 0) console.log(`  (errors: ${[...errors, ...load.errors.map(String)].join('; ')})`);
    return {
      failMs: fail === null ? null : fail - tFault,
      statusMs: statusAt === null ? null : statusAt - tFault,
      goodReadMs: good === undefined ? null : good - tFault,
      maxWaitMs,
      rightPath: failedDevno === path.devno,
    };
  } finally {
    await rig.heal(path);
    await load.stop();
    await wd.stop();
  }
}

/** The peer: the same load straight on the map, no watchdog; the hang is healed after PEER_CAP_MS. */
async function peerRun(rig: Rig, mp: MultipathMap, path: RigPath): Promise<Run> {
  const dev = await DirectDevice.open(rig.mapPath, { queueDepth: QD });
  const load = readLoad((b, o) => dev.read(b, o), (n) => dev.alloc(n));
  try {
    await waitFor('healthy reads', () => load.done.length >= 50, 30_000);
    let statusDone = false;
    const tFault = performance.now();
    await rig.hang(path);
    const status = watchStatus(mp, path.devno, PEER_CAP_MS, () => statusDone);
    await new Promise((r) => setTimeout(r, Math.max(0, tFault + PEER_CAP_MS - performance.now())));
    statusDone = true;
    const statusAt = await status;
    const maxWaitMs = load.maxWaitAt(performance.now());
    const tHeal = performance.now();
    await rig.heal(path);
    await waitFor('reads after the heal', () => load.done.some((t) => t > tHeal), 30_000);
    return {
      failMs: null,
      statusMs: statusAt === null ? null : statusAt - tFault,
      goodReadMs: null,
      maxWaitMs,
      rightPath: true,
    };
  } finally {
    await rig.heal(path);
    await load.stop();
    await dev.close();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** "median (min–max)" of the runs that saw the event, with a count of those that did not. */
function cell(xs: (number | null)[]): string {
  const seen = xs.filter((x): x is number => x !== null);
  if (seen.length === 0) return 'never';
  const missed = xs.length - seen.length;
  return `${median(seen).toFixed(0)} (${Math.min(...seen).toFixed(0)}-${Math.max(...seen).toFixed(0)})${missed > 0 ? ` +${missed} never` : ''}`;
}

async function main(): Promise<void> {
  const reps = Number(process.argv[2] ?? process.env['BENCH_REPS'] ?? 3);
  const rig = await createRig('mpw-bench-fo');
  const rows: { name: string; timeoutMs: number | null; runs: Run[] }[] = [];
  try {
    const mp = await MultipathMap.open(new DeviceMapper(), rig.map);
    console.log(`fault rig ${rig.map}: bio-mode multipath, round-robin over ${rig.paths.map((p) => p.name).join(' and ')}; QD${QD} 4 KiB reads; hang = noflush suspend`);
    for (const timeoutMs of TIMEOUTS) {
      const runs: Run[] = [];
      for (let i = 0; i < reps; i++) {
        const path = rig.paths[i % 2] as RigPath;
        const r = await watchdogRun(rig, mp, path, timeoutMs);
        console.log(`  timeout ${timeoutMs} ms, run ${i + 1}, hang ${path.name}: fail ${r.failMs?.toFixed(0) ?? 'never'} ms, status ${r.statusMs?.toFixed(0) ?? 'never'} ms, first good read ${r.goodReadMs?.toFixed(0) ?? 'never'} ms, longest wait ${r.maxWaitMs.toFixed(0)} ms${r.rightPath ? '' : ', WRONG PATH FAILED'}`);
        runs.push(r);
      }
      rows.push({ name: `watchdog ${timeoutMs} ms`, timeoutMs, runs });
    }
    const peer = await peerRun(rig, mp, rig.paths[0]);
    console.log(`  no watchdog, hang ${rig.paths[0].name} for ${PEER_CAP_MS} ms: status ${peer.statusMs?.toFixed(0) ?? 'never failed'}, longest wait ${peer.maxWaitMs.toFixed(0)} ms`);
    rows.push({ name: 'no watchdog (peer)', timeoutMs: null, runs: [peer] });
  } finally {
    await rig.teardown();
  }
  const line = (c: string[]): string => c.map((s, i) => (i === 0 ? s.padEnd(20) : s.padStart(i === 1 ? 5 : 19))).join(' ');
  console.log('\nms from the fault, median (min-max) over the runs');
  console.log(line(['', 'runs', 'path-failed event', 'F in dm status', 'first good read', 'fail - timeout', 'longest read wait']));
  for (const r of rows) {
    const fails = r.runs.map((x) => x.failMs);
    const over = r.timeoutMs === null ? '-' : cell(fails.map((f) => (f === null ? null : f - (r.timeoutMs as number))));
    const wrong = r.runs.filter((x) => !x.rightPath).length;
    console.log(line([
      r.name + (wrong > 0 ? ` (${wrong} wrong)` : ''),
      String(r.runs.length),
      cell(fails),
      cell(r.runs.map((x) => x.statusMs)),
      r.timeoutMs === null ? '-' : cell(r.runs.map((x) => x.goodReadMs)),
      over,
      `${cell(r.runs.map((x) => x.maxWaitMs))}${r.timeoutMs === null ? ' (cap)' : ''}`,
    ]));
  }
  console.log(`no watchdog: nothing fails the path; every reader ends up stuck on the hung path until it is healed at ${PEER_CAP_MS} ms (the cap)`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
