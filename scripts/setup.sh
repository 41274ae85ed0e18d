#!/usr/bin/env bash
# Sets up a fresh Debian (bookworm) machine for mpath-watchdog, as root: the
# apt packages, the npm dependencies and the native build, and the stock Debian
# kernel the test VM boots (cached under ~/.cache/mpath-watchdog).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (apt-get install, and the VM shares / read-only)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# qemu + busybox-static + cpio + kmod: the VM and its initramfs; dmsetup,
# multipath-tools, fio, valgrind: oracles, peers and checkers used in the guest
# (it sees this machine's root); liburing-dev: the io_uring engine; vagrant:
# offline validation of vagrant/Vagrantfile; open-iscsi, nftables, udev: the
# iSCSI topology (LIO target and initiator in the guest).
apt-get install -y -qq --no-install-recommends \
  build-essential python3 pkg-config liburing-dev \
  qemu-system-x86 busybox-static cpio gzip kmod \
  dmsetup multipath-tools fio valgrind util-linux iproute2 \
  open-iscsi nftables udev procps \
  vagrant >/dev/null

npm ci --no-audit --no-fund
npm run build
# Resolve, download (70 MB, once) and unpack the guest kernel; build the initramfs.
npm run vm:kernel
