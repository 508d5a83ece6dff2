#!/usr/bin/env bash
# Installs the container engine the image targets use, from the distribution's packages, when missing:
# podman with runc (crun refuses hybrid cgroup hosts), rootless helpers, and debootstrap for the local
# base image, and catatonit, the pause process of the pods `podman kube play` makes. Debian and Ubuntu
# only; anywhere else it says what to install and stops.
set -euo pipefail

PACKAGES=(podman runc uidmap fuse-overlayfs slirp4netns debootstrap catatonit)
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "podman/install.sh: install ${missing[*]} with your system's package manager" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
