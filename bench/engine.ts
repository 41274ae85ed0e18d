// bench/engine: 4 KiB random O_DIRECT reads on a loop device over /dev/shm,
// the engine (io_uring and threads) against fio in the same run, per queue
// depth. Usage: node dist/bench/engine.js [seconds per point, default 5]
// (BENCH_DEVICE=/dev/X reads an existing device instead of a fresh loop).
import { run } from '../scripts/vm/exec';
import { DirectDevice, type NativeEngineKind } from '../lib/io';
import { createLoopDevice, destroyLoopDevice } from '../test/helpers/loop-device';

const BS = 4096;
const DEVICE_BYTES = 1 << 30;

/** One benchmark row. */
interface Row {
  name: string;
  qd: number;
  iops: number;
  p50us: number;
  p99us: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function engineRow(path: string, engine: NativeEngineKind, qd: number, seconds: number): Promise<Row> {
  const dev = await DirectDevice.open(path, { engine, queueDepth: qd, readOnly: true });
  const blocks = Math.floor(dev.size / BS);
  const lat = new Float64Array(Math.ceil(seconds * 2_000_000));
  let n = 0;
  let stop = false;
  const worker = async (): Promise<void> => {
    const buf = dev.alloc(BS);
    while (!stop) {
      const r = await dev.read(buf, Math.floor(Math.random() * blocks) * BS);
      if (n < lat.length) lat[n] = Number(r.doneNs - r.submitNs);
      n++;
    }
  };
  const t0 = process.hrtime.bigint();
  const timer = setTimeout(() => { stop = true; }, seconds * 1000);
  await Promise.all(Array.from({ length: qd }, worker));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  clearTimeout(timer);
  await dev.close();
  const sorted = lat.subarray(0, Math.min(n, lat.length)).sort();
  return { name: `engine ${engine}`, qd, iops: n / elapsed, p50us: percentile(sorted, 50) / 1000, p99us: percentile(sorted, 99) / 1000 };
}

interface FioJob {
  read: { iops: number; clat_ns: { percentile?: Record<string, number> } };
}

async function fioRow(path: string, ioengine: 'io_uring' | 'psync', qd: number, seconds: number): Promise<Row> {
  const { stdout } = await run('fio', [
    '--name=bench', `--filename=${path}`, '--rw=randread', `--bs=${BS}`, '--direct=1', `--ioengine=${ioengine}`,
    `--iodepth=${qd}`, `--runtime=${seconds}`, '--time_based', '--readonly', '--output-format=json',
  ]);
  const job = (JSON.parse(String(stdout)) as { jobs: FioJob[] }).jobs[0]!;
  const pct = job.read.clat_ns.percentile ?? {};
  return { name: `fio ${ioengine}`, qd, iops: job.read.iops, p50us: (pct['50.000000'] ?? NaN) / 1000, p99us: (pct['99.000000'] ?? NaN) / 1000 };
}

function print(rows: Row[]): void {
  const line = (c: string[]): string => c.map((s, i) => (i === 0 ? s.padEnd(16) : s.padStart(10))).join(' ');
  console.log(line(['engine', 'QD', 'IOPS', 'p50 us', 'p99 us', 'vs fio', 'vs psync']));
  for (const r of rows) {
    const fio = rows.find((x) => x.name === 'fio io_uring' && x.qd === r.qd);
    const psync = rows.find((x) => x.name === 'fio psync' && x.qd === r.qd);
    const ratio = (peer: Row | undefined): string => (peer && r !== peer ? (r.iops / peer.iops).toFixed(2) + 'x' : '');
    console.log(line([r.name, String(r.qd), Math.round(r.iops).toString(), r.p50us.toFixed(1), r.p99us.toFixed(1), ratio(fio), ratio(psync)]));
  }
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? process.env['BENCH_SECONDS'] ?? 5);
  const given = process.env['BENCH_DEVICE'];
  const loop = given === undefined ? await createLoopDevice(DEVICE_BYTES, { random: true }) : undefined;
  const path = given ?? loop!.path;
  const engines: NativeEngineKind[] = DirectDevice.ioUringCompiledIn ? ['io_uring', 'threads'] : ['threads'];
  const rows: Row[] = [];
  try {
    console.log(`device ${path}, ${seconds} s per point, 4 KiB random O_DIRECT reads`);
    for (const qd of [1, 32, 128]) {
      if (qd === 1) rows.push(await fioRow(path, 'psync', 1, seconds));
      rows.push(await fioRow(path, 'io_uring', qd, seconds));
      for (const e of engines) rows.push(await engineRow(path, e, qd, seconds));
    }
  } finally {
    if (loop) await destroyLoopDevice(loop);
  }
  print(rows);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
