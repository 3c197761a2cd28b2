#!/usr/bin/env bash
# Fetches the Debian packages the build needs (headers, libraries, CMake and pkg-config files)
# and unpacks them into .deps/ at the repository root, for a GPU machine that has CUDA, CMake and
# a compiler but none of our packages and no network: carry .deps with the run and
# tools/device_check.sh points the build at it (see docs/gpu.md).
#   tools/fetch_device_deps.sh        fetch, unpack, prune, print the size
# Needs apt-get (Debian/Ubuntu) and network access on this machine; never installs anything.
set -euo pipefail
cd "$(dirname "$0")/.."

deps_dir=.deps
# The build needs these -dev packages and the runtime libraries they link to. libopenblas-dev is
# a meta package whose chain resolves to the pthread flavour; its libraries need libgfortran5 and
# libquadmath0. pkgconf is for machines without pkg-config (CMake's FindPkgConfig needs one).
packages=(
  catch2
  libcli11-dev
  libtomlplusplus-dev libtomlplusplus3
  libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libgfortran5 libquadmath0
  libzstd-dev libzstd1
  zlib1g-dev zlib1g
  pkgconf pkgconf-bin libpkgconf3
)

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "fetch_device_deps.sh: needs apt-get and dpkg (a Debian or Ubuntu machine)" >&2
  exit 1
fi

download_dir=$(mktemp -d)
trap 'rm -rf "$download_dir"' EXIT

fetch() { (cd "$download_dir" && apt-get download -q "${packages[@]}"); }
if ! fetch; then
  echo "fetch_device_deps.sh: apt-get download failed; refreshing the package lists and retrying"
  apt-get update -q
  fetch
fi

rm -rf "$deps_dir"
mkdir -p "$deps_dir"
for deb in "$download_dir"/*.deb; do
  dpkg -x "$deb" "$deps_dir"
  echo "unpacked $(basename "$deb")"
done

# Links with absolute targets (zlib1g-dev's libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13) would
# lead to the device machine's own files, or nowhere: point them into .deps, relatively.
find "$deps_dir" -type l -lname '/*' | while read -r link; do
  target=$(readlink "$link")
  if [ -e "$deps_dir$target" ]; then ln -sfnr "$deps_dir$target" "$link"; fi
done

# What the build and the tests never read: documentation, OpenBLAS's static archive (we link the
# shared library) and the BLAS/LAPACK shims of its alternatives. Other static archives stay: the
# CMake package files of Catch2 and zstd check that the files they name exist.
rm -rf "$deps_dir"/usr/share/doc "$deps_dir"/usr/share/man "$deps_dir"/usr/share/lintian \
  "$deps_dir"/usr/share/aclocal
openblas_dir="$deps_dir"/usr/lib/x86_64-linux-gnu/openblas-pthread
rm -f "$openblas_dir"/*.a "$openblas_dir"/libblas.so* "$openblas_dir"/liblapack.so*
find "$deps_dir" -xtype l -delete  # links left dangling by the pruning

# The pkg-config files keep prefix=/usr; device_check.sh rewrites copies of them to wherever the
# repository lands on the device machine. Record what was fetched for the run's summary.
{
  echo "# Debian packages unpacked into .deps by tools/fetch_device_deps.sh on $(date -u +%F)"
  for deb in "$download_dir"/*.deb; do dpkg-deb -f "$deb" Package Version | paste -sd' '; done
} >"$deps_dir/PACKAGES"

size_kib=$(du -sk "$deps_dir" | cut -f1)
echo "fetch_device_deps.sh: $deps_dir holds $((size_kib / 1024)) MiB (the device run may carry" \
  "64 MiB in all, working tree included)"
if ((size_kib > 56 * 1024)); then
  echo "fetch_device_deps.sh: WARNING: $deps_dir is over 56 MiB; the working tree may not fit" >&2
fi
