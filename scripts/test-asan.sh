#!/usr/bin/env bash
# The native I/O engine under AddressSanitizer, on the host: the addon rebuilt
# with -fsanitize=address (binding.gyp's asan variable), the engine's unit
# tests (both backends, on loop devices) run with the ASan runtime preloaded
# into node, then the normal build put back whatever happened. This covers the
# io_uring backend, which valgrind 3.19 cannot run (it holds its lock across
# io_uring_enter). Leak checking is off here: node itself is not instrumented
# and leaves its heap at exit; valgrind checks leaks in test:vm:native.
set -euo pipefail
cd "$(dirname "$0")/.."

restore() { npx node-gyp rebuild >/dev/null 2>&1 || { echo "test:asan: could not rebuild the normal addon" >&2; exit 1; }; }
trap restore EXIT

npx node-gyp rebuild --asan=1 >/dev/null
# grep reads all of nm's output (no -q): under pipefail an early exit would SIGPIPE nm.
if ! nm -D build/Release/mpath_watchdog.node | grep __asan_init >/dev/null; then
  echo "test:asan: the addon was not built with -fsanitize=address" >&2
  exit 1
fi
runtime=$(gcc -print-file-name=libasan.so)
[ -e "$runtime" ] || { echo "test:asan: no ASan runtime ($runtime): install gcc's libasan" >&2; exit 1; }
LD_PRELOAD=$runtime ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  node --test --test-reporter=spec dist/test/unit/direct-device.test.js dist/test/unit/timed-device.test.js
