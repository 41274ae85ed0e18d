// Slow paths over iSCSI (issue 9): a portal whose round trip is delayed with
// netem stays up (its NOP-Outs and multipathd's TUR answer in time), so
// multipathd never fails it; the watchdog does, by its absolute timeout or by
// the slowFactor outlier rule, through multipathd's `fail path`. Real LIO
// target, open-iscsi, multipathd and netem in the guest (`--topology iscsi`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Watchdog, type WatchdogOptions } from '../../lib/index';
import { dmPathState, useRoundRobinMap, waitFor } from './helpers/iscsi';
import { within } from '../helpers/within';
import { PortalFaults } from './helpers/portal-faults';
import { ChecksummedBlocks } from '../../lib/cli/verified-blocks';
import { record, type Recorded } from '../vm/helpers/events';

const BLOCK = 4096;
const POLL_S = 2;

const faults = new PortalFaults();
const rig = useRoundRobinMap(POLL_S, faults);

/** One read or write as the caller saw it. */
interface Op { submit: number; done: number; ms: number; error: unknown }

/** Readers at random offsets through the watchdog until stopped; every result kept. */
function readLoad(wd: Watchdog, workers = 4): { ops: Op[]; stop: () => Promise<void> } {
  const ops: Op[] = [];
  let running = true;
  const all = Array.from({ length: workers }, async () => {
    const buf = wd.alloc(BLOCK);
    while (running) {
      const submit = performance.now();
      let error: unknown = null;
      try {
        await wd.read(buf, Math.floor(Math.random() * 4096) * BLOCK);
      } catch (e) {
        error = e;
      }
      const done = performance.now();
      ops.push({ submit, done, ms: done - submit, error });
    }
  });
  return { ops, stop: async () => { running = false; await Promise.all(all); } };
}

/** Both paths active in the dm status and in multipathd (bounded), so each test starts healthy. */
async function bothActive(): Promise<void> {
  const d = rig().mpd;
  for (const p of rig().disks) await d.client.reinstatePath(p.name).catch(() => undefined);
  await waitFor('both paths active', async () => {
    const paths = await d.client.showPaths().catch(() => []);
    const dmOk = await Promise.all(rig().disks.map(async (p) => (await dmPathState(rig().map, p.devno)) === 'active'));
    return dmOk.every(Boolean) && rig().disks.every((p) => paths.find((x) => x.dev === p.name)?.dmState === 'active');
  }, 60_000, 200);
}

/**
 * Starts a watchdog with a read load, runs `body`, then stops the load and the
 * watchdog before it restores the network (a restore under load would be a
 * change the watchdog could judge), each step bounded and run even when the
 * one before failed.
 */
async function withWatchdog(
  options: Omit<WatchdogOptions, 'map'>,
  body: (wd: Watchdog, ev: Recorded, ops: Op[]) => Promise<void>,
): Promise<{ ev: Recorded; ops: Op[] }> {
  await bothActive();
  const wd = new Watchdog({ map: rig().name, ...options });
  const ev = record(wd);
  await wd.start();
  const load = readLoad(wd);
  try {
    await waitFor('healthy reads', () => load.ops.length >= 50, 30_000);
    await body(wd, ev, load.ops);
  } finally {
    try {
      await within('the read load to stop', load.stop(), 30_000);
    } finally {
      try {
        await within('the watchdog to stop', wd.stop(), 30_000);
      } finally {
        await faults.restore();
      }
    }
  }
  assert.deepEqual(load.ops.filter((o) => o.error !== null).map((o) => String(o.error)), [], 'no read returned an error');
  assert.deepEqual(ev.error.map((e) => e.payload.error.message), [], 'the watchdog reported no error');
  return { ev, ops: load.ops };
}

const q = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
};

test('a 2000 ms delay on one portal: failed at timeout 500 ms, reads go on at healthy latency, reinstated only once probes are fast again', { timeout: 180_000 }, async () => {
  const victim = rig().disks[1];
  const timeoutMs = 500;
  await withWatchdog({ timeoutMs, hedgeReads: true, holdDownMs: 1000, probeIntervalMs: 250, reinstateAfter: 3 }, async (wd, ev, ops) => {
    // From the moment the last filter is in: the fault is in force from there.
    await faults.delay(victim.portal, 2000);
    const tDelay = performance.now();
    await waitFor('path-failed', () => ev['path-failed'].length > 0, 30_000);
    const failed = ev['path-failed'][0]!;
    assert.equal(failed.payload.path.devno, victim.devno);
    assert.equal(failed.payload.action, 'multipathd');
    assert.equal(failed.payload.evidence.reason, 'timeout');
    assert.equal(await dmPathState(rig().map, victim.devno), 'failed');
    const failMs = failed.at - tDelay;
    console.log(`# delay 2000 ms on ${victim.portal}: ${victim.name} failed ${(failMs / 1000).toFixed(2)} s after the delay began`);

    // With the path out, new reads go to the healthy portal: none of them is late.
    await new Promise((r) => setTimeout(r, 4000));
    const afterFail = ops.filter((o) => o.submit > failed.at + 500);
    assert.ok(afterFail.length >= 20, `reads went on after the fail (${afterFail.length})`);
    const ms = afterFail.map((o) => o.ms);
    console.log(`# reads after the fail: ${ms.length}, p50 ${q(ms, 0.5).toFixed(1)} ms, max ${Math.max(...ms).toFixed(1)} ms`);
    assert.ok(Math.max(...ms) < timeoutMs, `no read after the fail reached the timeout (max ${Math.max(...ms).toFixed(0)} ms)`);

    // Probes of the still-slow path are slow: no reinstate while the delay lasts.
    assert.equal(ev['path-reinstated'].length, 0, 'not reinstated while slow');
    assert.equal(await dmPathState(rig().map, victim.devno), 'failed');
    const seen = (await rig().mpd.client.showPaths()).find((p) => p.dev === victim.name);
    assert.equal(seen?.dmState, 'failed', 'multipathd keeps it failed (its checker would not: TUR still answers)');

    // The delay is lifted at the start of restore() (it then lets the held packets out).
    const tRestore = performance.now();
    await faults.restore();
    await waitFor('path-reinstated after restore', () => ev['path-reinstated'].length > 0, 60_000, 100);
    const back = ev['path-reinstated'][0]!;
    assert.equal(back.payload.path.devno, victim.devno);
    assert.ok(back.at > tRestore, 'reinstated after the network was restored, not before');
    assert.ok(back.payload.evidence.fastProbes >= 3);
    assert.equal(await dmPathState(rig().map, victim.devno), 'active');
    console.log(`# restored: ${victim.name} reinstated ${((back.at - tRestore) / 1000).toFixed(2)} s later, after ${back.payload.evidence.fastProbes} fast probes`);
    void wd;
  });
});

test('a 100 ms delay: failed by the slowFactor outlier rule when it is on, and by nothing when it is off', { timeout: 180_000 }, async () => {
  const victim = rig().disks[1];
  // Off: the timeout (1000 ms) is far above the slow path; nothing may fail it.
  const off = await withWatchdog({ timeoutMs: 1000 }, async (_wd, _ev, ops) => {
    const t0 = performance.now();
    await faults.delay(victim.portal, 100);
    await new Promise((r) => setTimeout(r, 12_000));
    const during = ops.filter((o) => o.submit > t0 + 500).map((o) => o.ms);
    assert.ok(during.filter((ms) => ms >= 100).length > 0, 'the delay is in force: some reads took >= 100 ms');
    console.log(`# slowFactor off, 100 ms delay: ${during.length} reads, p50 ${q(during, 0.5).toFixed(1)} ms, p99 ${q(during, 0.99).toFixed(1)} ms`);
  });
  assert.equal(off.ev['path-failed'].length, 0, 'slowFactor off: no path failed');
  assert.equal(off.ev['last-path-kept'].length, 0);

  // On: the slow path's median is many times the other's.
  await withWatchdog({ timeoutMs: 1000, slowFactor: 3, holdDownMs: 1000, probeIntervalMs: 250, reinstateAfter: 3 }, async (wd, ev) => {
    await faults.delay(victim.portal, 100);
    const t0 = performance.now();
    await waitFor('path-failed by the outlier rule', () => ev['path-failed'].length > 0, 40_000).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}; stats: ${JSON.stringify(wd.stats().paths)}`);
    });
    const failed = ev['path-failed'][0]!;
    assert.equal(failed.payload.path.devno, victim.devno);
    const evidence = failed.payload.evidence;
    assert.equal(evidence.reason, 'slow', `failed by the outlier rule: ${JSON.stringify(evidence)}`);
    if (evidence.reason === 'slow') {
      assert.ok(evidence.medianMs >= 3 * evidence.bestMedianMs);
      console.log(`# slowFactor 3, 100 ms delay: ${victim.name} failed ${((failed.at - t0) / 1000).toFixed(2)} s after the delay began (median ${evidence.medianMs.toFixed(1)} ms vs best ${evidence.bestMedianMs.toFixed(1)} ms over ${evidence.samples} samples)`);
    }
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(ev['path-reinstated'].length, 0, 'probes judged by the same rule: still slow, not reinstated');
    // The delay is lifted at the start of restore() (it then lets the held packets out).
    const tRestore = performance.now();
    await faults.restore();
    await waitFor('path-reinstated after restore', () => ev['path-reinstated'].length > 0, 60_000, 100);
    assert.ok(ev['path-reinstated'][0]!.at > tRestore);
  });
});

test('a delay of half the timeout with slowFactor off fails nothing (no false positive)', { timeout: 120_000 }, async () => {
  const victim = rig().disks[1];
  const timeoutMs = 500;
  const { ev } = await withWatchdog({ timeoutMs }, async (_wd, _ev, ops) => {
    const t0 = performance.now();
    await faults.delay(victim.portal, timeoutMs / 2);
    await new Promise((r) => setTimeout(r, 12_000));
    const during = ops.filter((o) => o.submit > t0 + 500).map((o) => o.ms);
    assert.ok(during.filter((ms) => ms >= timeoutMs / 2).length > 0, `the delay is in force: some reads took >= ${timeoutMs / 2} ms`);
    console.log(`# ${timeoutMs / 2} ms delay, timeout ${timeoutMs} ms: ${during.length} reads, p50 ${q(during, 0.5).toFixed(1)} ms, max ${Math.max(...during).toFixed(1)} ms`);
  });
  assert.equal(ev['path-failed'].length, 0, 'no path failed');
});

test('20 % loss on one portal: no error to the caller and no data lost (checksummed writes and reads)', { timeout: 240_000 }, async () => {
  const victim = rig().disks[1];
  await bothActive();
  const wd = new Watchdog({ map: rig().name, timeoutMs: 500, hedgeReads: true, holdDownMs: 1000, probeIntervalMs: 250, reinstateAfter: 3 });
  const ev = record(wd);
  await wd.start();
  const blocks = new ChecksummedBlocks({ blocks: 256, blockSize: BLOCK, baseOffset: 8 * 1024 * 1024 });
  const load = blocks.run(wd, { writers: 2, readers: 2 });
  let lossFor = 0;
  let finalCheck: { checked: number; bad: string[] };
  try {
    await waitFor('healthy writes', () => blocks.writes >= 30, 30_000);
    await faults.loss(victim.portal, 20);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 15_000));
    lossFor = performance.now() - t0;
    await faults.restore();
    await new Promise((r) => setTimeout(r, 2000));
    await within('the writers and readers to stop', load.stop(), 60_000);
    finalCheck = await within('the read-back of every block', blocks.verifyAll(wd), 60_000);
  } finally {
    try {
      await faults.restore();
      await within('the writers and readers to stop', load.stop(), 60_000);
    } finally {
      await within('the watchdog to stop', wd.stop(), 30_000);
    }
  }
  const s = { writes: blocks.writes, reads: blocks.reads, verified: blocks.verified, raced: blocks.raced, maxWriteMs: blocks.maxMs.write, maxReadMs: blocks.maxMs.read };
  console.log(`# 20 % loss on ${victim.portal} for ${(lossFor / 1000).toFixed(0)} s: ${JSON.stringify(s)}; watchdog: ${ev['io-late'].length} late I/Os, ` +
    `${ev['path-failed'].length} fails (${ev['path-failed'].map((e) => e.payload.evidence.reason).join(',')}), ${ev['path-reinstated'].length} reinstates, ${ev['last-path-kept'].length} last-path-kept`);
  assert.deepEqual(blocks.errors, [], 'no I/O returned an error and every read matched what was written');
  assert.equal(finalCheck.bad.length, 0, `every block reads back as last written: ${JSON.stringify(finalCheck.bad.slice(0, 5))}`);
  // The writers cycle over their blocks: past one round, every block was written and is read back.
  assert.ok(blocks.writes > blocks.blocks, `writes ${blocks.writes} cover every block`);
  assert.equal(finalCheck.checked, blocks.blocks);
  assert.ok(blocks.reads > 30, `reads ${blocks.reads}`);
  assert.deepEqual(ev.error.map((e) => e.payload.error.message), []);
});
