// A fake /sys/block tree in a temp dir: inflight and stat files written in the
// kernel's own format (block/genhd.c: "%8u %8u\n" and "%8lu ..." fields), and
// rewritten between test steps.
import { mkdtemp, mkdir, writeFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A device's counters as the test sets them. */
export interface FakeCounters {
  /** Reads and writes in flight. */
  inflight: [number, number];
  /** Completed reads. */
  reads: number;
  /** Completed writes. */
  writes: number;
}

const field = (n: number): string => String(n).padStart(8);

/** The 17-field stat line for these counters. */
export function statLine(c: FakeCounters): string {
  const inFlight = c.inflight[0] + c.inflight[1];
  const f = [c.reads, 0, c.reads * 8, c.reads, c.writes, 0, c.writes * 8, c.writes, inFlight, 10, 20, 0, 0, 0, 0, 0, 0];
  return `${f.map(field).join(' ')}\n`;
}

async function writeAtomic(file: string, content: string): Promise<void> {
  await writeFile(`${file}.new`, content);
  await rename(`${file}.new`, file);
}

/** A temp sysfs root with block devices whose counters can be changed. */
export class FakeSysfs {
  readonly root: string;
  readonly #counters = new Map<string, FakeCounters>();

  private constructor(root: string) {
    this.root = root;
  }

  static async create(): Promise<FakeSysfs> {
    return new FakeSysfs(await mkdtemp(join(tmpdir(), 'mpw-counters-')));
  }

  /** Writes (or rewrites) a device's inflight and stat. */
  async set(name: string, change: Partial<FakeCounters>): Promise<FakeCounters> {
    const c: FakeCounters = { inflight: [0, 0], reads: 0, writes: 0, ...this.#counters.get(name), ...change };
    this.#counters.set(name, c);
    const dir = join(this.root, 'block', name);
    await mkdir(dir, { recursive: true });
    // Whole files at once, as sysfs reads are: a sampler reading between a
    // truncate and a write would see an empty file.
    await writeAtomic(join(dir, 'inflight'), `${field(c.inflight[0])} ${field(c.inflight[1])}\n`);
    await writeAtomic(join(dir, 'stat'), statLine(c));
    return c;
  }

  /** Adds `n` completed reads. */
  async complete(name: string, n: number): Promise<void> {
    await this.set(name, { reads: (this.#counters.get(name)?.reads ?? 0) + n });
  }

  /** Writes raw content into one of a device's files. */
  async raw(name: string, file: 'inflight' | 'stat', content: string): Promise<void> {
    const dir = join(this.root, 'block', name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, file), content);
  }

  /** Removes a device, as if it vanished. */
  async remove(name: string): Promise<void> {
    this.#counters.delete(name);
    await rm(join(this.root, 'block', name), { recursive: true, force: true });
  }

  async dispose(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}
