// multipathd cooperation against the real daemon (Debian's multipath-tools)
// managing a map over two iSCSI paths (LIO target, open-iscsi initiator, two
// loopback portals). Run with `--topology iscsi` (npm run test:vm:iscsi).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DeviceMapper, MultipathMap, MultipathdActions, MultipathdClient, MultipathdError, Watchdog, detectMultipathd,
} from '../../lib/index';
import { dmPath, dmPathState, useRoundRobinMap, waitFor, type Multipathd } from './helpers/iscsi';
import { PortalFaults } from './helpers/portal-faults';
import { record, type Recorded } from '../vm/helpers/events';

const POLL_S = 2;
const BLOCK = 4096;

const dm = new DeviceMapper();
const faults = new PortalFaults();
const rig = useRoundRobinMap(POLL_S, faults);

function daemon(): Multipathd {
  return rig().mpd;
}

test('the client against the real daemon: maps, paths, detection, refusals', async () => {
  const { client } = daemon();
  const maps = await client.showMaps();
  const rec = maps.find((m) => m.name === rig().name);
  assert.ok(rec, `show maps lists ${rig().name}: ${JSON.stringify(maps)}`);
  assert.equal(rec.paths, 2);
  assert.match(rec.sysfs, /^dm-\d+$/);
  const paths = await client.showPaths();
  for (const d of rig().disks) {
    const p = paths.find((x) => x.dev === d.name);
    assert.ok(p, `show paths lists ${d.name}: ${JSON.stringify(paths)}`);
    assert.equal(p.devno, d.devno);
    assert.equal(p.map, rig().name);
    assert.equal(p.dmState, 'active');
    assert.equal(p.wwid, rec.wwid);
  }
  assert.equal((await detectMultipathd(rig().name, { client })).managed, true);
  assert.equal((await detectMultipathd('mpw-not-a-map', { client })).managed, false);
  await assert.rejects(client.failPath('sdzz'), (e: unknown) => e instanceof MultipathdError && e.code === 'failed');
  await assert.rejects(client.command('show frobnicate'), (e: unknown) => e instanceof MultipathdError && e.code === 'usage');
  // The daemon's own socket, with no CLI to fall back on: the abstract name at its exact length.
  const direct = new MultipathdClient({ cliFallback: false, timeoutMs: 10_000 });
  assert.ok((await direct.showMaps()).some((m) => m.name === rig().name), 'show maps over the socket itself');
});

test('a raw dm fail_path is undone by multipathd\'s checker: why cooperation is needed', { timeout: 60_000 }, async () => {
  const [pa] = rig().disks;
  const before = await dmPath(rig().map, pa.devno);
  assert.ok(before, `${pa.devno} in the map`);
  const t0 = performance.now();
  await dm.message(rig().name, `fail_path ${pa.devno}`);
  // The kernel failed it: its fail count went up. (Its state may already be back to
  // active: multipathd 0.11 once undid it within 170 ms, before the first status read.)
  const after = await dmPath(rig().map, pa.devno);
  assert.equal(after?.failCount, before.failCount + 1, `fail count ${before.failCount} -> ${after?.failCount}`);
  // Bounded at 10 polling intervals: the checker sees a path that answers and reinstates it.
  await waitFor('multipathd to reinstate the path failed behind its back', async () => (await dmPathState(rig().map, pa.devno)) === 'active', 10 * POLL_S * 1000, 100);
  console.log(`# dm fail_path of ${pa.name} undone by multipathd after ${((performance.now() - t0) / 1000).toFixed(1)} s (polling_interval ${POLL_S} s)`);
});

test('a path failed through multipathd stays failed for 3+ polling intervals, and reinstate path brings it back', { timeout: 60_000 }, async () => {
  const [pa, pb] = rig().disks;
  const actions = new MultipathdActions(await MultipathMap.open(dm, rig().name), { client: daemon().client });
  // fail() resolves once dm has it failed; multipathd's half is `rest`.
  await (await actions.fail(pa.devno)).rest;
  try {
    assert.equal(await dmPathState(rig().map, pa.devno), 'failed');
    const holdMs = (3 * POLL_S + 2) * 1000;
    const end = performance.now() + holdMs;
    let samples = 0;
    while (performance.now() < end) {
      assert.equal(await dmPathState(rig().map, pa.devno), 'failed', `still failed after ${samples} samples`);
      assert.equal(await dmPathState(rig().map, pb.devno), 'active');
      samples++;
      await new Promise((r) => setTimeout(r, 200));
    }
    const seen = (await daemon().client.showPaths()).find((p) => p.dev === pa.name);
    assert.equal(seen?.dmState, 'failed');
    console.log(`# ${pa.name} stayed failed for ${holdMs / 1000} s (${samples} samples, polling_interval ${POLL_S} s)`);
  } finally {
    await actions.reinstate(pa.devno);
  }
  await waitFor('the reinstated path to be active', async () => (await dmPathState(rig().map, pa.devno)) === 'active', 10_000, 100);
  const seen = (await daemon().client.showPaths()).find((p) => p.dev === pa.name);
  assert.equal(seen?.dmState, 'active');
});

test('an nft drop of one portal: the watchdog (auto-detected multipathd actions) fails that path, reads go on, and it reinstates after healing', { timeout: 240_000 }, async () => {
  const victim = rig().disks[1];
  const other = rig().disks[0];
  const wd = new Watchdog({ map: rig().name, timeoutMs: 1000, hedgeReads: true, holdDownMs: 1000, probeIntervalMs: 250, reinstateAfter: 3 });
  const ev = record(wd);
  await wd.start();
  const done: number[] = [];
  const errors: unknown[] = [];
  let running = true;
  const workers = Array.from({ length: 4 }, async () => {
    const buf = wd.alloc(BLOCK);
    while (running) {
      try {
        await wd.read(buf, Math.floor(Math.random() * 4096) * BLOCK);
        done.push(performance.now());
      } catch (e) {
        errors.push(e);
      }
    }
  });
  try {
    await waitFor('healthy reads', () => done.length >= 50, 30_000);
    const tDrop = performance.now();
    await faults.drop(victim.portal);
    await waitFor('path-failed', () => ev['path-failed'].length > 0, 60_000).catch((e: unknown) => {
      const seen = { late: ev['io-late'].length, kept: ev['last-path-kept'].length, errors: ev.error.map((x) => x.payload.error.message), stats: wd.stats().paths };
      throw new Error(`${(e as Error).message}; events and stats: ${JSON.stringify(seen)}`);
    });
    const failed = ev['path-failed'][0] as Recorded['path-failed'][number];
    assert.equal(failed.payload.path.devno, victim.devno);
    assert.equal(failed.payload.action, 'multipathd', 'auto-detection chose multipathd');
    assert.equal(await dmPathState(rig().map, victim.devno), 'failed');
    assert.equal(await dmPathState(rig().map, other.devno), 'active');
    const before = done.length;
    await waitFor('reads to go on through the other portal', () => done.length >= before + 50, 30_000);
    console.log(`# nft drop of ${victim.portal}: ${victim.name} failed by the watchdog after ${((failed.at - tDrop) / 1000).toFixed(2)} s; ${done.length - before} reads since`);
    // multipathd's checker is paused for the path: it stays failed.
    const holdEnd = performance.now() + 3 * POLL_S * 1000;
    while (performance.now() < holdEnd) {
      assert.equal(await dmPathState(rig().map, victim.devno), 'failed');
      await new Promise((r) => setTimeout(r, 250));
    }

    await faults.restore();
    const tHeal = performance.now();
    await waitFor('path-reinstated after the portal heals', () => ev['path-reinstated'].length > 0, 120_000, 100);
    assert.equal(ev['path-reinstated'][0]?.payload.path.devno, victim.devno);
    assert.equal(await dmPathState(rig().map, victim.devno), 'active');
    const seen = (await daemon().client.showPaths()).find((p) => p.dev === victim.name);
    assert.equal(seen?.dmState, 'active');
    console.log(`# portal healed: ${victim.name} reinstated by the watchdog after ${((performance.now() - tHeal) / 1000).toFixed(1)} s`);
  } finally {
    await faults.restore();
    running = false;
    await Promise.all(workers);
    await wd.stop();
  }
  assert.deepEqual(errors.map(String), []);
  assert.deepEqual(ev.error.map((e) => e.payload.error.message), []);
});
