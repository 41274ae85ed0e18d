// A block device's I/O counters from sysfs: `/sys/block/<dev>/inflight` and
// `/sys/block/<dev>/stat`. Both are printed by block/genhd.c
// (part_inflight_show, part_stat_show); the stat fields are documented in
// Documentation/block/stat.rst. Reads are async (fs/promises): sysfs reads of
// these attributes do not block in the kernel, but a sync read would still
// hold the event loop for a syscall per file per device per sample.
//
// The I/O counts (read/write/discard/flush "I/Os") are bumped at completion
// (blk_account_io_done, bio_end_io_acct), so a count that does not move means
// nothing completed; in-flight counts are bumped at start. A bio-based dm
// device only accounts a bio once it maps it: a bio held by a suspended or
// delaying dm path device is not in that device's counters (measured in the VM,
// "Where a stuck I/O shows in sysfs").
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SyscallError } from '../errors';

/** I/O in flight on a block device, from its `inflight` file. */
export interface InflightCounts {
  /** Reads started and not completed. */
  readonly reads: number;
  /** Writes (and discards, flushes) started and not completed. */
  readonly writes: number;
}

/** One direction of Documentation/block/stat.rst: I/Os, merges, sectors, ticks (ms). */
export interface StatGroup {
  /** Completed I/Os. */
  readonly ios: number;
  /** Merged I/Os. */
  readonly merges: number;
  /** 512-byte sectors transferred. */
  readonly sectors: number;
  /** Milliseconds spent waiting on these I/Os. */
  readonly ticks: number;
}

/** A parsed `/sys/block/<dev>/stat` (11, 15 or 17 fields, by kernel age). */
export interface BlockStat {
  /** Fields 1-4. */
  readonly read: StatGroup;
  /** Fields 5-8. */
  readonly write: StatGroup;
  /** Field 9: I/Os currently in flight. */
  readonly inFlight: number;
  /** Field 10: ms the device had I/O in flight. */
  readonly ioTicks: number;
  /** Field 11: weighted ms of I/O in flight. */
  readonly timeInQueue: number;
  /** Fields 12-15 (Linux 4.18+), else null. */
  readonly discard: StatGroup | null;
  /** Fields 16-17 (Linux 5.5+): completed flushes and their ms, else null. */
  readonly flush: { readonly ios: number; readonly ticks: number } | null;
}

/** Both files of one device, read together. */
export interface CounterSnapshot {
  /** The kernel name the files were read for. */
  readonly name: string;
  /** From `inflight`. */
  readonly inflight: InflightCounts;
  /** From `stat`. */
  readonly stat: BlockStat;
  /** All completed I/Os (read + write + discard + flush): the progress measure. */
  readonly completed: number;
}

/** Where sysfs is mounted. */
export interface SysfsRootOption {
  /** Defaults to `/sys`. */
  readonly sysfsRoot?: string;
}

/** A sysfs counter file whose content is not what block/genhd.c prints. */
export class SysfsFormatError extends Error {
  /** The file read. */
  readonly file: string;
  /** The block device name. */
  readonly device: string;
  /** What was in it. */
  readonly content: string;

  constructor(device: string, file: string, content: string, expected: string) {
    super(`${file}: expected ${expected}, got ${JSON.stringify(content.length > 200 ? `${content.slice(0, 200)}…` : content)}`);
    this.name = new.target.name;
    this.device = device;
    this.file = file;
    this.content = content;
  }
}

const KERNEL_NAME = /^[^/\0\s]+$/;
const UNSIGNED = /^(0|[1-9][0-9]*)$/;

function checkName(name: string): void {
  if (typeof name !== 'string' || !KERNEL_NAME.test(name) || name === '.' || name === '..') {
    throw new TypeError(`not a block device name: ${JSON.stringify(name)}`);
  }
}

async function readCounterFile(name: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const e = (typeof err === 'object' && err !== null ? err : {}) as { errno?: number; syscall?: string; code?: string };
    const missing = e.code === 'ENOENT' || e.code === 'ENOTDIR';
    const message = missing ? `no block device '${name}': ${file} is missing` : `cannot read ${file}`;
    const errno = typeof e.errno === 'number' ? Math.abs(e.errno) : 5;
    throw new SyscallError(message, { errno, syscall: e.syscall ?? 'read', device: name }, { cause: err });
  }
}

function unsignedFields(name: string, file: string, text: string, expected: string): number[] {
  const fields = text.trim().split(/\s+/);
  const out: number[] = [];
  for (const f of fields) {
    const n = Number(f);
    if (!UNSIGNED.test(f) || !Number.isSafeInteger(n)) throw new SysfsFormatError(name, file, text, expected);
    out.push(n);
  }
  return out;
}

/** Parses the text of an `inflight` file ("%8u %8u\n"). Throws SysfsFormatError. */
export function parseInflight(text: string, name = '?', file = 'inflight'): InflightCounts {
  const expected = 'two unsigned decimals (reads, writes in flight)';
  const f = unsignedFields(name, file, text, expected);
  if (f.length !== 2) throw new SysfsFormatError(name, file, text, expected);
  return { reads: f[0]!, writes: f[1]! };
}

function group(f: number[], at: number): StatGroup {
  return { ios: f[at]!, merges: f[at + 1]!, sectors: f[at + 2]!, ticks: f[at + 3]! };
}

/** Parses the text of a `stat` file. Throws SysfsFormatError. */
export function parseBlockStat(text: string, name = '?', file = 'stat'): BlockStat {
  const expected = '11, 15 or 17 unsigned decimals (Documentation/block/stat.rst)';
  const f = unsignedFields(name, file, text, expected);
  // Later kernels may append fields; the first 17 keep their meaning.
  if (f.length !== 11 && f.length !== 15 && f.length < 17) throw new SysfsFormatError(name, file, text, expected);
  return {
    read: group(f, 0),
    write: group(f, 4),
    inFlight: f[8]!,
    ioTicks: f[9]!,
    timeInQueue: f[10]!,
    discard: f.length >= 15 ? group(f, 11) : null,
    flush: f.length >= 17 ? { ios: f[15]!, ticks: f[16]! } : null,
  };
}

/** Reads `<sysfs>/block/<name>/inflight`. Throws SyscallError (missing device) or SysfsFormatError. */
export async function readInflight(name: string, options: SysfsRootOption = {}): Promise<InflightCounts> {
  checkName(name);
  const file = join(options.sysfsRoot ?? '/sys', 'block', name, 'inflight');
  return parseInflight(await readCounterFile(name, file), name, file);
}

/** Reads `<sysfs>/block/<name>/stat`. Throws SyscallError (missing device) or SysfsFormatError. */
export async function readBlockStat(name: string, options: SysfsRootOption = {}): Promise<BlockStat> {
  checkName(name);
  const file = join(options.sysfsRoot ?? '/sys', 'block', name, 'stat');
  return parseBlockStat(await readCounterFile(name, file), name, file);
}

/** All completed I/Os in a stat: the counter that moves whenever anything completes. */
export function completedIos(stat: BlockStat): number {
  return stat.read.ios + stat.write.ios + (stat.discard?.ios ?? 0) + (stat.flush?.ios ?? 0);
}

/**
 * Mean service time per read or write completed between two stats, ms (ticks
 * are ms spent on completed I/O, Documentation/block/stat.rst); null when
 * none completed or the counters went backwards (device replaced).
 */
export function serviceTimeMs(before: BlockStat, after: BlockStat): number | null {
  const ios = after.read.ios + after.write.ios - (before.read.ios + before.write.ios);
  const ticks = after.read.ticks + after.write.ticks - (before.read.ticks + before.write.ticks);
  return ios > 0 && ticks >= 0 ? ticks / ios : null;
}

/** Reads and writes in flight together. */
export function inflightTotal(c: InflightCounts): number {
  return c.reads + c.writes;
}

/** Reads `inflight` and `stat` of one device, in parallel. */
export async function readCounters(name: string, options: SysfsRootOption = {}): Promise<CounterSnapshot> {
  const [inflight, stat] = await Promise.all([readInflight(name, options), readBlockStat(name, options)]);
  return { name, inflight, stat, completed: completedIos(stat) };
}
