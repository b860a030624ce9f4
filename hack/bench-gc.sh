#!/usr/bin/env bash
# Benchmark the image collector.
#
# Usage: sudo hack/bench-gc.sh [IMAGES]
#
#   1. Plan time: runs the ignored test plan_of_10000_images_and_containers of
#      berth-cri in release mode, which plans a collection over 10,000
#      synthetic image records and containers, and prints its timing.
#   2. Removal time: starts a local registry (hack/start-registry.sh), pushes
#      IMAGES (default 200) tiny distinct images (write-test-images.py
#      --many: the busybox layer plus one few-byte layer each), starts a
#      fresh `berth serve` (release build) with its own collector off, pulls
#      all images with `cri-bench pull`, then times one
#      `berth gc --endpoint unix://SOCKET --once --trigger schedule
#      --min-age-seconds 0`, which removes every image. Afterwards it checks
#      with a dry run of the same command, whose ListImages must return no
#      image.
# Prints the load average before each part, so that a busy run shows.
#
# Needs root, because Berth unpacks layers with their owners. Set
# CARGO_TARGET_DIR to reuse a build directory. Everything lives in a
# temporary directory under /tmp, which is removed on exit, also after a
# failure or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

readonly ready_timeout_seconds=60
readonly stop_timeout_seconds=15
readonly parallel_jobs=8

die() {
	echo "bench-gc.sh: $*" >&2
	exit 1
}

images=${1:-200}
if ! [[ ${images} =~ ^[1-9][0-9]*$ ]] || ((images > 10000)); then
	echo "usage: $0 [IMAGES]   (IMAGES: number of images to remove, 1 to 10000, default 200)" >&2
	exit 2
fi
if [[ ${EUID} -ne 0 ]]; then
	die "run as root: Berth unpacks layers with their owners"
fi
for tool in cargo jq python3 skopeo xargs; do
	command -v "${tool}" >/dev/null || die "${tool} not found; run hack/install-deps.sh"
done

workdir=$(mktemp -d /tmp/berth-bench-gc.XXXXXX)
daemon_pid=

# Unmount everything mounted under DIR, deepest first.
unmount_under() {
	local dir=$1 mount_point
	awk -v dir="${dir}/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r |
		while read -r mount_point; do
			umount "${mount_point}" || umount --lazy "${mount_point}" ||
				echo "bench-gc.sh: cannot unmount ${mount_point}" >&2
		done
}

# Succeed while PID is alive and not a zombie.
is_running() {
	local pid=$1 stat
	stat=$(cat "/proc/${pid}/stat" 2>/dev/null) || return 1
	[[ ${stat##*) } != Z* ]]
}

stop_daemon() {
	[[ -n ${daemon_pid} ]] || return 0
	local pid=${daemon_pid}
	daemon_pid=
	kill -TERM "${pid}" 2>/dev/null || true
	for ((i = 0; i < stop_timeout_seconds * 10; i++)); do
		is_running "${pid}" || break
		sleep 0.1
	done
	if is_running "${pid}"; then
		echo "bench-gc.sh: PID ${pid} did not exit ${stop_timeout_seconds} s after SIGTERM; sending SIGKILL" >&2
		kill -KILL "${pid}" 2>/dev/null || true
	fi
	wait "${pid}" 2>/dev/null || true
}

cleanup() {
	stop_daemon
	unmount_under "${workdir}"
	if [[ -d ${workdir}/registry ]]; then
		hack/stop-registry.sh "${workdir}/registry" >/dev/null || true
	fi
	rm -rf "${workdir}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== Machine"
echo "nproc: $(nproc), RAM: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), kernel: $(uname -r)"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"

echo
echo "== Plan time: 10,000 image records (cargo test --release -p berth-cri plan_of_10000 -- --ignored --nocapture)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo test --release -p berth-cri plan_of_10000 -- --ignored --nocapture 2>&1 |
	grep -v -e '^ *Compiling' -e '^ *Running' -e '^ *Finished' -e '^$' -e '^running 0 tests' \
		-e '^test result: ok. 0 passed'

echo
echo "== Removal time: ${images} images through the CRI"
hack/start-registry.sh "${workdir}/registry" >&2
set -a
# shellcheck source=/dev/null
. "${workdir}/registry/registry.env"
set +a
registry=${BERTH_TEST_REGISTRY}

layout="${workdir}/layout"
python3 hack/write-test-images.py "${layout}" --many "${images}"
refs=$(jq -r '.manifests[].annotations["org.opencontainers.image.ref.name"] | select(startswith("many-"))' "${layout}/index.json")
echo "bench-gc.sh: pushing ${images} images to ${registry}" >&2
# The refs are many-NNNN, so they need no quoting.
xargs -P "${parallel_jobs}" -I REF \
	skopeo copy --quiet --dest-tls-verify=false "oci:${layout}:REF" \
	"docker://${registry}/berth-bench/REF:latest" <<<"${refs}"

cargo build --release -p berth-agent -p berth-tests --bins
target_dir=$(cargo metadata --no-deps --format-version 1 | jq -r .target_directory)
berth_bin="${target_dir}/release/berth"
cri_bench="${target_dir}/release/cri-bench"

dir="${workdir}/berth"
mkdir -p "${dir}"
socket="${dir}/cri.sock"
# The daemon's own collector stays off, and its metrics endpoint too, so that a
# daemon already running on this host keeps port 9108.
cat >"${dir}/berth.toml" <<-EOF
	[registries."${registry}"]
	plain_http = true
	[gc]
	schedule = ""
	high_threshold_percent = 100
	low_threshold_percent = 99
	[metrics]
	address = ""
EOF
"${berth_bin}" serve --config "${dir}/berth.toml" --root "${dir}/root" \
	--state-dir "${dir}/state" --socket "${socket}" \
	</dev/null >"${dir}/daemon.log" 2>&1 &
daemon_pid=$!

for ((i = 0; i < ready_timeout_seconds * 10; i++)); do
	if ! is_running "${daemon_pid}"; then
		tail -n 20 "${dir}/daemon.log" >&2
		die "berth serve (PID ${daemon_pid}) exited before serving; log above"
	fi
	"${cri_bench}" version --socket "${socket}" >/dev/null 2>&1 && break
	sleep 0.1
done
"${cri_bench}" version --socket "${socket}" >/dev/null ||
	die "berth serve did not return the CRI Version within ${ready_timeout_seconds} s"

echo "bench-gc.sh: pulling ${images} images into Berth" >&2
xargs -P "${parallel_jobs}" -I REF \
	"${cri_bench}" pull --socket "${socket}" "${registry}/berth-bench/REF:latest" \
	<<<"${refs}" >/dev/null

# An empty config file, so that only the flags below set the policy.
: >"${dir}/gc.toml"
gc=("${berth_bin}" gc --config "${dir}/gc.toml" --endpoint "unix://${socket}"
	--state-file "${dir}/gc-state.json" --once --trigger schedule
	--min-age-seconds 0 --output json --log-level warn)

# A dry run first lists the images, so the timed run starts from the same state
# file and the dry run's count shows what the timed run has to remove.
planned=$("${gc[@]}" --dry-run | jq '.plan.remove | length')
[[ ${planned} -eq ${images} ]] ||
	die "a dry run plans to remove ${planned} images, expected ${images}"

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
start_ns=$(date +%s%N)
report=$("${gc[@]}")
end_ns=$(date +%s%N)
removed=$(jq '.images_removed | length' <<<"${report}")
failures=$(jq '.failures | length' <<<"${report}")
reported_ms=$(jq '.duration_ms' <<<"${report}")

left=$("${gc[@]}" --dry-run | jq '(.plan.remove | length) + (.plan.keep | length)')
echo "images removed: ${removed} of ${images}, failures: ${failures}"
echo "wall time of berth gc --once: $(((end_ns - start_ns) / 1000000)) ms (process start to exit)"
echo "run duration reported by berth gc: ${reported_ms} ms"
echo "images listed afterwards: ${left}"
[[ ${removed} -eq ${images} && ${failures} -eq 0 ]] ||
	die "berth gc removed ${removed} of ${images} images with ${failures} failures"
[[ ${left} -eq 0 ]] || die "ListImages still returns ${left} images after the run"
