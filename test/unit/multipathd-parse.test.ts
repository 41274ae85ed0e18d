// Parsing `show paths|maps raw format "…"` replies (fields joined with '|').
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAP_FIELDS, MultipathdError, PATH_FIELDS, formatOf, parseFormatted, toMap, toPath } from '../../lib/multipathd';

test('formatOf joins the wildcards with |', () => {
  assert.equal(formatOf(PATH_FIELDS), '%d|%D|%m|%t|%T|%o|%w');
  assert.equal(formatOf(MAP_FIELDS), '%n|%w|%d|%t|%N');
});

test('show paths: raw lines, a path in no map, a checker state with a space', () => {
  const reply = [
    'sdc|8:32|36001405abc|active|ready|running|36001405abc',
    'sdd|8:48|36001405abc|failed|i/o pending|running|36001405abc',
    'sda|8:0|[orphan]|undef|undef|running|35333333000000001',
    '',
  ].join('\n');
  const paths = parseFormatted(reply, PATH_FIELDS).map(toPath);
  assert.deepEqual(paths, [
    { dev: 'sdc', devno: '8:32', map: '36001405abc', dmState: 'active', checkerState: 'ready', deviceState: 'running', wwid: '36001405abc' },
    { dev: 'sdd', devno: '8:48', map: '36001405abc', dmState: 'failed', checkerState: 'i/o pending', deviceState: 'running', wwid: '36001405abc' },
    { dev: 'sda', devno: '8:0', map: undefined, dmState: 'undef', checkerState: 'undef', deviceState: 'running', wwid: '35333333000000001' },
  ]);
});

test('show paths: a padded header line (no raw) is skipped, padding trimmed', () => {
  const reply = 'dev |dev_t|multipath  |dm_st |chk_st|dev_st |uuid\nsdc |8:32 |mpatha     |active|ready |running|3600\n';
  const [p, ...rest] = parseFormatted(reply, PATH_FIELDS).map(toPath);
  assert.equal(rest.length, 0);
  assert.equal(p?.dev, 'sdc');
  assert.equal(p?.map, 'mpatha');
});

test('show maps: records, and a bare ok (no maps) is an empty list', () => {
  assert.deepEqual(parseFormatted('36001405abc|36001405abc|dm-0|active|2\n', MAP_FIELDS).map(toMap), [
    { name: '36001405abc', wwid: '36001405abc', sysfs: 'dm-0', dmState: 'active', paths: 2 },
  ]);
  assert.deepEqual(parseFormatted('ok\n', MAP_FIELDS), []);
  assert.deepEqual(parseFormatted('', MAP_FIELDS), []);
});

test('a line with the wrong number of fields is a protocol error naming the line', () => {
  assert.throws(
    () => parseFormatted('a|b|c|d|2\nname uuid\n', MAP_FIELDS, 'show maps'),
    (e: unknown) => e instanceof MultipathdError && e.code === 'protocol' && /line 2 .* has 1 fields, expected 5/.test(e.message) && e.reply === 'a|b|c|d|2\nname uuid\n',
  );
});
