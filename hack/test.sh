#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and end-to-end tests that start real `berth serve`
# daemons against two local registries filled with the test images.
#
# Usage: sudo hack/test.sh [extra cargo test arguments]
#
# Needs root (layers keep owners and device nodes; tests mount overlayfs). Installs missing
# Debian packages first. Set CARGO_TARGET_DIR to reuse a build directory.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ ${EUID} -ne 0 ]]; then
	echo "hack/test.sh: run as root: the tests unpack layers with owners and device nodes and mount overlayfs" >&2
	exit 1
fi

if ! command -v cargo >/dev/null; then
	echo "hack/test.sh: cargo not found: install a Rust toolchain (1.88 or newer) with rustup" >&2
	exit 1
fi

hack/install-deps.sh

workdir=$(mktemp -d /tmp/berth-test.XXXXXX)
cleanup() {
	hack/stop-registry.sh "${workdir}/registry" || true
	rm -rf "${workdir}"
}
trap cleanup EXIT

hack/start-registry.sh "${workdir}/registry"
set -a
# shellcheck source=/dev/null
. "${workdir}/registry/registry.env"
set +a
hack/build-test-images.sh "${BERTH_TEST_REGISTRY}"

cargo build -p berth-agent
cargo test --workspace "$@"
