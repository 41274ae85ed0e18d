#!/usr/bin/env bash
# Sets up a fresh Debian 12 (bookworm) or 13 (trixie) machine for mpath-watchdog,
# as root: the apt packages (Node 20 from Debian where Debian ships it), the npm
# dependencies and the native build; the guest kernels the test VM boots (Linux
# 6.1 and the newest Debian kernel) and the Debian 13 root the newer tiers run
# in, all cached under ~/.cache/mpath-watchdog.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (apt-get install, and the VM shares / read-only)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# qemu + busybox-static + cpio + kmod + xz-utils: the VM and its initramfs
# (Debian 13's kernels ship .ko.xz); dmsetup, multipath-tools, fio, valgrind:
# oracles, peers and checkers used in the guest (it sees this machine's root);
# liburing-dev: the io_uring engine; open-iscsi, nftables, udev: the iSCSI
# topology (LIO target and initiator in the guest); mmdebstrap: the Debian 13
# root; vagrant: offline validation of vagrant/Vagrantfile.
pkgs=(build-essential python3 pkg-config liburing-dev
  qemu-system-x86 busybox-static cpio gzip kmod xz-utils
  dmsetup multipath-tools fio valgrind util-linux iproute2
  open-iscsi nftables udev procps mmdebstrap debian-archive-keyring vagrant)

# Node >= 20.5: Debian 13 ships 20.19 (nodejs, npm); on Debian 12 (18.x) it must come from elsewhere.
node_ok() { node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=5)?0:1)' 2>/dev/null; }
if ! node_ok; then
  candidate=$(apt-cache policy nodejs | sed -n 's/^ *Candidate: *//p')
  if dpkg --compare-versions "${candidate:-0}" ge 20.5; then
    pkgs+=(nodejs npm)
  else
    echo "setup: Node.js >= 20.5 is needed and this Debian offers nodejs ${candidate:-none}; install Node 20 first (Debian 13 ships it)" >&2
    exit 1
  fi
fi
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
node_ok || { echo "setup: node $(node --version 2>&1) is older than 20.5" >&2; exit 1; }

npm ci --no-audit --no-fund
npm run build
# Resolve, download (70 MB, once) and unpack the default guest kernel (6.1); build the initramfs.
npm run vm:kernel
# The newest Debian kernel (trixie-backports, about 125 MB once) and the Debian 13
# root (mmdebstrap, about 300 MB once), with the addon built in it.
npm run vm:kernel -- --kernel newest --root trixie
