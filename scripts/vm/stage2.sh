#!/bin/sh
# Stage 2: PID 1 in the guest's overlay root (the host's root, read-only, with
# a tmpfs on top). Sets up the guest, runs the job, reports on ttyS1 and powers
# off. The runner reads ttyS1: "booted", "ready", then "exit N".
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8

report() { echo "$*" > /dev/ttyS1; }

job= modules= topology=scsi_debug
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    mpw_job=*) job=${arg#mpw_job=} ;;
    mpw_modules=*) modules=${arg#mpw_modules=} ;;
    mpw_topology=*) topology=${arg#mpw_topology=} ;;
  esac
done

mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# A copy on tmpfs: the final poweroff must not depend on the 9p share.
cp /bin/busybox /run/busybox 2>/dev/null || cp /usr/bin/busybox /run/busybox

halt() {
  sync
  /run/busybox poweroff -f
  sleep 10
}

# The serial console would turn \n into \r\n in the job's output.
stty -F /dev/console -onlcr 2>/dev/null
# Keep the kernel's own messages off the job's output; errors still show.
echo 3 > /proc/sys/kernel/printk
report booted

# kmod's modprobe (the host's) reads /lib/modules/$(uname -r); the kernel's
# own module loader runs it too, so the cached tree goes exactly there.
release=$(uname -r)
if [ -n "$modules" ] && [ -d "$modules" ]; then
  mkdir -p "/lib/modules/$release"
  mount --bind "$modules" "/lib/modules/$release"
fi
hostname mpw-guest 2>/dev/null
ip link set lo up 2>/dev/null

here=$(dirname "$0")
mkdir -p /run/lock
if ! sh "$here/../guest-setup.sh" "$topology"; then
  report "setup-failed"
  halt
fi
report ready

if [ -z "$job" ] || [ ! -r "$job" ]; then
  echo "mpw-stage2: job script '$job' not readable" >&2
  report "setup-failed"
  halt
fi
sh "$job" < /dev/null
report "exit $?"
halt
