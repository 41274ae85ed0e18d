// The VM runner end to end, from the host: each test boots a real guest (or
// fails to, on purpose) and checks what the runner reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '..', '..', '..');
const runner = join(root, 'dist', 'scripts', 'vm', 'run.js');

async function vm(args: string[], env: Record<string, string> = {}) {
  const { execa } = await import('execa');
  const started = Date.now();
  const r = await execa(process.execPath, [runner, ...args], { reject: false, env, all: true });
  return { ...r, elapsedMs: Date.now() - started };
}

test("the guest command's exit status and output come back", { timeout: 240_000 }, async () => {
  const r = await vm(['--deadline', '180', '--', 'sh', '-c', 'echo "out:$(id -u):$(pwd)"; exit 7']);
  assert.equal(r.exitCode, 7, r.all);
  assert.match(r.stdout, new RegExp(`^out:0:${root}$`, 'm'));
  assert.match(r.stderr, /guest exited 7 after/);
});

test('the deadline kills a guest whose command is stuck in uninterruptible I/O', { timeout: 300_000 }, async () => {
  // A read of a suspended dm device sleeps in D state: no signal in the guest
  // can end it, only killing qemu can.
  const hang = [
    'set -e',
    'dev=$(for d in /sys/block/sd*; do grep -q scsi_debug $d/device/model && echo ${d##*/} && break; done)',
    'dmsetup create mpw-hang --table "0 8 linear /dev/$dev 0"',
    'dmsetup suspend mpw-hang',
    'echo suspended',
    'minor=$(dmsetup info -c --noheadings -o minor mpw-hang | tr -d " ")',
    'dd if=/dev/dm-$minor of=/dev/null bs=4096 count=1 iflag=direct',
    'echo "dd returned"',
  ].join('\n');
  const deadline = 60;
  const r = await vm(['--deadline', String(deadline), '--', 'sh', '-c', hang]);
  assert.equal(r.exitCode, 124, r.all);
  assert.match(r.stdout, /^suspended$/m);
  assert.doesNotMatch(r.stdout, /dd returned/);
  assert.match(r.stderr, /deadline of 60 s passed and the command was still running: killed qemu/);
  assert.ok(r.elapsedMs >= deadline * 1000, `runner returned after ${r.elapsedMs} ms, before its deadline`);
});

test('a missing qemu is a clear error with status 125', { timeout: 120_000 }, async () => {
  const r = await vm(['--', 'true'], { MPW_QEMU: 'qemu-system-nonexistent' });
  assert.equal(r.exitCode, 125, r.all);
  assert.match(r.stderr, /qemu-system-nonexistent not found: install qemu/);
});

test('a kernel that cannot be fetched is a clear error with status 125', { timeout: 120_000 }, async () => {
  const cache = await mkdtemp(join(tmpdir(), 'mpw-cache-'));
  try {
    const r = await vm(['--', 'true'], { MPW_CACHE_DIR: cache, MPW_KERNEL_PACKAGE: 'linux-image-0.0.0-0-nonexistent-amd64' });
    assert.equal(r.exitCode, 125, r.all);
    assert.match(r.stderr, /cannot fetch the guest kernel: 'apt-get download linux-image-0\.0\.0-0-nonexistent-amd64' failed/);
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
});

test('bad runner options are refused with status 2 before anything boots', { timeout: 60_000 }, async () => {
  const r = await vm(['--deadline', 'soon', '--', 'true']);
  assert.equal(r.exitCode, 2, r.all);
  assert.match(r.stderr, /--deadline must be a positive integer, got 'soon'/);
  const none = await vm(['--deadline', '10']);
  assert.equal(none.exitCode, 2);
  assert.match(none.stderr, /no command given/);
});

test('the iscsi topology gives two LIO paths, one per portal, with one WWID', { timeout: 300_000 }, async () => {
  const show = 'for d in /sys/block/sd*; do grep -q LIO-ORG $d/device/vendor && echo "lio ${d##*/} $(cat $d/device/wwid)"; done; iscsiadm -m session';
  const r = await vm(['--deadline', '240', '--topology', 'iscsi', '--', 'sh', '-c', show]);
  assert.equal(r.exitCode, 0, r.all);
  const paths = [...r.stdout.matchAll(/^lio (sd\w+) (\S+)$/gm)];
  assert.equal(paths.length, 2, r.stdout);
  assert.equal(paths[0]?.[2], paths[1]?.[2]);
  assert.match(paths[0]?.[2] ?? '', /^naa\.6001405/);
  assert.match(r.stdout, /127\.0\.0\.1:3260,1 iqn\.2026-11\.org\.mpath-watchdog:lun0/);
  assert.match(r.stdout, /127\.0\.0\.2:3260,1 iqn\.2026-11\.org\.mpath-watchdog:lun0/);
});

test('--kernel newest --root trixie boots the newest Debian kernel on Debian 13, the checkout and its trixie build in place', { timeout: 400_000 }, async () => {
  const show = [
    'echo "kernel $(uname -r)"',
    'echo "debian $(cat /etc/debian_version)"',
    'echo "cwd $(pwd)"',
    'node -e \'const {DirectDevice}=require("./dist/lib/io"); console.log("liburing " + DirectDevice.liburingVersion)\'',
    'echo "mpath $(multipath -h 2>&1 | sed -n "s/^multipath-tools v\\([0-9.]*\\).*/\\1/p" | head -1)"',
    'lsmod | grep -q "^dm_multipath " && echo "dm_multipath loaded"',
  ].join('; ');
  const r = await vm(['--deadline', '300', '--kernel', 'newest', '--root', 'trixie', '--', 'sh', '-c', show]);
  assert.equal(r.exitCode, 0, r.all);
  const kernel = /^kernel (\d+)\.(\d+)/m.exec(r.stdout);
  assert.ok(kernel, r.stdout);
  // Newer than trixie's own 6.12: trixie-backports had 7.3 when this was written.
  assert.ok(Number(kernel[1]) > 7 || (Number(kernel[1]) === 7 && Number(kernel[2]) >= 3), `newest kernel is ${kernel[0]}`);
  assert.match(r.stdout, /^debian 13\./m);
  assert.match(r.stdout, new RegExp(`^cwd ${root}$`, 'm'));
  // The addon the guest loads is the one built against trixie's liburing, not the host's.
  assert.match(r.stdout, /^liburing 2\.(9|\d\d)/m);
  assert.match(r.stdout, /^mpath 0\.(1[1-9]|[2-9]\d)/m);
  assert.match(r.stdout, /^dm_multipath loaded$/m);
});

test('a guest kernel that crashes before stage 2 is booted once more; twice is a clear failure', { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mpw-fakeqemu-'));
  try {
    // A qemu whose first run prints an early-boot oops and exits, as the real one did once.
    const fake = join(dir, 'qemu');
    const { writeFile, chmod } = await import('node:fs/promises');
    await writeFile(fake, `#!/bin/sh\nif [ ! -e ${dir}/crashed ] || [ -n "$ALWAYS" ]; then touch ${dir}/crashed; echo '[    2.30] Oops: int3: 0000 [#1] SMP NOPTI'; exit 0; fi\nexec qemu-system-x86_64 "$@"\n`);
    await chmod(fake, 0o755);
    const once = await vm(['--deadline', '180', '--', 'sh', '-c', 'echo second-boot-ran'], { MPW_QEMU: fake });
    assert.equal(once.exitCode, 0, once.all);
    assert.match(once.stderr, /the guest kernel crashed while booting, before stage 2.*; booting once more/);
    assert.match(once.stdout, /^second-boot-ran$/m);
    const always = await vm(['--deadline', '60', '--', 'true'], { MPW_QEMU: fake, ALWAYS: '1' });
    assert.equal(always.exitCode, 125, always.all);
    assert.match(always.stderr, /vm: error: the guest kernel crashed while booting, before stage 2/);
    assert.equal((always.stderr.match(/booting once more/g) ?? []).length, 1, 'one retry, not more');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an unknown kernel or root is refused with status 2 before anything boots', { timeout: 60_000 }, async () => {
  const k = await vm(['--kernel', 'sid', '--', 'true']);
  assert.equal(k.exitCode, 2, k.all);
  assert.match(k.stderr, /--kernel must be a major\.minor version/);
  const r = await vm(['--root', 'sid', '--', 'true']);
  assert.equal(r.exitCode, 2, r.all);
  assert.match(r.stderr, /--root must be one of host, trixie, got 'sid'/);
});

test('an unknown topology is refused with status 2', { timeout: 60_000 }, async () => {
  const r = await vm(['--topology', 'fc', '--', 'true']);
  assert.equal(r.exitCode, 2, r.all);
  assert.match(r.stderr, /--topology must be scsi_debug or iscsi, got 'fc'/);
});
