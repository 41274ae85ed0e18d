// Failover on a real network fault, against multipathd, in one run (issue 6,
// section 5). Runs in the VM with `--topology iscsi` (npm run
// bench:failover-mpathd): one LUN over two iSCSI portals, multipathd managing
// the map; the fault is an nftables drop of one portal (the link stays up, the
// I/O hangs). For each configuration:
//   (a) multipathd with Debian's defaults (open-iscsi noop 5 + 5 s, multipathd
//       polling_interval 5, fast_io_fail_tmo 5 written into recovery_tmo);
//   (b) multipathd tuned as the vendors' iSCSI guides say: open-iscsi README
//       §8.1 (replacement_timeout "5 to 15": 5; NOP-Outs more often: 2 + 2),
//       polling_interval 1 — multipathd at its most eager;
//   (c) the watchdog (timeout 1000 ms, hedged reads) next to multipathd with
//       Debian's defaults, failing through multipathd's `fail path`.
// It measures, from the drop: when the path shows failed in the dm status
// (sampled every 100 ms); when the first read stuck by the fault completes (I/O
// resumed: one reader at queue depth 1, round-robin over the paths, so every
// second read goes to the dead portal); the worst read latency; the reads that
// waited longer than 5 s. A configuration gets at most --cap-s (180) seconds.
import { parseArgs } from 'node:util';
import { DeviceMapper } from '../lib/dm';
import { MultipathMap } from '../lib/multipath';
import {
  dmPathState, reloginWith, sessionTimers, startMultipathd, twoLioDisks, waitFor, waitForMap,
  type LioDisk, type MultipathdConfig, type Multipathd,
} from '../test/vm-iscsi/helpers/iscsi';
import { PortalFaults } from '../test/vm-iscsi/helpers/portal-faults';
import { markdownTable } from './table';
import { openMapReader, type MapReader } from './map-reader';

const faults = new PortalFaults();

const BLOCK = 4096;
const STALL_MS = 500;

const { values } = parseArgs({
  options: {
    'cap-s': { type: 'string', default: '180' },
    'timeout-ms': { type: 'string', default: '1000' },
    only: { type: 'string', default: 'a,c,b' },
  },
});
const CAP_MS = Number(values['cap-s']) * 1000;
const WD_TIMEOUT_MS = Number(values['timeout-ms']);
if (!(CAP_MS > 0) || !(WD_TIMEOUT_MS > 0)) throw new Error('--cap-s and --timeout-ms must be positive numbers');

interface Config {
  id: 'a' | 'b' | 'c';
  label: string;
  mpath: MultipathdConfig;
  tunedIscsi: boolean;
  watchdog: boolean;
}

// Round-robin, one request per path in turn, so that a QD1 reader meets the dead path at its second read at most.
const DEVICE = ['path_selector "round-robin 0"', 'rr_min_io_rq 1'];
const CONFIGS: Config[] = [
  { id: 'a', label: 'multipathd, Debian defaults', mpath: { device: DEVICE }, tunedIscsi: false, watchdog: false },
  { id: 'c', label: `watchdog ${WD_TIMEOUT_MS} ms + multipathd (defaults)`, mpath: { device: DEVICE }, tunedIscsi: false, watchdog: true },
  { id: 'b', label: 'multipathd, tuned for iSCSI', mpath: { defaults: ['polling_interval 1', 'fast_io_fail_tmo 5'], device: DEVICE }, tunedIscsi: true, watchdog: false },
];

interface ReadRec { submit: number; done: number | undefined }

interface Result {
  id: string;
  label: string;
  timers: string;
  failMs: number | undefined;
  resumeMs: number | undefined;
  worstMs: number;
  worstOpen: boolean;
  over5s: number;
  reads: number;
  note: string;
}

const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function runOne(cfg: Config, disks: [LioDisk, LioDisk]): Promise<Result> {
  const victim = disks[1];
  const timers = sessionTimers(victim);
  const mpd: Multipathd = await startMultipathd(cfg.mpath, `/run/mpw-bench-${cfg.id}.log`);
  const dm = new DeviceMapper();
  let reader: MapReader | undefined;
  const reads: ReadRec[] = [];
  let running = true;
  let readLoop: Promise<void> | undefined;
  try {
    const mapName = await waitForMap(mpd, disks, 120_000);
    const mp = await MultipathMap.open(dm, mapName);
    const r = await openMapReader(dm, mapName, 4, cfg.watchdog ? { timeoutMs: WD_TIMEOUT_MS, hedgeReads: true } : null);
    reader = r;
    readLoop = (async () => {
      const buf = r.alloc(BLOCK);
      let i = 0;
      while (running) {
        const rec: ReadRec = { submit: now(), done: undefined };
        reads.push(rec);
        try {
          await r.read(buf, ((i++ * 7919) % r.blocks) * BLOCK);
          rec.done = now();
        } catch {
          rec.done = undefined; // an error is not a successful read
        }
      }
    })();
    await waitFor('warm-up reads', () => reads.filter((r) => r.done !== undefined).length >= 40, 30_000);
    const tDrop = now();
    await faults.drop(victim.portal);
    let failAt: number | undefined;
    // Sample the dm status until the path fails and reads have flowed for 3 s after the last stall, or the cap.
    while (now() - tDrop < CAP_MS) {
      if (failAt === undefined && (await dmPathState(mp, victim.devno)) === 'failed') failAt = now();
      const after = reads.filter((r) => r.submit >= tDrop);
      const open = after.find((r) => r.done === undefined && now() - r.submit > STALL_MS);
      const stalled = after.filter((r) => r.done !== undefined && r.done - r.submit > STALL_MS);
      const lastStallEnd = Math.max(0, ...stalled.map((r) => r.done as number));
      if (failAt !== undefined && !open && stalled.length > 0 && now() - lastStallEnd > 3000) break;
      if (failAt !== undefined && !open && stalled.length === 0 && now() - failAt > 10_000) break;
      await sleep(100);
    }
    const tEnd = now();
    const window = reads.filter((r) => r.submit >= tDrop - 1000 && r.submit <= tEnd);
    const lat = (r: ReadRec): number => (r.done ?? tEnd) - r.submit;
    const worst = window.reduce<ReadRec | undefined>((w, r) => (w === undefined || lat(r) > lat(w) ? r : w), undefined);
    const firstStall = window.find((r) => r.submit >= tDrop && lat(r) > STALL_MS);
    return {
      id: cfg.id,
      label: cfg.label,
      timers: `noop ${timers.noopIntervalS}+${timers.noopTimeoutS} s, recovery_tmo ${timers.recoveryTmoS} s`,
      failMs: failAt === undefined ? undefined : failAt - tDrop,
      resumeMs: firstStall?.done === undefined ? undefined : firstStall.done - tDrop,
      worstMs: worst === undefined ? 0 : lat(worst),
      worstOpen: worst !== undefined && worst.done === undefined,
      over5s: window.filter((r) => lat(r) > 5000).length,
      reads: window.filter((r) => r.done !== undefined && r.submit >= tDrop).length,
      note: firstStall === undefined ? 'no read met the dead path' : '',
    };
  } finally {
    await faults.restore();
    running = false;
    // The stuck read (if any) completes once the session recovers; bounded.
    await Promise.race([readLoop, sleep(120_000)]);
    await reader?.close(60_000);
    for (const d of disks) await mpd.client.reinstatePath(d.name).catch(() => undefined);
    await waitFor('both paths back in multipathd', async () => {
      const paths = await mpd.client.showPaths().catch(() => []);
      return disks.every((d) => paths.find((p) => p.dev === d.name)?.dmState === 'active');
    }, 120_000, 500).catch((e: unknown) => console.error(`# ${cfg.id}: ${(e as Error).message}`));
    await mpd.stop();
  }
}

function fmt(ms: number | undefined): string {
  return ms === undefined ? `> ${CAP_MS / 1000} s` : `${(ms / 1000).toFixed(2)} s`;
}

function ratio(a: number | undefined, c: number | undefined): string {
  if (a === undefined) return c === undefined ? 'n/a' : `> ${(CAP_MS / c).toFixed(1)}x`;
  if (c === undefined) return '< 1x';
  return `${(a / c).toFixed(1)}x`;
}

async function main(): Promise<void> {
  await faults.reset();
  await faults.prepare();
  let disks = twoLioDisks();
  const wanted = new Set(values.only.split(','));
  const results: Result[] = [];
  for (const cfg of CONFIGS.filter((c) => wanted.has(c.id))) {
    if (cfg.tunedIscsi) disks = await reloginWith({ replacementTimeoutS: 5, noopOutIntervalS: 2, noopOutTimeoutS: 2 });
    const t0 = now();
    console.error(`# (${cfg.id}) ${cfg.label}: start`);
    const r = await runOne(cfg, disks);
    console.error(`# (${cfg.id}) done in ${((now() - t0) / 1000).toFixed(0)} s: ${JSON.stringify(r)}`);
    results.push(r);
  }
  console.log(`\nFailover on an nft drop of one iSCSI portal (QD1 4 KiB O_DIRECT reads, round-robin; cap ${CAP_MS / 1000} s)\n`);
  const head = ['config', 'session timers', 'drop -> path failed', 'drop -> I/O resumed', 'worst read', 'reads > 5 s'];
  const rows = results.map((r) => [`(${r.id}) ${r.label}`, r.timers, fmt(r.failMs), fmt(r.resumeMs), `${r.worstOpen ? '> ' : ''}${(r.worstMs / 1000).toFixed(2)} s`, String(r.over5s)]);
  console.log(markdownTable(head, rows));
  for (const r of results) if (r.note) console.log(`(${r.id}): ${r.note}`);
  const c = results.find((r) => r.id === 'c');
  if (c) {
    console.log('');
    for (const peer of results.filter((r) => r.id !== 'c')) {
      console.log(`(${peer.id})/(c): path failed ${ratio(peer.failMs, c.failMs)}, I/O resumed ${ratio(peer.resumeMs, c.resumeMs)}, worst read ${ratio(peer.worstMs, c.worstMs)}`);
    }
  }
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(e);
  process.exit(1);
});
