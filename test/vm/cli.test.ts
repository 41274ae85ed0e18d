// The mpath-watchdog command against the real kernel: every subcommand run as
// a process, --json output parsed back, dmsetup as the oracle, bad arguments,
// watch with --metrics on the fault rig, and the demo to its summary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { StatusMapReport } from '../../lib/cli/status';
import { createRig, waitFor } from './helpers/rig';
import { dmsetup, dmsetupLs, forceCleanup } from './helpers/dm';
import { scsiDebugDisks } from './helpers/scsi';

const root = resolve(__dirname, '..', '..', '..');
const CLI = 'dist/lib/cli/main.js';

async function cli(...args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const { execa } = await import('execa');
  const r = await execa(process.execPath, [CLI, ...args], { cwd: root, reject: false });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function pathState(map: string, devno: string): Promise<string> {
  return new RegExp(`${devno} ([AF]) `).exec(await dmsetup('status', map))?.[1] ?? '?';
}

// About 15 CLI processes: each Node start takes 2.5 s in the TCG guest on the host's userland and
// 4.5 s on Debian 13's (measured), more on a loaded machine; the timeout only guards a hang.
test('create, status --json, fail, reinstate, remove, and their errors', { timeout: 300_000 }, async () => {
  const map = 'mpw-cli-map';
  const [a, b] = scsiDebugDisks();
  assert.ok(a && b);
  await forceCleanup(map);
  try {
    const created = await cli('create', map, '--path', a.name, '--path', `/dev/${b.name}`, '--selector', 'service-time', '--queue-if-no-path', '--json');
    assert.equal(created.exitCode, 0, created.stderr);
    const c = JSON.parse(created.stdout) as { name: string; devno: string; table: string };
    assert.equal(c.name, map);
    assert.ok((await dmsetupLs()).includes(`${map} ${c.devno}`));
    assert.match(await dmsetup('table', map), new RegExp(`multipath 1 queue_if_no_path 0 1 1 service-time 0 2 2 ${a.devno} 1 1 ${b.devno} 1 1`));

    const again = await cli('create', map, '--path', a.name);
    assert.equal(again.exitCode, 1);
    assert.match(again.stderr, new RegExp(`^mpath-watchdog create: device-mapper device '${map}' already exists.*\\(EBUSY\\)$`));

    const st = await cli('status', map, '--json');
    assert.equal(st.exitCode, 0, st.stderr);
    const [m] = (JSON.parse(st.stdout) as { maps: StatusMapReport[] }).maps;
    assert.equal(m?.name, map);
    assert.equal(m?.queueIfNoPath, true);
    assert.equal(m?.queueMode, 'rq');
    assert.deepEqual(m?.groups[0]?.paths.map((p) => [p.devno, p.name, p.wwid, p.state, p.failCount]), [
      [a.devno, a.name, a.wwid, 'active', 0],
      [b.devno, b.name, b.wwid, 'active', 0],
    ]);
    const all = await cli('status', '--json');
    assert.ok((JSON.parse(all.stdout) as { maps: StatusMapReport[] }).maps.some((x) => x.name === map), 'status without MAP lists it');
    const human = await cli('status', map);
    assert.match(human.stdout, new RegExp(`^\\s+1 (active|enabled)\\*?\\s+service-time\\s+${b.devno}\\s+${b.name}\\s+active\\s+0\\s+${b.wwid}$`, 'm'));

    const failed = await cli('fail', map, b.name, '--json');
    assert.equal(failed.exitCode, 0, failed.stderr);
    assert.deepEqual(JSON.parse(failed.stdout), { map, devno: b.devno, name: b.name, state: 'failed', failCount: 1 });
    assert.equal(await pathState(map, b.devno), 'F');
    const back = await cli('reinstate', map, `/dev/${b.name}`);
    assert.equal(back.exitCode, 0, back.stderr);
    assert.match(back.stdout, new RegExp(`path ${b.devno} \\(${b.name}\\) is now active`));
    assert.equal(await pathState(map, b.devno), 'A');

    // The last active path is refused, in one line and with nothing sent, unless --force.
    assert.equal((await cli('fail', map, b.name)).exitCode, 0);
    const last = await cli('fail', map, a.name);
    assert.equal(last.exitCode, 1);
    assert.equal(last.stderr, `mpath-watchdog fail: refusing to fail ${a.devno} of '${map}': 0 other paths active, 1 must stay (last-path)`);
    assert.equal(await pathState(map, a.devno), 'A');
    const forced = await cli('fail', map, a.name, '--force', '--json');
    assert.equal(forced.exitCode, 0, forced.stderr);
    assert.equal(await pathState(map, a.devno), 'F');
    for (const p of [a, b]) assert.equal((await cli('reinstate', map, p.name)).exitCode, 0);

    const notPath = await cli('fail', map, '1:0');
    assert.equal(notPath.exitCode, 1);
    assert.match(notPath.stderr, /^mpath-watchdog fail: [^\n]+$/, 'one line');

    const removed = await cli('remove', map);
    assert.equal(removed.exitCode, 0, removed.stderr);
    assert.ok(!(await dmsetupLs()).some((l) => l.startsWith(`${map} `)));
  } finally {
    await forceCleanup(map);
  }
  for (const cmd of [['status', 'mpw-cli-none'], ['fail', 'mpw-cli-none', 'sda'], ['remove', 'mpw-cli-none']]) {
    const r = await cli(...cmd);
    assert.equal(r.exitCode, 1, cmd.join(' '));
    assert.equal(r.stderr, `mpath-watchdog ${cmd[0]}: no such device-mapper device 'mpw-cli-none' (ENXIO)`);
  }
  const linear = 'mpw-cli-linear';
  await forceCleanup(linear);
  await dmsetup('create', linear, '--table', `0 8 linear ${a.devno} 0`);
  try {
    const r = await cli('remove', linear);
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /is not a single-target multipath map/);
    assert.ok((await dmsetupLs()).some((l) => l.startsWith(`${linear} `)), 'a non-multipath device is never removed');
  } finally {
    await forceCleanup(linear);
  }
});

test('watch on the rig: a hung path is failed, logged as JSON lines and counted in /metrics; SIGTERM exits 0', { timeout: 180_000 }, async () => {
  const rig = await createRig('mpw-cli-w');
  const [pa] = rig.paths;
  const { execa } = await import('execa');
  const sub = execa(process.execPath, [CLI, 'watch', rig.map, '--timeout', '1s', '--hedge-reads', '--hold-down', '1s', '--probe-interval', '250ms',
    '--read-rate', '50', '--metrics', '127.0.0.1:0'], { cwd: root, reject: false });
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: sub.stdout }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  const find = (event: string): Record<string, unknown> | undefined => lines.find((l) => l.event === event);
  try {
    const notPath = await cli('fail', rig.map, pa.disk.name);
    assert.equal(notPath.exitCode, 1);
    assert.match(notPath.stderr, new RegExp(`^mpath-watchdog fail: path: is not a path of multipath map '${rig.map}' \\(its paths: ${pa.devno}, .*\\) \\(got "${pa.disk.name}"\\)$`));

    await waitFor('started', () => find('started') !== undefined, 30_000);
    const url = find('started')?.metrics as string;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const scrape = async (): Promise<string> => (await fetch(url)).text();
    await waitFor('probe reads timed', async () => /^mpath_watchdog_io_latency_seconds_count\{map="[^"]+",op="read"\} [1-9]/m.test(await scrape()));
    assert.doesNotMatch(await scrape(), /^mpath_watchdog_paths_failed_total\{/m);

    await rig.hang(pa);
    await waitFor('path-failed line', () => find('path-failed') !== undefined, 30_000);
    const failed = find('path-failed') as { map: string; path: { devno: string }; action: string };
    assert.equal(failed.map, rig.map);
    assert.equal(failed.path.devno, pa.devno);
    assert.equal(failed.action, 'dm-message');
    assert.ok(lines.some((l) => l.event === 'io-late'), 'the late read was logged first');
    const text = await scrape();
    assert.match(text, new RegExp(`^mpath_watchdog_paths_failed_total\\{map="${rig.map}",path="${pa.devno}",device="${pa.name}"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^mpath_watchdog_path_usable\\{map="${rig.map}",path="${pa.devno}",device="${pa.name}"\\} 0$`, 'm'));
    assert.match(text, new RegExp(`^mpath_watchdog_io_late_total\\{map="${rig.map}",op="read"\\} [1-9]`, 'm'));
    assert.equal(await pathState(rig.map, pa.devno), 'F');

    await rig.heal(pa);
    await waitFor('path-reinstated line', () => find('path-reinstated') !== undefined, 30_000);
    assert.match(await scrape(), new RegExp(`^mpath_watchdog_paths_reinstated_total\\{map="${rig.map}",path="${pa.devno}",device="${pa.name}"\\} 1$`, 'm'));

    sub.kill('SIGTERM');
    const r = await sub;
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.deepEqual(lines.slice(-2).map((l) => l.event), ['stopping', 'stopped']);
    assert.equal(find('stopping')?.signal, 'SIGTERM');
    await assert.rejects(fetch(url), 'the metrics server is closed');
  } finally {
    sub.kill('SIGKILL');
    await rig.teardown();
  }
});

test('demo runs to its summary and exits 0', { timeout: 180_000 }, async () => {
  const r = await cli('demo', '--baseline', '1s');
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^ {2}with it, fault -> fail: +\d+ ms \(timeout 1000 ms\)$/m);
  assert.match(r.stdout, /^ {2}without the watchdog: +[1-9]\d* of 8 reads stuck/m);
  assert.match(r.stdout, /^ {2}data verified: +[1-9]\d* reads checked, 0 blocks not as last written ok$/m);
  assert.match(r.stdout, /^ {2}writes completed: +[1-9]\d*$/m);
  assert.match(r.stdout, /^ {2}errors: +0 ok$/m);
  assert.doesNotMatch(r.stdout, /\x1b\[/, 'not a terminal: plain text, no cursor movement');
  assert.match(r.stdout, /rig removed/);
  assert.ok(!(await dmsetupLs()).some((l) => l.startsWith('mpw-demo')), 'the demo removed its devices');
});
