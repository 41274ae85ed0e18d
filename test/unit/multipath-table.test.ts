// The table grammar against strings the 6.1 kernel printed (dmsetup table in the
// test VM) and hand-written tables, malformed ones included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  parseMultipathTable,
  formatMultipathTable,
  summarizeFeatures,
  parseMultipathTableLine,
  formatMultipathTableLine,
  parseTargetLine,
  formatTargetLine,
  MultipathParseError,
  MultipathValueError,
  type MultipathTable,
  type MultipathFeature,
  type TablePathGroup,
} from '../../lib/multipath';
import { assertParseErrors, type MalformedCase } from './helpers/parse-errors';

const rr = (devs: string[], arg = '1'): TablePathGroup => ({
  selector: 'round-robin',
  selectorArgs: [],
  paths: devs.map((device) => ({ device, args: [arg] })),
});
const st = (devs: string[]): TablePathGroup => ({
  selector: 'service-time',
  selectorArgs: [],
  paths: devs.map((device) => ({ device, args: ['1', '1'] })),
});

// Exactly as `dmsetup table` printed the params on Debian's 6.1 kernel (trailing space included).
const kernelCases: Array<[string, MultipathTable]> = [
  ['0 0 1 1 round-robin 0 2 1 8:0 1 8:16 1 ', { features: [], hardwareHandler: null, initialGroup: 1, groups: [rr(['8:0', '8:16'])] }],
  [
    '1 queue_if_no_path 0 2 2 queue-length 0 1 1 8:0 1 queue-length 0 1 1 8:16 1 ',
    {
      features: [{ kind: 'queue_if_no_path' }],
      hardwareHandler: null,
      initialGroup: 2,
      groups: [
        { selector: 'queue-length', selectorArgs: [], paths: [{ device: '8:0', args: ['1'] }] },
        { selector: 'queue-length', selectorArgs: [], paths: [{ device: '8:16', args: ['1'] }] },
      ],
    },
  ],
  [
    '3 retain_attached_hw_handler queue_mode bio 0 1 1 service-time 0 2 2 8:0 1 1 8:16 1 1 ',
    {
      features: [{ kind: 'retain_attached_hw_handler' }, { kind: 'queue_mode', mode: 'bio' }],
      hardwareHandler: null,
      initialGroup: 1,
      groups: [st(['8:0', '8:16'])],
    },
  ],
  [
    '2 pg_init_retries 5 0 1 1 service-time 0 2 2 8:0 1 1 8:16 1 1 ',
    { features: [{ kind: 'pg_init_retries', value: 5 }], hardwareHandler: null, initialGroup: 1, groups: [st(['8:0', '8:16'])] },
  ],
  [
    '2 pg_init_delay_msecs 100 0 1 1 round-robin 0 2 1 8:0 1 8:16 1 ',
    { features: [{ kind: 'pg_init_delay_msecs', value: 100 }], hardwareHandler: null, initialGroup: 1, groups: [rr(['8:0', '8:16'])] },
  ],
  ['0 0 0 0 ', { features: [], hardwareHandler: null, initialGroup: 0, groups: [] }],
  [
    '0 0 2 2 round-robin 0 1 1 8:0 1 round-robin 0 1 1 8:16 1 ',
    { features: [], hardwareHandler: null, initialGroup: 2, groups: [rr(['8:0']), rr(['8:16'])] },
  ],
  ['0 1 alua 1 1 service-time 0 1 2 8:0 1 5 ', {
    features: [],
    hardwareHandler: { name: 'alua', args: [] },
    initialGroup: 1,
    groups: [{ selector: 'service-time', selectorArgs: [], paths: [{ device: '8:0', args: ['1', '5'] }] }],
  }],
];

// Hand-written tables as a person or multipathd would load them (no trailing space).
const handCases: Array<[string, MultipathTable]> = [
  [
    '2 queue_mode rq 0 1 1 service-time 0 2 2 8:0 1 1 8:16 1 1',
    { features: [{ kind: 'queue_mode', mode: 'rq' }], hardwareHandler: null, initialGroup: 1, groups: [st(['8:0', '8:16'])] },
  ],
  [
    '7 pg_init_delay_msecs 0 queue_mode mq queue_if_no_path pg_init_retries 50 3 rdac opt1 opt2 1 1 round-robin 0 2 0 /dev/sdb /dev/sdc',
    {
      features: [
        { kind: 'pg_init_delay_msecs', value: 0 },
        { kind: 'queue_mode', mode: 'mq' },
        { kind: 'queue_if_no_path' },
        { kind: 'pg_init_retries', value: 50 },
      ],
      hardwareHandler: { name: 'rdac', args: ['opt1', 'opt2'] },
      initialGroup: 1,
      groups: [{ selector: 'round-robin', selectorArgs: [], paths: [{ device: '/dev/sdb', args: [] }, { device: '/dev/sdc', args: [] }] }],
    },
  ],
  [
    '2 no_partitions future_flag 0 1 1 historical-service-time 2 a b 1 3 8:0 x y z',
    {
      features: [{ kind: 'unknown', token: 'no_partitions' }, { kind: 'unknown', token: 'future_flag' }],
      hardwareHandler: null,
      initialGroup: 1,
      groups: [{ selector: 'historical-service-time', selectorArgs: ['a', 'b'], paths: [{ device: '8:0', args: ['x', 'y', 'z'] }] }],
    },
  ],
];
test('kernel table strings parse to the expected model and format back byte for byte', () => {
  for (const [s, t] of kernelCases) {
    assert.deepStrictEqual(parseMultipathTable(s), t, s);
    assert.equal(formatMultipathTable(parseMultipathTable(s)), s);
    assert.deepStrictEqual(parseMultipathTable(formatMultipathTable(t)), t);
  }
});

test('hand-written tables round-trip without the trailing space', () => {
  for (const [s, t] of handCases) {
    assert.deepStrictEqual(parseMultipathTable(s), t, s);
    assert.equal(formatMultipathTable(parseMultipathTable(s), { trailingSpace: false }), s);
    assert.equal(formatMultipathTable(t), `${s} `, 'the default is the kernel form, with the trailing space');
  }
});

test('runs of whitespace and a final newline are read as single separators', () => {
  const t = parseMultipathTable('  0\t0 1  1 round-robin 0 1 1 8:0 1\n');
  assert.deepStrictEqual(t, { features: [], hardwareHandler: null, initialGroup: 1, groups: [rr(['8:0'])] });
  assert.equal(formatMultipathTable(t), '0 0 1 1 round-robin 0 1 1 8:0 1 ');
});

test('summarizeFeatures folds the list, last value winning', () => {
  const s = summarizeFeatures([
    { kind: 'pg_init_retries', value: 3 },
    { kind: 'queue_if_no_path' },
    { kind: 'pg_init_retries', value: 7 },
    { kind: 'queue_mode', mode: 'bio' },
    { kind: 'unknown', token: 'x' },
  ]);
  assert.deepStrictEqual(s, {
    queueIfNoPath: true,
    retainAttachedHwHandler: false,
    queueMode: 'bio',
    pgInitRetries: 7,
    pgInitDelayMsecs: undefined,
    unknown: ['x'],
  });
});

const malformed: MalformedCase[] = [
  ['', 0, undefined, /number of feature args/],
  ['x 0 0 0', 0, 'x', /number of feature args/],
  ['-1 0 0 0', 0, '-1', /unsigned decimal/],
  ['01 queue_if_no_path 0 0 0', 0, '01', /unsigned decimal/],
  ['99999999999999999999 0 0 0', 0, '99999999999999999999', /below 2\^53/],
  ['1', 1, undefined, /feature args 1 of 1/],
  ['2 queue_mode', 2, undefined, /feature args 2 of 2/],
  ['1 queue_mode 0 0 0', 2, '0', /bio, rq or mq after queue_mode/],
  ['2 queue_mode fast 0 0 0', 2, 'fast', /bio, rq or mq/],
  ['2 pg_init_retries x 0 0 0', 2, 'x', /pg_init_retries value/],
  ['2 pg_init_delay_msecs 007 0 0 0', 2, '007', /pg_init_delay_msecs value/],
  ['1 Queue_If_No_Path 0 0 0', 1, 'Queue_If_No_Path', /lower case/],
  ['0 x', 1, 'x', /hardware handler args/],
  ['0 2 alua', 3, undefined, /hardware handler args 2 of 2/],
  ['0 0', 2, undefined, /number of priority groups/],
  ['0 0 1', 3, undefined, /initial priority group/],
  ['0 0 1 0 round-robin 0 1 0 8:0', 3, '0', /initial priority group number of at least 1/],
  ['0 0 0 1', 3, '1', /initial priority group number 0 \(there are no groups\)/],
  ['0 0 1 1', 4, undefined, /path selector name of group 1/],
  ['0 0 1 1 round-robin x 1 0 8:0', 5, 'x', /selector args of group 1/],
  ['0 0 1 1 round-robin 0 0 0', 6, '0', /number of paths in group 1 .*at least 1/],
  ['0 0 1 1 round-robin 0 1 y 8:0', 7, 'y', /per-path args in group 1/],
  ['0 0 1 1 round-robin 0 2 1 8:0 1', 10, undefined, /device of path 2 in group 1/],
  ['0 0 1 1 round-robin 0 2 1 8:0 1 8:16', 11, undefined, /arg of path 2 in group 1 1 of 1/],
  ['0 0 1 1 round-robin 0 1 1 8:0 1 extra', 10, 'extra', /end of the input/],
  ['0 0 2 1 round-robin 0 1 0 8:0', 9, undefined, /path selector name of group 2/],
  ['0 0 1 1 round-robin 0 1 0 8:0\\ ', 8, '8:0\\', /without a backslash or NUL/],
  ['0 0 1 1 round-robin 0 1 0 8:\u00000', 8, '8:\u00000', /without a backslash or NUL/],
];

test('malformed tables throw MultipathParseError naming the token, its index and the expectation', () => {
  assertParseErrors(parseMultipathTable, malformed, 'multipath table');
});

const base: MultipathTable = { features: [], hardwareHandler: null, initialGroup: 1, groups: [rr(['8:0', '8:16'])] };
const withPath = (device: string): MultipathTable => ({ ...base, groups: [rr([device])] });

// [what, table, field named in the error]
const unsafe: Array<[string, MultipathTable, string]> = [
  ['a space in a device', withPath('sd b'), 'groups[0].paths[0].device'],
  ['a newline in a device', withPath('8:0\n0 1 linear'), 'groups[0].paths[0].device'],
  ['a tab in a device', withPath('8:0\t1'), 'groups[0].paths[0].device'],
  ['an empty device', withPath(''), 'groups[0].paths[0].device'],
  ['a NUL in a device', withPath('8:0\0'), 'groups[0].paths[0].device'],
  ['a backslash in a device', withPath('a\\ b'), 'groups[0].paths[0].device'],
  ['a space in a selector', { ...base, groups: [{ ...rr(['8:0']), selector: 'round robin' }] }, 'groups[0].selector'],
  ['an empty selector arg', { ...base, groups: [{ ...rr(['8:0']), selectorArgs: [''] }] }, 'groups[0].selectorArgs[0]'],
  ['a space in a path arg', { ...base, groups: [{ ...rr(['8:0']), paths: [{ device: '8:0', args: ['1 2'] }] }] }, 'groups[0].paths[0].args[0]'],
  ['a space in a handler name', { ...base, hardwareHandler: { name: 'al ua', args: [] } }, 'hardwareHandler.name'],
  ['a newline in a handler arg', { ...base, hardwareHandler: { name: 'alua', args: ['x\ny'] } }, 'hardwareHandler.args[0]'],
  ['a space in an unknown feature', { ...base, features: [{ kind: 'unknown', token: 'a b' }] }, 'features[0].token'],
  ['a known name as an unknown feature', { ...base, features: [{ kind: 'unknown', token: 'QUEUE_MODE' }] }, 'features[0].token'],
  ['a negative pg_init_retries', { ...base, features: [{ kind: 'pg_init_retries', value: -1 }] }, 'features[0].value'],
  ['a fractional pg_init_delay_msecs', { ...base, features: [{ kind: 'pg_init_delay_msecs', value: 1.5 }] }, 'features[0].value'],
  ['a bad queue mode', { ...base, features: [{ kind: 'queue_mode', mode: 'fast' as 'bio' }] }, 'features[0].mode'],
  ['a bad feature kind', { ...base, features: [{ kind: 'nope' } as unknown as MultipathFeature] }, 'features[0].kind'],
  ['a group without paths', { ...base, groups: [{ ...rr([]) }] }, 'groups[0].paths'],
  [
    'paths with different arg counts',
    { ...base, groups: [{ selector: 'round-robin', selectorArgs: [], paths: [{ device: '8:0', args: ['1'] }, { device: '8:16', args: [] }] }] },
    'groups[0].paths[1].args',
  ],
  ['initial group 0 with groups', { ...base, initialGroup: 0 }, 'initialGroup'],
  ['initial group 1 without groups', { ...base, groups: [] }, 'initialGroup'],
  ['a fractional initial group', { ...base, initialGroup: 1.5 }, 'initialGroup'],
];

test('the builder refuses values that could inject tokens or break the counts', () => {
  for (const [what, table, field] of unsafe) {
    assert.throws(
      () => formatMultipathTable(table),
      (err: unknown) => {
        assert.ok(err instanceof MultipathValueError, `${what}: ${String(err)}`);
        assert.equal(err.field, field, `${what}: ${err.message}`);
        assert.ok(err.message.startsWith(`${field}: `), err.message);
        return true;
      },
      what,
    );
  }
});

test('whole table lines: dmsetup output parses, formats back exactly, and other targets are refused', () => {
  const line = '0 131072 multipath 1 queue_if_no_path 0 1 1 round-robin 0 2 1 8:0 1 8:16 1 ';
  const parsed = parseMultipathTableLine(`${line}\n`);
  assert.equal(parsed.start, 0);
  assert.equal(parsed.length, 131072);
  assert.deepStrictEqual(parsed.params.features, [{ kind: 'queue_if_no_path' }]);
  assert.equal(formatMultipathTableLine(parsed), line);
  assert.deepStrictEqual(parseTargetLine(line), { start: 0, length: 131072, targetType: 'multipath', params: line.slice(19) });
  assert.equal(formatTargetLine(parseTargetLine(line)), line);

  const lineCases: Array<[string, number, string | undefined]> = [
    ['0 100 linear 8:0 0', 2, 'linear'],
    ['x 100 multipath 0 0 0 0', 0, 'x'],
    ['0  100 multipath 0 0 0 0', 1, ''],
    ['0 100', 2, undefined],
    ['0 100 multipath 0 0 0 0\n0 100 multipath 0 0 0 0', 6, '0\n0'],
  ];
  for (const [input, index, token] of lineCases) {
    assert.throws(
      () => parseMultipathTableLine(input),
      (err: unknown) => err instanceof MultipathParseError && err.index === index && err.token === token && /^target line: /.test(err.message),
      input,
    );
  }
  assert.throws(() => formatTargetLine({ start: 0, length: 1, targetType: 'multi path', params: '' }), MultipathValueError);
  assert.throws(() => formatTargetLine({ start: 0, length: 1, targetType: 'multipath', params: '0 0 0 0\n0 1 linear' }), MultipathValueError);
  assert.throws(() => formatTargetLine({ start: -1, length: 1, targetType: 'multipath', params: '' }), MultipathValueError);
});

// Tokens as a table may hold them: printable ASCII without space or backslash.
const token = fc.stringMatching(/^[!-[\]-~]{1,10}$/);
const count = fc.nat({ max: 100000 });
// Parsed objects have Object.prototype; deepStrictEqual compares prototypes.
const plain = { noNullPrototype: true } as const;
const KNOWN = ['queue_if_no_path', 'retain_attached_hw_handler', 'queue_mode', 'pg_init_retries', 'pg_init_delay_msecs'];
const feature: fc.Arbitrary<MultipathFeature> = fc.oneof(
  fc.constant({ kind: 'queue_if_no_path' as const }),
  fc.constant({ kind: 'retain_attached_hw_handler' as const }),
  fc.constantFrom('bio' as const, 'rq' as const, 'mq' as const).map((mode) => ({ kind: 'queue_mode' as const, mode })),
  count.map((value) => ({ kind: 'pg_init_retries' as const, value })),
  count.map((value) => ({ kind: 'pg_init_delay_msecs' as const, value })),
  token.filter((t) => !KNOWN.includes(t.toLowerCase())).map((t) => ({ kind: 'unknown' as const, token: t })),
);
const group: fc.Arbitrary<TablePathGroup> = fc.nat({ max: 3 }).chain((argCount) =>
  fc.record({
    selector: token,
    selectorArgs: fc.array(token, { maxLength: 3 }),
    paths: fc.array(fc.record({ device: token, args: fc.array(token, { minLength: argCount, maxLength: argCount }) }, plain), { minLength: 1, maxLength: 4 }),
  }, plain),
);
const table: fc.Arbitrary<MultipathTable> = fc.array(group, { maxLength: 4 }).chain((groups) =>
  fc.record({
    features: fc.array(feature, { maxLength: 6 }),
    hardwareHandler: fc.option(fc.record({ name: token, args: fc.array(token, { maxLength: 3 }) }, plain), { nil: null }),
    initialGroup: groups.length === 0 ? fc.constant(0) : fc.integer({ min: 1, max: groups.length }),
    groups: fc.constant(groups),
  }, plain),
);

test('property: any valid table survives format then parse, and its text survives parse then format', () => {
  fc.assert(
    fc.property(table, fc.boolean(), (t, trailingSpace) => {
      const s = formatMultipathTable(t, { trailingSpace });
      assert.deepStrictEqual(parseMultipathTable(s), t);
      assert.equal(formatMultipathTable(parseMultipathTable(s), { trailingSpace }), s);
      assert.equal(s.endsWith(' '), trailingSpace);
    }),
    { numRuns: 500 },
  );
});
