#!/usr/bin/env bash
# Install the Debian packages that Berth's builds, tests and hack/ scripts use.
#
# Idempotent: when every package is already installed it skips apt entirely,
# so a second run takes well under a second. Needs root and a Debian-based
# system with apt (written for Debian 12 "bookworm").
set -euo pipefail

packages=(
	# OCI runtimes and containerd, used by the runtime and integration tests.
	runc
	crun
	containerd
	containernetworking-plugins
	iptables
	# ip and nsenter, used by the network tests to inspect and clean up pod interfaces.
	iproute2
	util-linux
	# Local registry and image tools, used by start-registry.sh and
	# build-test-images.sh. NOTE: on a host whose init system runs services,
	# Debian's docker-registry and containerd packages enable and start their
	# own system services on install, and that registry listens on port 5000
	# of every interface (/etc/docker/registry/config.yml). The hack/ scripts
	# use neither service.
	docker-registry
	skopeo
	umoci
	busybox-static
	zstd
	openssl
	curl
	ca-certificates
	jq
	# htpasswd, for the registry with basic auth in the end-to-end tests.
	apache2-utils
	# Python and gRPC, used by the CRI test clients.
	python3
	python3-grpcio
	# C toolchain and pkg-config, used by crates with native build scripts.
	gcc
	pkg-config
)

if [[ ${EUID} -ne 0 ]]; then
	echo "install-deps.sh: must run as root because it calls apt-get; retry with sudo" >&2
	exit 1
fi

# dpkg-query prints "ii " for a package that is installed and configured.
missing=()
for package in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' "${package}" 2>/dev/null || true)
	if [[ ${status} != "ii " ]]; then
		missing+=("${package}")
	fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
	echo "install-deps.sh: all ${#packages[@]} packages are already installed"
	exit 0
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
