#!/usr/bin/env bash
# Builds the local base image for machines that reach Debian's mirror but no image registry: a
# debootstrap minbase of bookworm with Debian's python3 (3.11, as the lock needs), python3-venv (the
# builder makes a venv for pip and uv) and ca-certificates (TLS from the running service), imported
# into podman. The root filesystem's tar is cached, so a second run only imports it, or does nothing.
#
#   podman/base-image.sh IMAGE CACHE_DIR      e.g. localhost/auth-service-base:bookworm .tools/base
#
# The mirror is the one this machine's apt uses for bookworm (DEBIAN_MIRROR overrides it). Only the
# bookworm suite: no security updates; the public base that `make image BASE_IMAGE=...` takes has them.
set -euo pipefail

IMAGE=${1:?usage: base-image.sh IMAGE CACHE_DIR}
CACHE_DIR=${2:?usage: base-image.sh IMAGE CACHE_DIR}
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
TAR="$CACHE_DIR/$SUITE-python3.tar"

if podman image exists "$IMAGE"; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] && [ ! -s "$TAR" ]; then
    echo "base-image: debootstrap needs root; run as root or build on a public base (make image BASE_IMAGE=...)" >&2
    exit 1
fi

mirror() {
    [ -n "${DEBIAN_MIRROR:-}" ] && { echo "$DEBIAN_MIRROR"; return; }
    # shellcheck disable=SC2016 # $(SITE) and $(RELEASE) are apt's placeholders, not the shell's
    apt-get indextargets --format '$(SITE) $(RELEASE)' 'Identifier: Packages' 2>/dev/null |
        awk -v suite="$SUITE" '$2 == suite { print $1; exit }' | grep . || echo http://deb.debian.org/debian
}

if [ ! -s "$TAR" ]; then
    mkdir -p "$CACHE_DIR"
    root=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    # --one-file-system: never into a /proc or /dev that a failed debootstrap left mounted in the root.
    trap 'rm -rf --one-file-system "$root" "$TAR.partial"' EXIT
    url=$(mirror)
    echo "base-image: debootstrap --variant=minbase $SUITE from $url (+ $PACKAGES)" >&2
    started=$SECONDS
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$url" >"$CACHE_DIR/debootstrap.log" 2>&1 ||
        { tail -20 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }
    # What an image does not need: the package cache and lists, documentation, the locales.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*
    tar --numeric-owner --xattrs -C "$root" -cf "$TAR.partial" .
    mv "$TAR.partial" "$TAR"
    echo "base-image: root filesystem in $TAR ($(du -h "$TAR" | cut -f1), $((SECONDS - started)) s)" >&2
fi

# The metadata the public python images carry: PATH, a UTF-8 locale, python3 as the command.
podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase $SUITE + $PACKAGES" \
    "$TAR" "$IMAGE" >/dev/null
echo "base-image: imported $IMAGE" >&2
