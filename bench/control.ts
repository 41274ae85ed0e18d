// Median latency of status() through the addon against spawning
// `dmsetup status` for the same map, measured in one run. Run in the VM:
//   node dist/scripts/vm/run.js --deadline 300 -- node dist/bench/control.js
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { DeviceMapper } from '../lib/dm';

const run = promisify(execFile);

function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** The scsi_debug disks as major:minor (the guest set-up makes two). */
function scsiDebugDevnos(): string[] {
  return readdirSync('/sys/block')
    .filter((n) => existsSync(`/sys/block/${n}/device/model`) && readFileSync(`/sys/block/${n}/device/model`, 'utf8').startsWith('scsi_debug'))
    .sort()
    .map((n) => readFileSync(`/sys/block/${n}/dev`, 'utf8').trim());
}

async function main(): Promise<void> {
  const rounds = Number(process.env['MPW_BENCH_ROUNDS'] ?? 100);
  const dm = new DeviceMapper();
  const [a, b] = scsiDebugDevnos();
  if (!a || !b) throw new Error('needs the two scsi_debug disks of the test VM');
  const name = 'mpw-bench-control';
  const table = `0 8192 multipath 2 queue_mode rq 0 1 1 service-time 0 2 2 ${a} 1 1 ${b} 1 1`;
  await dm.create(name, { table });
  try {
    const ours = await dm.status(name);
    const theirs = (await run('dmsetup', ['status', name])).stdout.trimEnd();
    if (`${ours[0]?.start} ${ours[0]?.length} ${ours[0]?.type} ${ours[0]?.params}`.trimEnd() !== theirs)
      throw new Error(`status differs: ${JSON.stringify(ours)} vs ${theirs}`);
    // Warm up both, then interleave so drift in the shared machine hits both alike.
    for (let i = 0; i < 5; i++) {
      await dm.status(name);
      await run('dmsetup', ['status', name]);
    }
    const addon: number[] = [];
    const spawn: number[] = [];
    for (let i = 0; i < rounds; i++) {
      addon.push(await timeMs(() => dm.status(name)));
      spawn.push(await timeMs(() => run('dmsetup', ['status', name])));
    }
    const ma = median(addon);
    const ms = median(spawn);
    console.log(`status() via addon:      median ${ma.toFixed(3)} ms over ${rounds}`);
    console.log(`dmsetup status (spawn):  median ${ms.toFixed(3)} ms over ${rounds}`);
    console.log(`ratio dmsetup/addon:     ${(ms / ma).toFixed(1)}x`);
  } finally {
    await dm.remove(name);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
