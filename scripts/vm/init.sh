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

stage2=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    mpw_stage2=*) stage2=${arg#mpw_stage2=} ;;
  esac
done
[ -n "$stage2" ] || fail "no mpw_stage2= on the kernel command line"

# A large msize and loose caching: the share is read-only and the host's files
# do not change under a run, and node loads many small files at start.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower \
  || fail "mount the host root over 9p (mount_tag hostroot)"
mount -t tmpfs -o mode=0755 rw /rw || fail "mount tmpfs for the overlay"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
  || fail "mount the overlay"
[ -r "/newroot$stage2" ] || fail "stage 2 script $stage2 not found in the host root"

for d in dev proc sys; do
  mount --move "/$d" "/newroot/$d" || fail "move /$d"
done
exec switch_root /newroot /bin/sh "$stage2"
