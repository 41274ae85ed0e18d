// Attribution against the real kernel: a bio-mode multipath map over two
// dm-linear "path" devices on the scsi_debug disks; one path device is
// suspended with noflush while a dd reads through the map. The sysfs readers
// must see what was measured in the VM (path 0 0, map 1 0), and attribution,
// with a probe that is a child `dd iflag=direct`, must name the suspended path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { scsiDebugDisks, sectors } from './helpers/scsi';
import { parseMultipathStatusLine, resolveBlockDevice } from '../../lib/multipath';
import {
  Attributor,
  CounterSampler,
  SystemClock,
  readCounters,
  readInflight,
  resolveUsablePaths,
  type PathRef,
  type ProbeRead,
} from '../../lib/watchdog';

/** What the test needs of an execa child (execa is ESM-only, so no type import). */
interface ChildResult {
  exitCode?: number | undefined;
  signal?: string | undefined;
  stderr: unknown;
}
type Child = Promise<ChildResult> & { kill(signal?: NodeJS.Signals): boolean };
type Spawn = (file: string, args: readonly string[]) => Child;

const PATH_A = 'mpw-attr-a';
const PATH_B = 'mpw-attr-b';
const MAP = 'mpw-attr-map';
const PROBE_TIMEOUT_MS = 3000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function pathRef(dmName: string): Promise<PathRef> {
  const d = await resolveBlockDevice(`/dev/mapper/${dmName}`);
  return { devno: d.devno, name: d.name };
}

/** Waits for a condition on real time, for the kernel to get there. */
async function waitFor(what: string, cond: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * A probe read as a child dd. At the deadline it is killed, but its promise
 * settles only when dd really exits: a dd in D state outlives SIGKILL until
 * the path resumes, and a probe still outstanding is what stops the
 * attributor from stacking a second dd on the hung path.
 */
function ddProbe(spawn: Spawn, children: Child[]): ProbeRead {
  return async (path, signal) => {
    const t0 = performance.now();
    const child = spawn('dd', [`if=/dev/${path.name}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct']);
    children.push(child);
    const onAbort = (): void => {
      child.kill('SIGKILL');
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const r = await child;
    signal.removeEventListener('abort', onAbort);
    if (r.exitCode !== 0) throw new Error(`dd on ${path.name} exited ${String(r.exitCode ?? r.signal)}: ${String(r.stderr)}`);
    return { latencyMs: performance.now() - t0 };
  };
}

test('a bio held by a suspended path device: sysfs shows it only on the map, probes name the path', async () => {
  const { execa } = await import('execa');
  const spawn: Spawn = (file, args) => execa(file, args, { reject: false });
  const [sa, sb] = scsiDebugDisks();
  assert.ok(sa && sb);
  const size = sectors(sa.name);
  const created: string[] = [];
  const suspended: string[] = [];
  const children: Child[] = [];
  try {
    for (const [name, disk] of [[PATH_A, sa], [PATH_B, sb]] as const) {
      await execa('dmsetup', ['create', name, '--table', `0 ${size} linear ${disk.devno} 0`]);
      created.push(name);
    }
    const a = await pathRef(PATH_A);
    const b = await pathRef(PATH_B);
    // queue_mode takes an argument, so the feature count is 2.
    await execa('dmsetup', ['create', MAP, '--table', `0 ${size} multipath 2 queue_mode bio 0 1 1 round-robin 0 2 1 ${a.devno} 1 ${b.devno} 1`]);
    created.push(MAP);
    const map = await pathRef(MAP);

    const status = parseMultipathStatusLine((await execa('dmsetup', ['status', MAP])).stdout);
    const paths = await resolveUsablePaths(status.params);
    assert.deepStrictEqual(paths, [a, b], 'the usable paths, named through sysfs');

    const clock = new SystemClock();
    const sampler = new CounterSampler({ clock, intervalMs: PROBE_TIMEOUT_MS / 4, devices: [a, b, map] });
    const baseline = await sampler.sampleNow();
    assert.deepStrictEqual(baseline.errors, []);
    for (const d of [a, b, map]) assert.deepStrictEqual(baseline.snapshots.get(d.devno)?.inflight, { reads: 0, writes: 0 }, `${d.name} idle`);

    await execa('dmsetup', ['suspend', '--noflush', PATH_A]);
    suspended.push(PATH_A);
    const submitMs = clock.now();
    children.push(spawn('dd', [`if=/dev/${map.name}`, 'of=/dev/null', 'bs=4096', 'count=16', 'iflag=direct']));
    await waitFor(`a read in flight on ${map.name}`, async () => (await readInflight(map.name)).reads > 0);
    // Let it settle: round-robin may have sent a first read to the healthy path.
    await sleep(500);

    const now = await Promise.all([a, b, map].map((d) => readCounters(d.name)));
    const disksNow = await Promise.all([sa, sb].map((d) => readInflight(d.name)));
    const [ca, cb, cmap] = now;
    console.log('sysfs while the path is suspended:', JSON.stringify({ [a.name]: ca?.inflight, [b.name]: cb?.inflight, [map.name]: cmap?.inflight, [sa.name]: disksNow[0], [sb.name]: disksNow[1] }));
    assert.deepStrictEqual(ca?.inflight, { reads: 0, writes: 0 }, 'the suspended path device does not count the bio it holds');
    assert.deepStrictEqual(cmap?.inflight, { reads: 1, writes: 0 }, 'the map counts it');
    assert.equal(cmap?.stat.inFlight, 1, 'and so does the map stat field 9');
    assert.deepStrictEqual(cb?.inflight, { reads: 0, writes: 0 });
    assert.deepStrictEqual(disksNow, [{ reads: 0, writes: 0 }, { reads: 0, writes: 0 }], 'nor do the SCSI disks below');

    const attributor = new Attributor({ clock, probe: ddProbe(spawn, children), probeTimeoutMs: PROBE_TIMEOUT_MS, history: sampler });
    const r = await attributor.attribute({ submitMs, map, paths });
    console.log('attribution:', JSON.stringify(r));
    assert.equal(r.method, 'probe');
    assert.deepStrictEqual(r.suspects.map((s) => s.path), [a]);
    const e = r.suspects[0]?.evidence;
    // Elimination names it once the healthy path answered (outlasted); a slow healthy probe leaves it to the deadline.
    assert.ok(e?.kind === 'probe' && (e.verdict.kind === 'outlasted' || e.verdict.kind === 'timeout'), JSON.stringify(e));
    assert.ok(e.sysfs.kind === 'counters' && e.sysfs.reading === 'idle', 'no sysfs evidence on the held path');
    const pb = r.details.paths[1]?.probe;
    assert.ok(pb?.kind === 'fast', `the healthy path's probe: ${JSON.stringify(pb)}`);
    assert.ok(r.details.map?.kind === 'counters' && r.details.map.heldAbovePaths === 1, JSON.stringify(r.details.map));

    // A second attribution while the first probe still hangs does not send another.
    const r2 = await attributor.attribute({ submitMs, map, paths });
    assert.deepStrictEqual(r2.suspects.map((s) => s.path), [a]);
    // Before the first probe's deadline the second attribution joins it (named by elimination or by
    // the deadline); after it, it hears "hung". In every case no probe is added to the hung path.
    const v2 = r2.suspects[0]?.evidence.kind === 'probe' ? r2.suspects[0].evidence.verdict.kind : undefined;
    assert.ok(v2 === 'hung' || v2 === 'timeout' || v2 === 'outlasted', `second verdict: ${String(v2)}`);
    assert.equal(attributor.probesIssued, 3, 'two probes on the healthy path, one on the hung one');
  } finally {
    // Resume first, so every read held by the suspended path completes and its dd exits.
    for (const name of suspended) await execa('dmsetup', ['resume', name], { reject: false });
    await Promise.race([Promise.allSettled(children), sleep(30_000)]);
    for (const name of created.reverse()) {
      for (let i = 0; i < 20; i++) {
        const r = await execa('dmsetup', ['remove', name], { reject: false });
        if (r.exitCode === 0) break;
        await sleep(250);
      }
    }
  }
  const { stdout } = await execa('dmsetup', ['ls']);
  assert.doesNotMatch(stdout, /mpw-attr/);
});
