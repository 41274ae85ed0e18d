#!/usr/bin/env bash
# `npm test`: every tier, in order, each timed; a summary table at the end.
# Every tier runs even when an earlier one failed (one CI run tells all that
# is wrong); the exit status is non-zero if any failed.
#
# Tiers: the host's unit tier on both userlands (this machine's, and Debian 13's
# in its cached root), the runner's own tier, the VM tiers on Linux 6.1 with the
# host's userland, the VM tiers on the newest Debian kernel with Debian 13's
# userland, valgrind in the VM and ASan on the host.
set -uo pipefail
cd "$(dirname "$0")/.."

TIERS=(
  build
  test:unit
  test:unit:trixie
  test:runner
  test:vm
  test:vm:iscsi
  test:vm:native
  test:vm:newest
  test:vm:iscsi:newest
  test:asan
)

# Ctrl-C stops the whole run, not just the tier it lands in.
trap 'echo; echo "=== interrupted ==="; exit 130' INT TERM

declare -a rows
failed=0
for t in "${TIERS[@]}"; do
  start=$SECONDS
  echo "=== $t ==="
  if npm run --silent "$t"; then status=ok; else status="FAILED ($?)"; failed=1; fi
  took=$((SECONDS - start))
  rows+=("$(printf '%-22s %-12s %4d min %02d s' "$t" "$status" $((took / 60)) $((took % 60)))")
  # Nothing runs on a build that did not happen.
  if [ "$t" = build ] && [ "$failed" -ne 0 ]; then break; fi
done

echo
echo "=== summary (total $((SECONDS / 60)) min $((SECONDS % 60)) s) ==="
printf '%s\n' "${rows[@]}"
exit "$failed"
