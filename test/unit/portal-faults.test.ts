// The per-portal fault helper's checks and bookkeeping, on the host: bad faults
// are refused before any command runs, and a set-up that fails half way
// removes what it added. The commands (tc, nft, modprobe) are stand-ins that
// log their arguments; the real ones run in the iSCSI VM tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PortalFaultError, PortalFaults, checkFault, netemArgs } from '../vm-iscsi/helpers/portal-faults';

test('netem words: a delay is split over both directions, loss is per packet', () => {
  assert.deepEqual(netemArgs({ kind: 'delay', ms: 2000 }), ['delay', '1000ms']);
  assert.deepEqual(netemArgs({ kind: 'delay', ms: 100, jitterMs: 20 }), ['delay', '50ms', '10ms']);
  assert.deepEqual(netemArgs({ kind: 'loss', pct: 20 }), ['loss', '20%']);
});

test('bad faults are refused with the reason', () => {
  const bad: [string, Parameters<typeof checkFault>[1], RegExp][] = [
    ['127.0.0.2; rm -rf /', { kind: 'drop' }, /IPv4/],
    ['::1', { kind: 'drop' }, /IPv4/],
    ['127.0.0.2', { kind: 'delay', ms: 0 }, /delay must be/],
    ['127.0.0.2', { kind: 'delay', ms: Number.NaN }, /delay must be/],
    ['127.0.0.2', { kind: 'delay', ms: 100, jitterMs: 200 }, /jitter/],
    ['127.0.0.2', { kind: 'delay', ms: 5000 }, /noop_out_timeout/],
    ['127.0.0.2', { kind: 'loss', pct: 0 }, /percentage/],
    ['127.0.0.2', { kind: 'loss', pct: 101 }, /percentage/],
    ['127.0.0.2', { kind: 'smoke' } as never, /unknown fault/],
  ];
  for (const [portal, fault, re] of bad) {
    assert.throws(() => checkFault(portal, fault), (e: unknown) => e instanceof PortalFaultError && re.test(e.message), `${portal} ${JSON.stringify(fault)}`);
  }
  assert.doesNotThrow(() => checkFault('127.0.0.2', { kind: 'delay', ms: 2000, jitterMs: 500 }));
  assert.throws(() => checkFault('127.0.0.2', { kind: 'delay', ms: 2000 }, 2000), /noop_out_timeout \(2000 ms\)/);
});

/** Stand-in tc, nft and modprobe that log each call; each fails (exit 2, `stderr`) when its first argument is the one given. */
function standIns(failOn: Partial<Record<'tc' | 'nft' | 'modprobe', [string, string]>>): { dir: string; log: string; calls: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'mpw-faults-'));
  const log = join(dir, 'calls.log');
  for (const name of ['tc', 'nft', 'modprobe'] as const) {
    const f = join(dir, name);
    const fail = failOn[name];
    writeFileSync(f, `#!/bin/sh\necho "${name} $*" >> '${log}'\n${fail ? `[ "$1" = ${fail[0]} ] && { echo "${fail[1]}" >&2; exit 2; }\n` : ''}exit 0\n`);
    chmodSync(f, 0o755);
  }
  return { dir, log, calls: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean) : []) };
}

async function withStandIns(failOn: Parameters<typeof standIns>[0], body: (s: ReturnType<typeof standIns>) => Promise<void>): Promise<void> {
  const s = standIns(failOn);
  const path = process.env.PATH;
  process.env.PATH = `${s.dir}:${path ?? ''}`;
  try {
    await body(s);
  } finally {
    process.env.PATH = path;
    rmSync(s.dir, { recursive: true, force: true });
  }
}

test('a set-up that fails half way removes what it added, and names the command that failed', async () => {
  await withStandIns({ tc: ['filter', 'RTNETLINK answers: Invalid argument'] }, async (s) => {
    const faults = new PortalFaults();
    await assert.rejects(faults.delay('127.0.0.2', 100), (e: unknown) =>
      e instanceof PortalFaultError && /tc filter add dev lo/.test(e.message) && /Invalid argument/.test(e.message));
    const calls = s.calls();
    assert.ok(calls.some((c) => c.startsWith('tc qdisc add dev lo root handle 1: prio bands 4')), calls.join('\n'));
    assert.equal(calls.at(-1), 'tc qdisc del dev lo root', 'the root qdisc it added is removed');
    assert.equal(faults.active, null);

    // A drop works through nft; a second fault is refused while it is in force; restore undoes only nft.
    writeFileSync(s.log, '');
    await faults.drop('127.0.0.2');
    assert.deepEqual(faults.active, { portal: '127.0.0.2', fault: { kind: 'drop' } });
    await assert.rejects(faults.loss('127.0.0.1', 10), /already in force/);
    await faults.restore();
    await faults.restore();
    const after = s.calls();
    assert.deepEqual(after.filter((c) => c.startsWith('nft delete')), ['nft delete table inet mpw_fault'], 'restore deletes once, and only what was added');
    assert.ok(!after.some((c) => c.startsWith('tc')), after.join('\n'));
  });
});

test('restore of a delay lets the held packets out before it deletes the qdisc', async () => {
  await withStandIns({}, async (s) => {
    const faults = new PortalFaults();
    await faults.delay('127.0.0.2', 100);
    writeFileSync(s.log, '');
    await faults.restore();
    assert.deepEqual(s.calls(), ['tc qdisc change dev lo parent 1:4 handle 40: netem limit 100000 delay 0ms', 'tc qdisc del dev lo root']);
  });
});

test('a drop nft refused leaves nothing to undo; reset ignores what is not there and reports the rest', async () => {
  await withStandIns({ nft: ['-f', 'Error: Could not process rule'] }, async (s) => {
    const faults = new PortalFaults();
    await assert.rejects(faults.drop('127.0.0.2'), /Could not process rule/);
    await faults.restore();
    assert.ok(!s.calls().some((c) => c.startsWith('nft delete')), 'nothing was added, nothing is deleted');
  });
  await withStandIns({ nft: ['delete', 'Error: No such file or directory'], tc: ['qdisc', 'Error: Cannot delete qdisc with handle of zero.'] }, async () => {
    await new PortalFaults().reset();
  });
  await withStandIns({ tc: ['qdisc', 'Error: Operation not permitted'] }, async () => {
    await assert.rejects(new PortalFaults().reset(), /Operation not permitted/);
  });
});
