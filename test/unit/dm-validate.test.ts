// Input checks of the DeviceMapper client: bad input is a DmError before any ioctl.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DmError } from '../../lib/dm';
import { checkName, checkTable, checkUuid, parseTableText, resolveRef } from '../../lib/dm/validate';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof DmError, String(e));
    return e.code;
  }
  return 'no error';
}

test('names: 127 bytes pass, 128 are ENAMETOOLONG (counted in UTF-8 bytes), / and NUL are EINVAL', () => {
  assert.equal(checkName('x'.repeat(127), 'DM_DEV_CREATE'), 'x'.repeat(127));
  assert.equal(code(() => checkName('x'.repeat(128), 'DM_DEV_CREATE')), 'ENAMETOOLONG');
  assert.equal(code(() => checkName('é'.repeat(64), 'DM_DEV_CREATE')), 'ENAMETOOLONG');
  for (const bad of ['', 'a/b', 'a\0b', '.', '..']) assert.equal(code(() => checkName(bad, 'DM_DEV_CREATE')), 'EINVAL', JSON.stringify(bad));
});

test('uuids: 128 bytes pass, 129 are ENAMETOOLONG; an empty uuid cannot address a device', () => {
  assert.equal(checkUuid('u'.repeat(128), 'DM_DEV_CREATE', 'x'), 'u'.repeat(128));
  assert.equal(code(() => checkUuid('u'.repeat(129), 'DM_DEV_CREATE', 'x')), 'ENAMETOOLONG');
  assert.equal(code(() => resolveRef({ uuid: '' }, 'DM_DEV_STATUS')), 'EINVAL');
  assert.deepEqual(resolveRef({ uuid: 'U-1' }, 'DM_DEV_STATUS').raw, { uuid: 'U-1' });
  assert.deepEqual(resolveRef('m', 'DM_DEV_STATUS').raw, { name: 'm' });
});

test('table text splits into targets, params kept verbatim inside the line', () => {
  assert.deepEqual(parseTableText('0 8 linear 8:0 0\n8 16 multipath 0 0 1 1 round-robin 0 1 1 8:16 1\n\n', 'm'), [
    { start: 0, length: 8, type: 'linear', params: '8:0 0' },
    { start: 8, length: 16, type: 'multipath', params: '0 0 1 1 round-robin 0 1 1 8:16 1' },
  ]);
  assert.deepEqual(parseTableText('0 8 error', 'm'), [{ start: 0, length: 8, type: 'error', params: '' }]);
  assert.equal(code(() => parseTableText('0 linear', 'm')), 'EINVAL');
});

test('tables must be non-empty, contiguous from 0, with sane types and params', () => {
  const t = (start: number, length: number, type = 'linear', params = '8:0 0') => ({ start, length, type, params });
  assert.equal(checkTable([t(0, 8), t(8, 8)], 'm').length, 2);
  const bad: unknown[] = [
    [],
    [t(8, 8)],
    [t(0, 8), t(16, 8)],
    [t(0, 0)],
    [t(0, -1)],
    [t(0, 1.5)],
    [t(0, 8, 'a type')],
    [t(0, 8, 'x'.repeat(16))],
    [t(0, 8, 'linear', 'a\nb')],
    [t(0, 8, 'linear', 'a\0b')],
    [{ start: 0, length: 8, type: 'linear' }],
  ];
  for (const b of bad) assert.equal(code(() => checkTable(b as never, 'm')), 'EINVAL', JSON.stringify(b));
});
