#!/usr/bin/env bash
# One entry point for a fresh Debian/Ubuntu machine: installs the Debian packages the build needs
# (when missing), configures and builds, then runs what was asked.
#   tools/dev.sh demo   build, then run `drgrad demo`
#   tools/dev.sh test   build, then run the whole test suite through CTest
#   tools/dev.sh build  build only
# Environment: BUILD_DIR (default build), DRGRAD_CUDA (AUTO|ON|OFF, default AUTO),
# DRGRAD_WARNINGS_AS_ERRORS (OFF), JOBS (number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:-build}"
shift || true
build_dir="${BUILD_DIR:-build}"
jobs="${JOBS:-$(nproc)}"

packages=(build-essential cmake ninja-build pkg-config catch2 libopenblas-dev libtomlplusplus-dev
          libcli11-dev libzstd-dev zlib1g-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  echo "dev.sh: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if [ ! -f "$build_dir/build.ninja" ]; then
  # ccache, when installed, makes rebuilds in fresh build folders cheap; it is not required.
  launcher=()
  command -v ccache >/dev/null &&
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DDRGRAD_CUDA="${DRGRAD_CUDA:-AUTO}" \
    -DDRGRAD_WARNINGS_AS_ERRORS="${DRGRAD_WARNINGS_AS_ERRORS:-OFF}" "${launcher[@]}"
fi
cmake --build "$build_dir" -j "$jobs"

case "$action" in
  build) ;;
  demo) exec "$build_dir/tools/drgrad" demo "$@" ;;
  test) cd "$build_dir" && exec ctest --output-on-failure -j "$jobs" "$@" ;;
  *) echo "dev.sh: unknown action '$action' (use demo, test or build)" >&2; exit 2 ;;
esac
