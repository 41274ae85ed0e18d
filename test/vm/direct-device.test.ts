// DirectDevice against the real kernel: EIO from dm-flakey, and a hung
// device (dm-linear suspended with noflush) under close({signal}).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DirectDevice, IoError, CloseAbortedError, type NativeEngineKind } from '../../lib/io';
import { scsiDebugDisks, sectors } from './helpers/scsi';
import { collect } from '../helpers/gc';

const exec = async (file: string, args: string[]) => (await import('execa')).execa(file, args);
const ENGINES: NativeEngineKind[] = ['io_uring', 'threads'];

async function dmCreate(name: string, table: string): Promise<string> {
  await exec('dmsetup', ['create', name, '--table', table]);
  const { stdout } = await exec('dmsetup', ['info', '-c', '--noheadings', '-o', 'minor', name]);
  return `/dev/dm-${stdout.trim()}`; // no udev here: no /dev/mapper/NAME
}

async function dmCleanup(name: string): Promise<void> {
  await exec('dmsetup', ['resume', name]).catch(() => undefined);
  await exec('dmsetup', ['remove', name]).catch(() => undefined);
}

for (const engine of ENGINES) {
  test(`${engine}: a read on dm-flakey in its down interval fails with IoError EIO`, async () => {
    const [a] = scsiDebugDisks();
    assert.ok(a);
    const name = `mpw-flakey-${engine}`;
    try {
      // up 0 s, down 1 s: always down; with no features, every I/O errors (dm-flakey.rst).
      const path = await dmCreate(name, `0 ${sectors(a.name)} flakey ${a.devno} 0 0 1`);
      const dev = await DirectDevice.open(path, { engine, readOnly: true });
      try {
        assert.equal(dev.engine, engine);
        const err = await dev.read(dev.alloc(4096), 8192).then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof IoError, String(err));
        assert.equal(err.errno, 5);
        assert.equal(err.code, 'EIO');
        assert.equal(err.operation, 'read');
        assert.equal(err.offset, 8192);
        assert.equal(err.device, path);
        assert.equal(err.short, false);
        assert.equal(err.syscall, engine === 'threads' ? 'pread' : 'IORING_OP_READ');
      } finally {
        await dev.close();
      }
    } finally {
      await dmCleanup(name);
    }
  });

  test(`${engine}: close({signal}) on a hung device rejects on the signal, the loop keeps ticking, and the reads land after resume`, async () => {
    const [, b] = scsiDebugDisks();
    assert.ok(b);
    const name = `mpw-hang-${engine}`;
    try {
      const path = await dmCreate(name, `0 ${sectors(b.name)} linear ${b.devno} 0`);
      const dev = await DirectDevice.open(path, { engine, queueDepth: 8, readOnly: true });
      await exec('dmsetup', ['suspend', '--noflush', name]);
      // Buffers are dropped by the caller at once: only the engine holds them.
      const reads = Array.from({ length: 8 }, (_, i) => dev.read(dev.alloc(4096), i * 4096));
      const settled = Promise.allSettled(reads);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(dev.inFlight, 8);
      collect();

      let ticks = 0;
      const interval = setInterval(() => { ticks++; }, 10);
      const err = await dev.close({ signal: AbortSignal.timeout(600) }).then(() => undefined, (e: unknown) => e);
      clearInterval(interval);
      assert.ok(err instanceof CloseAbortedError, String(err));
      assert.equal(err.inFlight, 8);
      assert.equal((err.cause as Error).name, 'TimeoutError');
      assert.ok(ticks >= 5, `the interval ticked ${ticks} times while close waited`);
      assert.equal(dev.inFlight, 8, 'still in the kernel');
      collect(); // the dropped buffers must survive this

      await exec('dmsetup', ['resume', name]);
      const results = await settled;
      for (const r of results) {
        assert.equal(r.status, 'fulfilled', String((r as PromiseRejectedResult).reason));
        const { bytes, submitNs, doneNs } = (r as PromiseFulfilledResult<{ bytes: number; submitNs: bigint; doneNs: bigint }>).value;
        assert.equal(bytes, 4096);
        // Native stamps: the wait in the suspended device is in the latency.
        assert.ok(doneNs - submitNs >= 600_000_000n, `latency ${doneNs - submitNs} ns covers the hang`);
      }
      assert.equal(dev.inFlight, 0);
      await dev.close(); // drained now: resolves and frees the engine
      collect();
    } finally {
      await dmCleanup(name);
    }
  });
}
