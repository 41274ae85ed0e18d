// The native dm code under valgrind: no invalid access, no definite leak, on
// the success and error paths alike (see test/vm/helpers/dm-exercise.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

test('dm control under valgrind: no memory errors, no definite leaks', { timeout: 600_000 }, async () => {
  const { execa } = await import('execa');
  const script = join(__dirname, '..', 'vm', 'helpers', 'dm-exercise.js');
  const r = await execa(
    'valgrind',
    ['--error-exitcode=99', '--leak-check=full', '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite', '--track-fds=yes', process.execPath, script],
    { env: { MPW_DM_EXERCISE: '1' }, reject: false, all: true },
  );
  const out = String(r.all);
  assert.equal(r.exitCode, 0, out.slice(-6000));
  assert.match(out, /dm exercise: ok/);
  assert.match(out, /ERROR SUMMARY: 0 errors/);
  // --track-fds: at exit only stdio and the one shared control fd are open.
  assert.doesNotMatch(out, /Open file descriptor \d+: \/dev\/mapper\/control[\s\S]*Open file descriptor \d+: \/dev\/mapper\/control/);
});
