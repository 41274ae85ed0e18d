// The VM runner's pure parts: argv splitting, the job script's quoting and
// the initramfs module order. The runner's behaviour end to end is in test/runner/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitArgv, jobScript, shellQuote } from '../../scripts/vm/run';
import { moduleLoadOrder } from '../../scripts/vm/initramfs';
import { qemuArgs, tcgThreads } from '../../scripts/vm/qemu';
import { forcedRelease, kernelParts, majorMinor, parseKernelSpec, suiteSources } from '../../scripts/vm/kernel';
import { checkPlainPath } from '../../scripts/vm/plain-path';
import { VmError } from '../../scripts/vm/errors';

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
  assert.equal(tcgThreads('6.1.0-57-amd64'), 'multi');
  assert.equal(tcgThreads('6.12.48+deb13-amd64'), 'multi');
  assert.equal(tcgThreads('7.3.4+deb13-amd64'), 'single');
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

test('--kernel takes a major.minor, a suite or newest, and refuses anything else with status 2', () => {
  assert.deepEqual(parseKernelSpec('6.1'), { version: '6.1' });
  assert.deepEqual(parseKernelSpec('7.3'), { version: '7.3' });
  assert.deepEqual(parseKernelSpec('trixie-backports'), { suite: 'trixie-backports' });
  assert.deepEqual(parseKernelSpec('newest'), { newest: true });
  for (const bad of ['6', '6.1.0', 'sid', '', '6.1;reboot', 'latest']) {
    assert.throws(() => parseKernelSpec(bad), (e: unknown) => e instanceof VmError && e.exitCode === 2 && /--kernel must be/.test(e.message), bad);
  }
});

test('majorMinor reads Debian 12 and 13 release names', () => {
  assert.equal(majorMinor('6.1.0-57-amd64'), '6.1');
  assert.equal(majorMinor('6.12.117+deb13-amd64'), '6.12');
  assert.equal(majorMinor('7.3.4+deb13-amd64'), '7.3');
  assert.throws(() => majorMinor('amd64'), VmError);
});

test("kernelParts takes 7.x's split packages of the same release, never the image's tools", () => {
  // apt-cache depends linux-image-7.3.4+deb13-amd64, as trixie-backports prints it.
  const split = [
    'linux-image-7.3.4+deb13-amd64',
    ' |Depends: dracut',
    ' |Depends: initramfs-tools',
    '  Depends: linux-initramfs-tool',
    '  Depends: linux-base-7.3.4+deb13-amd64',
    '  Depends: linux-binary-7.3.4+deb13-amd64',
    '  Depends: linux-modules-7.3.4+deb13-amd64',
    '  Depends: linux-modules-7.2.1+deb13-amd64',
    ' PreDepends: linux-base',
    '  Recommends: apparmor',
  ].join('\n');
  assert.deepEqual(kernelParts('linux-image-7.3.4+deb13-amd64', '7.3.4+deb13-amd64', split).sort(), [
    'linux-base-7.3.4+deb13-amd64', 'linux-binary-7.3.4+deb13-amd64', 'linux-image-7.3.4+deb13-amd64', 'linux-modules-7.3.4+deb13-amd64',
  ]);
  // 6.x: one package holds kernel and modules.
  const whole = 'linux-image-6.1.0-57-amd64\n  Depends: kmod\n  Depends: linux-base\n |Depends: initramfs-tools\n';
  assert.deepEqual(kernelParts('linux-image-6.1.0-57-amd64', '6.1.0-57-amd64', whole), ['linux-image-6.1.0-57-amd64']);
});

test('each suite is looked up with its updates and security, backports alone, all signed by the archive keyring', () => {
  const m = 'http://deb.debian.org/debian';
  const t = suiteSources('trixie', m).trim().split('\n');
  assert.equal(t.length, 3);
  assert.ok(t.every((l) => l.includes('[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]')));
  assert.match(t[0] ?? '', / http:\/\/deb\.debian\.org\/debian trixie main$/);
  assert.match(t[1] ?? '', / trixie-updates main$/);
  assert.match(t[2] ?? '', / http:\/\/deb\.debian\.org\/debian-security trixie-security main$/);
  assert.deepEqual(suiteSources('trixie-backports', m).trim().split('\n').length, 1);
});

test('paths that go onto the kernel command line must be plain', () => {
  assert.equal(checkPlainPath('/tmp/ci/main'), '/tmp/ci/main');
  assert.equal(checkPlainPath('/root/.cache/mpath-watchdog/kernel/7.3.4+deb13-amd64'), '/root/.cache/mpath-watchdog/kernel/7.3.4+deb13-amd64');
  for (const bad of ['relative/path', '/with space', '/a:b', '/a,b', '/a\nb', '/$(id)']) {
    assert.throws(() => checkPlainPath(bad), VmError, bad);
  }
});

test('another root goes onto the command line with its binds', () => {
  const args = qemuArgs({
    kernel: { release: 'r', vmlinuz: '/k/vmlinuz', modulesDir: '/k/lib/modules/r' },
    initrd: '/i.cpio.gz', stage2: '/p/scripts/vm/stage2.sh', job: '/tmp/j/job.sh', runDir: '/tmp/j',
    deadlineMs: 1000, memoryMiB: 2048, cpus: 2, out: process.stdout, verbose: false, topology: 'scsi_debug',
    root: '/c/root/trixie-x', binds: [{ from: '/p', to: '/p' }, { from: '/p/build-trixie', to: '/p/build' }],
  }, '/tmp/j/report');
  const append = args[args.indexOf('-append') + 1] ?? '';
  assert.match(append, /(^| )mpw_root=\/c\/root\/trixie-x( |$)/);
  assert.match(append, /(^| )mpw_binds=\/p:\/p,\/p\/build-trixie:\/p\/build( |$)/);
});

test('qemuArgs refuses any command-line path a space or a quote would break, before qemu starts', () => {
  const base = {
    kernel: { release: 'r', vmlinuz: '/k/vmlinuz', modulesDir: '/k/lib/modules/r' },
    initrd: '/i.cpio.gz', stage2: '/p/scripts/vm/stage2.sh', job: '/tmp/j/job.sh', runDir: '/tmp/j',
    deadlineMs: 1000, memoryMiB: 2048, cpus: 2, out: process.stdout, verbose: false, topology: 'scsi_debug' as const,
  };
  // A TMPDIR with a space would split the command line; this one would also override stage 2.
  assert.throws(() => qemuArgs({ ...base, job: '/tmp/x mpw_stage2=/evil/job.sh' }, '/r'), VmError);
  assert.throws(() => qemuArgs({ ...base, stage2: '/my project/scripts/vm/stage2.sh' }, '/r'), VmError);
  assert.throws(() => qemuArgs({ ...base, kernel: { ...base.kernel, modulesDir: "/c'ache/lib/modules/r" } }, '/r'), VmError);
  assert.throws(() => qemuArgs({ ...base, binds: [{ from: '/a b', to: '/a' }] }, '/r'), VmError);
  assert.ok(qemuArgs(base, '/r').includes('-append'));
});

test('MPW_KERNEL_PACKAGE must be a linux-image package name made of Debian package characters', () => {
  assert.equal(forcedRelease('linux-image-7.3.4+deb13-amd64'), '7.3.4+deb13-amd64');
  for (const bad of ["linux-image-6.1'x", 'linux-image-6.1 mpw_stage2=/x', 'linux-headers-6.1.0-57-amd64', 'linux-image-']) {
    assert.throws(() => forcedRelease(bad), (e: unknown) => e instanceof VmError && e.exitCode === 2, bad);
  }
});
