// The native I/O engine, both backends, on its success and error paths, in one
// short process, for running under valgrind (test/vm-native/valgrind.test.ts):
// round trips on a real SCSI disk, a flush, refusals before submission, EIO
// from a dm `error` target, a read past the end, a missing device, and a
// close({signal}) while reads are held by a suspended device, whose buffers
// the kernel fills only after resume. Runs only with MPW_IO_EXERCISE=1,
// because `node --test dist/test/vm/` also loads helpers.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DeviceMapper } from '../../../lib/dm';
import { DirectDevice, IoArgumentError, IoError, type NativeEngineKind } from '../../../lib/io';
import { SyscallError } from '../../../lib/errors';
import { scsiDebugDisks } from './scsi';
import { within } from '../../helpers/within';

const BLOCK = 4096;
// Well past the regions the other VM tests write (their maps start at 0).
const SCRATCH = 32 * 1024 * 1024;

/** Progress on stderr, so a run that stalls under valgrind shows where. */
function step(kind: NativeEngineKind, what: string): void {
  console.error(`io exercise: ${kind}: ${what}`);
}

async function engine(kind: NativeEngineKind, dm: DeviceMapper, disk: string): Promise<void> {
  step(kind, 'round trips');
  const dev = await DirectDevice.open(`/dev/${disk}`, { engine: kind, queueDepth: 8 });
  assert.equal(dev.engine, kind);
  try {
    const bufs = Array.from({ length: 16 }, () => dev.alloc(BLOCK));
    for (const b of bufs) randomBytes(BLOCK).copy(b);
    await Promise.all(bufs.map((b, i) => dev.write(b, SCRATCH + i * BLOCK)));
    await dev.flush();
    const back = Array.from({ length: 16 }, () => dev.alloc(BLOCK));
    await Promise.all(back.map((b, i) => dev.read(b, SCRATCH + i * BLOCK)));
    back.forEach((b, i) => assert.ok(b.equals(bufs[i] as Buffer), `${kind}: block ${i} round-trips`));
    await assert.rejects(dev.read(dev.alloc(BLOCK), 1), IoArgumentError);
    await assert.rejects(dev.read(dev.alloc(BLOCK), dev.size), IoArgumentError);
    await assert.rejects(dev.read(Buffer.alloc(BLOCK + 1), 0), IoArgumentError);
  } finally {
    await dev.close();
  }
  await assert.rejects(DirectDevice.open('/dev/mpw-no-such-device', { engine: kind }), SyscallError);
  step(kind, 'EIO');

  // EIO from the kernel: every sector of an `error` target fails.
  const errName = `mpw-vg-io-err-${kind}`;
  await dm.create(errName, { table: '0 2048 error' });
  try {
    const bad = await DirectDevice.open(await dm.devicePath(errName), { engine: kind });
    try {
      await assert.rejects(bad.read(bad.alloc(BLOCK), 0), (e: unknown) => e instanceof IoError && e.code === 'EIO');
    } finally {
      await bad.close();
    }
  } finally {
    await dm.remove(errName);
  }

  // Reads held by a suspended device: close gives up on its signal, and the
  // engine keeps the buffers until the kernel writes them after resume.
  step(kind, 'close while held');
  const heldName = `mpw-vg-io-held-${kind}`;
  await dm.create(heldName, { table: `0 2048 linear /dev/${disk} ${SCRATCH / 512}` });
  try {
    const held = await DirectDevice.open(await dm.devicePath(heldName), { engine: kind });
    await dm.suspend(heldName, { noflush: true });
    const reads = Array.from({ length: 4 }, (_, i) => held.read(held.alloc(BLOCK), i * BLOCK));
    await new Promise((r) => setTimeout(r, 200));
    await assert.rejects(held.close({ signal: AbortSignal.timeout(300) }));
    await dm.resume(heldName);
    // The aborted close unref'd the engine: within()'s timer keeps the process alive until the reads settle.
    await within(`${kind}: the held reads to settle after resume`, Promise.all(reads), 60_000);
    await held.close();
  } finally {
    await dm.resume(heldName).catch(() => undefined);
    await dm.remove(heldName);
  }
}

export async function exercise(): Promise<void> {
  const dm = new DeviceMapper();
  const [disk] = scsiDebugDisks();
  assert.ok(disk);
  const kinds = (process.env['MPW_IO_ENGINES'] ?? 'io_uring,threads').split(',') as NativeEngineKind[];
  for (const kind of kinds) await engine(kind, dm, disk.name);
}

if (process.env['MPW_IO_EXERCISE'] === '1') {
  exercise().then(
    () => console.log('io exercise: ok'),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
