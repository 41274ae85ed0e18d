// The kernel says why it refused a table or a message only in its log
// (DMERR in drivers/md/dm-table.c, dm-ioctl.c), so after such a failure we read
// the recent device-mapper lines from /dev/kmsg. Best effort: unreadable log,
// no line, no reason. Read asynchronously with O_NONBLOCK (each read returns a
// record or EAGAIN at once, so none can hang a threadpool thread), never with
// a loop of readSync on the event loop: the ring can hold many thousands.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/** One /dev/kmsg record: "prio,seq,usec,flags;text". */
export interface KmsgRecord {
  /** Microseconds since boot (the kernel's local clock). */
  usec: number;
  text: string;
}

/** Parses one /dev/kmsg record; undefined for malformed ones. */
export function parseKmsgRecord(record: string): KmsgRecord | undefined {
  const m = /^\d+,\d+,(\d+),[^;]*;([^\n]*)/.exec(record);
  return m ? { usec: Number(m[1]), text: m[2] as string } : undefined;
}

/** A dm log line about one device: "table: 254:3: …". */
const NAMES_A_DEVICE = /\b\d+:\d+:/;

/** The device-mapper lines of `records` logged since `sinceUsec`: those naming `devno`, or else those naming no device. */
export function pickDmComplaint(records: readonly KmsgRecord[], sinceUsec: number, devno?: string): string | undefined {
  const recent = records.filter((r) => r.usec >= sinceUsec && r.text.startsWith('device-mapper:'));
  // With a devno: its own lines, else the lines that name no device; never another device's.
  const own = devno === undefined ? [] : recent.filter((r) => new RegExp(`(^|[^0-9])${devno.replace('.', '\\.')}:`).test(r.text));
  const chosen = devno === undefined ? recent : own.length > 0 ? own : recent.filter((r) => !NAMES_A_DEVICE.test(r.text));
  if (chosen.length === 0) return undefined;
  return chosen
    .slice(-3)
    .map((r) => r.text.replace(/^device-mapper: /, ''))
    .join('; ');
}

/** Reads every record now in the ring, off the event loop; O_NONBLOCK ends at EAGAIN. */
async function readKmsg(): Promise<KmsgRecord[]> {
  const out: KmsgRecord[] = [];
  let fh;
  try {
    fh = await open('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return out;
  }
  try {
    const buf = Buffer.alloc(8192);
    for (let i = 0; i < 100_000; i++) {
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, buf.length, null));
      } catch (e) {
        // EPIPE: a record was overwritten while we read; the next read continues.
        if ((e as NodeJS.ErrnoException).code === 'EPIPE') continue;
        break;
      }
      if (n <= 0) break;
      const rec = parseKmsgRecord(buf.toString('utf8', 0, n));
      if (rec) out.push(rec);
    }
  } finally {
    // A failing close must not replace the DmError this read only explains.
    await fh.close().catch(() => undefined);
  }
  return out;
}

/** Microseconds since boot now, on the clock the kernel log uses (close to CLOCK_MONOTONIC). */
export function monotonicUsec(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** The kernel's recent device-mapper complaint since `sinceUsec`, if any. */
export async function kernelComplaint(sinceUsec: number, devno?: string): Promise<string | undefined> {
  // A little slack: the log clock and CLOCK_MONOTONIC drift apart slightly.
  return pickDmComplaint(await readKmsg(), sinceUsec - 200_000, devno);
}
