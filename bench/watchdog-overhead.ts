// bench/watchdog-overhead: what the watchdog's per-I/O path costs. 4 KiB random
// O_DIRECT reads at QD32 on a loop device over /dev/shm, through TimedDevice
// (deadline tracking, write fence check, latency histogram; timeout 500 ms),
// with hedging off and on, against the bare DirectDevice, in one run. The
// variants alternate (A B C A B C ...) so that drift in the machine's load
// hits them alike; the ratio is the median of each round's ratio against the
// bare row of the same round. The CPU time per I/O of this process shows
// the path's own cost when other load on the machine blurs the IOPS.
// Usage: node dist/bench/watchdog-overhead.js [seconds per point, default 5] [rounds, default 3]
// (BENCH_DEVICE=/dev/X reads an existing device instead of a fresh loop).
import { DirectDevice, type IoResult } from '../lib/io';
import { TimedDevice } from '../lib/watchdog/timed-device';
import { createLoopDevice, destroyLoopDevice } from '../test/helpers/loop-device';

const BS = 4096;
const QD = 32;
const TIMEOUT_MS = 500;
const DEVICE_BYTES = 512 << 20;

/** One way of reading the device. */
interface Variant {
  name: string;
  open(path: string): Promise<Reader>;
}

/** An open reader: read one block, close. */
interface Reader {
  alloc(bytes: number): Buffer;
  read(buf: Buffer, offset: number): Promise<IoResult>;
  close(): Promise<void>;
  readonly size: number;
}

/** One measured point. */
interface Point {
  iops: number;
  /** This process's CPU time (user + system) per I/O, µs: the cost of the path, less disturbed by other load than IOPS. */
  cpuUs: number;
  /** Engine latencies (submit to completion stamps), ns. */
  lat: Float64Array;
}

const VARIANTS: Variant[] = [
  {
    name: 'bare DirectDevice',
    open: async (path) => {
      const dev = await DirectDevice.open(path, { queueDepth: QD, readOnly: true });
      return { alloc: (b) => dev.alloc(b), read: (buf, off) => dev.read(buf, off), close: () => dev.close(), size: dev.size };
    },
  },
  ...[false, true].map((hedgeReads): Variant => ({
    name: hedgeReads ? 'TimedDevice, hedge on' : 'TimedDevice, hedge off',
    open: async (path) => {
      const device = await DirectDevice.open(path, { queueDepth: QD, readOnly: true });
      const t = new TimedDevice({ device, timeoutMs: TIMEOUT_MS, hedgeReads });
      return { alloc: (b) => t.alloc(b), read: (buf, off) => t.read(buf, off), close: () => t.close(), size: device.size };
    },
  })),
];

async function measure(path: string, v: Variant, seconds: number): Promise<Point> {
  const r = await v.open(path);
  const blocks = Math.floor(r.size / BS);
  const lat = new Float64Array(Math.ceil(seconds * 1_000_000));
  let n = 0;
  let stop = false;
  const worker = async (): Promise<void> => {
    const buf = r.alloc(BS);
    while (!stop) {
      const res = await r.read(buf, Math.floor(Math.random() * blocks) * BS);
      if (n < lat.length) lat[n] = Number(res.doneNs - res.submitNs);
      n++;
    }
  };
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const timer = setTimeout(() => { stop = true; }, seconds * 1000);
  try {
    await Promise.all(Array.from({ length: QD }, worker));
  } finally {
    clearTimeout(timer);
    await r.close();
  }
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { iops: n / elapsed, cpuUs: (cpu.user + cpu.system) / n, lat: lat.subarray(0, Math.min(n, lat.length)) };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function concat(parts: Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? process.env['BENCH_SECONDS'] ?? 5);
  const rounds = Number(process.argv[3] ?? process.env['BENCH_ROUNDS'] ?? 3);
  const given = process.env['BENCH_DEVICE'];
  const loop = given === undefined ? await createLoopDevice(DEVICE_BYTES, { random: true }) : undefined;
  const path = given ?? loop!.path;
  const points: Point[][] = VARIANTS.map(() => []);
  try {
    console.log(`device ${path}, 4 KiB random O_DIRECT reads, QD${QD}, timeout ${TIMEOUT_MS} ms, ${rounds} rounds of ${seconds} s per variant`);
    // Warm the JIT on every variant before anything counts.
    for (const v of VARIANTS) await measure(path, v, 1);
    for (let round = 0; round < rounds; round++) {
      for (const [i, v] of VARIANTS.entries()) {
        const p = await measure(path, v, seconds);
        points[i]!.push(p);
        console.log(`  round ${round + 1} ${v.name.padEnd(24)} ${Math.round(p.iops)} IOPS, ${p.cpuUs.toFixed(2)} CPU us/IO`);
      }
    }
  } finally {
    if (loop) await destroyLoopDevice(loop);
  }
  const line = (c: string[]): string => c.map((s, i) => (i === 0 ? s.padEnd(24) : s.padStart(11))).join(' ');
  console.log(line(['variant', 'IOPS (med)', 'p50 us', 'p99 us', 'vs bare', 'worst rnd', 'CPU us/IO']));
  const bare = points[0]!;
  for (const [i, v] of VARIANTS.entries()) {
    const ps = points[i]!;
    const sorted = concat(ps.map((p) => p.lat)).sort();
    const ratios = ps.map((p, r) => p.iops / bare[r]!.iops);
    console.log(line([
      v.name,
      Math.round(median(ps.map((p) => p.iops))).toString(),
      (percentile(sorted, 50) / 1000).toFixed(1),
      (percentile(sorted, 99) / 1000).toFixed(1),
      i === 0 ? '' : median(ratios).toFixed(3),
      i === 0 ? '' : Math.min(...ratios).toFixed(3),
      median(ps.map((p) => p.cpuUs)).toFixed(2),
    ]));
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
