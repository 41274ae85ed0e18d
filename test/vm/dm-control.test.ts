// DeviceMapper against the real kernel, with dmsetup as the oracle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open, mkdtemp, rm, stat } from 'node:fs/promises';
import { DeviceMapper, DmError, ensureMapperNode, type DmTarget } from '../../lib/dm';
import { asDmsetupLines, dmsetup, dmsetupLs, forceCleanup } from './helpers/dm';
import { scsiDebugDisks, sectors } from './helpers/scsi';

const dm = new DeviceMapper();

function mpathTable(): string {
  const [a, b] = scsiDebugDisks();
  assert.ok(a && b);
  return `0 ${sectors(a.name)} multipath 2 queue_mode rq 0 1 1 service-time 0 2 2 ${a.devno} 1 1 ${b.devno} 1 1`;
}

test('version() and targets() agree with dmsetup version/targets', async () => {
  const v = await dm.version();
  assert.match(await dmsetup('version'), new RegExp(`Driver version:\\s+${v.major}\\.${v.minor}\\.${v.patch}$`, 'm'));
  const ours = (await dm.targets()).map((t) => `${t.name} v${t.version.join('.')}`).sort();
  const theirs = (await dmsetup('targets')).split('\n').map((l) => l.trim().split(/\s+/).join(' ')).sort();
  assert.deepEqual(ours, theirs);
});

test('a linear map: info, list, table, status, deps and devicePath match dmsetup', async () => {
  const [a] = scsiDebugDisks();
  assert.ok(a);
  const name = 'mpw-dc-linear';
  try {
    const made = await dm.create(name, { table: `0 4096 linear ${a.devno} 0\n4096 4096 linear ${a.devno} 8192`, uuid: 'MPW-DC-LINEAR' });
    const info = await dm.info(name);
    assert.deepEqual(info, made);
    const row = await dmsetup('info', '-c', '--noheadings', '--separator', ';', '-o', 'name,uuid,major,minor,attr,open,segments,events', name);
    assert.equal(row, `${name};MPW-DC-LINEAR;${info.major};${info.minor};L--w;${info.openCount};${info.targetCount};${info.eventNr}`);
    assert.deepEqual(await dm.info({ uuid: 'MPW-DC-LINEAR' }), info);
    const listed = (await dm.list()).find((d) => d.name === name);
    assert.deepEqual(listed, { name, major: info.major, minor: info.minor, eventNr: 0, uuid: 'MPW-DC-LINEAR' });
    assert.ok((await dmsetupLs()).includes(`${name} ${info.major}:${info.minor}`));
    assert.equal(asDmsetupLines(await dm.table(name)), await dmsetup('table', name));
    assert.equal(asDmsetupLines(await dm.status(name)), await dmsetup('status', name));
    assert.deepEqual(await dm.deps(name), [{ major: Number(a.devno.split(':')[0]), minor: Number(a.devno.split(':')[1]) }]);
    const path = await dm.devicePath(name);
    assert.equal(path, `/dev/dm-${info.minor}`);
    assert.ok((await stat(path)).isBlockDevice());
  } finally {
    await forceCleanup(name);
  }
});

test('a request-based multipath map: fail_path and reinstate_path show in dmsetup status', async () => {
  const [a, b] = scsiDebugDisks();
  assert.ok(a && b);
  const name = 'mpw-dc-mpath';
  try {
    await dm.create(name, { table: mpathTable() });
    assert.equal(asDmsetupLines(await dm.table(name)), await dmsetup('table', name));
    assert.equal(asDmsetupLines(await dm.status(name)), await dmsetup('status', name));
    assert.equal(await dm.message(name, `fail_path ${b.devno}`), undefined);
    const failed = await dmsetup('status', name);
    assert.match(failed, new RegExp(`${a.devno} A 0 .*${b.devno} F 1`));
    assert.equal(asDmsetupLines(await dm.status(name)), failed);
    await dm.message(name, `reinstate_path ${b.devno}`);
    assert.match(await dmsetup('status', name), new RegExp(`${a.devno} A 0 .*${b.devno} A 1`));
  } finally {
    await forceCleanup(name);
  }
});

test('events() yields the map when fail_path raises a dm event, and stops on abort', async () => {
  const [, b] = scsiDebugDisks();
  assert.ok(b);
  const name = 'mpw-dc-events';
  const ac = new AbortController();
  try {
    const before = await dm.create(name, { table: mpathTable() });
    const seen: { name: string; eventNr: number }[] = [];
    const consumer = (async () => {
      for await (const e of dm.events({ signal: ac.signal })) {
        seen.push(e);
        if (e.name === name) break;
      }
    })();
    // The watcher lists devices right after arming; give it that moment, then fail.
    await new Promise((r) => setTimeout(r, 200));
    await dm.message(name, `fail_path ${b.devno}`);
    await consumer;
    const ours = seen.find((e) => e.name === name);
    assert.ok(ours, `events seen: ${JSON.stringify(seen)}`);
    assert.ok(ours.eventNr > before.eventNr);
    assert.equal(ours.eventNr, (await dm.info(name)).eventNr);
    // A second iterator ends on abort with nothing pending.
    const idle = (async () => {
      const got = [];
      for await (const e of dm.events({ signal: ac.signal })) got.push(e);
      return got;
    })();
    await new Promise((r) => setTimeout(r, 100));
    ac.abort();
    assert.deepEqual(await idle, []);
  } finally {
    ac.abort();
    await forceCleanup(name);
  }
});

test('waitEvent() resolves on fail_path; an aborted wait rejects at once', async () => {
  const [, b] = scsiDebugDisks();
  assert.ok(b);
  const name = 'mpw-dc-wait';
  try {
    const made = await dm.create(name, { table: mpathTable() });
    const waiting = dm.waitEvent(name, made.eventNr);
    await new Promise((r) => setTimeout(r, 100));
    await dm.message(name, `fail_path ${b.devno}`);
    const after = await waiting;
    assert.ok(after.eventNr > made.eventNr);
    const ac = new AbortController();
    const parked = dm.waitEvent(name, after.eventNr, { signal: ac.signal });
    ac.abort(new Error('stop waiting'));
    await assert.rejects(parked, /stop waiting/);
    // The parked kernel wait ends with the next event (the removal below).
  } finally {
    await forceCleanup(name);
  }
});

test('a suspended map reports suspended, like dmsetup info', async () => {
  const [a] = scsiDebugDisks();
  assert.ok(a);
  const name = 'mpw-dc-suspend';
  try {
    await dm.create(name, { table: `0 2048 linear ${a.devno} 0` });
    const s = await dm.suspend(name, { noflush: true, nolockfs: true });
    assert.equal(s.suspended, true);
    assert.equal((await dm.info(name)).suspended, true);
    assert.match(await dmsetup('info', name), /^State:\s+SUSPENDED$/m);
    // A loaded table waits in the inactive slot until resume.
    const loaded = await dm.load(name, `0 4096 linear ${a.devno} 0`);
    assert.equal(loaded.inactiveTable, true);
    assert.equal(asDmsetupLines(await dm.table(name, { inactive: true })), `0 4096 linear ${a.devno} 0`);
    const r = await dm.resume(name);
    assert.equal(r.suspended, false);
    assert.equal(asDmsetupLines(await dm.table(name)), `0 4096 linear ${a.devno} 0`);
    assert.match(await dmsetup('info', name), /^State:\s+ACTIVE$/m);
    await dm.load(name, `0 8 linear ${a.devno} 0`);
    assert.equal((await dm.clear(name)).inactiveTable, false);
  } finally {
    await forceCleanup(name);
  }
});

test('bad inputs give the right DmError and leave dmsetup ls unchanged', async () => {
  const [a] = scsiDebugDisks();
  assert.ok(a);
  const keep = 'mpw-dc-keep';
  try {
    await dm.create(keep, { table: `0 2048 linear ${a.devno} 0`, uuid: 'MPW-DC-KEEP' });
    const before = await dmsetupLs();
    const expect = async (p: Promise<unknown>, code: string, message: RegExp) => {
      const e = await p.then(
        () => assert.fail('expected a DmError'),
        (x: unknown) => x,
      );
      assert.ok(e instanceof DmError, String(e));
      assert.equal(e.code, code, e.message);
      assert.match(e.message, message);
      assert.deepEqual(await dmsetupLs(), before);
      return e;
    };
    const missing = await expect(dm.info('mpw-dc-missing'), 'ENXIO', /^no such device-mapper device 'mpw-dc-missing'$/);
    assert.equal(missing.syscall, 'DM_DEV_STATUS');
    assert.equal(missing.device, 'mpw-dc-missing');
    await expect(dm.remove('mpw-dc-missing'), 'ENXIO', /no such device-mapper device/);
    await expect(dm.message('mpw-dc-missing', 'fail_path 8:0'), 'ENXIO', /no such device-mapper device/);
    const bad = await expect(dm.create('mpw-dc-bad', { table: `0 2048 linear ${a.devno}` }), 'EINVAL', /^table rejected by the kernel for 'mpw-dc-bad': /);
    assert.match((bad as DmError).kernelMessage ?? '', /linear/i);
    await expect(dm.create('mpw-dc-nodev', { table: '0 2048 linear 8:250 0' }), 'ENXIO', /^table rejected by the kernel for 'mpw-dc-nodev'/);
    await expect(dm.create('mpw-dc-type', { table: '0 2048 no-such-target x' }), 'EINVAL', /table rejected/);
    const msg = await expect(dm.message(keep, 'fail_path 8:0'), 'EINVAL', /^message 'fail_path 8:0' rejected by device-mapper device 'mpw-dc-keep'/);
    assert.match((msg as DmError).kernelMessage ?? '', /does not support messages/);
    await expect(dm.create('x'.repeat(128), { table: `0 8 linear ${a.devno} 0` }), 'ENAMETOOLONG', /longer than 127 bytes/);
    await expect(dm.create('a/b', { table: `0 8 linear ${a.devno} 0` }), 'EINVAL', /may not contain '\/'/);
    await expect(dm.create('mpw-dc-uuid', { table: `0 8 linear ${a.devno} 0`, uuid: 'u'.repeat(129) }), 'ENAMETOOLONG', /uuid/);
    await expect(dm.create('mpw-dc-gap', { table: `0 8 linear ${a.devno} 0\n16 8 linear ${a.devno} 0` }), 'EINVAL', /contiguous/);
    await expect(dm.create('mpw-dc-empty', { table: '' }), 'EINVAL', /at least one target/);
    const dup = await expect(dm.create('mpw-dc-dup', { table: `0 8 linear ${a.devno} 0`, uuid: 'MPW-DC-KEEP' }), 'EBUSY', /uuid 'MPW-DC-KEEP' is already used by 'mpw-dc-keep'/);
    assert.equal(dup.syscall, 'DM_DEV_CREATE');
    await expect(dm.create(keep, { table: `0 8 linear ${a.devno} 0` }), 'EBUSY', /^device-mapper device 'mpw-dc-keep' already exists$/);
    assert.equal(asDmsetupLines(await dm.table(keep)), `0 2048 linear ${a.devno} 0`);
  } finally {
    await forceCleanup(keep);
  }
});

test('a table of 600 targets round-trips (DM_BUFFER_FULL_FLAG retries)', async () => {
  const [a, b] = scsiDebugDisks();
  assert.ok(a && b);
  const name = 'mpw-dc-big';
  const table: DmTarget[] = Array.from({ length: 600 }, (_, i) => ({
    start: i * 64,
    length: 64,
    type: 'linear',
    params: `${i % 2 ? a.devno : b.devno} ${i * 64}`,
  }));
  try {
    await dm.create(name, { table });
    const got = await dm.table(name);
    assert.equal(got.length, 600);
    assert.deepEqual(got, table);
    assert.equal(asDmsetupLines(got), await dmsetup('table', name));
    assert.equal((await dm.status(name)).length, 600);
    assert.equal((await dm.deps(name)).length, 2);
    assert.equal((await dm.info(name)).targetCount, 600);
  } finally {
    await forceCleanup(name);
  }
});

test('many devices list completely (LIST_DEVICES retries) and remove cleanly', async () => {
  const [a] = scsiDebugDisks();
  assert.ok(a);
  // 64 records of 127-byte names and 128-byte uuids overflow the first 16 KiB buffer.
  const count = 64;
  const names = Array.from({ length: count }, (_, i) => `mpw-dc-many-${String(i).padStart(3, '0')}-`.padEnd(127, 'p'));
  const uuid = (i: number) => `MPW-MANY-${i}-`.padEnd(128, 'u');
  try {
    await Promise.all(names.map((n, i) => dm.create(n, { table: `0 8 linear ${a.devno} ${i * 8}`, uuid: uuid(i) })));
    const listed = (await dm.list()).filter((d) => d.name.startsWith('mpw-dc-many-'));
    assert.equal(listed.length, count);
    assert.deepEqual(
      listed.map((d) => `${d.name} ${d.major}:${d.minor}`).sort(),
      (await dmsetupLs()).filter((l) => l.startsWith('mpw-dc-many-')),
    );
    assert.ok(listed.every((d) => d.uuid === uuid(names.indexOf(d.name))));
    await Promise.all(names.map((n) => dm.remove(n)));
    assert.deepEqual((await dmsetupLs()).filter((l) => l.startsWith('mpw-dc-many-')), []);
  } finally {
    await forceCleanup(...names);
  }
});

test('deferred remove waits for the last opener', async () => {
  const [a] = scsiDebugDisks();
  assert.ok(a);
  const name = 'mpw-dc-deferred';
  try {
    await dm.create(name, { table: `0 2048 linear ${a.devno} 0` });
    const fh = await open(await dm.devicePath(name), 'r');
    try {
      await assert.rejects(dm.remove(name), (e: unknown) => e instanceof DmError && e.code === 'EBUSY');
      await dm.remove(name, { deferred: true });
      const info = await dm.info(name);
      assert.equal(info.deferredRemove, true);
      assert.equal(info.openCount, 1);
    } finally {
      await fh.close();
    }
    await assert.rejects(dm.info(name), (e: unknown) => e instanceof DmError && e.code === 'ENXIO');
  } finally {
    await forceCleanup(name);
  }
});

test('ensureMapperNode makes a working block node where devtmpfs gave none', async () => {
  const [a] = scsiDebugDisks();
  assert.ok(a);
  const name = 'mpw-dc-node';
  const dir = await mkdtemp('/run/mpw-node-');
  try {
    const info = await dm.create(name, { table: `0 2048 linear ${a.devno} 0` });
    const path = await ensureMapperNode(name, info, dir);
    assert.equal(path, `${dir}/${name}`);
    const st = await stat(path);
    assert.ok(st.isBlockDevice());
    const fh = await open(path, 'r');
    const { bytesRead } = await fh.read(Buffer.alloc(4096), 0, 4096, 0);
    await fh.close();
    assert.equal(bytesRead, 4096);
    // A stale node (wrong devno) is replaced.
    await ensureMapperNode(name, { major: 1, minor: 3 }, dir);
    assert.equal(await ensureMapperNode(name, info, dir), path);
    const { execa } = await import('execa');
    assert.equal((await execa('stat', ['-c', '%t:%T', path])).stdout, `${info.major.toString(16)}:${info.minor.toString(16)}`);
  } finally {
    await forceCleanup(name);
    await rm(dir, { recursive: true, force: true });
  }
});
