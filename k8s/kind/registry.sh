#!/bin/sh
# A local image registry for the kind cluster of cluster.yaml, as kind's local-registry guide sets one
# up (https://kind.sigs.k8s.io/docs/user/local-registry/): a registry container on 127.0.0.1:5001, each
# node's containerd told that localhost:5001 is that container, and the discovery ConfigMap for Tilt.
# Run it after `kind create cluster --config k8s/kind/cluster.yaml`; it is idempotent.
set -eu

# kind's node provider: docker, or podman (KIND_EXPERIMENTAL_PROVIDER=podman; `make image` uses podman).
engine=${KIND_EXPERIMENTAL_PROVIDER:-docker}
cluster=$(sed -n 's/^name: *//p' "$(dirname "$0")/cluster.yaml")
reg_name=kind-registry
reg_port=5001

if [ "$("$engine" inspect -f '{{.State.Running}}' "$reg_name" 2>/dev/null || true)" != true ]; then
  "$engine" run -d --restart=always -p "127.0.0.1:${reg_port}:5000" --network bridge --name "$reg_name" registry:3
fi

# localhost inside a node is the node itself: alias localhost:5001 to the registry container.
registry_dir="/etc/containerd/certs.d/localhost:${reg_port}"
for node in $(kind get nodes --name "$cluster"); do
  "$engine" exec "$node" mkdir -p "$registry_dir"
  printf '[host."http://%s:5000"]\n' "$reg_name" | "$engine" exec -i "$node" cp /dev/stdin "${registry_dir}/hosts.toml"
done

if [ "$("$engine" inspect -f '{{json .NetworkSettings.Networks.kind}}' "$reg_name")" = null ]; then
  "$engine" network connect kind "$reg_name"
fi

kubectl --context "kind-${cluster}" apply -f "$(dirname "$0")/local-registry-hosting.yaml"
