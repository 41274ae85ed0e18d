// Property: the kernel-facing fail (MultipathMap#failPath and MultipathdActions)
// never takes a map below keepActive other active paths through our own
// action, however multipathd answers (at once, busy, refusing, or not at all
// while the command still lands later), wherever multipathd's checker moves,
// and whatever order our own fails and reinstates run in. Two exceptions are
// the environment's and are counted out: the checker failing a path between
// one failPath's status read and its message (dm has no compare-and-fail),
// and a `fail path` whose reply never came landing later (multipathd runs or
// drops a command within its uxsock_timeout; our wait is longer). A landing
// of multipathd's `fail path` that leaves too few is allowed only if undone. fast-check's scheduler picks every interleaving of the
// dm ioctls, multipathd's replies and the checker's moves; the kernel and the
// daemon are stand-ins holding the path states, the code under test is real.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AsyncLocalStorage } from 'node:async_hooks';
import fc from 'fast-check';
import {
  DmMessageActions, LastPathError, MultipathMap, MultipathdActions, MultipathdError, formatMultipathStatus,
  type DeviceMapper, type MultipathdClient, type MultipathStatus, type PathActions,
} from '../../lib/index';

const PATHS = ['8:16', '8:32', '8:48'] as const;
const NAMES: Record<string, string> = { '8:16': 'sdb', '8:32': 'sdc', '8:48': 'sdd' };
const DEVNO: Record<string, string> = { sdb: '8:16', sdc: '8:32', sdd: '8:48' };

// Marks the status reads a failPath makes, to tell them from the landing check's.
const inFailPath = new AsyncLocalStorage<boolean>();

/** How multipathd answers one `fail path`. */
type Answer = 'ok' | 'busy' | 'refused' | 'lost';

/** Where one of our fails reached the kernel; `excused`: the checker moved while that failPath ran (dm has no compare-and-fail). */
interface OurFail { path: string; how: 'dm' | 'multipathd' | 'lost'; othersActive: number; at: number; excused: boolean }

class Kernel {
  readonly state = new Map<string, 'active' | 'failed'>(PATHS.map((p) => [p, 'active']));
  readonly ours: OurFail[] = [];
  readonly ourReinstates: { path: string; at: number }[] = [];
  /** Moves of the checker so far. */
  moves = 0;
  /** The checker's move count when each failPath still running began, oldest first (they run one at a time, in order). */
  readonly failing: { moves: number }[] = [];
  #clock = 0;

  constructor(readonly keep: number) {}

  tick(): number {
    return ++this.#clock;
  }

  ourFail(path: string, how: OurFail['how']): void {
    if (this.state.get(path) === 'active') {
      const othersActive = PATHS.filter((p) => p !== path && this.state.get(p) === 'active').length;
      const excused = how === 'dm' && this.moves > (this.failing[0]?.moves ?? this.moves);
      this.ours.push({ path, how, othersActive, at: this.tick(), excused });
    }
    this.state.set(path, 'failed');
  }

  /** Each dm status read: when, the path states it showed, and whether a failPath made it (else the undo's check). */
  readonly reads: { at: number; state: Map<string, 'active' | 'failed'>; byFailPath: boolean }[] = [];

  status(): MultipathStatus {
    this.reads.push({ at: this.tick(), state: new Map(this.state), byFailPath: inFailPath.getStore() === true });
    return {
      queueIO: false, pgInitCount: 0, hardwareHandlerArgs: [], currentGroup: 1,
      groups: [{ state: 'active', selectorArgs: [], paths: PATHS.map((device) => ({ device, state: this.state.get(device)!, failCount: 0, selectorArgs: [] })) }],
    };
  }
}

/** A DeviceMapper stand-in for one map: each ioctl is a step the scheduler places. */
function fakeDm(k: Kernel, s: fc.Scheduler): DeviceMapper {
  const target = (params: string) => [{ start: 0, length: 8, type: 'multipath', params }];
  return {
    table: async () => target(`0 0 1 1 round-robin 0 3 1 ${PATHS.map((p) => `${p} 1`).join(' ')}`),
    status: async () => {
      await s.schedule(Promise.resolve(), 'dm status');
      return target(formatMultipathStatus(k.status()));
    },
    message: async (_name: string, msg: string) => {
      await s.schedule(Promise.resolve(), `dm ${msg}`);
      const [verb, path] = msg.split(' ') as [string, string];
      if (verb === 'fail_path') k.ourFail(path, 'dm');
      else k.state.set(path, 'active');
      return '';
    },
  } as unknown as DeviceMapper;
}

/**
 * A multipathd client stand-in answering `fail path` from `answers` in order ('ok' once they
 * run out), and `reinstate path` busy where `busyReinstates` says so (never more than twice
 * in a row for one path: the undo's and the reinstate's three tries then always get through).
 */
function fakeClient(k: Kernel, s: fc.Scheduler, answers: Answer[], landings: Promise<void>[], busyReinstates: boolean[] = []): MultipathdClient {
  // Busy at most twice in a row for one path's reinstates, so that a retried
  // one (stickAttempts 3) gets through; counted per path: a reinstate of
  // another path between two of them does not end this path's run of busy.
  const busyInARow = new Map<string, number>();
  return {
    failPath: async (name: string) => {
      const path = DEVNO[name]!;
      const answer = answers.shift() ?? 'ok';
      await s.schedule(Promise.resolve(), `multipathd fail path ${name} (${answer})`);
      if (answer === 'ok') return k.ourFail(path, 'multipathd');
      if (answer === 'lost') {
        // Our wait ends; the command still runs once multipathd gets its lock.
        landings.push(steps(s, 3, `lost fail path ${name} lands`).then(() => k.ourFail(path, 'lost')));
        throw new MultipathdError('timeout', `fail path ${name}`, 'no reply');
      }
      throw new MultipathdError(answer === 'busy' ? 'busy' : 'failed', `fail path ${name}`, answer);
    },
    reinstatePath: async (name: string) => {
      const run = busyInARow.get(name) ?? 0;
      const busy = (busyReinstates.shift() ?? false) && run < 2;
      busyInARow.set(name, busy ? run + 1 : 0);
      await s.schedule(Promise.resolve(), `multipathd reinstate path ${name}${busy ? ' (busy)' : ''}`);
      if (busy) throw new MultipathdError('busy', `reinstate path ${name}`, 'busy');
      k.state.set(DEVNO[name]!, 'active');
      k.ourReinstates.push({ path: DEVNO[name]!, at: k.tick() });
    },
  } as unknown as MultipathdClient;
}

/** One move, made after `after` steps of the scheduler (so that moves start while others are under way). */
interface Command { kind: 'fail' | 'reinstate' | 'checker-fail' | 'checker-reinstate'; path: string; after: number }

const command: fc.Arbitrary<Command> = fc.record({
  kind: fc.constantFrom('fail' as const, 'fail' as const, 'reinstate' as const, 'checker-fail' as const, 'checker-reinstate' as const),
  path: fc.constantFrom(...PATHS),
  after: fc.integer({ min: 0, max: 8 }),
});

/** A failure's seed and path, to replay it: FC_SEED=… FC_PATH=… node --test this file. */
function replay(): { seed?: number; path?: string } {
  const seed = process.env.FC_SEED;
  return seed === undefined ? {} : { seed: Number(seed), ...(process.env.FC_PATH === undefined ? {} : { path: process.env.FC_PATH }) };
}

/** Waits `n` steps; each lets real I/O (the sysfs reads) progress and then waits for the scheduler. */
async function steps(s: fc.Scheduler, n: number, label: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    await new Promise((r) => setImmediate(r));
    await s.schedule(Promise.resolve(), `${label}: step ${i + 1} of ${n}`);
  }
}

test('property: our fails never leave fewer than keepActive other paths active; a multipathd landing that would is undone at once', async () => {
  const root = await mkdtemp(join(tmpdir(), 'mpw-fail-safety-'));
  try {
    await mkdir(join(root, 'dev', 'block'), { recursive: true });
    for (const p of PATHS) await symlink(`../../block/${NAMES[p]}`, join(root, 'dev', 'block', p));
    await fc.assert(fc.asyncProperty(
      fc.scheduler(), fc.array(command, { minLength: 1, maxLength: 10 }), fc.array(fc.constantFrom<Answer>('ok', 'ok', 'busy', 'refused', 'lost'), { maxLength: 10 }),
      fc.integer({ min: 1, max: 2 }), fc.constantFrom('multipathd' as const, 'dm' as const), fc.array(fc.boolean(), { maxLength: 6 }),
      async (s, commands, answers, keep, via, busyReinstates) => {
        const k = new Kernel(keep);
        const map = await MultipathMap.open(fakeDm(k, s), 'mpw-prop', { sysfsRoot: root });
        const failPath = map.failPath.bind(map);
        map.failPath = async (path, options) => {
          const entry = { moves: k.moves };
          k.failing.push(entry);
          try {
            return await inFailPath.run(true, () => failPath(path, options));
          } finally {
            k.failing.splice(k.failing.indexOf(entry), 1);
          }
        };
        const running: Promise<unknown>[] = [];
        const actions: PathActions = via === 'dm' ? new DmMessageActions(map)
          : new MultipathdActions(map, { client: fakeClient(k, s, [...answers], running as Promise<void>[], [...busyReinstates]), sysfsRoot: root, stickRetryMs: 0 });
        for (const c of commands) {
          const label = `${c.kind} ${c.path}`;
          running.push(steps(s, c.after, label).then(async () => {
            if (c.kind === 'fail') {
              await (await actions.fail(c.path, { keepActive: keep }))?.rest;
            } else if (c.kind === 'reinstate') {
              await actions.reinstate(c.path);
            } else {
              // multipathd's checker.
              k.state.set(c.path, c.kind === 'checker-fail' ? 'failed' : 'active');
              k.moves++;
            }
          }));
        }
        // The retries' back-off is a real (0 ms) timer: turn the loop until everything settled.
        // (A lost fail path adds its landing to `running` while it runs.)
        for (let settled = 0; settled < running.length;) {
          let open = true;
          const all = Promise.allSettled(running.slice(settled)).then(() => { open = false; });
          const upTo = running.length;
          while (open) {
            await s.waitAll();
            await new Promise((r) => setImmediate(r));
          }
          await all;
          settled = upTo;
        }
        for (const f of k.ours) {
          if (f.othersActive >= keep || f.how === 'lost' || f.excused) continue;
          // Through dm: never. Through multipathd, landing after the checker moved: undone at once.
          assert.notEqual(f.how, 'dm', `a dm fail_path of ${f.path} left ${f.othersActive} others active (keep ${keep}):\n${s.report()}`);
          // Undone, or over by the landing check's look at dm status (the checker brought it or others back).
          const next = k.reads.find((r) => r.at > f.at && !r.byFailPath);
          const over = next !== undefined
            && (next.state.get(f.path) === 'active' || PATHS.filter((p) => p !== f.path && next.state.get(p) === 'active').length >= keep);
          assert.ok(over || k.ourReinstates.some((r) => r.path === f.path && r.at > f.at), `the landing of fail path ${f.path} with ${f.othersActive} others active was not undone:\n${s.report()}`);
        }
      },
    ), { numRuns: 1000, ...replay() });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('fails of one map through two MultipathMap objects are serialized too: of two concurrent fails of the two last paths, one is refused', async () => {
  const root = await mkdtemp(join(tmpdir(), 'mpw-fail-two-'));
  try {
    await mkdir(join(root, 'dev', 'block'), { recursive: true });
    for (const p of PATHS) await symlink(`../../block/${NAMES[p]}`, join(root, 'dev', 'block', p));
    const k = new Kernel(1);
    k.state.set('8:48', 'failed');
    const tick = () => new Promise((r) => setTimeout(r, 5));
    const dm = {
      table: async () => [{ start: 0, length: 8, type: 'multipath', params: `0 0 1 1 round-robin 0 3 1 ${PATHS.map((p) => `${p} 1`).join(' ')}` }],
      status: async () => {
        await tick();
        return [{ start: 0, length: 8, type: 'multipath', params: formatMultipathStatus(k.status()) }];
      },
      message: async (_n: string, msg: string) => {
        await tick();
        k.ourFail(msg.split(' ')[1]!, 'dm');
        return '';
      },
    } as unknown as DeviceMapper;
    const one = await MultipathMap.open(dm, 'mpw-two', { sysfsRoot: root });
    const two = await MultipathMap.open(dm, 'mpw-two', { sysfsRoot: root });
    const results = await Promise.allSettled([one.failPath('8:16', { keepActive: 1 }), two.failPath('8:32', { keepActive: 1 })]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected']);
    assert.ok((results[1] as PromiseRejectedResult).reason instanceof LastPathError);
    assert.deepEqual([...k.state.values()].filter((s) => s === 'active').length, 1);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
