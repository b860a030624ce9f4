#!/usr/bin/env bash
# Benchmark cold image pulls: Berth against containerd's CRI plugin, same
# registry, same image, same CRI client.
#
# Usage: sudo hack/bench-pull.sh [RUNS]
#
# Starts a local registry (hack/start-registry.sh), pushes the test images with
# berth-test/big (about 100 MB in 6 layers), builds `berth` and `cri-bench` in
# release mode, then runs RUNS rounds (default 5). In each round, each runtime
# in turn, in alternating order:
#   1. starts with a fresh, empty root and state directory, so the pull
#      downloads and unpacks every layer;
#   2. waits until its CRI Version RPC succeeds, then reads its idle VmRSS;
#   3. pulls REGISTRY/berth-test/big:latest with `cri-bench pull`, which times
#      the PullImage RPC alone, then reads VmRSS again and the CPU time the
#      daemon used during the pull;
#   4. stops (SIGTERM, then SIGKILL after 15 s) and its directories are
#      unmounted and removed.
# Prints tables with every pull's time and CPU time, the medians, the ratios
# of Berth's medians to containerd's, and both daemons' memory. Run it on an
# otherwise idle machine: it prints the load average so that a busy run shows.
#
# Berth runs with its default settings (3 concurrent layer downloads) and
# containerd with the CRI plugin's defaults (also 3) and the overlayfs
# snapshotter. containerd is Debian's /usr/bin/containerd with a config
# written here that moves its root, state and socket into the temporary
# directory, so it runs beside a system containerd without conflict.
#
# Needs root, because both runtimes unpack layers with their owners and
# containerd mounts overlayfs. Set CARGO_TARGET_DIR to reuse a build
# directory. Everything lives in a temporary directory under /tmp, which is
# removed on exit, also after a failure or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

readonly ready_timeout_seconds=60
readonly stop_timeout_seconds=15

die() {
	echo "bench-pull.sh: $*" >&2
	exit 1
}

runs=${1:-5}
if ! [[ ${runs} =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: $0 [RUNS]   (RUNS: a positive number of rounds, default 5)" >&2
	exit 2
fi
if [[ ${EUID} -ne 0 ]]; then
	die "run as root: the runtimes unpack layers with their owners and containerd mounts overlayfs"
fi
for tool in containerd cargo curl jq python3; do
	command -v "${tool}" >/dev/null || die "${tool} not found; run hack/install-deps.sh"
done

workdir=$(mktemp -d /tmp/berth-bench.XXXXXX)
daemon_pid=

# Unmount everything mounted under DIR, deepest first. containerd's overlayfs
# snapshotter mounts layers while it unpacks them, and a killed containerd can
# leave such a mount behind. Paths under ${workdir} contain no spaces, so the
# mount point field of /proc/self/mountinfo needs no unescaping.
unmount_under() {
	local dir=$1 mount_point
	awk -v dir="${dir}/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r |
		while read -r mount_point; do
			umount "${mount_point}" || umount --lazy "${mount_point}" ||
				echo "bench-pull.sh: cannot unmount ${mount_point}" >&2
		done
}

# Succeed while PID is alive. A child that exited stays a zombie until `wait`
# reaps it, and `kill -0` succeeds on a zombie, so the state field decides.
is_running() {
	local pid=$1 stat
	stat=$(cat "/proc/${pid}/stat" 2>/dev/null) || return 1
	# The state follows the command name, which is in parentheses.
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
		echo "bench-pull.sh: PID ${pid} did not exit ${stop_timeout_seconds} s after SIGTERM; sending SIGKILL" >&2
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

hack/start-registry.sh "${workdir}/registry" >&2
set -a
# shellcheck source=/dev/null
. "${workdir}/registry/registry.env"
set +a
registry=${BERTH_TEST_REGISTRY}
image="${registry}/berth-test/big:latest"
hack/build-test-images.sh --with-big "${registry}" >/dev/null

cargo build --release -p berth-agent -p berth-tests --bins
target_dir=$(cargo metadata --no-deps --format-version 1 | jq -r .target_directory)
berth_bin="${target_dir}/release/berth"
cri_bench="${target_dir}/release/cri-bench"

# Read the image's layer sizes, which the results print.
manifest=$(curl --silent --fail \
	--header "Accept: application/vnd.oci.image.manifest.v1+json" \
	"http://${registry}/v2/berth-test/big/manifests/latest")
layer_sizes=$(jq -r '[.layers[].size] | map(tostring) | join(" ")' <<<"${manifest}")
layer_total=$(jq '[.layers[].size] | add' <<<"${manifest}")

# Write DIR/berth.toml and start `berth serve` on DIR.
start_berth() {
	local dir=$1
	cat >"${dir}/berth.toml" <<-EOF
		[registries."${registry}"]
		plain_http = true
	EOF
	"${berth_bin}" serve --config "${dir}/berth.toml" --root "${dir}/root" \
		--state-dir "${dir}/state" --socket "${dir}/cri.sock" \
		</dev/null >"${dir}/daemon.log" 2>&1 &
	daemon_pid=$!
}

# Write DIR/containerd.toml and start containerd on DIR. The disabled
# snapshotters cannot work on this kind of host (no aufs module, no btrfs or
# zfs root, no devmapper pool) and only add errors to the log.
start_containerd() {
	local dir=$1
	cat >"${dir}/containerd.toml" <<-EOF
		version = 2
		root = "${dir}/root"
		state = "${dir}/state"
		disabled_plugins = [
		  "io.containerd.snapshotter.v1.aufs",
		  "io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.devmapper",
		  "io.containerd.snapshotter.v1.zfs",
		]

		[grpc]
		  address = "${dir}/cri.sock"

		[plugins."io.containerd.internal.v1.opt"]
		  path = "${dir}/opt"

		[plugins."io.containerd.grpc.v1.cri"]
		  # Without CAP_SYS_RESOURCE, containerd cannot raise its own OOM score adjustment.
		  restrict_oom_score_adj = true
		  disable_apparmor = true

		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"

		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "${dir}/cni/bin"
		    conf_dir = "${dir}/cni/conf"

		  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."${registry}"]
		    endpoint = ["http://${registry}"]
	EOF
	containerd --config "${dir}/containerd.toml" \
		</dev/null >"${dir}/daemon.log" 2>&1 &
	daemon_pid=$!
}

# Wait until the daemon's CRI Version RPC succeeds, which shows that its CRI
# service is ready and not only that its socket exists.
wait_ready() {
	local runtime=$1 dir=$2
	for ((i = 0; i < ready_timeout_seconds * 10; i++)); do
		if ! is_running "${daemon_pid}"; then
			tail -n 20 "${dir}/daemon.log" >&2
			die "${runtime} (PID ${daemon_pid}) exited before serving; log above"
		fi
		if [[ -S ${dir}/cri.sock ]] &&
			"${cri_bench}" version --socket "${dir}/cri.sock" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	die "${runtime} did not respond to Version within ${ready_timeout_seconds} s; see ${dir}/daemon.log"
}

# Print the resident set size of PID in KiB.
rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# Print the CPU time PID has used so far, in clock ticks: user and system time
# of all its threads, plus that of children it has reaped.
cpu_ticks() {
	local stat
	stat=$(cat "/proc/$1/stat")
	# Fields 14 to 17 (utime, stime, cutime, cstime) are the 12th to 15th after the command name.
	awk '{ print $12 + $13 + $14 + $15 }' <<<"${stat##*) }"
}
clock_ticks_per_second=$(getconf CLK_TCK)

results="${workdir}/results.tsv"
printf 'run\truntime\tseconds\tcpu_seconds\tidle_rss_kib\tpulled_rss_kib\n' >"${results}"

# Run one cold pull on RUNTIME and append its row to the results.
bench_one() {
	local run=$1 runtime=$2
	local dir="${workdir}/${runtime}-${run}"
	mkdir -p "${dir}"

	# Write back the previous pull's dirty pages now, so they do not slow this one.
	sync
	"start_${runtime}" "${dir}"
	wait_ready "${runtime}" "${dir}"
	local idle_rss
	idle_rss=$(rss_kib "${daemon_pid}")
	local ticks_before
	ticks_before=$(cpu_ticks "${daemon_pid}")

	local output seconds image_ref
	if ! output=$("${cri_bench}" pull --socket "${dir}/cri.sock" "${image}"); then
		tail -n 20 "${dir}/daemon.log" >&2
		die "pull of ${image} from ${runtime} failed; log above"
	fi
	read -r seconds image_ref <<<"${output}"
	local pulled_rss cpu_seconds
	pulled_rss=$(rss_kib "${daemon_pid}")
	cpu_seconds=$(awk -v ticks=$(($(cpu_ticks "${daemon_pid}") - ticks_before)) \
		-v hz="${clock_ticks_per_second}" 'BEGIN { printf "%.2f", ticks / hz }')

	stop_daemon
	unmount_under "${dir}"
	rm -rf "${dir}"

	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${run}" "${runtime}" "${seconds}" "${cpu_seconds}" "${idle_rss}" "${pulled_rss}" >>"${results}"
	echo "bench-pull.sh: run ${run}: ${runtime} pulled ${image_ref} in ${seconds} s using ${cpu_seconds} s of CPU (RSS ${idle_rss} KiB idle, ${pulled_rss} KiB after the pull)" >&2
}

# Other processes that compete for the CPU or the disk slow both runtimes by
# different amounts, so the results print the load average from before and after the runs.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((run = 1; run <= runs; run++)); do
	if ((run % 2 == 1)); then
		order=(berth containerd)
	else
		order=(containerd berth)
	fi
	for runtime in "${order[@]}"; do
		bench_one "${run}" "${runtime}"
	done
done

echo
echo "Cold pull of ${image}"
echo "$(jq '.layers | length' <<<"${manifest}") layers, ${layer_total} bytes compressed (${layer_sizes})"
echo "$("${berth_bin}" --version), $(containerd --version | awk '{ print $1, $3 }'), ${runs} runs, $(date -u +%Y-%m-%d)"
echo "load average (1, 5, 15 min): ${load_before} before the runs, $(cut -d' ' -f1-3 /proc/loadavg) after"
echo
python3 - "${results}" <<-'EOF'
	import csv
	import statistics
	import sys

	rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
	runtimes = ["berth", "containerd"]


	def median(runtime, field):
	    return statistics.median(float(row[field]) for row in rows if row["runtime"] == runtime)


	print("| run | berth time (s) | berth CPU (s) | containerd time (s) | containerd CPU (s) |")
	print("| --- | ---: | ---: | ---: | ---: |")
	for run in sorted({int(row["run"]) for row in rows}):
	    by_runtime = {row["runtime"]: row for row in rows if int(row["run"]) == run}
	    berth, containerd = by_runtime["berth"], by_runtime["containerd"]
	    print(f"| {run} | {berth['seconds']} | {berth['cpu_seconds']} "
	          f"| {containerd['seconds']} | {containerd['cpu_seconds']} |")

	time = {runtime: median(runtime, "seconds") for runtime in runtimes}
	cpu = {runtime: median(runtime, "cpu_seconds") for runtime in runtimes}
	print(f"| median | {time['berth']:.3f} | {cpu['berth']:.2f} "
	      f"| {time['containerd']:.3f} | {cpu['containerd']:.2f} |")
	print()

	print("| median of runs | berth | containerd | berth / containerd |")
	print("| --- | ---: | ---: | ---: |")
	print(f"| pull time (s) | {time['berth']:.3f} | {time['containerd']:.3f} "
	      f"| {time['berth'] / time['containerd']:.2f} |")
	print(f"| CPU time of the pull (s) | {cpu['berth']:.2f} | {cpu['containerd']:.2f} "
	      f"| {cpu['berth'] / cpu['containerd']:.2f} |")
	for label, field in [("idle RSS (MiB)", "idle_rss_kib"), ("RSS after the pull (MiB)", "pulled_rss_kib")]:
	    berth, containerd = (median(runtime, field) / 1024 for runtime in runtimes)
	    print(f"| {label} | {berth:.1f} | {containerd:.1f} | {berth / containerd:.2f} |")
EOF
