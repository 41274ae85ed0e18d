// The VM runner's pure parts: argv splitting, the job script's quoting and
// the initramfs module order. The runner's behaviour end to end is in test/runner/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitArgv, jobScript, shellQuote } from '../../scripts/vm/run';
import { moduleLoadOrder } from '../../scripts/vm/initramfs';
import { qemuArgs } from '../../scripts/vm/qemu';

const exec = async (file: string, args: string[]) => (await import('execa')).execa(file, args);

test('splitArgv stops at the first positional and at --', () => {
  assert.deepEqual(splitArgv(['--deadline', '30', 'node', '--test', 'x']), { options: ['--deadline', '30'], command: ['node', '--test', 'x'] });
  assert.deepEqual(splitArgv(['--verbose', '--', '--weird', 'a']), { options: ['--verbose'], command: ['--weird', 'a'] });
  assert.deepEqual(splitArgv(['sh', '-c', 'exit 3']), { options: [], command: ['sh', '-c', 'exit 3'] });
  assert.deepEqual(splitArgv(['--deadline=5', 'true']), { options: ['--deadline=5'], command: ['true'] });
});

test('the job script passes every argument through a real shell unchanged', async () => {
  const args = ['plain', 'with space', "it's", '$HOME', '`id`', 'a\nb', '', '"q"', '\\'];
  const script = jobScript(['node', '-e', 'process.stdout.write(JSON.stringify(process.argv.slice(1)))', ...args], process.cwd(), { MPW_X: "v'1" });
  const { stdout } = await exec('sh', ['-c', script]);
  assert.deepEqual(JSON.parse(stdout), args);
  assert.match(script, /export MPW_X='v'\\''1'/);
});

test('the job script refuses a variable name a shell would misread', () => {
  assert.throws(() => jobScript(['true'], '/', { 'A-B': '1' }), /bad variable name 'A-B'/);
  assert.throws(() => jobScript(['true'], '/', { 'A;rm': '1' }), /bad variable name/);
});

test('shellQuote quotes the empty string and single quotes', () => {
  assert.equal(shellQuote(''), "''");
  assert.equal(shellQuote("a'b"), `'a'\\''b'`);
});

test('moduleLoadOrder puts dependencies first, once, and skips built-ins', () => {
  const dep = [
    'kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko',
    'kernel/net/9p/9pnet.ko:',
    'kernel/fs/netfs/netfs.ko: kernel/fs/fscache/fscache.ko',
    'kernel/fs/fscache/fscache.ko:',
    'kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko',
    'kernel/fs/overlayfs/overlay.ko:',
  ].join('\n');
  const order = moduleLoadOrder(dep, ['9pnet-virtio', '9p', 'overlay', 'virtio_pci']);
  assert.deepEqual(order, [
    'kernel/net/9p/9pnet.ko',
    'kernel/net/9p/9pnet_virtio.ko',
    'kernel/fs/fscache/fscache.ko',
    'kernel/fs/netfs/netfs.ko',
    'kernel/fs/9p/9p.ko',
    'kernel/fs/overlayfs/overlay.ko',
  ]);
});

test('qemu runs under TCG, with no network, the host root read-only and no reboot', () => {
  const args = qemuArgs({
    kernel: { release: 'r', vmlinuz: '/k/vmlinuz', modulesDir: '/k/lib/modules/r' },
    initrd: '/i.cpio.gz', stage2: '/p/scripts/vm/stage2.sh', job: '/tmp/j/job.sh', runDir: '/tmp/j',
    deadlineMs: 1000, memoryMiB: 2048, cpus: 2, out: process.stdout, verbose: false, topology: 'iscsi',
  }, '/tmp/j/report');
  const joined = args.join(' ');
  assert.match(joined, /-accel tcg,thread=multi/);
  assert.match(joined, /-nic none/);
  assert.match(joined, /-no-reboot/);
  assert.match(joined, /readonly=on/);
  assert.match(joined, /-serial file:\/tmp\/j\/report/);
  const append = args[args.indexOf('-append') + 1] ?? '';
  assert.match(append, /mpw_job=\/tmp\/j\/job.sh/);
  assert.match(append, /mpw_modules=\/k\/lib\/modules\/r/);
  assert.match(append, /panic=-1/);
  assert.match(append, /mpw_topology=iscsi/);
});
