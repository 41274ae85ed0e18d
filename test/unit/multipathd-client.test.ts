// The multipathd client against a stand-in daemon on a real unix socket that
// speaks multipathd's framing (test/unit/helpers/fake-multipathd.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DmMessageActions, LastPathError, MultipathdActions, SupersededError, MultipathdClient, cliWords, MultipathdError, MultipathMap, chooseActions, detectMultipathd,
  type DeviceMapper, type MultipathdErrorCode,
} from '../../lib/index';
import { deadSocketPath, fakeMultipathd, replyFrame, type FakeDaemon } from './helpers/fake-multipathd';

const MAPS = 'mpw-lun|36001405abc|dm-0|active|2\n';
const PATHS = 'sdc|8:32|mpw-lun|active|ready|running|36001405abc\nsdd|8:48|mpw-lun|active|ready|running|36001405abc\n';

function isCode(code: MultipathdErrorCode, text?: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof MultipathdError, `expected a MultipathdError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (text) assert.match(e.message, text);
    return true;
  };
}

/** A daemon answering show maps / show paths / fail / reinstate like multipathd does. */
function answering(extra: Record<string, string> = {}): (call: { command: string; reply(t: string): void }) => void {
  return ({ command, reply }) => {
    if (command in extra) return reply(extra[command] as string);
    if (command.startsWith('show maps')) return reply(MAPS);
    if (command.startsWith('show paths')) return reply(PATHS);
    if (command === 'show daemon') return reply('pid 1 idle\n');
    if (/^(fail|reinstate) path (sdc|sdd|8:32|8:48)$/.test(command)) return reply('ok\n');
    if (/^(fail|reinstate) path /.test(command)) return reply('fail\n');
    reply(`${command}: not found\nmultipath-tools v0.9.4 (12/19, 2022)\nCLI commands reference:\n list|show paths\n`);
  };
}

async function withDaemon(handler: Parameters<typeof fakeMultipathd>[0], fn: (d: FakeDaemon, c: MultipathdClient) => Promise<void>, abstract = false): Promise<void> {
  const d = await fakeMultipathd(handler, { abstract });
  try {
    await fn(d, new MultipathdClient({ sockets: [d.path], timeoutMs: 2000 }));
  } finally {
    await d.close();
  }
}

test('show maps and show paths: the command sent and the records parsed', async () => {
  await withDaemon(answering(), async (d, c) => {
    assert.deepEqual(await c.showMaps(), [{ name: 'mpw-lun', wwid: '36001405abc', sysfs: 'dm-0', dmState: 'active', paths: 2 }]);
    const paths = await c.showPaths();
    assert.deepEqual(paths.map((p) => `${p.dev} ${p.devno} ${p.map} ${p.dmState} ${p.checkerState}`), ['sdc 8:32 mpw-lun active ready', 'sdd 8:48 mpw-lun active ready']);
    assert.deepEqual(d.commands, ['show maps raw format "%n|%w|%d|%t|%N"', 'show paths raw format "%d|%D|%m|%t|%T|%o|%w"']);
  });
});

test('the abstract namespace works (Node path with a leading NUL)', async () => {
  await withDaemon(answering(), async (d, c) => {
    assert.ok(d.path.startsWith('\0'));
    assert.equal((await c.showMaps()).length, 1);
  }, true);
});

test('a reply written in pieces (inside the prefix, then the body) is reassembled', async () => {
  await withDaemon(({ socket }) => {
    const frame = replyFrame(MAPS);
    const pieces = [frame.subarray(0, 3), frame.subarray(3, 9), frame.subarray(9, 20), frame.subarray(20)];
    const next = (): void => {
      const p = pieces.shift();
      if (p === undefined) return void socket.end();
      socket.write(p, () => setTimeout(next, 5));
    };
    next();
  }, async (_d, c) => {
    assert.equal((await c.showMaps())[0]?.name, 'mpw-lun');
  });
});

test('fail / reinstate path: ok resolves; a fail reply rejects with its text; the command is exact', async () => {
  await withDaemon(answering({ 'fail path sde': 'fail\nsde: no such path\n' }), async (d, c) => {
    await c.failPath('sdc');
    await c.reinstatePath('8:48');
    await assert.rejects(c.failPath('sdz'), isCode('failed', /^multipathd refused 'fail path sdz'$/));
    await assert.rejects(c.failPath('sde'), (e: unknown) => isCode('failed', /refused 'fail path sde': sde: no such path/)(e) && (e as MultipathdError).reply === 'fail\nsde: no such path\n');
    assert.deepEqual(d.commands, ['fail path sdc', 'reinstate path 8:48', 'fail path sdz', 'fail path sde']);
  });
});

test('a device that is not a name or maj:min is refused before anything is sent', async () => {
  await withDaemon(answering(), async (d, c) => {
    await assert.rejects(c.failPath('sdc shutdown'), isCode('protocol', /not a device name/));
    await assert.rejects(c.reinstatePath('"sdc"'), isCode('protocol'));
    await assert.rejects(c.failPath(''), isCode('protocol'));
    await assert.rejects(c.command('x'.repeat(600)), isCode('protocol', /at most 512/));
    assert.deepEqual(d.commands, []);
  });
});

test('the daemon\'s other replies: timeout (busy), permission, usage', async () => {
  await withDaemon(answering({ 'show status': 'timeout\n', 'shutdown': 'permission deny: need to be root\n' }), async (_d, c) => {
    await assert.rejects(c.command('show status'), isCode('busy', /lock was busy/));
    await assert.rejects(c.command('shutdown'), isCode('denied', /root is needed/));
    await assert.rejects(c.command('show nonsense'), isCode('usage', /did not understand 'show nonsense': show nonsense: not found/));
  });
});

test('0.11 puts "fail" before its usage text: still a usage error, not a refusal', async () => {
  // multipath-tools 0.11.1's reply to an unknown command (measured in the Debian 13 guest).
  const usage011 = 'fail\nshow frobnicate: not found\nmultipath-tools v0.11.1 (01/24, 2025)\nCLI commands reference:\n list|show paths\n';
  await withDaemon(answering({ 'show frobnicate': usage011 }), async (_d, c) => {
    await assert.rejects(c.command('show frobnicate'), isCode('usage', /^multipathd did not understand 'show frobnicate': show frobnicate: not found$/));
    // A plain refusal of a known command stays 'failed'.
    await assert.rejects(c.failPath('sdzz'), isCode('failed', /refused 'fail path sdzz'/));
  });
});

test('no daemon: "multipathd is not running", naming the sockets tried', async () => {
  const dead = deadSocketPath();
  try {
    const c = new MultipathdClient({ sockets: [`\0/mpw-test/none-${process.pid}`, dead.path], cliFallback: false });
    await assert.rejects(c.showMaps(), isCode('not-running', /^multipathd is not running \(nothing listens on @\/mpw-test\/none-\d+ or .*none\.socket\)$/));
    assert.equal(await c.isRunning(), false);
    const d = await detectMultipathd('mpw-lun', { client: c });
    assert.equal(d.managed, false);
    assert.match(d.reason, /not running/);
  } finally {
    dead.cleanup();
  }
});

test('falls back to the next socket when the first has no listener', async () => {
  const dead = deadSocketPath();
  try {
    await withDaemon(answering(), async (d) => {
      const c = new MultipathdClient({ sockets: [dead.path, d.path], cliFallback: false });
      assert.equal(await c.isRunning(), true);
      assert.deepEqual(d.commands, ['show daemon']);
    });
  } finally {
    dead.cleanup();
  }
});

test('a daemon that never answers: timeout; an AbortSignal: aborted', async () => {
  await withDaemon(() => undefined, async (_d, c) => {
    await assert.rejects(c.showMaps({ timeoutMs: 100 }), isCode('timeout', /no reply from multipathd to 'show maps raw format/));
    const ac = new AbortController();
    const p = c.showPaths({ signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(p, isCode('aborted'));
    await assert.rejects(c.showPaths({ signal: AbortSignal.abort() }), isCode('aborted'));
  });
});

test('broken replies: oversize length, closed mid-reply, extra bytes', async () => {
  await withDaemon(({ command, socket }) => {
    if (command === 'show big') {
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(32 * 1024 * 1024), 0);
      socket.write(prefix); // and nothing more: refused from the prefix alone
    } else if (command === 'show short') {
      socket.end(replyFrame('a long reply').subarray(0, 12));
    } else {
      socket.end(Buffer.concat([replyFrame('ok\n'), Buffer.from('xx')]));
    }
  }, async (_d, c) => {
    await assert.rejects(c.command('show big'), isCode('protocol', /over the limit of 33554432/));
    await assert.rejects(c.command('show short'), isCode('protocol', /closed the connection after 12 of 21 reply bytes/));
    await assert.rejects(c.command('show extra'), isCode('protocol', /2 unexpected bytes/));
  });
});

async function fakeSysfs(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'mpw-mpathd-sysfs-'));
  await mkdir(join(root, 'dev', 'block'), { recursive: true });
  await symlink('../../devices/platform/host3/session1/target3:0:0/3:0:0:0/block/sdc', join(root, 'dev', 'block', '8:32'));
  return root;
}

/** A status with three other paths active: a landing of fail path always leaves enough. */
async function healthyStatus(): Promise<{ groups: { paths: { device: string; state: string }[] }[] }> {
  return { groups: [{ paths: ['9:1', '9:2', '9:3'].map((device) => ({ device, state: 'active' })) }] };
}

/** A map stand-in recording dm fail_path; failPath rejects with `refuse` when given. */
function recordingMap(calls: string[], refuse?: Error): MultipathMap {
  return {
    name: 'mpw-lun',
    status: healthyStatus,
    failPath: async (p: string, o?: { keepActive?: number; failing?: readonly string[] }) => {
      if (refuse) throw refuse;
      calls.push(`dm fail_path ${p} keep ${o?.keepActive ?? 'default'}${o?.failing?.length ? ` failing ${o.failing.join(',')}` : ''}`);
    },
  } as unknown as MultipathMap;
}

test('MultipathdActions: maj:min is named through sysfs; an unknown one is sent as maj:min', async () => {
  const root = await fakeSysfs();
  try {
    await withDaemon(answering(), async (d, c) => {
      const a = new MultipathdActions(recordingMap([]), { client: c, sysfsRoot: root });
      assert.equal(a.kind, 'multipathd');
      await (await a.fail('8:32')).rest;
      await a.reinstate('8:32');
      await (await a.fail('8:48')).rest;
      // A refusal is not asked again.
      await assert.rejects((await a.fail('8:64')).rest!, isCode('failed'));
      assert.deepEqual(d.commands, ['fail path sdc', 'reinstate path sdc', 'fail path 8:48', 'fail path 8:64']);
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('MultipathdActions: fail() resolves once dm fail_path is done; multipathd\'s fail path follows, asked again while it times out', async () => {
  const calls: string[] = [];
  let asked = 0;
  await withDaemon(({ command, reply }) => {
    calls.push(`multipathd ${command}`);
    // The first `fail path` gets no answer (multipathd's checker holding its lock).
    if (command.startsWith('fail path') && asked++ === 0) return;
    reply('ok\n');
  }, async (_d, c) => {
    const a = new MultipathdActions(recordingMap(calls), { client: c, sysfsRoot: '/nonexistent', stickTimeoutMs: 200, stickRetryMs: 10 });
    const done = await a.fail('8:32', { keepActive: 1 });
    assert.deepEqual(calls, ['dm fail_path 8:32 keep 1'], 'fail() resolved before multipathd was asked');
    assert.ok(done.rest);
    await done.rest;
    assert.deepEqual(calls, ['dm fail_path 8:32 keep 1', 'multipathd fail path 8:32', 'multipathd fail path 8:32']);
  });
});

test('MultipathdActions: the stick half gives up after stickAttempts with the last error; the path stays failed in dm', async () => {
  const calls: string[] = [];
  await withDaemon(({ command }) => void calls.push(`multipathd ${command}`), async (_d, c) => {
    const a = new MultipathdActions(recordingMap(calls), { client: c, sysfsRoot: '/nonexistent', stickTimeoutMs: 100, stickAttempts: 2, stickRetryMs: 10 });
    const done = await a.fail('8:32');
    await assert.rejects(done.rest!, isCode('timeout'));
    assert.deepEqual(calls, ['dm fail_path 8:32 keep default', 'multipathd fail path 8:32', 'multipathd fail path 8:32']);
  });
});

test('MultipathdActions: a reinstate waits for a fail path in flight and stops the retries, quietly; nothing is sent after it', async () => {
  const calls: string[] = [];
  await withDaemon(({ command, reply }) => {
    calls.push(`multipathd ${command}`);
    if (command.startsWith('reinstate')) reply('ok\n');
  }, async (_d, c) => {
    const a = new MultipathdActions(recordingMap(calls), { client: c, sysfsRoot: '/nonexistent', stickTimeoutMs: 150, stickAttempts: 5, stickRetryMs: 10 });
    const done = await a.fail('8:32');
    let ended: string | undefined;
    const stuck = done.rest!.then(() => { ended ??= 'rest resolved'; }, (e: unknown) => { ended ??= `rest rejected: ${String(e)}`; });
    // Let the first fail path reach the daemon, unanswered.
    await new Promise((r) => setTimeout(r, 30));
    await a.reinstate('8:32');
    assert.equal(ended, 'rest resolved', 'the stick ended, quietly, before the reinstate was sent');
    await stuck;
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(calls, ['dm fail_path 8:32 keep default', 'multipathd fail path 8:32', 'multipathd reinstate path 8:32']);
  });
});

test('MultipathdActions: a fail asked for while a reinstate waits for the stick wins: the reinstate is not sent, and rejects with SupersededError', async () => {
  const calls: string[] = [];
  await withDaemon(({ command, reply }) => {
    calls.push(`multipathd ${command}`);
    if (command.startsWith('reinstate')) reply('ok\n');
  }, async (_d, c) => {
    const a = new MultipathdActions(recordingMap(calls), { client: c, sysfsRoot: '/nonexistent', stickTimeoutMs: 150, stickAttempts: 2, stickRetryMs: 10 });
    const first = await a.fail('8:32');
    const firstRest = first.rest!.catch(() => undefined);
    // The first fail path is at the daemon, unanswered: the reinstate waits for it.
    await new Promise((r) => setTimeout(r, 30));
    const reinstating = a.reinstate('8:32').then(() => 'sent', (e: unknown) => e);
    // The policy failed the path again meanwhile (before: the stale reinstate then undid this fail).
    const second = await a.fail('8:32');
    const outcome = await reinstating;
    assert.ok(outcome instanceof SupersededError, String(outcome));
    assert.equal(outcome.code, 'superseded');
    assert.equal(outcome.path, '8:32');
    await firstRest;
    await second.rest!.catch(() => undefined);
    assert.ok(!calls.includes('multipathd reinstate path 8:32'), calls.join(', '));
    assert.deepEqual(calls.filter((x) => x.startsWith('dm')), ['dm fail_path 8:32 keep default', 'dm fail_path 8:32 keep default']);
  });
});

test('MultipathdActions: a reinstate during the back-off wait ends it at once; no retry is sent', async () => {
  const calls: string[] = [];
  await withDaemon(({ command, reply }) => {
    calls.push(`multipathd ${command}`);
    reply(command.startsWith('fail') ? 'timeout\n' : 'ok\n');
  }, async (_d, c) => {
    const a = new MultipathdActions(recordingMap(calls), { client: c, sysfsRoot: '/nonexistent', stickAttempts: 3, stickRetryMs: 60_000 });
    const done = await a.fail('8:32');
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await a.reinstate('8:32');
    await done.rest;
    assert.ok(performance.now() - t0 < 30_000, 'the minute-long back-off did not hold the reinstate');
    assert.deepEqual(calls, ['dm fail_path 8:32 keep default', 'multipathd fail path 8:32', 'multipathd reinstate path 8:32']);
  });
});

/** A map stand-in whose dm half refuses as the last path while `refuse` is set. */
function refusingMap(calls: string[]): { map: MultipathMap; refuse: boolean } {
  const out = { map: undefined as unknown as MultipathMap, refuse: false };
  out.map = {
    name: 'mpw-lun',
    status: healthyStatus,
    failPath: async (p: string) => {
      if (out.refuse) throw new LastPathError('mpw-lun', p, 0, 1);
      calls.push(`dm fail_path ${p}`);
    },
  } as unknown as MultipathMap;
  return out;
}

test('MultipathdActions: a fail refused as the last path undoes an earlier fail path of the same path that lands afterwards', async () => {
  const calls: string[] = [];
  let answer: (() => void) | undefined;
  await withDaemon(({ command, reply }) => {
    calls.push(`multipathd ${command}`);
    if (command.startsWith('fail')) answer = () => reply('ok\n');
    else reply('ok\n');
  }, async (_d, c) => {
    const dm = refusingMap(calls);
    const a = new MultipathdActions(dm.map, { client: c, sysfsRoot: '/nonexistent' });
    const first = await a.fail('8:32');
    await new Promise((r) => setTimeout(r, 30));
    // The checker reinstated it meanwhile, the other path went, and now it is the last.
    dm.refuse = true;
    await assert.rejects(a.fail('8:32'), LastPathError);
    answer?.();
    await first.rest;
    assert.deepEqual(calls, ['dm fail_path 8:32', 'multipathd fail path 8:32', 'multipathd reinstate path 8:32']);
  });
});

test('MultipathdActions: a later fail that passes its check clears an earlier refusal\'s undo: the earlier fail path landing then is not undone', async () => {
  const calls: string[] = [];
  const held: (() => void)[] = [];
  await withDaemon(({ command, reply }) => {
    calls.push(`multipathd ${command}`);
    if (command.startsWith('fail') && held.length === 0) held.push(() => reply('ok\n'));
    else reply('ok\n');
  }, async (_d, c) => {
    const dm = refusingMap(calls);
    const a = new MultipathdActions(dm.map, { client: c, sysfsRoot: '/nonexistent' });
    const first = await a.fail('8:32');
    await new Promise((r) => setTimeout(r, 30));
    dm.refuse = true;
    await assert.rejects(a.fail('8:32'), LastPathError);
    // The other paths are back: a third fail passes.
    dm.refuse = false;
    const third = await a.fail('8:32');
    held[0]?.();
    await first.rest;
    await third.rest;
    assert.deepEqual(calls, ['dm fail_path 8:32', 'multipathd fail path 8:32', 'dm fail_path 8:32', 'multipathd fail path 8:32']);
  });
});

test('MultipathdActions: a path whose fail path is still being retried, or went unanswered, counts as failing for the last-path check of another fail', async () => {
  const calls: string[] = [];
  await withDaemon(({ command, reply }) => {
    calls.push(`multipathd ${command}`);
    if (!command.startsWith('fail path 8:32')) reply('ok\n');
  }, async (_d, c) => {
    const a = new MultipathdActions(recordingMap(calls), { client: c, sysfsRoot: '/nonexistent', stickTimeoutMs: 100, stickAttempts: 1 });
    const first = await a.fail('8:32');
    await a.fail('8:48');
    await assert.rejects(first.rest!, isCode('timeout'));
    // Unanswered: multipathd may still carry it out.
    await (await a.fail('8:64')).rest;
    await a.reinstate('8:32');
    await (await a.fail('8:80')).rest;
    // 8:32 counts while its fail path is in flight (8:48), after it went
    // unanswered (8:64), and after a reinstate too (8:80): the unanswered one
    // may still run after it. 8:48, answered, is failed in dm status itself.
    assert.deepEqual(calls.filter((x) => x.startsWith('dm')), [
      'dm fail_path 8:32 keep default',
      'dm fail_path 8:48 keep default failing 8:32',
      'dm fail_path 8:64 keep default failing 8:32',
      'dm fail_path 8:80 keep default failing 8:32',
    ]);
  });
});

test('MultipathdActions: a dm refusal (the last path) rejects fail() and asks multipathd nothing; bad options are refused', async () => {
  const calls: string[] = [];
  await withDaemon(answering(), async (d, c) => {
    const refused = new LastPathError('mpw-lun', '8:32', 0, 1);
    const a = new MultipathdActions(recordingMap(calls, refused), { client: c, sysfsRoot: '/nonexistent' });
    await assert.rejects(a.fail('8:32', { keepActive: 1 }), (e: unknown) => e === refused);
    assert.deepEqual(d.commands, []);
  });
  assert.throws(() => new MultipathdActions(recordingMap(calls), { stickAttempts: 0 }), /stickAttempts must be an integer >= 1, got 0/);
  assert.throws(() => new MultipathdActions(recordingMap(calls), { stickRetryMs: -1 }), /stickRetryMs must be at least 1 ms, got -1/);
  assert.throws(() => new MultipathdActions(recordingMap(calls), { stickTimeoutMs: 0 }), /stickTimeoutMs must be at least 1 ms, got 0/);
  assert.throws(() => new MultipathdActions(recordingMap(calls), { stickTimeoutMs: 2 ** 31 }), /stickTimeoutMs must be at most 2147483647 ms/);
  assert.throws(() => new MultipathdActions(recordingMap(calls), { timeoutMs: Number.NaN }), /timeoutMs must be a finite number of ms, got NaN/);
});

/** A map stand-in whose status has 8:32 failed and its only other path failed too (a landing there leaves none active). */
function lonelyMap(calls: string[], dmHalf: Promise<void> = Promise.resolve()): MultipathMap {
  return {
    name: 'mpw-lun',
    status: async () => ({ groups: [{ paths: [{ device: '8:32', state: 'failed' }, { device: '9:1', state: 'failed' }] }] }),
    failPath: async (p: string) => {
      await dmHalf;
      calls.push(`dm fail_path ${p}`);
    },
  } as unknown as MultipathMap;
}

test('MultipathdActions: a landing that leaves too few is undone, the undo retried on its own while multipathd is busy; fail path is not sent again', async () => {
  const calls: string[] = [];
  let reinstates = 0;
  await withDaemon(({ command, reply }) => {
    calls.push(`multipathd ${command}`);
    if (command.startsWith('reinstate') && reinstates++ === 0) return reply('timeout\n');
    reply('ok\n');
  }, async (_d, c) => {
    const a = new MultipathdActions(lonelyMap(calls), { client: c, sysfsRoot: '/nonexistent', stickRetryMs: 10 });
    await (await a.fail('8:32')).rest;
    assert.deepEqual(calls, ['dm fail_path 8:32', 'multipathd fail path 8:32', 'multipathd reinstate path 8:32', 'multipathd reinstate path 8:32']);
  });
});

test('MultipathdActions: an undo that keeps failing rejects rest with its own error, after stickAttempts reinstates and one fail path', async () => {
  const calls: string[] = [];
  await withDaemon(({ command, reply }) => {
    calls.push(`multipathd ${command}`);
    reply(command.startsWith('reinstate') ? 'timeout\n' : 'ok\n');
  }, async (_d, c) => {
    const a = new MultipathdActions(lonelyMap(calls), { client: c, sysfsRoot: '/nonexistent', stickAttempts: 2, stickRetryMs: 10 });
    await assert.rejects((await a.fail('8:32')).rest!, isCode('busy', /landed with too few other paths active, and undoing it failed/));
    assert.deepEqual(calls, ['dm fail_path 8:32', 'multipathd fail path 8:32', 'multipathd reinstate path 8:32', 'multipathd reinstate path 8:32']);
  });
});

test('MultipathdActions: fail path given up with no known outcome is still undone if it landed leaving too few', async () => {
  const calls: string[] = [];
  await withDaemon(({ command, reply }) => {
    calls.push(`multipathd ${command}`);
    if (command.startsWith('reinstate')) reply('ok\n');
  }, async (_d, c) => {
    const a = new MultipathdActions(lonelyMap(calls), { client: c, sysfsRoot: '/nonexistent', stickTimeoutMs: 100, stickAttempts: 1 });
    await assert.rejects((await a.fail('8:32')).rest!, isCode('timeout'));
    assert.deepEqual(calls, ['dm fail_path 8:32', 'multipathd fail path 8:32', 'multipathd reinstate path 8:32']);
  });
});

test('MultipathdActions: a reinstate asked for while the dm half runs waits for it, and multipathd is told nothing but the reinstate', async () => {
  const calls: string[] = [];
  let open = (): void => undefined;
  const dmHalf = new Promise<void>((r) => { open = r; });
  await withDaemon(answering(), async (d, c) => {
    const a = new MultipathdActions(lonelyMap(calls, dmHalf), { client: c, sysfsRoot: '/nonexistent' });
    const failing = a.fail('8:32');
    const reinstating = a.reinstate('8:32');
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(d.commands, [], 'the reinstate waited for the fail_path still on its way');
    open();
    await (await failing).rest;
    await reinstating;
    assert.deepEqual([...calls, ...d.commands], ['dm fail_path 8:32', 'reinstate path 8:32']);
  });
});

/** A MultipathMap over a DeviceMapper stand-in that only answers table(). */
async function fakeMap(name: string): Promise<MultipathMap> {
  const dm = { table: async () => [{ start: 0, length: 8, type: 'multipath', params: '0 0 1 1 service-time 0 2 1 8:32 1 1 8:48 1 1' }] };
  return MultipathMap.open(dm as unknown as DeviceMapper, name);
}

test('chooseActions: auto picks multipathd only when it lists the map; prefer forces', async () => {
  const managed = await fakeMap('mpw-lun');
  const other = await fakeMap('mpw-other');
  await withDaemon(answering(), async (_d, client) => {
    assert.equal((await chooseActions(managed, { client })).kind, 'multipathd');
    assert.ok((await chooseActions(managed, { client })) instanceof MultipathdActions);
    assert.ok((await chooseActions(other, { client })) instanceof DmMessageActions);
    assert.ok((await chooseActions(managed, { client, prefer: 'dm' })) instanceof DmMessageActions);
    await assert.rejects(chooseActions(other, { client, prefer: 'multipathd' }), isCode('not-running', /'multipathd' asked for, but multipathd runs but does not manage 'mpw-other' \(it manages: mpw-lun\)/));
    const found = await detectMultipathd('mpw-lun', { client });
    assert.equal(found.managed, true);
    assert.equal(found.record?.sysfs, 'dm-0');
  });
  const dead = deadSocketPath();
  try {
    const client = new MultipathdClient({ sockets: [dead.path], cliFallback: false });
    assert.ok((await chooseActions(managed, { client })) instanceof DmMessageActions);
    await assert.rejects(chooseActions(managed, { client, prefer: 'multipathd' }), isCode('not-running', /multipathd is not running/));
  } finally {
    dead.cleanup();
  }
  await assert.rejects(chooseActions(managed, { prefer: 'nope' as 'dm' }), RangeError);
});

test('chooseActions auto: a daemon that cannot be asked is an error, not a silent dm fallback', async () => {
  await withDaemon(() => undefined, async (_d, client) => {
    await assert.rejects(chooseActions(await fakeMap('mpw-lun'), { client, timeoutMs: 100 }), isCode('timeout', /cannot tell whether multipathd manages 'mpw-lun'.*choose the actions explicitly/));
  });
});

/** A stand-in `multipathd` CLI that answers like 0.9.4's uxclnt (reply printed as is, exit 1 on fail, silent exit 1 when it cannot connect). */
async function fakeCli(): Promise<{ path: string; log: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mpw-mpathd-cli-'));
  const path = join(dir, 'multipathd');
  const log = join(dir, 'argv');
  await writeFile(path, [
    '#!/bin/sh',
    `printf '%s\\n' "$*" >> '${log}'`,
    'case "$*" in',
    '  "show maps raw format"*) printf \'mpw-lun|36001405abc|dm-0|active|2\\n\' ;;',
    '  "fail path sdc") printf \'ok\\n\' ;;',
    '  "fail path sdz") printf \'fail\\n\'; exit 1 ;;',
    '  "show slow") printf \'timeout receiving packet\\n\'; exit 1 ;;',
    '  "show hang") sleep 5 ;;',
    '  *) exit 1 ;;',
    'esac',
    '',
  ].join('\n'));
  await chmod(path, 0o755);
  return { path, log, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

test('CLI fallback when no socket answers: replies, fail, not running, timeout, missing binary', async () => {
  const cli = await fakeCli();
  const dead = deadSocketPath();
  try {
    const c = new MultipathdClient({ sockets: [dead.path], cliFallback: cli.path, timeoutMs: 2000 });
    assert.deepEqual((await c.showMaps()).map((m) => m.name), ['mpw-lun']);
    await c.failPath('sdc');
    await assert.rejects(c.failPath('sdz'), isCode('failed', /refused 'fail path sdz'/));
    await assert.rejects(c.command('show daemon'), isCode('not-running', /multipathd is not running/));
    assert.equal(await c.isRunning(), false);
    await assert.rejects(c.command('show slow'), isCode('timeout', /timeout receiving packet/));
    await assert.rejects(c.command('show hang', { timeoutMs: 200 }), isCode('timeout'));
    const missing = new MultipathdClient({ sockets: [dead.path], cliFallback: join(dead.path, 'no-such-multipathd') });
    await assert.rejects(missing.showMaps(), isCode('not-running', /could not be run/));
    const { readFile } = await import('node:fs/promises');
    const argv = (await readFile(cli.log, 'utf8')).trim().split('\n');
    assert.deepEqual(argv.slice(0, 3), ['show maps raw format "%n|%w|%d|%t|%N"', 'fail path sdc', 'fail path sdz']);
    assert.deepEqual(cliWords('show paths raw format "%d %w|x"'), ['show', 'paths', 'raw', 'format', '"%d %w|x"']);
  } finally {
    dead.cleanup();
    await cli.cleanup();
  }
});
