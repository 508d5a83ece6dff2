##@ Image

# podman as Debian bookworm packages it (4.3), with the project's settings for these machines.
PODMAN := CONTAINERS_CONF=$(CURDIR)/podman/containers.conf podman
IMAGE := localhost/auth-service
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' $(SERVICE)/pyproject.toml | head -1)
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# A public base, e.g. the Dockerfile's default (docker.io/library/python:3.11.14-slim-bookworm@sha256:...).
# Unset: the local base, debootstrapped from the apt mirror (no image registry is reachable here).
BASE_IMAGE ?=
LOCAL_BASE_IMAGE := localhost/auth-service-base:bookworm
# The repository's URL for the org.opencontainers.image.source label, e.g. from CI (none is derived
# from the git remote: its URL can carry credentials).
IMAGE_SOURCE ?=
# Where TLS is intercepted, the build's downloads need the host's CA bundle: a build secret, in no layer.
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
, := ,
IMAGE_BUILD_ARGS = --build-arg BASE_IMAGE=$(or $(BASE_IMAGE),$(LOCAL_BASE_IMAGE)) --build-arg UV_VERSION=$(UV_VERSION) \
	--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg SOURCE=$(IMAGE_SOURCE) \
	$(if $(wildcard $(CA_BUNDLE)),--secret id=ca-bundle$(,)src=$(CA_BUNDLE))

.PHONY: image-engine
image-engine: ## Install podman, runc and debootstrap from the distribution's packages when missing
	@podman/install.sh

.PHONY: image-base
image-base: image-engine ## Build the local base image (debootstrap bookworm + python3), its tar cached in .tools/base
	CONTAINERS_CONF=$(CURDIR)/podman/containers.conf podman/base-image.sh $(LOCAL_BASE_IMAGE) $(TOOLS)/base

.PHONY: image
image: image-engine $(if $(BASE_IMAGE),,image-base) ## Build localhost/auth-service:VERSION and :dev (BASE_IMAGE=<ref>: on a public base)
	$(PODMAN) build $(IMAGE_BUILD_ARGS) -t $(IMAGE):$(VERSION) -t $(IMAGE):dev $(SERVICE)
	@echo "image: $(IMAGE):$(VERSION) and :dev, $$($(PODMAN) images --format '{{.Size}}' $(IMAGE):$(VERSION) | head -1)," \
	  "on $(or $(BASE_IMAGE),$(LOCAL_BASE_IMAGE))"

.PHONY: image-test
image-test: image venv ## Run the image hardened against the local PostgreSQL: migrate, token round trip, clean stop
	CONTAINERS_CONF=$(CURDIR)/podman/containers.conf $(VENV)/bin/python podman/image_test.py $(IMAGE):$(VERSION)

.PHONY: image-clean
image-clean: ## Remove the images, their build cache and the local base with its tar (the next build is cold)
	$(PODMAN) rmi --ignore $(IMAGE):$(VERSION) $(IMAGE):dev
	$(PODMAN) image prune --force >/dev/null
	$(PODMAN) rmi --ignore $(LOCAL_BASE_IMAGE)
	rm -rf $(TOOLS)/base
	@# uv's download cache (the RUN --mount=type=cache): podman 4.3 has no command that prunes it.
	rm -rf /var/tmp/buildah-cache$(if $(filter 0,$(shell id -u)),,-$(shell id -u))
