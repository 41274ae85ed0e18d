// The probe reader on real files through the real engine (O_DIRECT on /dev/shm):
// no probe after close, and a path whose node now names another device is
// probed on that device, not through the fd of the old one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceClosedError, IoError } from '../../lib/io';
import { SyscallError } from '../../lib/errors';
import { rdevToDevno } from '../../lib/dm/device-node';
import { withLoopDevice } from '../helpers/loop-device';
import { PathProbeReader } from '../../lib/watchdog/probe-reader';

const MiB = 1 << 20;
/** Probes here are never aborted. */
const NEVER = new AbortController().signal;

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => undefined, (e: unknown) => e);
}

function withDevDir<T>(fn: (dir: string, file: (name: string) => string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync('/dev/shm/mpw-probe-');
  const file = (name: string): string => {
    const f = join(dir, `${name}.img`);
    writeFileSync(f, '');
    truncateSync(f, MiB);
    return f;
  };
  return fn(dir, file).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test('after close() a probe is refused with DeviceClosedError and opens nothing', async () => {
  await withDevDir(async (dir, file) => {
    symlinkSync(file('a'), join(dir, 'sdx'));
    const reader = new PathProbeReader({ devDir: dir, engine: 'threads' });
    const path = { devno: '8:48', name: 'sdx' };
    assert.ok((await reader.read(path, NEVER)).latencyMs >= 0);
    await reader.close();
    const err = await failure(reader.read(path, NEVER));
    assert.ok(err instanceof DeviceClosedError, String(err));
    // Not even a first open of another path.
    const other = await failure(reader.read({ devno: "8:64", name: "sdy" }, NEVER));
    assert.ok(other instanceof DeviceClosedError, String(other));
  });
});

test('a failed probe drops the device: the next one opens the node again and finds the new device', async () => {
  await withDevDir(async (dir, file) => {
    const old = file('old');
    symlinkSync(old, join(dir, 'sdx'));
    const reader = new PathProbeReader({ devDir: dir, engine: 'threads' });
    const path = { devno: '8:48', name: 'sdx' };
    try {
      await reader.read(path, NEVER);
      // The old device goes bad (every read short) and the path is made anew under its name.
      truncateSync(old, 0);
      const err = await failure(reader.read(path, NEVER));
      assert.ok(err instanceof IoError, String(err));
      unlinkSync(join(dir, 'sdx'));
      symlinkSync(file('new'), join(dir, 'sdx'));
      // Before, the cached fd of the old device failed every probe, and the path was never reinstated.
      const r = await reader.read(path, NEVER);
      assert.ok(r.latencyMs >= 0);
    } finally {
      await reader.close();
    }
  });
});

test('readInto (a hedge straight to a path) reads the path device at the offset into a buffer of its own, and is refused after close()', async () => {
  await withDevDir(async (dir, file) => {
    const f = file('a');
    const data = Buffer.alloc(4096, 0x6d);
    // Two blocks in: the rest stays zero, so a read at the wrong offset shows.
    const fd = openSync(f, 'r+');
    writeSync(fd, data, 0, 4096, 8192);
    closeSync(fd);
    symlinkSync(f, join(dir, 'sdx'));
    const reader = new PathProbeReader({ devDir: dir, engine: 'threads', queueDepth: 8 });
    const path = { devno: '8:48', name: 'sdx' };
    const buf = Buffer.alloc(4096);
    const r = await reader.readInto(path, buf, 8192);
    assert.equal(r.bytes, 4096);
    assert.ok(buf.equals(data));
    await reader.close();
    const err = await failure(reader.readInto(path, Buffer.alloc(4096), 0));
    assert.ok(err instanceof DeviceClosedError, String(err));
  });
});

test('verifyDevno: a node that is not the path\'s block device is refused (ENODEV) and not cached; the right one is read', async () => {
  await withLoopDevice(MiB, async (loop) => {
    await withDevDir(async (dir, file) => {
      const { major, minor } = rdevToDevno(statSync(loop.path).rdev);
      symlinkSync(loop.path, join(dir, 'sdx'));
      symlinkSync(file('plain'), join(dir, 'sdy'));
      const reader = new PathProbeReader({ devDir: dir, engine: 'threads', verifyDevno: true });
      try {
        const wrong = await failure(reader.read({ devno: '8:48', name: 'sdx' }, NEVER));
        assert.ok(wrong instanceof SyscallError && wrong.code === 'ENODEV', String(wrong));
        assert.match(String(wrong), new RegExp(`is not path 8:48 \\(block device ${major}:${minor}\\)`));
        const plain = await failure(reader.readInto({ devno: '8:64', name: 'sdy' }, Buffer.alloc(4096), 0));
        assert.ok(plain instanceof SyscallError && plain.code === 'ENODEV', String(plain));
        assert.match(String(plain), /not a block device/);
        const r = await reader.read({ devno: `${major}:${minor}`, name: 'sdx' }, NEVER);
        assert.ok(r.latencyMs >= 0);
      } finally {
        await reader.close();
      }
    });
  });
});
