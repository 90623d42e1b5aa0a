#!/usr/bin/env bash
# Cross-compiles the C++ tests for AArch64 and runs them under qemu user-mode
# emulation, so the NEON kernels get checked against the scalar reference on
# an x86 machine. Not part of scripts/test.sh: emulation is slow and CI time
# is tight. Extra arguments name other test programs to run (default:
# test_kernels test_ops).
set -euo pipefail
cd "$(dirname "$0")/.."

CXX_CROSS=aarch64-linux-gnu-g++
SYSROOT=/usr/aarch64-linux-gnu
if ! command -v "$CXX_CROSS" >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  echo "== installing the AArch64 cross compiler and qemu-user"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq g++-aarch64-linux-gnu qemu-user
fi

echo "== cross build (build/neon)"
# Setting CMAKE_SYSTEM_NAME marks the build as cross-compiled, so CMake takes
# CMAKE_SYSTEM_PROCESSOR as given and CMakeLists.txt picks neon.cpp.
nice -n 19 cmake -S . -B build/neon -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_CXX_COMPILER="$CXX_CROSS" \
  -DEMBEDQ_BUILD_PYTHON=OFF -DEMBEDQ_BUILD_TESTS=ON >/dev/null
TESTS=("$@")
[ ${#TESTS[@]} -gt 0 ] || TESTS=(test_kernels test_ops)
nice -n 19 cmake --build build/neon -j2 --target "${TESTS[@]}"

status=0
for t in "${TESTS[@]}"; do
  echo "== $t (qemu-aarch64)"
  # The bound only stops a hung emulation; the tests take seconds to minutes.
  if ! timeout 1800 qemu-aarch64 -L "$SYSROOT" "build/neon/$t" | tee "build/neon/$t.log"; then
    echo "FAILED: $t under qemu-aarch64" >&2
    status=1
  fi
done
# A build that silently left out the NEON set would pass the comparisons
# without testing anything.
if [ -f build/neon/test_kernels.log ] && ! grep -Eq '^neon +(ok|FAILED)$' build/neon/test_kernels.log; then
  echo "FAILED: test_kernels did not run the neon kernel set" >&2
  status=1
fi
[ $status -eq 0 ] && echo "== NEON tests passed" || echo "== NEON tests FAILED" >&2
exit $status
