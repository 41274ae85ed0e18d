#!/bin/busybox sh
# Stage 1 (initramfs /init): reach the host's root over 9p, put a tmpfs
# overlay on it, and switch_root into it. Any failure powers off at once: the
# runner sees no "booted" report and fails loudly with the console's tail.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
  echo "mpw-init: $*" >&2
  poweroff -f
  sleep 5
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"

for m in $(cat /modules/order); do
  insmod "/modules/$m" || fail "insmod $m"
done

stage2= root= binds=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    mpw_stage2=*) stage2=${arg#mpw_stage2=} ;;
    mpw_root=*) root=${arg#mpw_root=} ;;
    mpw_binds=*) binds=${arg#mpw_binds=} ;;
  esac
done
[ -n "$stage2" ] || fail "no mpw_stage2= on the kernel command line"

# A large msize and loose caching: the share is read-only and the host's files
# do not change under a run, and node loads many small files at start.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower \
  || fail "mount the host root over 9p (mount_tag hostroot)"
# The guest's root is the host's, or (mpw_root=) another userland kept in the
# host's filesystem, such as the cached Debian 13 root; either way read-only
# with a tmpfs on top.
[ -d "/lower$root/usr/bin" ] || fail "guest root $root not found in the host root"
mount -t tmpfs -o mode=0755 rw /rw || fail "mount tmpfs for the overlay"
mkdir -p /rw/upper /rw/work
mount -t overlay -o "lowerdir=/lower$root,upperdir=/rw/upper,workdir=/rw/work" overlay /newroot \
  || fail "mount the overlay"
# mpw_binds=FROM:TO,…: host directories shown at TO in that root, each
# writable through an overlay of its own, as the host root is.
i=0
for b in $(echo "$binds" | tr ',' ' '); do
  from=${b%%:*} to=${b#*:}
  i=$((i + 1))
  [ -d "/lower$from" ] || fail "bind source $from not found in the host root"
  mkdir -p "/rw/b$i/upper" "/rw/b$i/work" "/newroot$to" || fail "make the mount point $to"
  mount -t overlay -o "lowerdir=/lower$from,upperdir=/rw/b$i/upper,workdir=/rw/b$i/work" overlay "/newroot$to" \
    || fail "show $from at $to"
done
[ -r "/newroot$stage2" ] || fail "stage 2 script $stage2 not found in the guest root"

for d in dev proc sys; do
  mount --move "/$d" "/newroot/$d" || fail "move /$d"
done
exec switch_root /newroot /bin/sh "$stage2"
