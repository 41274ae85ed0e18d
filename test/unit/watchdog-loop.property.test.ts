// Property of the whole decision loop: a real Watchdog (passive mode: its
// sampler, stall detection, attribution, policy, actions, recovery probes and
// dm-status handling) on a stand-in kernel. Random runs interleave paths going
// stuck (I/O in flight on the path with no completion) or hidden-stuck (the
// I/O held above the path, as a blocked iSCSI session or a dm-held bio shows
// it: the path idle, the map holding more than its paths), healing,
// multipathd's checker failing and reinstating paths, map reloads that add and
// remove paths, slow dm messages and multipathd replies that are slow, busy,
// refused or lost. Two invariants, checked at every fail of ours:
// - never the last paths: a fail_path of ours leaves at least minUsablePaths
//   other paths active, unless the environment moved between the status read
//   and the message (dm has no compare-and-fail); a multipathd landing that
//   leaves fewer is undone by us at once;
// - never the wrong path: a path we fail was stuck within the last three
//   timeouts (detection takes one timeout and a sample, attribution's probe
//   one timeout more).
// Stand-ins: the dm ioctls, multipathd's replies, the probe reads (a healthy
// path answers at once, a stuck one only once it heals) and the sysfs tree
// (the counters in memory, through the real parsers; the names through a temp dir). The clock is fake.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { FakeSysfs, statLine, type FakeCounters } from './helpers/fake-sysfs';
import {
  FakeClock, MultipathMap, MultipathdActions, MultipathdError, completedIos, formatMultipathStatus, parseBlockStat, parseInflight,
  type CounterSnapshot, type DeviceMapper, type DmEvent, type MultipathdClient, type PathRef,
} from '../../lib/index';
import { Watchdog } from '../../lib/watchdog/watchdog';
import type { IoResult } from '../../lib/io';
import { withLoopDevice } from '../helpers/loop-device';

const MAP = 'mpw-loop';
const TIMEOUT = 1000;
const STEP = TIMEOUT / 4;
const EVIDENCE_MS = 3 * TIMEOUT;
const ALL = ['8:16', '8:32', '8:48', '8:64'] as const;
const NAME: Record<string, string> = { '8:16': 'sdb', '8:32': 'sdc', '8:48': 'sdd', '8:64': 'sde' };
const DEVNO: Record<string, string> = Object.fromEntries(Object.entries(NAME).map(([d, n]) => [n, d]));

type Health = 'ok' | 'stuck' | 'hidden';
type Answer = 'ok' | 'busy' | 'refused' | 'lost' | 'slow';

type Command =
  | { kind: 'advance'; steps: number }
  | { kind: 'health'; path: string; to: Health }
  | { kind: 'checker'; path: string; to: 'active' | 'failed' }
  | { kind: 'reload'; path: string }
  | { kind: 'slow-dm'; steps: number };

const path = fc.constantFrom(...ALL);
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('advance' as const), steps: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('health' as const), path, to: fc.constantFrom<Health>('ok', 'ok', 'stuck', 'hidden') }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('checker' as const), path, to: fc.constantFrom('active' as const, 'failed' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reload' as const), path }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('slow-dm' as const), steps: fc.integer({ min: 1, max: 6 }) }) },
);

/** A fail of ours as it reached the kernel. */
interface OurFail { path: string; how: 'dm' | 'multipathd' | 'lost'; othersActive: number; excused: boolean; at: number; seq: number }

/** A promise released after `steps` sample intervals. */
interface Gate { steps: number; open: () => void }

class World {
  readonly clock = new FakeClock(0);
  /** Paths in the live table, in order. */
  table: string[] = ['8:16', '8:32', '8:48'];
  readonly state = new Map<string, 'active' | 'failed'>(ALL.map((p) => [p, 'active']));
  readonly health = new Map<string, Health>(ALL.map((p) => [p, 'ok']));
  /** The last clock ms each path was stuck. */
  readonly lastBad = new Map<string, number>();
  readonly reads = new Map<string, number>(ALL.map((p) => [p, 0]));
  mapReads = 0;
  /** The environment's moves (checker, reloads) so far. */
  moves = 0;
  /** Everything the stand-ins did, for the settle loop. */
  activity = 0;
  seq = 0;
  readonly ours: OurFail[] = [];
  readonly ourReinstates: { path: string; seq: number }[] = [];
  readonly wrong: string[] = [];
  readonly gates: Gate[] = [];
  slowNextDm = 0;
  readonly answers: Answer[];
  readonly held = new Map<string, (() => void)[]>();
  readonly #events: (() => void)[] = [];
  eventNr = 0;
  readonly log: string[] = [];

  /** Each device's counters, as its sysfs files would print them. */
  readonly counters = new Map<string, FakeCounters>();

  constructor(readonly keep: number, answers: Answer[]) {
    this.answers = [...answers];
    for (const name of [...Object.values(NAME), 'dm-0']) this.counters.set(name, { inflight: [0, 0], reads: 0, writes: 0 });
  }

  /** The counter reader: the kernel's text, through the real parsers, with no file I/O (so settle() sees every read). */
  readonly read = (d: PathRef): Promise<CounterSnapshot> => {
    this.activity++;
    const c = this.counters.get(d.name);
    if (!c) return Promise.reject(new Error(`no counters for ${d.name}`));
    const stat = parseBlockStat(statLine(c), d.name);
    return Promise.resolve({ name: d.name, inflight: parseInflight(`${c.inflight[0]} ${c.inflight[1]}\n`, d.name), stat, completed: completedIos(stat) });
  };

  bad(p: string): boolean {
    return this.health.get(p) !== 'ok';
  }

  othersActive(p: string): number {
    return this.table.filter((q) => q !== p && this.state.get(q) === 'active').length;
  }

  /** Records a fail of ours reaching the kernel, checking both invariants. */
  ourFail(p: string, how: OurFail['how'], excused: boolean): void {
    if (!this.table.includes(p)) return;
    if (this.state.get(p) === 'active') {
      this.ours.push({ path: p, how, othersActive: this.othersActive(p), excused, at: this.clock.now(), seq: ++this.seq });
    }
    this.state.set(p, 'failed');
    this.event();
  }

  /** A fail of ours decided now: it needs evidence against the path. */
  checkEvidence(p: string, via: string): void {
    const now = this.clock.now();
    const last = this.bad(p) ? now : this.lastBad.get(p);
    if (last === undefined || now - last > EVIDENCE_MS) {
      this.wrong.push(`${via} of ${p} at ${now} ms: last stuck ${last === undefined ? 'never' : `at ${last} ms`}`);
    }
  }

  event(): void {
    this.eventNr++;
    this.activity++;
    for (const wake of this.#events.splice(0)) wake();
  }

  async *events(signal: AbortSignal): AsyncGenerator<DmEvent> {
    let seen = this.eventNr;
    while (!signal.aborted) {
      if (this.eventNr !== seen) {
        seen = this.eventNr;
        yield { name: MAP, eventNr: seen };
        continue;
      }
      await new Promise<void>((r) => {
        this.#events.push(r);
        signal.addEventListener('abort', () => r(), { once: true });
      });
    }
  }

  /** Waits `steps` sample intervals (0: not at all). */
  gate(steps: number): Promise<void> {
    if (steps <= 0) return Promise.resolve();
    return new Promise((open) => this.gates.push({ steps, open }));
  }

  status(): string {
    return formatMultipathStatus({
      queueIO: false, pgInitCount: 0, hardwareHandlerArgs: [], currentGroup: 1,
      groups: [{ state: 'active', selectorArgs: [], paths: this.table.map((device) => ({ device, state: this.state.get(device)!, failCount: 0, selectorArgs: [] })) }],
    });
  }

  tableParams(): string {
    return `0 0 1 1 round-robin 0 ${this.table.length} 1 ${this.table.map((p) => `${p} 1`).join(' ')}`;
  }

  setHealth(p: string, to: Health): void {
    if (this.bad(p)) this.lastBad.set(p, this.clock.now());
    this.health.set(p, to);
    // A stuck path's probes answer once it heals.
    if (to === 'ok') for (const release of this.held.get(p)?.splice(0) ?? []) release();
  }

  /** One sample interval: counters as the paths' health makes them, then the clock. */
  async tick(): Promise<void> {
    let mapInflight = 0;
    for (const p of ALL) {
      const h = this.health.get(p)!;
      if (h !== 'ok') this.lastBad.set(p, this.clock.now());
      const inTable = this.table.includes(p);
      // dm routes new I/O to active paths only; I/O stuck on a path stays there whatever its state.
      const routed = inTable && this.state.get(p) === 'active';
      let inflight = 0;
      if (h === 'stuck') inflight = 1;
      else if (h === 'ok' && routed) {
        inflight = 1;
        // A completion every other interval: in flight with no completion since, for a moment.
        if (Math.round(this.clock.now() / STEP) % 2 === 0) this.reads.set(p, this.reads.get(p)! + 4);
      }
      if (inTable) mapInflight += inflight + (h === 'hidden' ? 1 : 0);
      this.counters.set(NAME[p]!, { inflight: [inflight, 0], reads: this.reads.get(p)!, writes: 0 });
    }
    this.mapReads = ALL.reduce((n, p) => n + this.reads.get(p)!, 0);
    this.counters.set('dm-0', { inflight: [mapInflight, 0], reads: this.mapReads, writes: 0 });
    this.clock.advance(STEP);
    this.activity++;
    for (const g of [...this.gates]) {
      if (--g.steps <= 0) {
        this.gates.splice(this.gates.indexOf(g), 1);
        g.open();
      }
    }
  }
}

function fakeDm(w: World): DeviceMapper {
  const target = (params: string) => [{ start: 0, length: 8, type: 'multipath', params }];
  return {
    info: async (name: string) => ({ name, major: 254, minor: 0, uuid: '', openCount: 1, eventNr: w.eventNr }),
    table: async () => {
      w.activity++;
      return target(w.tableParams());
    },
    status: async () => {
      w.activity++;
      return target(w.status());
    },
    message: async (_name: string, msg: string) => {
      w.activity++;
      const [verb, p] = msg.split(' ') as [string, string];
      const movesAtCall = w.moves;
      if (verb === 'fail_path') w.checkEvidence(p, 'dm fail_path');
      const slow = w.slowNextDm;
      w.slowNextDm = 0;
      await w.gate(slow);
      if (!w.table.includes(p)) throw new Error(`EINVAL: ${p} is not in the table`);
      if (verb === 'fail_path') w.ourFail(p, 'dm', w.moves !== movesAtCall);
      else if (verb === 'reinstate_path') {
        w.state.set(p, 'active');
        w.ourReinstates.push({ path: p, seq: ++w.seq });
        w.event();
      }
      return '';
    },
    events: (options: { signal?: AbortSignal } = {}) => w.events(options.signal ?? new AbortController().signal),
  } as unknown as DeviceMapper;
}

function fakeClient(w: World, landings: Promise<void>[]): MultipathdClient {
  return {
    failPath: async (name: string) => {
      w.activity++;
      const p = DEVNO[name]!;
      w.checkEvidence(p, 'multipathd fail path');
      const answer = w.answers.shift() ?? 'ok';
      if (answer === 'slow') await w.gate(2);
      if (answer === 'ok' || answer === 'slow') return w.ourFail(p, 'multipathd', false);
      if (answer === 'lost') {
        landings.push(w.gate(3).then(() => w.ourFail(p, 'lost', false)));
        throw new MultipathdError('timeout', `fail path ${name}`, 'no reply');
      }
      throw new MultipathdError(answer === 'busy' ? 'busy' : 'failed', `fail path ${name}`, answer);
    },
    reinstatePath: async (name: string) => {
      w.activity++;
      const p = DEVNO[name]!;
      if (!w.table.includes(p)) throw new MultipathdError('failed', `reinstate path ${name}`, 'no such path');
      w.state.set(p, 'active');
      w.ourReinstates.push({ path: p, seq: ++w.seq });
      w.event();
    },
  } as unknown as MultipathdClient;
}

/** Lets the loop run until the stand-ins see nothing new for a while (real I/O: sysfs names looked up through dev/block). */
async function settle(w: World): Promise<void> {
  for (let quiet = 0, last = -1; quiet < 3;) {
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 1));
    if (w.activity === last) quiet++;
    else {
      quiet = 0;
      last = w.activity;
    }
  }
}

async function apply(w: World, c: Command): Promise<void> {
  w.log.push(`${w.clock.now()} ms: ${JSON.stringify(c)}`);
  switch (c.kind) {
    case 'advance':
      for (let i = 0; i < c.steps; i++) {
        await w.tick();
        await settle(w);
      }
      return;
    case 'health':
      w.setHealth(c.path, c.to);
      return;
    case 'checker':
      if (!w.table.includes(c.path) || w.state.get(c.path) === c.to) return;
      w.state.set(c.path, c.to);
      w.moves++;
      w.event();
      await settle(w);
      return;
    case 'reload': {
      // A path in the table leaves it (keeping two at least), one outside joins it, active.
      if (w.table.includes(c.path)) {
        if (w.table.length <= 2) return;
        w.table = w.table.filter((p) => p !== c.path);
      } else {
        w.table = [...w.table, c.path];
        w.state.set(c.path, 'active');
      }
      w.moves++;
      w.event();
      await settle(w);
      return;
    }
    case 'slow-dm':
      w.slowNextDm = c.steps;
      return;
  }
}

/** A sysfs tree that names every path (dev/block links); the counters are the World's. */
async function pathsTree(): Promise<FakeSysfs> {
  const sysfs = await FakeSysfs.create();
  await mkdir(join(sysfs.root, 'dev', 'block'), { recursive: true });
  for (const p of ALL) await symlink(`../../block/${NAME[p]}`, join(sysfs.root, 'dev', 'block', p));
  return sysfs;
}

test('property: the whole loop never fails a path without evidence against it, nor below minUsablePaths through its own actions', { timeout: 600_000 }, async () => {
  const sysfs = await pathsTree();
  try {
    let fails = 0;
    let kept = 0;
    let reinstated = 0;
    await fc.assert(fc.asyncProperty(
      fc.array(command, { minLength: 4, maxLength: 30 }),
      fc.array(fc.constantFrom<Answer>('ok', 'ok', 'busy', 'refused', 'lost', 'slow'), { maxLength: 12 }),
      fc.integer({ min: 1, max: 2 }),
      fc.constantFrom('dm' as const, 'multipathd' as const),
      fc.integer({ min: 1, max: 3 }),
      async (commands, answers, keep, via, reinstateAfter) => {
        const w = new World(keep, answers);
        const dm = fakeDm(w);
        const landings: Promise<void>[] = [];
        const probe = (ref: PathRef): Promise<{ latencyMs: number }> => {
          w.activity++;
          if (!w.bad(ref.devno)) return Promise.resolve({ latencyMs: 1 });
          const issued = w.clock.now();
          return new Promise((resolve) => {
            const list = w.held.get(ref.devno) ?? [];
            list.push(() => resolve({ latencyMs: w.clock.now() - issued }));
            w.held.set(ref.devno, list);
          });
        };
        const actions = via === 'dm' ? 'dm' as const
          : new MultipathdActions(await MultipathMap.open(dm, MAP, { sysfsRoot: sysfs.root }), { client: fakeClient(w, landings), sysfsRoot: sysfs.root, stickRetryMs: 0 });
        const wd = new Watchdog({
          map: MAP, mode: 'passive', timeoutMs: TIMEOUT, dm, clock: w.clock, sysfsRoot: sysfs.root, actions,
          minUsablePaths: keep, holdDownMs: 500, probeIntervalMs: STEP, reinstateAfter,
        }, { probe, read: w.read });
        wd.on('path-failed', () => { fails++; w.activity++; });
        wd.on('path-reinstated', () => { reinstated++; w.activity++; });
        wd.on('last-path-kept', () => { kept++; w.activity++; });
        wd.on('error', () => { w.activity++; });
        await wd.start();
        try {
          for (const c of commands) await apply(w, c);
          // The end: every path heals, every gate opens, the loop settles.
          for (const p of ALL) w.setHealth(p, 'ok');
          for (let i = 0; i < 8; i++) await apply(w, { kind: 'advance', steps: 1 });
          // A slow message sent in the last steps lands now.
          while (w.gates.length > 0) {
            for (const g of w.gates.splice(0)) g.open();
            await apply(w, { kind: 'advance', steps: 1 });
          }
          await Promise.allSettled(landings);
        } finally {
          const giveUp = new AbortController();
          const timer = setTimeout(() => giveUp.abort(new Error('stop did not finish within 10 s')), 10_000);
          await wd.stop({ signal: giveUp.signal }).finally(() => clearTimeout(timer));
        }
        const report = `\n${w.log.join('\n')}`;
        assert.deepEqual(w.wrong, [], `a fail without evidence against the path:${report}`);
        for (const f of w.ours) {
          if (f.othersActive >= keep || f.how === 'lost' || f.excused) continue;
          assert.notEqual(f.how, 'dm', `our fail_path of ${f.path} left ${f.othersActive} others active (minUsablePaths ${keep}):${report}`);
          assert.ok(w.ourReinstates.some((r) => r.path === f.path && r.seq > f.seq), `multipathd's fail path of ${f.path} landed with ${f.othersActive} others active and was not undone:${report}`);
        }
      },
    ), { numRuns: 200 });
    // The runs must have exercised the loop, not only idled.
    assert.ok(fails > 0 && kept > 0 && reinstated > 0, `fails ${fails}, last-path-kept ${kept}, reinstates ${reinstated}`);
  } finally {
    await sysfs.dispose();
  }
});

test('stop({signal}) is bounded by its signal while a fail waits on a dm message that never returns', async () => {
  const sysfs = await pathsTree();
  try {
    const w = new World(1, []);
    const wd = new Watchdog({ map: MAP, mode: 'passive', timeoutMs: TIMEOUT, dm: fakeDm(w), clock: w.clock, sysfsRoot: sysfs.root, actions: 'dm' },
      { probe: async () => ({ latencyMs: 1 }), read: w.read });
    await wd.start();
    w.slowNextDm = Number.MAX_SAFE_INTEGER;
    w.setHealth('8:16', 'stuck');
    for (let i = 0; i < 8 && w.gates.length === 0; i++) await apply(w, { kind: 'advance', steps: 1 });
    assert.equal(w.gates.length, 1, 'the fail of the stuck path is waiting on its dm message');
    const t0 = performance.now();
    const giveUp = new AbortController();
    const timer = setTimeout(() => giveUp.abort(new Error('gave up waiting')), 200);
    await assert.rejects(wd.stop({ signal: giveUp.signal }), /gave up waiting/);
    clearTimeout(timer);
    assert.ok(performance.now() - t0 < 5000, 'stop gave up at its signal');
    for (const g of w.gates.splice(0)) g.open();
    await wd.stop();
  } finally {
    await sysfs.dispose();
  }
});

test('a dm status read while a reinstate of one path waits still applies to the other paths', async () => {
  const sysfs = await pathsTree();
  try {
    const w = new World(1, []);
    let reinstateAsked = false;
    let release = (): void => undefined;
    const held = new Promise<void>((r) => { release = r; });
    const actions = {
      kind: 'test',
      fail: async (p: string): Promise<void> => { w.state.set(p, 'failed'); w.event(); },
      reinstate: async (p: string): Promise<void> => {
        reinstateAsked = true;
        await held;
        w.state.set(p, 'active');
        w.event();
      },
    };
    const wd = new Watchdog({
      map: MAP, mode: 'passive', timeoutMs: TIMEOUT, dm: fakeDm(w), clock: w.clock, sysfsRoot: sysfs.root, actions,
      holdDownMs: 500, probeIntervalMs: STEP, reinstateAfter: 1,
    }, { probe: async () => ({ latencyMs: 1 }), read: w.read });
    const state = (p: string): string | undefined => wd.stats().paths.find((x) => x.devno === p)?.state;
    await wd.start();
    try {
      w.setHealth('8:16', 'stuck');
      for (let i = 0; i < 12 && state('8:16') !== 'failed'; i++) await apply(w, { kind: 'advance', steps: 1 });
      assert.equal(state('8:16'), 'failed');
      w.setHealth('8:16', 'ok');
      for (let i = 0; i < 16 && !reinstateAsked; i++) await apply(w, { kind: 'advance', steps: 1 });
      assert.ok(reinstateAsked, 'the healed path is being reinstated');
      // multipathd's checker fails another path while that reinstate waits.
      await apply(w, { kind: 'checker', path: '8:32', to: 'failed' });
      await apply(w, { kind: 'advance', steps: 2 });
      assert.equal(state('8:32'), 'failed', 'before: every status read during the reinstate was dropped');
      assert.equal(state('8:16'), 'usable', 'the path being reinstated keeps the policy\'s view');
      release();
      await apply(w, { kind: 'advance', steps: 2 });
      assert.equal(w.state.get('8:16'), 'active');
      assert.equal(state('8:16'), 'usable');
    } finally {
      release();
      await wd.stop();
    }
  } finally {
    await sysfs.dispose();
  }
});

test('active mode: a late read is hedged straight to the first path whose probe answers fast, before the silent one\'s deadline', async () => {
  const sysfs = await pathsTree();
  try {
    await withLoopDevice(1 << 20, async (loop) => {
      const w = new World(1, []);
      const dm = { ...fakeDm(w), devicePath: async () => loop.path } as unknown as DeviceMapper;
      const hedges: { path: string; offset: number }[] = [];
      // 8:16 answers its probe at once; 8:32 and 8:48 only when the test ends.
      const silent: (() => void)[] = [];
      const probe = (ref: PathRef): Promise<{ latencyMs: number }> => (ref.devno === '8:16' ? Promise.resolve({ latencyMs: 1 })
        : new Promise((resolve) => silent.push(() => resolve({ latencyMs: 1 }))));
      const hedgeRead = async (ref: PathRef, buf: Buffer, offset: number): Promise<IoResult> => {
        hedges.push({ path: ref.devno, offset });
        buf.fill(0xc3);
        return { bytes: buf.byteLength, submitNs: 1n, doneNs: 2n };
      };
      const wd = new Watchdog({ map: MAP, mode: 'active', timeoutMs: TIMEOUT, dm, clock: w.clock, sysfsRoot: sysfs.root, actions: 'dm', hedgeReads: true, queueDepth: 4 },
        { probe, read: w.read, hedgeRead });
      await wd.start();
      try {
        const buf = wd.alloc(4096);
        // The read is in the kernel; its completion needs an event-loop turn,
        // while detection, attribution and the hedge run in microtasks.
        const reading = wd.read(buf, 3 * 4096);
        w.clock.advance(TIMEOUT + 1);
        const r = await reading;
        assert.equal(r.hedged, true, 'the hedge answered first');
        assert.deepStrictEqual(hedges, [{ path: '8:16', offset: 3 * 4096 }], 'sent to the path that answered, at the same offset');
        assert.ok(buf.every((b) => b === 0xc3));
        assert.equal(wd.stats().paths.filter((p) => p.state === 'failed').length, 0, 'nothing was failed: the silent paths\' deadlines have not passed');
      } finally {
        for (const answer of silent) answer();
        await wd.stop({ signal: AbortSignal.timeout(10_000) });
      }
    });
  } finally {
    await sysfs.dispose();
  }
});
