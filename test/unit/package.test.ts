// The package as a user loads it: through require and import by name, with
// the native addon behind it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { compiledDmVersion } from '../../lib/index';

const root = resolve(__dirname, '..', '..', '..');
const node = async (args: string[]) => (await import('execa')).execa(process.execPath, args, { cwd: root });

test('the addon reports the dm ioctl interface it was compiled against (major 4)', () => {
  const v = compiledDmVersion();
  assert.equal(v.major, 4);
  assert.ok(Number.isInteger(v.minor) && v.minor >= 0);
  assert.ok(Number.isInteger(v.patch) && v.patch >= 0);
});

test("require('mpath-watchdog') works", async () => {
  const { stdout } = await node(['-e', "process.stdout.write(JSON.stringify(require('mpath-watchdog').compiledDmVersion()))"]);
  assert.deepEqual(JSON.parse(stdout), compiledDmVersion());
});

test("import { compiledDmVersion } from 'mpath-watchdog' works", async () => {
  const { stdout } = await node(['--input-type=module', '-e', "import { compiledDmVersion } from 'mpath-watchdog'; process.stdout.write(JSON.stringify(compiledDmVersion()))"]);
  assert.deepEqual(JSON.parse(stdout), compiledDmVersion());
});

test('the CLI prints its version and rejects an unknown command with status 2', async () => {
  const { stdout } = await node(['dist/lib/cli/main.js', '--version']);
  assert.match(stdout, /^mpath-watchdog \d+\.\d+\.\d+ \(dm ioctl 4\.\d+\.\d+\)$/m);
  const bad = await (await import('execa')).execa(process.execPath, ['dist/lib/cli/main.js', 'frobnicate'], { cwd: root, reject: false });
  assert.equal(bad.exitCode, 2);
  assert.match(bad.stderr, /unknown command 'frobnicate'/);
});
