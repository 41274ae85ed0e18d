// The CLI on the host, with no root and no device-mapper: argument parsing,
// bad arguments (exit 2, one clear line), --help of each subcommand, the
// duration parser and the JSON lines of events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { COMMANDS, main } from '../../lib/cli/main';
import { UsageError, parseCount, parseDuration, parseHostPort } from '../../lib/cli/args';
import { parseWatch } from '../../lib/cli/watch';
import { createTableParams } from '../../lib/cli/create';
import { errorLine, jsonLine } from '../../lib/cli/output';
import { DmError, parseMultipathTable } from '../../lib/index';

const root = resolve(__dirname, '..', '..', '..');

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) } });
  return { code, stdout, stderr };
}

test('parseDuration: ms, s, m and plain ms; anything else is a UsageError naming the flag', () => {
  assert.equal(parseDuration('500ms', 'timeout'), 500);
  assert.equal(parseDuration('2s', 'timeout'), 2000);
  assert.equal(parseDuration('1.5s', 'timeout'), 1500);
  assert.equal(parseDuration('1m', 'timeout'), 60_000);
  assert.equal(parseDuration('250', 'timeout'), 250);
  for (const bad of ['', '0', '0s', '-1s', '5x', 's', '1e3', 'Infinity', '2 s s']) {
    assert.throws(() => parseDuration(bad, 'timeout'), (e: unknown) => e instanceof UsageError && /--timeout: expected a duration/.test(e.message), bad);
  }
});

test('parseDuration refuses what no timer can keep: under 1 ms (it pegged the loop) or over setTimeout\'s 2^31-1 ms (it fired at once)', () => {
  assert.equal(parseDuration('1', 'timeout'), 1);
  assert.equal(parseDuration('2147483647', 'timeout'), 2 ** 31 - 1);
  for (const bad of ['0.00000001', '0.5ms', '0.0001s', '3000000000', '2147483648', '36000m']) {
    assert.throws(() => parseDuration(bad, 'timeout', 'watch'),
      (e: unknown) => e instanceof UsageError && /^--timeout: must be at (least 1 ms|most 2147483647 ms)/.test(e.message.replace(/^mpath-watchdog watch: /, '')), bad);
  }
});

test('parseCount and parseHostPort', () => {
  assert.equal(parseCount('3', 'fail-after', 1), 3);
  assert.throws(() => parseCount('0', 'fail-after', 1), /--fail-after: expected an integer >= 1, got '0'/);
  assert.throws(() => parseCount('1.5', 'fail-after', 1), UsageError);
  assert.deepEqual(parseHostPort('127.0.0.1:9100', 'metrics'), { host: '127.0.0.1', port: 9100 });
  assert.deepEqual(parseHostPort('[::1]:0', 'metrics'), { host: '::1', port: 0 });
  // No host: loopback, not every interface; all of them only when asked.
  assert.deepEqual(parseHostPort(':9100', 'metrics'), { host: '127.0.0.1', port: 9100 });
  assert.deepEqual(parseHostPort('[::]:9100', 'metrics'), { host: '::', port: 9100 });
  assert.deepEqual(parseHostPort('0.0.0.0:9100', 'metrics'), { host: '0.0.0.0', port: 9100 });
  for (const bad of ['9100', 'host', 'h:70000', 'h:', 'a:b:1']) assert.throws(() => parseHostPort(bad, 'metrics'), /--metrics: expected HOST:PORT/, bad);
});

test('watch: flags become Watchdog options', () => {
  const plan = parseWatch(['m0', '--timeout', '500ms', '--mode', 'both', '--fail-after', '2', '--min-usable-paths', '0', '--reinstate-after', '5',
    '--hold-down', '3s', '--probe-interval', '100', '--slow-factor', '4', '--hedge-reads', '--dry-run', '--read-rate', '50', '--read-size', '8192',
    '--metrics', '127.0.0.1:0', '--stats', '1s']);
  assert.deepEqual(plan.watchdog, {
    map: 'm0', timeoutMs: 500, mode: 'both', failAfter: 2, minUsablePaths: 0, reinstateAfter: 5, holdDownMs: 3000, probeIntervalMs: 100,
    slowFactor: 4, hedgeReads: true, dryRun: true,
  });
  assert.equal(plan.readRate, 50);
  assert.equal(plan.readSize, 8192);
  assert.deepEqual(plan.metrics, { host: '127.0.0.1', port: 0 });
  assert.equal(plan.statsMs, 1000);
  const defaults = parseWatch(['m0']);
  assert.deepEqual(defaults.watchdog, { map: 'm0', timeoutMs: 1000, mode: 'active' });
  assert.equal(defaults.readRate, 20);
  assert.equal(defaults.metrics, null);
  assert.equal(parseWatch(['m0', '--mode', 'passive']).readRate, 0, 'passive mode issues no reads of its own');
});

const BAD: readonly (readonly [string[], RegExp])[] = [
  [['frobnicate'], /^mpath-watchdog: unknown command 'frobnicate'$/m],
  [['--bogus'], /^mpath-watchdog: Unknown option '--bogus'$/m],
  [['watch'], /^mpath-watchdog watch: missing MAP$/m],
  [['watch', 'm', 'extra'], /^mpath-watchdog watch: unexpected argument 'extra'$/m],
  [['watch', 'm', '--bogus'], /^mpath-watchdog watch: Unknown option '--bogus'$/m],
  [['watch', 'm', '--timeout', 'soon'], /^mpath-watchdog watch: --timeout: expected a duration .* got 'soon'$/m],
  [['watch', 'm', '--timeout'], /^mpath-watchdog watch: Option '--timeout <value>' argument missing$/m],
  [['watch', 'm', '--timeout', '0.00000001'], /^mpath-watchdog watch: --timeout: must be at least 1 ms, got '0.00000001'$/m],
  [['watch', 'm', '--timeout', '3000000000'], /^mpath-watchdog watch: --timeout: must be at most 2147483647 ms .*got '3000000000'$/m],
  [['watch', 'm', '--hold-down', '0.1'], /^mpath-watchdog watch: --hold-down: must be at least 1 ms/m],
  [['watch', 'm', '--probe-interval', '999999h'], /^mpath-watchdog watch: --probe-interval: expected a duration/m],
  [['watch', 'm', '--stats', '40000m'], /^mpath-watchdog watch: --stats: must be at most 2147483647 ms/m],
  [['watch', 'm', '--mode', 'sideways'], /^mpath-watchdog watch: --mode: expected active, passive, both, got 'sideways'$/m],
  [['watch', 'm', '--slow-factor', '1'], /^mpath-watchdog watch: --slow-factor: expected a number > 1, got '1'$/m],
  [['watch', 'm', '--read-size', '1000'], /^mpath-watchdog watch: --read-size: expected a multiple of 512, got '1000'$/m],
  [['watch', 'm', '--read-rate', '0'], /^mpath-watchdog watch: --read-rate: expected a number > 0, got '0'$/m],
  [['watch', 'm', '--metrics', 'localhost'], /^mpath-watchdog watch: --metrics: expected HOST:PORT/m],
  [['status', 'a', 'b'], /^mpath-watchdog status: unexpected argument 'b'$/m],
  [['fail', 'm'], /^mpath-watchdog fail: missing PATH$/m],
  [['reinstate'], /^mpath-watchdog reinstate: missing MAP$/m],
  [['create', 'x'], /^mpath-watchdog create: missing --path/m],
  [['create', 'x', '--path', 'sda', '--selector', 'random'], /^mpath-watchdog create: --selector: expected round-robin, queue-length, service-time, got 'random'$/m],
  [['create', 'x', '--path', 'sda', '--mode', 'mq'], /^mpath-watchdog create: --mode: expected bio, rq, got 'mq'$/m],
  [['remove'], /^mpath-watchdog remove: missing NAME$/m],
  [['demo', '--timeout', '0'], /^mpath-watchdog demo: --timeout: expected a duration/m],
];

test('bad arguments exit 2 with one clear line and a pointer to --help, and print nothing on stdout', async () => {
  for (const [argv, message] of BAD) {
    const r = await run(...argv);
    assert.equal(r.code, 2, argv.join(' '));
    assert.match(r.stderr, message, argv.join(' '));
    assert.match(r.stderr, /--help shows the usage\n$/);
    assert.equal(r.stderr.split('\n').length, 3, `two lines for ${argv.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(r.stdout, '');
  }
});

test('--help and -h of every subcommand print its usage and exit 0', async () => {
  assert.deepEqual(COMMANDS.map((c) => c.name), ['status', 'watch', 'fail', 'reinstate', 'create', 'remove', 'demo']);
  for (const c of COMMANDS) {
    for (const flag of ['--help', '-h']) {
      // Help wins over otherwise bad arguments: asking for it never fails.
      const r = await run(c.name, flag, '--bogus');
      assert.equal(r.code, 0, `${c.name} ${flag}`);
      assert.ok(r.stdout.startsWith(`usage: mpath-watchdog ${c.name}`), r.stdout);
      assert.equal(r.stderr, '');
    }
  }
  const top = await run('--help');
  assert.equal(top.code, 0);
  for (const c of COMMANDS) assert.match(top.stdout, new RegExp(`^  ${c.name} +${c.summary.replace(/[()]/g, '.')}$`, 'm'));
  assert.match(top.stdout, /exit status: 0 ok, 1 .* 2 bad arguments/s);
});

test('a runtime error is one line with its errno code, exit 1, no stack', async () => {
  const e = new DmError("no such device-mapper device 'mpx'", { errno: 6, syscall: 'DM_TABLE_STATUS', device: 'mpx' });
  assert.equal(errorLine(e), "no such device-mapper device 'mpx' (ENXIO)");
  assert.equal(errorLine(new Error('plain')), 'plain');
  // create resolves its paths through sysfs before any ioctl: a missing one fails there, on any host.
  const r = await run('create', 'x', '--path', 'no-such-disk-zz');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^mpath-watchdog create: no block device named 'no-such-disk-zz'.*\(ENOENT\)\n$/);
});

test('jsonLine: one line, time and event first, Errors as fields, bigints as strings', () => {
  const err = new DmError('device-mapper device \'m\' is in use', { errno: 16, syscall: 'DM_TARGET_MSG', device: 'm' });
  const line = jsonLine('error', { map: 'm', during: 'fail', error: err, fatal: false, ns: 12n }, new Date(0));
  assert.ok(line.endsWith('\n'));
  assert.equal(line.indexOf('\n'), line.length - 1);
  assert.deepEqual(JSON.parse(line), {
    time: '1970-01-01T00:00:00.000Z', event: 'error', map: 'm', during: 'fail', fatal: false, ns: '12',
    error: { name: 'DmError', message: "device-mapper device 'm' is in use", code: 'EBUSY', errno: 16, syscall: 'DM_TARGET_MSG', device: 'm' },
  });
  assert.deepEqual(Object.keys(JSON.parse(line)).slice(0, 2), ['time', 'event']);
});

test('create builds a table the multipath parser reads back', () => {
  const params = createTableParams({ paths: [], selector: 'service-time', queueIfNoPath: true, mode: 'bio' }, ['8:0', '8:16']);
  assert.equal(params, '3 queue_if_no_path queue_mode bio 0 1 1 service-time 0 2 2 8:0 1 1 8:16 1 1');
  const t = parseMultipathTable(params);
  assert.deepEqual(t.groups[0]?.paths.map((p) => p.device), ['8:0', '8:16']);
});

test('the installed binary: --version, and a usage error exits 2', async () => {
  const { execa } = await import('execa');
  const v = await execa(process.execPath, ['dist/lib/cli/main.js', '--version'], { cwd: root });
  assert.match(v.stdout, /^mpath-watchdog \d+\.\d+\.\d+ \(dm ioctl 4\.\d+\.\d+\)$/);
  const bad = await execa(process.execPath, ['dist/lib/cli/main.js', 'watch', '--timeout', 'x'], { cwd: root, reject: false });
  assert.equal(bad.exitCode, 2);
  assert.match(bad.stderr, /^mpath-watchdog watch: missing MAP$/m);
});
