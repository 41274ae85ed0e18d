#!/bin/sh
# iSCSI topology for the guest: the kernel's LIO target exports one fileio LUN
# on two loopback portals, and open-iscsi logs in to both, so the LUN shows as
# two SCSI paths with one WWID that a network fault can hit one at a time.
# Configured through configfs by hand: targetcli is too slow under TCG and
# needs D-Bus (measured in the VM). Needs udev running for multipathd; starts it.
set -eu

IQN=${MPW_ISCSI_IQN:-iqn.2026-11.org.mpath-watchdog:lun0}
PORTALS=${MPW_ISCSI_PORTALS:-"127.0.0.1 127.0.0.2"}
SIZE_MB=${MPW_ISCSI_SIZE_MB:-64}
BACKING=/run/mpw-iscsi-lun0.img

die() { echo "guest-iscsi: $*" >&2; exit 1; }

for m in configfs target_core_mod target_core_file iscsi_target_mod iscsi_tcp crc32c_generic nf_tables; do
  modprobe "$m" 2>/dev/null || [ "$m" = configfs ] || [ "$m" = crc32c_generic ] || die "modprobe $m failed"
done
mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config || die "mount configfs"

T=/sys/kernel/config/target
if [ ! -d "$T/iscsi/$IQN" ]; then
  truncate -s "${SIZE_MB}M" "$BACKING"
  so=$T/core/fileio_0/lun0
  mkdir -p "$so" || die "create the fileio backstore"
  echo "fd_dev_name=$BACKING,fd_dev_size=$((SIZE_MB * 1024 * 1024))" > "$so/control"
  # A stable unit serial gives both sessions' disks the same VPD 0x83 WWID.
  echo "5eed0000d15c0001" > "$so/wwn/vpd_unit_serial"
  echo 1 > "$so/enable" || die "enable the fileio backstore"

  tpg=$T/iscsi/$IQN/tpgt_1
  mkdir -p "$tpg/lun/lun_0" || die "create the iSCSI target $IQN"
  ln -s "$so" "$tpg/lun/lun_0/mpw_port"
  for p in $PORTALS; do
    mkdir "$tpg/np/$p:3260" || die "create portal $p:3260"
  done
  # Demo mode: any initiator, no CHAP, writable.
  echo 0 > "$tpg/attrib/authentication"
  echo 1 > "$tpg/attrib/generate_node_acls"
  echo 1 > "$tpg/attrib/cache_dynamic_acls"
  echo 0 > "$tpg/attrib/demo_mode_write_protect"
  echo 1 > "$tpg/enable" || die "enable the target portal group"
fi

# udev: multipathd and iscsiadm's device naming want it (measured in the VM: switch
# root, not chroot, or udevadm refuses to run).
if ! pgrep -x systemd-udevd >/dev/null 2>&1; then
  /lib/systemd/systemd-udevd --daemon || die "start systemd-udevd"
  # Only block devices matter to multipathd; a full trigger costs ~20 s under TCG.
  udevadm trigger --action=add --subsystem-match=block >/dev/null 2>&1 || true
fi

echo "guest-iscsi: target ready after $(cut -d' ' -f1 /proc/uptime) s" >&2
pgrep -x iscsid >/dev/null 2>&1 || iscsid || die "start iscsid"
first=${PORTALS%% *}
iscsiadm -m discovery -t sendtargets -p "$first:3260" >/dev/null || die "discovery on $first:3260 failed"
for p in $PORTALS; do
  iscsiadm -m node -T "$IQN" -p "$p:3260" --login >/dev/null 2>&1 \
    || iscsiadm -m session 2>/dev/null | grep -q "$p:3260" \
    || die "login to $p:3260 failed"
done

# Wait for one disk per portal, 30 s at most.
iscsi_disks() {
  for d in /sys/block/sd*; do
    [ -e "$d/device/vendor" ] || continue
    case "$(cat "$d/device/vendor")" in LIO-ORG*) [ -b "/dev/${d##*/}" ] && echo "${d##*/}" ;; esac
  done
}
want=$(echo $PORTALS | wc -w)
i=0
while [ "$(iscsi_disks | wc -l)" -lt "$want" ]; do
  i=$((i + 1))
  [ "$i" -le 300 ] || die "iSCSI disks did not appear within 30 s (found: $(iscsi_disks | tr '\n' ' '))"
  sleep 0.1
done
udevadm settle --timeout=30 || true
echo "guest-iscsi: $want paths logged in after $(cut -d' ' -f1 /proc/uptime) s" >&2
