// A loop device over a file in /dev/shm, for the engine's host tests and the
// benchmark: created with losetup, always detached and deleted afterwards.
import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { run } from '../../scripts/vm/exec';

/** An attached loop device and its backing file. */
export interface LoopDevice {
  /** /dev/loopN. */
  path: string;
  /** The backing file in /dev/shm. */
  file: string;
  /** Size in bytes. */
  size: number;
}

/** Options of createLoopDevice. */
export interface LoopOptions {
  /** Fill the backing file with random bytes (default: sparse zeros). */
  random?: boolean;
}

/** Creates a file of `size` bytes in /dev/shm and attaches a loop device to it. */
export async function createLoopDevice(size: number, options: LoopOptions = {}): Promise<LoopDevice> {
  const file = `/dev/shm/mpw-loop-${process.pid}-${randomBytes(4).toString('hex')}.img`;
  const fh = await open(file, 'wx');
  try {
    await fh.truncate(size);
    if (options.random === true) {
      const chunk = 1 << 20;
      for (let off = 0; off < size; off += chunk) await fh.write(randomBytes(Math.min(chunk, size - off)), 0, undefined, off);
    }
  } finally {
    await fh.close();
  }
  try {
    const { stdout } = await run('losetup', ['--find', '--show', file]);
    return { path: String(stdout).trim(), file, size };
  } catch (e) {
    await rm(file, { force: true });
    throw e;
  }
}

/** Detaches the loop device and deletes its file; safe to call twice. */
export async function destroyLoopDevice(dev: LoopDevice): Promise<void> {
  try {
    await run('losetup', ['-d', dev.path], { reject: false });
  } finally {
    await rm(dev.file, { force: true });
  }
}

/** Runs `fn` with a fresh loop device, tearing it down even when `fn` throws. */
export async function withLoopDevice<T>(size: number, fn: (dev: LoopDevice) => Promise<T>, options: LoopOptions = {}): Promise<T> {
  const dev = await createLoopDevice(size, options);
  try {
    return await fn(dev);
  } finally {
    await destroyLoopDevice(dev);
  }
}
