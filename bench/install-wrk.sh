#!/usr/bin/env bash
# Install wrk into TOOLS_DIR (default .tools) without installing any package: the distribution's
# wrk and LuaJIT packages are downloaded (apt-get download) and unpacked (dpkg -x) under
# TOOLS_DIR/debroot, and TOOLS_DIR/bin/wrk runs that wrk with that LuaJIT. Debian and Ubuntu.
set -euo pipefail

TOOLS_DIR=${TOOLS_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.tools}
PACKAGES=(wrk libluajit-5.1-2 libluajit-5.1-common)
debs="$TOOLS_DIR/debs"
root="$TOOLS_DIR/debroot"
wrapper="$TOOLS_DIR/bin/wrk"

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "bench-tools: no apt-get/dpkg here; install wrk 4.x and put it on PATH" >&2
  exit 1
fi
if ! apt-cache policy wrk 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench-tools: apt knows no wrk package; run 'apt-get update' as root first" >&2
    exit 1
  fi
  apt-get update -qq
fi

rm -rf "$debs" "$root"
mkdir -p "$debs" "$root" "$(dirname "$wrapper")"
# As root, apt would hand the download to its unprivileged _apt user, who cannot write here.
sandbox=()
if [ "$(id -u)" = 0 ]; then sandbox=(-o APT::Sandbox::User=root); fi
(cd "$debs" && apt-get download -qq "${sandbox[@]}" "${PACKAGES[@]}")
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$root"; done

libdir=$(cd "$root" && find . -name 'libluajit-5.1.so*' -printf '%h\n' | head -n 1)
if [ ! -x "$root/usr/bin/wrk" ] || [ -z "$libdir" ]; then
  echo "bench-tools: the packages did not hold usr/bin/wrk and libluajit-5.1" >&2
  exit 1
fi
cat >"$wrapper" <<WRAPPER
#!/bin/sh
# wrk unpacked by bench/install-wrk.sh, with the LuaJIT unpacked beside it.
root="\$(dirname "\$(readlink -f "\$0")")/../debroot"
LD_LIBRARY_PATH="\$root/${libdir#./}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$root/usr/bin/wrk" "\$@"
WRAPPER
chmod +x "$wrapper"
{ "$wrapper" --version || true; } | head -n 1  # wrk prints its version with its usage, and exits 1
