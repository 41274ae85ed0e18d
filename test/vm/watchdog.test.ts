// The Watchdog against the real kernel, on the fault rig of lib/cli/demo-rig.ts: a
// bio-mode multipath map over two dm-linear path devices. Faults are real:
// a path device suspended with noflush (hang) or reloaded as dm-delay (slow).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DeviceMapper, DmError, DmMessageActions, MultipathMap, MultipathValueError, MultipathdActions, MultipathdClient, MultipathdError, Watchdog,
  type PathActions, type WatchdogOptions,
} from '../../lib/index';
import { fakeMultipathd } from '../unit/helpers/fake-multipathd';
import { createRig, waitFor, type Rig, type RigPath } from './helpers/rig';
import { dmsetup, forceCleanup } from './helpers/dm';
import { scsiDebugDisks, sectors } from './helpers/scsi';
import { record, type Recorded } from './helpers/events';
import { ChecksummedBlocks } from '../../lib/cli/verified-blocks';
import { within } from '../helpers/within';

const BLOCK = 4096;

async function pathState(map: string, devno: string): Promise<string> {
  const m = new RegExp(`${devno} ([AF]) `).exec(await dmsetup('status', map));
  return m?.[1] ?? '?';
}

/** Readers at `depth` over the first `blocks` blocks until stopped; every completion and error is kept. */
function readLoad(wd: Watchdog, depth: number, blocks: number) {
  const done: number[] = [];
  /** Completions whose data came from a hedge. */
  const hedgedDone: number[] = [];
  const errors: unknown[] = [];
  let running = true;
  const workers = Array.from({ length: depth }, async () => {
    const buf = wd.alloc(BLOCK);
    while (running) {
      const off = Math.floor(Math.random() * blocks) * BLOCK;
      try {
        const r = await wd.read(buf, off);
        done.push(performance.now());
        if (r.hedged) hedgedDone.push(performance.now());
      } catch (e) {
        errors.push(e);
      }
    }
  });
  return {
    done,
    hedgedDone,
    errors,
    stop: async () => {
      running = false;
      await Promise.all(workers);
    },
  };
}

/** Another process's O_DIRECT reads of `blocks` blocks of the map, over and over, until killed (execa is ESM: passed in). */
function otherProcessReads(execa: typeof import('execa', { with: { 'resolution-mode': 'import' } }).execa, mapPath: string, blocks: number) {
  return execa('sh', ['-c', `while :; do dd if=${mapPath} of=/dev/null bs=4096 count=${blocks} iflag=direct 2>/dev/null; done`], { reject: false });
}

async function withRig(prefix: string, fn: (rig: Rig) => Promise<void>): Promise<void> {
  const rig = await createRig(prefix);
  try {
    await fn(rig);
  } finally {
    await rig.teardown();
  }
}

test('bad input: a missing map, a map that is not multipath, bad options, I/O before start', async () => {
  await assert.rejects(new Watchdog({ map: 'mpw-wd-none', timeoutMs: 500 }).start(), (e: unknown) => e instanceof DmError && e.code === 'ENXIO');
  const [a] = scsiDebugDisks();
  assert.ok(a);
  await forceCleanup('mpw-wd-linear');
  await dmsetup('create', 'mpw-wd-linear', '--table', `0 8 linear ${a.devno} 0`);
  try {
    await assert.rejects(new Watchdog({ map: 'mpw-wd-linear', timeoutMs: 500 }).start(), MultipathValueError);
  } finally {
    await forceCleanup('mpw-wd-linear');
  }
  assert.throws(() => new Watchdog({ map: 'x', timeoutMs: 0 }), /timeoutMs must be at least 1 ms, got 0/);
  assert.throws(() => new Watchdog({ map: 'x', timeoutMs: 500, failAfter: 0 }), /failAfter/);
  assert.throws(() => new Watchdog({ map: '', timeoutMs: 500 }), /map must be a dm device name/);
  assert.throws(() => new Watchdog({ map: 'x', timeoutMs: 500 }).alloc(4096), /is not running \(new\)/);
});

test('a hung path is failed, reads go on (hedged), and it is reinstated after it recovers', { timeout: 180_000 }, async () => {
  await withRig('mpw-wd-hang', async (rig) => {
    const [pa] = rig.paths;
    const wd = new Watchdog({ map: rig.map, timeoutMs: 1000, hedgeReads: true, holdDownMs: 1000, probeIntervalMs: 250, reinstateAfter: 3 });
    const ev = record(wd);
    await wd.start();
    const load = readLoad(wd, 4, 1024);
    try {
      await waitFor('healthy reads', () => load.done.length >= 50);
      const tFault = performance.now();
      await rig.hang(pa);
      await waitFor('path-failed', () => ev['path-failed'].length > 0);
      const failed = ev['path-failed'][0] as Recorded['path-failed'][number];
      assert.equal(failed.payload.path.devno, pa.devno);
      assert.equal(failed.payload.path.name, pa.name);
      assert.equal(failed.payload.evidence.reason, 'timeout');
      assert.equal(await pathState(rig.map, pa.devno), 'F');
      const lateFor = ev['io-late'].filter((e) => e.payload.paths.some((p) => p.devno === pa.devno));
      assert.ok(lateFor.length > 0, 'io-late events name the hung path');
      await waitFor('a good read after the fail', () => load.done.some((t) => t > failed.at));
      const firstGood = load.done.find((t) => t > failed.at) as number;
      console.log(`# hang: fault to fail ${(failed.at - tFault).toFixed(0)} ms, to first good read ${(firstGood - tFault).toFixed(0)} ms`);
      const before = load.done.length;
      await waitFor('reads keep flowing on the other path', () => load.done.length >= before + 50);
      assert.ok(wd.stats().hedged > 0, 'late reads were hedged');

      await rig.heal(pa);
      await waitFor('path-reinstated', () => ev['path-reinstated'].length > 0, 30_000);
      assert.equal(ev['path-reinstated'][0]?.payload.path.devno, pa.devno);
      assert.equal(await pathState(rig.map, pa.devno), 'A');
      const stats = wd.stats();
      const sa = stats.paths.find((p) => p.devno === pa.devno);
      assert.equal(sa?.state, 'usable');
      assert.equal(sa?.failures, 1);
      assert.equal(sa?.lastAction?.action, 'reinstate');
    } finally {
      await rig.heal(pa);
      await load.stop();
      await wd.stop();
    }
    assert.deepEqual(load.errors, []);
    assert.deepEqual(ev.error.map((e) => e.payload.error.message), []);
  });
});

test('a path slowed to 3x the timeout is failed, its late reads hedged to the other path before the fail; one slowed under it is not', { timeout: 180_000 }, async () => {
  await withRig('mpw-wd-slow', async (rig) => {
    const [pa, pb] = rig.paths;
    const wd = new Watchdog({ map: rig.map, timeoutMs: 1000, hedgeReads: true });
    const ev = record(wd);
    await wd.start();
    const load = readLoad(wd, 4, 1024);
    try {
      await rig.slow(pb, 300);
      const slowStart = load.done.length;
      await waitFor('slow reads under the timeout', () => load.done.length >= slowStart + 40, 60_000);
      assert.equal(ev['path-failed'].length, 0, 'a path slower than normal but under the timeout stays');
      await rig.heal(pb);

      await rig.slow(pa, 3000);
      await waitFor('path-failed', () => ev['path-failed'].length > 0, 30_000);
      const failed = ev['path-failed'][0] as Recorded['path-failed'][number];
      assert.equal(failed.payload.path.devno, pa.devno);
      assert.equal(await pathState(rig.map, pa.devno), 'F');
      assert.equal(await pathState(rig.map, pb.devno), 'A');
      // The rig's paths show nothing in their counters, so the slow path's
      // probe waits out its whole deadline before it can be failed; a late
      // read's hedge, sent straight to the path that answered fast, does not.
      const early = load.hedgedDone.filter((t) => t < failed.at);
      assert.ok(early.length > 0, `hedged reads done before the fail: ${early.length} of ${load.hedgedDone.length}`);
    } finally {
      await rig.heal(pa);
      await load.stop();
      await wd.stop();
    }
    assert.deepEqual(load.errors, []);
    assert.deepEqual(ev.error.map((e) => e.payload.error.message), []);
  });
});

test('both paths hang: one is kept (last-path-kept), and after resume every read completes without error', { timeout: 180_000 }, async () => {
  await withRig('mpw-wd-both', async (rig) => {
    const [pa, pb] = rig.paths;
    const wd = new Watchdog({ map: rig.map, timeoutMs: 1000, hedgeReads: true, holdDownMs: 500, probeIntervalMs: 250 });
    const ev = record(wd);
    await wd.start();
    const load = readLoad(wd, 4, 1024);
    try {
      await waitFor('healthy reads', () => load.done.length >= 20);
      await rig.hang(pa);
      await rig.hang(pb);
      await waitFor('last-path-kept', () => ev['last-path-kept'].length > 0, 30_000);
      const failed = ev['path-failed'].map((e) => e.payload.path.devno);
      assert.ok(failed.length <= 1, `at most one path failed, got ${failed.join(',')}`);
      const states = [await pathState(rig.map, pa.devno), await pathState(rig.map, pb.devno)];
      assert.ok(states.includes('A'), `one path stays usable: ${states.join(',')}`);
      const kept = ev['last-path-kept'][0]?.payload;
      assert.equal(kept?.usablePaths, 1);
      await rig.heal(pa);
      await rig.heal(pb);
      const after = load.done.length;
      await waitFor('reads after resume', () => load.done.length >= after + 50, 30_000);
      await waitFor('every path usable again', async () => (await pathState(rig.map, pa.devno)) === 'A' && (await pathState(rig.map, pb.devno)) === 'A', 30_000);
    } finally {
      await rig.heal(pa);
      await rig.heal(pb);
      await load.stop();
      await wd.stop();
    }
    assert.deepEqual(load.errors, []);
  });
});

/**
 * A watchdog on the rig with 4 readers over 1024 blocks while `body` runs
 * (after 20 healthy reads); afterwards every path is healed and reinstated,
 * and no read may have failed.
 */
async function underLoad(
  rig: Rig, options: Omit<WatchdogOptions, 'map'>,
  body: (wd: Watchdog, ev: ReturnType<typeof record>, load: ReturnType<typeof readLoad>) => Promise<void>,
): Promise<ReturnType<typeof record>> {
  const wd = new Watchdog({ map: rig.map, ...options });
  const ev = record(wd);
  await wd.start();
  const load = readLoad(wd, 4, 1024);
  try {
    await waitFor('healthy reads', () => load.done.length >= 20);
    await body(wd, ev, load);
  } finally {
    for (const p of rig.paths) {
      await rig.heal(p);
      await dmsetup('message', rig.map, '0', `reinstate_path ${p.devno}`).catch(() => undefined);
    }
    await load.stop();
    await wd.stop();
  }
  assert.deepEqual(load.errors, []);
  return ev;
}

test('a stale view: the other path failed behind the watchdog just before its fail_path; the fail is refused (last-path-kept), nothing else fails, reads complete', { timeout: 180_000 }, async () => {
  await withRig('mpw-wd-stale', async (rig) => {
    const [pa, pb] = rig.paths;
    const dmActions = new DmMessageActions(await MultipathMap.open(new DeviceMapper(), rig.map));
    let raced = false;
    // multipathd's checker at the worst moment: pb failed after the policy
    // decided (it counted two usable paths) and before the fail_path.
    const actions: PathActions = {
      kind: 'stale-view',
      fail: async (path, request) => {
        if (!raced) {
          raced = true;
          await dmsetup('message', rig.map, '0', `fail_path ${pb.devno}`);
        }
        return dmActions.fail(path, request);
      },
      reinstate: (path) => dmActions.reinstate(path),
    };
    const ev = await underLoad(rig, { timeoutMs: 1000, actions, holdDownMs: 500, probeIntervalMs: 250 }, async (_wd, ev, load) => {
      await rig.hang(pa);
      await waitFor('last-path-kept', () => ev['last-path-kept'].length > 0, 30_000);
      assert.ok(raced, 'the fail of the hung path was attempted');
      const kept = ev['last-path-kept'][0]?.payload;
      assert.equal(kept?.path.devno, pa.devno);
      assert.equal(kept?.usablePaths, 1);
      assert.deepEqual(ev['path-failed'].map((e) => e.payload.path.devno), []);
      assert.equal(await pathState(rig.map, pa.devno), 'A');
      assert.equal(await pathState(rig.map, pb.devno), 'F');
      await rig.heal(pa);
      const after = load.done.length;
      await waitFor('reads after resume', () => load.done.length >= after + 50, 30_000);
    });
    assert.deepEqual(ev.error.map((e) => e.payload.error.message), []);
  });
});

test('reads stuck on a path that was failed (here by someone else) are hedged at once, and no usable path is blamed for them', { timeout: 180_000 }, async () => {
  await withRig('mpw-wd-before', async (rig) => {
    const [pa, pb] = rig.paths;
    // A long timeout: the fail below must come well before the stuck reads' deadline.
    await underLoad(rig, { timeoutMs: 3000, hedgeReads: true, actions: 'dm' }, async (wd, ev, load) => {
      await rig.hang(pa);
      // Every reader ends up waiting on pa (round-robin sends each to it in
      // turn): no read completes for 200 ms while pb is healthy.
      await waitFor('every reader stuck on the hung path', async () => {
        const n = load.done.length;
        await new Promise((r) => setTimeout(r, 200));
        return load.done.length === n;
      }, 5_000);
      const stuckAt = performance.now();
      await dmsetup('message', rig.map, '0', `fail_path ${pa.devno}`);
      await waitFor('io-late', () => ev['io-late'].length >= 4, 15_000);
      await waitFor('the hedged reads complete', () => load.done.some((t) => t > stuckAt + 3000), 15_000);
      for (const e of ev['io-late']) {
        assert.deepEqual(e.payload.paths, [], 'no usable path is blamed');
        assert.equal(e.payload.attribution.method, 'none');
        assert.match(e.payload.attribution.details.reason, /every probe was fast/);
      }
      assert.ok(wd.stats().hedged >= 4, `hedged ${wd.stats().hedged}`);
      assert.deepEqual(ev['path-failed'].map((e) => e.payload.path.devno), []);
      assert.equal(await pathState(rig.map, pb.devno), 'A');
    });
  });
});

test('multipathd never answers fail path: the path is failed at once in dm, announced, hedged, and kept failed; the give-up is a non-fatal error', { timeout: 180_000 }, async () => {
  const daemon = await fakeMultipathd(({ command }) => void command);
  try {
    await withRig('mpw-wd-stick', async (rig) => {
      const [pa, pb] = rig.paths;
      const actions = new MultipathdActions(await MultipathMap.open(new DeviceMapper(), rig.map), {
        client: new MultipathdClient({ sockets: [daemon.path] }), stickTimeoutMs: 2000, stickAttempts: 2, stickRetryMs: 100,
      });
      await underLoad(rig, { timeoutMs: 1000, hedgeReads: true, actions, holdDownMs: 60_000 }, async (wd, ev, load) => {
        await rig.hang(pa);
        await waitFor('path-failed', () => ev['path-failed'].length > 0, 30_000);
        const failed = ev['path-failed'][0] as Recorded['path-failed'][number];
        assert.equal(failed.payload.path.devno, pa.devno);
        assert.equal(failed.payload.action, 'multipathd');
        assert.equal(await pathState(rig.map, pa.devno), 'F');
        // Reads go on before multipathd was even asked to answer.
        await waitFor('a good read after the fail', () => load.done.some((t) => t > failed.at), 5_000);
        assert.ok(daemon.commands.includes(`fail path ${pa.name}`), daemon.commands.join('; '));
        // Two unanswered tries (2 s each) and the stick half gives up.
        await waitFor('the give-up', () => ev.error.length > 0, 15_000);
        const err = ev.error[0]?.payload;
        assert.equal(err?.during, 'fail');
        assert.equal(err?.fatal, false);
        assert.ok(err?.error instanceof MultipathdError && err.error.code === 'timeout', String(err?.error));
        assert.equal(wd.stats().paths.find((p) => p.devno === pa.devno)?.state, 'failed', 'the policy keeps it failed: the kernel has it failed');
        assert.equal(await pathState(rig.map, pa.devno), 'F');
        assert.equal(await pathState(rig.map, pb.devno), 'A');
      });
    });
  } finally {
    await daemon.close();
  }
});

test('data integrity: checksummed writes over 20 hang and resume cycles all read back as last written', { timeout: 600_000 }, async () => {
  await withRig('mpw-wd-data', async (rig) => {
    // Flapping by design: cap the damped hold-down so every cycle can start from two usable paths.
    const wd = new Watchdog({ map: rig.map, timeoutMs: 300, holdDownMs: 200, maxHoldDownMs: 1000, probeIntervalMs: 100, reinstateAfter: 2 });
    const ev = record(wd);
    await wd.start();
    const data = new ChecksummedBlocks({ blocks: 256, blockSize: BLOCK });
    const load = data.run(wd, { writers: 4, readers: 2 });
    try {
      for (let cycle = 0; cycle < 20; cycle++) {
        const p = rig.paths[cycle % 2] as RigPath;
        const seen = ev['path-failed'].length + ev['last-path-kept'].length;
        await rig.hang(p);
        await waitFor(`cycle ${cycle}: a decision`, () => ev['path-failed'].length + ev['last-path-kept'].length > seen, 30_000);
        await rig.heal(p);
        await waitFor(`cycle ${cycle}: both paths usable`, async () => (await pathState(rig.map, rig.paths[0].devno)) === 'A' && (await pathState(rig.map, rig.paths[1].devno)) === 'A', 30_000);
      }
    } finally {
      for (const p of rig.paths) await rig.heal(p);
      await load.stop();
    }
    assert.deepEqual(data.errors, []);
    assert.ok(ev['path-failed'].length >= 10, `paths failed ${ev['path-failed'].length} times over 20 cycles`);
    const { checked, bad } = await data.verifyAll(wd);
    assert.deepEqual(bad, []);
    await wd.stop();
    assert.ok(checked > data.blocks / 2, `checked ${checked} blocks`);
    console.log(`# data: ${data.writes} writes, ${checked} blocks verified, ${ev['path-failed'].length} fails, ${ev['last-path-kept'].length} kept`);
  });
});

test('passive mode: a hang under another process\'s reads fails the path', { timeout: 180_000 }, async () => {
  await withRig('mpw-wd-passive', async (rig) => {
    const [pa] = rig.paths;
    const { execa } = await import('execa');
    const wd = new Watchdog({ map: rig.map, timeoutMs: 1000, mode: 'passive' });
    const ev = record(wd);
    await wd.start();
    const reader = otherProcessReads(execa, rig.mapPath, 256);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(ev['path-failed'].length, 0, 'nothing failed under healthy load');
      await rig.hang(pa);
      await waitFor('path-failed', () => ev['path-failed'].length > 0, 30_000);
      assert.equal(ev['path-failed'][0]?.payload.path.devno, pa.devno);
      assert.equal(await pathState(rig.map, pa.devno), 'F');
    } finally {
      await rig.heal(pa);
      reader.kill('SIGKILL');
      await reader;
      await wd.stop();
    }
  });
});

test('stop() while start() runs: start rejects, and no watchdog is left to fail a path', { timeout: 180_000 }, async () => {
  await withRig('mpw-wd-stopstart', async (rig) => {
    const [pa] = rig.paths;
    const { execa } = await import('execa');
    const wd = new Watchdog({ map: rig.map, timeoutMs: 500, mode: 'passive' });
    const ev = record(wd);
    const started = wd.start();
    const stopped = wd.stop();
    await assert.rejects(started, /was stopped while starting/);
    await stopped;
    assert.equal(wd.stats().running, false);
    // Another process's reads hang on path A: a watchdog still running would fail it within a second.
    await rig.hang(pa);
    const reader = otherProcessReads(execa, rig.mapPath, 64);
    try {
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal(await pathState(rig.map, pa.devno), 'A', 'nobody failed the hung path');
      assert.equal(ev['path-failed'].length, 0);
    } finally {
      await rig.heal(pa);
      reader.kill('SIGKILL');
      await reader;
    }
  });
});

test("the map removed under a watchdog with no 'error' listener: nothing throws, it stops with reason map-removed", { timeout: 120_000 }, async () => {
  const rig = await createRig('mpw-wd-removed');
  // Passive: an active watchdog holds the map open, and dm refuses to remove an open map.
  const wd = new Watchdog({ map: rig.map, timeoutMs: 500, mode: 'passive' });
  try {
    const stopped = new Promise<{ reason: string; error?: Error }>((res) => wd.once('stopped', res));
    await wd.start();
    assert.equal(wd.listenerCount('error'), 0);
    await rig.teardown();
    const ev = await within('the stopped event', stopped, 30_000);
    assert.equal(ev.reason, 'map-removed');
    assert.ok(ev.error instanceof Error, 'stopped carries the error that showed the map gone');
    assert.equal(wd.stats().running, false);
  } finally {
    await wd.stop();
    await rig.teardown();
  }
});

test('no false positives: a request-based map over the SCSI paths under 30 s of healthy load fails nothing', { timeout: 180_000 }, async () => {
  const [a, b] = scsiDebugDisks();
  assert.ok(a && b);
  const map = 'mpw-wd-healthy';
  await forceCleanup(map);
  await dmsetup('create', map, '--table', `0 ${sectors(a.name)} multipath 2 queue_mode rq 0 1 1 service-time 0 2 2 ${a.devno} 1 1 ${b.devno} 1 1`);
  const wd = new Watchdog({ map, timeoutMs: 1000 });
  const ev = record(wd);
  try {
    await wd.start();
    const load = readLoad(wd, 8, 4096);
    await new Promise((r) => setTimeout(r, 30_000));
    await load.stop();
    assert.deepEqual(load.errors, []);
    assert.ok(load.done.length > 100, `${load.done.length} reads`);
    assert.equal(ev['path-failed'].length, 0);
    assert.equal(ev['io-late'].length, 0);
    assert.match(await dmsetup('status', map), new RegExp(`${a.devno} A 0 .*${b.devno} A 0`));
    const s = wd.stats();
    console.log(`# healthy: ${load.done.length} reads, p50 ${s.p50Ms.toFixed(2)} ms, p99 ${s.p99Ms.toFixed(2)} ms, max ${s.maxMs.toFixed(2)} ms`);
  } finally {
    await wd.stop();
    await forceCleanup(map);
  }
});
