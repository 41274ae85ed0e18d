#!/bin/sh
# Guest set-up shared by the qemu runner (scripts/vm/stage2.sh) and
# vagrant/Vagrantfile: load the device-mapper modules and create two
# scsi_debug hosts that show one LUN, i.e. two real SCSI paths with the same
# WWID and shared data. Idempotent: a second run changes nothing.
#
#   guest-setup.sh [scsi_debug|iscsi]
# iscsi adds the LIO + open-iscsi topology of scripts/guest-iscsi.sh (two
# network paths to one LUN) beside the scsi_debug paths.
set -eu
topology=${1:-scsi_debug}
case "$topology" in
  scsi_debug|iscsi) ;;
  *) echo "guest-setup: unknown topology '$topology' (scsi_debug or iscsi)" >&2; exit 2 ;;
esac

for m in sd_mod dm_mod dm_multipath dm_round_robin dm_queue_length dm_service_time dm_delay dm_flakey loop; do
  modprobe "$m" || { echo "guest-setup: modprobe $m failed" >&2; exit 1; }
done

if [ ! -d /sys/module/scsi_debug ]; then
  # vpd_use_hostno=0 gives both hosts' LUN the same naa. WWID.
  modprobe scsi_debug add_host=2 num_tgts=1 vpd_use_hostno=0 dev_size_mb=64 \
    || { echo "guest-setup: modprobe scsi_debug failed" >&2; exit 1; }
fi

# The disks appear asynchronously (SCSI scan); wait for both nodes, 30 s at most.
scsi_debug_disks() {
  for d in /sys/block/sd*; do
    [ -e "$d/device/model" ] || continue
    case "$(cat "$d/device/model")" in
      scsi_debug*) [ -b "/dev/${d##*/}" ] && echo "${d##*/}" ;;
    esac
  done
}
i=0
while [ "$(scsi_debug_disks | wc -l)" -lt 2 ]; do
  i=$((i + 1))
  if [ "$i" -gt 300 ]; then
    echo "guest-setup: scsi_debug disks did not appear within 30 s (found: $(scsi_debug_disks | tr '\n' ' '))" >&2
    exit 1
  fi
  sleep 0.1
done

if [ "$topology" = iscsi ]; then
  sh "$(dirname "$0")/guest-iscsi.sh"
fi
