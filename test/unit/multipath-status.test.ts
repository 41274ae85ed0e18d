// The status grammar against strings the 6.1 kernel printed (dmsetup status in
// the test VM) and malformed variants.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  parseMultipathStatus,
  formatMultipathStatus,
  parseMultipathStatusLine,
  formatMultipathStatusLine,
  MultipathValueError,
  type MultipathStatus,
  type StatusPath,
} from '../../lib/multipath';
import { assertParseErrors, type MalformedCase } from './helpers/parse-errors';

const path = (device: string, state: 'active' | 'failed', failCount: number, ...selectorArgs: string[]): StatusPath => ({
  device,
  state,
  failCount,
  selectorArgs,
});

// Exactly as `dmsetup status` printed the params on Debian's 6.1 kernel.
const kernelCases: Array<[string, MultipathStatus]> = [
  [
    // Two queue-length groups, before any I/O: queue_io still set, group 2 next.
    '2 1 0 0 2 2 E 0 1 1 8:0 A 0 0 E 0 1 1 8:16 A 0 0 ',
    {
      queueIO: true,
      pgInitCount: 0,
      hardwareHandlerArgs: [],
      currentGroup: 2,
      groups: [
        { state: 'enabled', selectorArgs: [], paths: [path('8:0', 'active', 0, '0')] },
        { state: 'enabled', selectorArgs: [], paths: [path('8:16', 'active', 0, '0')] },
      ],
    },
  ],
  [
    // service-time: in-flight bytes and relative throughput per path.
    '2 1 0 0 1 1 E 0 2 2 8:0 A 0 0 1 8:16 A 0 0 1 ',
    {
      queueIO: true,
      pgInitCount: 0,
      hardwareHandlerArgs: [],
      currentGroup: 1,
      groups: [{ state: 'enabled', selectorArgs: [], paths: [path('8:0', 'active', 0, '0', '1'), path('8:16', 'active', 0, '0', '1')] }],
    },
  ],
  [
    // round-robin after `fail_path 8:0`.
    '2 1 0 0 1 1 E 0 2 0 8:0 F 1 8:16 A 0 ',
    {
      queueIO: true,
      pgInitCount: 0,
      hardwareHandlerArgs: [],
      currentGroup: 1,
      groups: [{ state: 'enabled', selectorArgs: [], paths: [path('8:0', 'failed', 1), path('8:16', 'active', 0)] }],
    },
  ],
  ['2 1 0 0 0 0 ', { queueIO: true, pgInitCount: 0, hardwareHandlerArgs: [], currentGroup: 0, groups: [] }],
  [
    // After `disable_group 1`.
    '2 1 0 0 2 2 D 0 1 0 8:0 A 0 E 0 1 0 8:16 A 0 ',
    {
      queueIO: true,
      pgInitCount: 0,
      hardwareHandlerArgs: [],
      currentGroup: 2,
      groups: [
        { state: 'disabled', selectorArgs: [], paths: [path('8:0', 'active', 0)] },
        { state: 'enabled', selectorArgs: [], paths: [path('8:16', 'active', 0)] },
      ],
    },
  ],
  [
    // After `switch_group 1` and one read: group 1 active, I/O no longer queued.
    '2 0 0 0 2 1 A 0 1 0 8:0 A 0 E 0 1 0 8:16 A 0 ',
    {
      queueIO: false,
      pgInitCount: 0,
      hardwareHandlerArgs: [],
      currentGroup: 1,
      groups: [
        { state: 'active', selectorArgs: [], paths: [path('8:0', 'active', 0)] },
        { state: 'enabled', selectorArgs: [], paths: [path('8:16', 'active', 0)] },
      ],
    },
  ],
];

test('kernel status strings parse to the expected model and format back byte for byte', () => {
  for (const [s, st] of kernelCases) {
    assert.deepStrictEqual(parseMultipathStatus(s), st, s);
    assert.equal(formatMultipathStatus(parseMultipathStatus(s)), s);
    assert.deepStrictEqual(parseMultipathStatus(formatMultipathStatus(st)), st);
    assert.equal(formatMultipathStatus(st, { trailingSpace: false }), s.slice(0, -1));
  }
});

test('a status with hardware handler and group-level selector args round-trips', () => {
  const s = '2 0 7 2 x y 1 1 A 1 z 1 0 65:16 A 3';
  const st = parseMultipathStatus(s);
  assert.equal(st.pgInitCount, 7);
  assert.deepStrictEqual(st.hardwareHandlerArgs, ['x', 'y']);
  assert.deepStrictEqual(st.groups[0]?.selectorArgs, ['z']);
  assert.equal(st.groups[0]?.paths[0]?.failCount, 3);
  assert.equal(formatMultipathStatus(st, { trailingSpace: false }), s);
});

test('whole status lines from dmsetup parse and format back exactly', () => {
  const line = '0 131072 multipath 2 1 0 0 1 1 E 0 2 0 8:0 F 1 8:16 A 0 ';
  const parsed = parseMultipathStatusLine(`${line}\n`);
  assert.equal(parsed.length, 131072);
  assert.equal(parsed.params.groups[0]?.paths[0]?.state, 'failed');
  assert.equal(formatMultipathStatusLine(parsed), line);
});

const malformed: MalformedCase[] = [
  ['', 0, undefined, /number of feature fields/],
  ['3 1 0 0 0 0', 0, '3', /2 \(queue_io and pg_init_count\)/],
  ['2 2 0 0 0 0', 1, '2', /queue_io flag/],
  ['2 1 x 0 0 0', 2, 'x', /pg_init_count/],
  ['2 1 0 1', 4, undefined, /hardware handler status args 1 of 1/],
  ['2 1 0 0 1 0 E 0 1 0 8:0 A 0', 5, '0', /current priority group number of at least 1/],
  ['2 1 0 0 0 2', 5, '2', /current priority group number 0/],
  ['2 1 0 0 1 1 X 0 1 0 8:0 A 0', 6, 'X', /state of group 1 \(A, E or D\)/],
  ['2 1 0 0 1 1 E 0 0 0', 8, '0', /number of paths in group 1 .*at least 1/],
  ['2 1 0 0 1 1 E 0 1 0 8:0 B 0', 11, 'B', /state of path 1 in group 1 \(A or F\)/],
  ['2 1 0 0 1 1 E 0 1 0 8:0 F one', 12, 'one', /fail count of path 1 in group 1/],
  ['2 1 0 0 1 1 E 0 2 0 8:0 A 0', 13, undefined, /device of path 2 in group 1/],
  ['2 1 0 0 1 1 E 0 1 2 8:0 A 0 5', 14, undefined, /selector info arg of path 1 in group 1 2 of 2/],
  ['2 1 0 0 1 1 E 0 1 0 8:0 A 0 trailing', 13, 'trailing', /end of the input/],
  ['2 1 0 0 2 1 E 0 1 0 8:0 A 0', 13, undefined, /state of group 2/],
];

test('malformed statuses throw MultipathParseError naming the token, its index and the expectation', () => {
  assertParseErrors(parseMultipathStatus, malformed, 'multipath status');
});

test('the status builder refuses unsafe or inconsistent values', () => {
  const base = kernelCases[2]?.[1];
  assert.ok(base);
  const g = base.groups[0];
  assert.ok(g);
  const cases: Array<[MultipathStatus, string]> = [
    [{ ...base, pgInitCount: -1 }, 'pgInitCount'],
    [{ ...base, hardwareHandlerArgs: ['a b'] }, 'hardwareHandlerArgs[0]'],
    [{ ...base, currentGroup: 0 }, 'currentGroup'],
    [{ ...base, groups: [{ ...g, state: 'busy' as 'active' }] }, 'groups[0].state'],
    [{ ...base, groups: [{ ...g, selectorArgs: [''] }] }, 'groups[0].selectorArgs[0]'],
    [{ ...base, groups: [{ ...g, paths: [] }] }, 'groups[0].paths'],
    [{ ...base, groups: [{ ...g, paths: [path('8:0\n', 'active', 0)] }] }, 'groups[0].paths[0].device'],
    [{ ...base, groups: [{ ...g, paths: [path('8:0', 'gone' as 'failed', 0)] }] }, 'groups[0].paths[0].state'],
    [{ ...base, groups: [{ ...g, paths: [path('8:0', 'active', Number.NaN)] }] }, 'groups[0].paths[0].failCount'],
    [{ ...base, groups: [{ ...g, paths: [path('8:0', 'active', 0, '1'), path('8:16', 'active', 0)] }] }, 'groups[0].paths[1].selectorArgs'],
  ];
  for (const [st, field] of cases) {
    assert.throws(
      () => formatMultipathStatus(st),
      (err: unknown) => err instanceof MultipathValueError && err.field === field,
      field,
    );
  }
});

const plain = { noNullPrototype: true } as const;
const token = fc.stringMatching(/^[!-[\]-~]{1,8}$/);
const status: fc.Arbitrary<MultipathStatus> = fc
  .array(
    fc.nat({ max: 3 }).chain((n) =>
      fc.record(
        {
          state: fc.constantFrom('active' as const, 'enabled' as const, 'disabled' as const),
          selectorArgs: fc.array(token, { maxLength: 2 }),
          paths: fc.array(
            fc.record(
              {
                device: token,
                state: fc.constantFrom('active' as const, 'failed' as const),
                failCount: fc.nat(),
                selectorArgs: fc.array(token, { minLength: n, maxLength: n }),
              },
              plain,
            ),
            { minLength: 1, maxLength: 4 },
          ),
        },
        plain,
      ),
    ),
    { maxLength: 4 },
  )
  .chain((groups) =>
    fc.record(
      {
        queueIO: fc.boolean(),
        pgInitCount: fc.nat(),
        hardwareHandlerArgs: fc.array(token, { maxLength: 2 }),
        currentGroup: groups.length === 0 ? fc.constant(0) : fc.integer({ min: 1, max: groups.length }),
        groups: fc.constant(groups),
      },
      plain,
    ),
  );

test('property: any valid status survives format then parse, and its text survives parse then format', () => {
  fc.assert(
    fc.property(status, (st) => {
      const s = formatMultipathStatus(st);
      assert.deepStrictEqual(parseMultipathStatus(s), st);
      assert.equal(formatMultipathStatus(parseMultipathStatus(s)), s);
    }),
    { numRuns: 500 },
  );
});
