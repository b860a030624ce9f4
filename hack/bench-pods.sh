#!/usr/bin/env bash
# Benchmark pod start: Berth against containerd's CRI plugin, same image,
# same CNI plugins, same CRI client.
#
# Usage: sudo hack/bench-pods.sh [ROUNDS [PODS]]
#
# Starts a local registry (hack/start-registry.sh), pushes the test images
# with berth-test/pause:3.9 (hack/build-test-images.sh --with-pause), builds
# `berth` and `cri-bench` in release mode, then runs ROUNDS rounds (default 2)
# of PODS pods (default 50). In each round, each runtime in turn, in
# alternating order:
#   1. starts with a fresh root, state directory, bridge and cgroup parent,
#      and waits until its CRI Version RPC succeeds;
#   2. pulls REGISTRY/berth-test/busybox:latest (containerd also pulls its
#      sandbox image) with `cri-bench pull`, untimed, and reads the daemon's
#      RSS;
#   3. prints the load average, then starts PODS pods one after another with
#      `cri-bench pods`, which times RunPodSandbox, CreateContainer and
#      StartContainer of each pod (one container running `sleep 3600`);
#   4. waits 5 s, then reads the RSS and PSS of the daemon and of the per-pod
#      processes: Berth's `berth monitor` processes and any `berth infra`,
#      containerd's `containerd-shim-runc-v2` processes and their pause
#      processes. The `sleep 3600` processes are not counted for either;
#   5. stops and removes every pod with `cri-bench remove-pods`, stops the
#      daemon (SIGTERM, then SIGKILL after 15 s), and removes its bridge,
#      cgroups and directories.
# Prints each round's results, then the medians over the rounds and the
# ratios of Berth's medians to containerd's.
#
# Both runtimes get a bridge network with host-local IPAM, masquerading and
# portmap, from Debian's CNI plugins in /usr/lib/cni, each with its own
# bridge and /24 subnet: Berth through its built-in network (an empty
# conf_dir), containerd through a conflist written here. containerd's sandbox
# image is a stand-in for registry.k8s.io/pause: busybox-static running
# `sleep infinity`. The pods use the kubelet's namespace defaults (shared
# network and IPC namespaces, one PID namespace per container), so Berth
# starts no `berth infra` process. Each pod gets the cgroup parent
# /berth-bench-pods-PID-RUNTIME/podN, as the kubelet passes one per pod.
# Berth uses its default runtime handler, runc, and containerd the runc v2
# shim with runc.
#
# Needs root. Set CARGO_TARGET_DIR to reuse a build directory. Everything
# lives in a temporary directory under /tmp, removed on exit, also after a
# failure or Ctrl-C; the bridges, cgroups, iptables rules that the bridge
# plugin left for the benchmark's subnets, and containerd's shim sockets under
# /run/containerd/s are removed too.
set -euo pipefail

cd "$(dirname "$0")/.."

readonly ready_timeout_seconds=60
readonly stop_timeout_seconds=15
readonly settle_seconds=5
readonly cni_bin_dir=/usr/lib/cni
readonly shim_socket_dir=/run/containerd/s

die() {
	echo "bench-pods.sh: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 [ROUNDS [PODS]]   (ROUNDS: default 2; PODS: pods per round, 1 to 250, default 50)" >&2
	exit 2
}

rounds=${1:-2}
pod_count=${2:-50}
[[ $# -le 2 ]] || usage
[[ ${rounds} =~ ^[1-9][0-9]*$ ]] || usage
# Each runtime's subnet is a /24, and host-local keeps the gateway and the
# broadcast address for itself.
if ! [[ ${pod_count} =~ ^[1-9][0-9]*$ ]] || ((pod_count > 250)); then
	usage
fi
if [[ ${EUID} -ne 0 ]]; then
	die "run as root: the runtimes create namespaces, cgroups, bridges and overlayfs mounts"
fi
for tool in containerd containerd-shim-runc-v2 runc cargo curl jq python3 ip iptables; do
	command -v "${tool}" >/dev/null || die "${tool} not found; run hack/install-deps.sh"
done
for plugin in bridge host-local portmap loopback; do
	[[ -x ${cni_bin_dir}/${plugin} ]] || die "CNI plugin ${cni_bin_dir}/${plugin} not found; run hack/install-deps.sh"
done

workdir=$(mktemp -d /tmp/berth-bench-pods.XXXXXX)
daemon_pid=
# The runtime and directory of the daemon that runs now, for the cleanup.
current_runtime=
current_dir=

# Host resources of each runtime, unique to this run: the bridge, the first
# three octets of the /24 subnet (chosen below) and the cgroup parent.
declare -A bridge subnet_prefix cgroup_parent
bridge[berth]="bpb$$"
bridge[containerd]="bpc$$"
cgroup_parent[berth]="/berth-bench-pods-$$-berth"
cgroup_parent[containerd]="/berth-bench-pods-$$-containerd"
readonly containerd_network="berth-bench-pods-$$"
for runtime in berth containerd; do
	if ip link show "${bridge[${runtime}]}" >/dev/null 2>&1; then
		die "interface ${bridge[${runtime}]} exists already; remove it or rerun"
	fi
done

# Print a prefix 10.FIRST.N whose /24 overlaps no route of this host other
# than the default route, trying N from this script's PID on.
pick_subnet_prefix() {
	local first=$1
	ip -4 -o route show | python3 -c '
import ipaddress
import sys

first, start = int(sys.argv[1]), int(sys.argv[2])
routes = []
for line in sys.stdin:
    destination = line.split()[0]
    if destination != "default":
        routes.append(ipaddress.ip_network(destination, strict=False))
for k in range(250):
    candidate = ipaddress.ip_network(f"10.{first}.{(start + k) % 250}.0/24")
    if not any(candidate.overlaps(route) for route in routes):
        print(str(candidate.network_address).rsplit(".", 1)[0])
        sys.exit(0)
sys.exit(f"bench-pods.sh: no /24 in 10.{first}.0.0/16 is free of routes for the pod network")
' "${first}" "$$"
}
subnet_prefix[berth]=$(pick_subnet_prefix 251) || exit 1
subnet_prefix[containerd]=$(pick_subnet_prefix 252) || exit 1

# Unmount everything mounted under DIR, deepest first. Paths under ${workdir}
# contain no spaces, so the mount point field of /proc/self/mountinfo needs no
# unescaping.
unmount_under() {
	local dir=$1 mount_point
	awk -v dir="${dir}/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r |
		while read -r mount_point; do
			umount "${mount_point}" || umount --lazy "${mount_point}" ||
				echo "bench-pods.sh: cannot unmount ${mount_point}" >&2
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
		echo "bench-pods.sh: PID ${pid} did not exit ${stop_timeout_seconds} s after SIGTERM; sending SIGKILL" >&2
		kill -KILL "${pid}" 2>/dev/null || true
	fi
	wait "${pid}" 2>/dev/null || true
}

# Delete the masquerading rules and chains that the bridge plugin added to the
# nat table for pod addresses in PREFIX.0/24. CNI DEL removes them when a pod
# is removed, so this only finds rules of pods that a failed run left behind.
remove_masquerade_rules() {
	local prefix=$1 rule_number chain
	while true; do
		# `iptables -S` prints the policy first, then the rules from number 1.
		rule_number=$(iptables -t nat -S POSTROUTING |
			awk -v start="-A POSTROUTING -s ${prefix}." 'index($0, start) == 1 { print NR - 1; exit }')
		[[ -n ${rule_number} ]] || break
		chain=$(iptables -t nat -S POSTROUTING | awk -v n="$((rule_number + 1))" 'NR == n { print $NF }')
		iptables -t nat -D POSTROUTING "${rule_number}" || break
		if [[ ${chain} == CNI-* ]]; then
			iptables -t nat -F "${chain}" 2>/dev/null || true
			iptables -t nat -X "${chain}" 2>/dev/null || true
		fi
	done
}

# Remove the cgroup directories under PARENT in every hierarchy, deepest first.
remove_cgroups() {
	local parent=$1 top
	for top in /sys/fs/cgroup/*"${parent}" "/sys/fs/cgroup${parent}"; do
		[[ -d ${top} ]] || continue
		find "${top}" -depth -type d -exec rmdir {} + 2>/dev/null ||
			echo "bench-pods.sh: cannot remove cgroup ${top}: processes may still run in it" >&2
	done
}

# Remove every host resource of RUNTIME's run in DIR: its pods (through the
# CRI while the daemon runs), the daemon, processes and OCI containers the
# daemon left behind, mounts, the bridge, iptables rules, cgroups and files.
clean_runtime() {
	local runtime=$1 dir=$2 pid
	if [[ -n ${daemon_pid} ]] && is_running "${daemon_pid}" && [[ -S ${dir}/cri.sock ]]; then
		timeout 120 "${cri_bench}" remove-pods --socket "${dir}/cri.sock" >/dev/null ||
			echo "bench-pods.sh: removing the pods from ${runtime} failed; killing what is left" >&2
	fi
	stop_daemon

	# What is left after remove-pods or a killed daemon: containers first, then
	# their monitors or shims.
	for pid in $(python3 "${workdir}/pod_processes.py" list "${runtime}" "${dir}" "${berth_bin:-}"); do
		kill -KILL "${pid}" 2>/dev/null || true
	done
	local runc_root
	for runc_root in "${dir}/state/runc/runc" "${dir}/runc/k8s.io"; do
		[[ -d ${runc_root} ]] || continue
		for id in $(runc --root "${runc_root}" list -q 2>/dev/null); do
			runc --root "${runc_root}" delete --force "${id}" >/dev/null 2>&1 || true
		done
	done
	if [[ ${runtime} == containerd ]]; then
		remove_containerd_leftovers "${dir}"
	fi

	unmount_under "${dir}"
	ip link del "${bridge[${runtime}]}" 2>/dev/null || true
	remove_masquerade_rules "${subnet_prefix[${runtime}]}"
	remove_cgroups "${cgroup_parent[${runtime}]}"
	rm -rf "${dir}"
}

# Remove the files outside DIR that containerd 1.6 keeps for a pod until the
# pod is removed, for pods of a containerd or shim that was killed. Its shims
# listen on /run/containerd/s/SHA256(ADDRESS/NAMESPACE/ID) whatever its state
# directory is, and libcni caches each ADD result in /var/lib/cni/results. The
# task directories in the state directory name every container, so also every
# sandbox, which is the ID of its pod's shim.
remove_containerd_leftovers() {
	local dir=$1 task id hash
	for task in "${dir}"/state/io.containerd.runtime.v2.task/k8s.io/*; do
		[[ -d ${task} ]] || continue
		id=${task##*/}
		hash=$(printf '%s' "${dir}/cri.sock/k8s.io/${id}" | sha256sum | cut -d' ' -f1)
		rm -f "${shim_socket_dir}/${hash}" \
			"/var/lib/cni/results/cni-loopback-${id}-lo" \
			"/var/lib/cni/results/${containerd_network}-${id}-eth0"
	done
}

cleanup() {
	# Carry on after a failed step, so that one leftover does not keep the
	# others in place.
	set +e
	if [[ -n ${current_runtime} ]]; then
		clean_runtime "${current_runtime}" "${current_dir}"
	fi
	if [[ -d ${workdir}/registry ]]; then
		hack/stop-registry.sh "${workdir}/registry" >/dev/null || true
	fi
	# Created by containerd's shims and libcni when absent; rmdir keeps them
	# when anything else uses them.
	rmdir "${shim_socket_dir}" /run/containerd /var/lib/cni/results /var/lib/cni 2>/dev/null || true
	unmount_under "${workdir}"
	rm -rf "${workdir}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Find the per-pod processes of one daemon in /proc. `list` prints their PIDs,
# containers first; `measure` prints the counts and the RSS and PSS sums.
cat >"${workdir}/pod_processes.py" <<-'EOF'
	import glob
	import os
	import sys


	def read_processes():
	    """Return {pid: (ppid, exe, argv)} of every process that still exists."""
	    processes = {}
	    for entry in os.listdir("/proc"):
	        if not entry.isdigit():
	            continue
	        pid = int(entry)
	        try:
	            with open(f"/proc/{pid}/stat") as f:
	                stat = f.read()
	            with open(f"/proc/{pid}/cmdline", "rb") as f:
	                argv = [arg.decode(errors="replace") for arg in f.read().split(b"\0")[:-1]]
	            exe = os.readlink(f"/proc/{pid}/exe")
	        except OSError:
	            continue
	        # The parent PID is the second field after the command name in parentheses.
	        ppid = int(stat.rsplit(")", 1)[1].split()[1])
	        processes[pid] = (ppid, exe, argv)
	    return processes


	def option(argv, name):
	    """Return the value after NAME in ARGV, or None."""
	    if name in argv[:-1]:
	        return argv[argv.index(name) + 1]
	    return None


	def classify(runtime, directory, berth_binary):
	    """Return the PIDs of the per-pod agents (monitors or shims), the sandbox
	    processes (infra or pause) and the containers' `sleep 3600` processes."""
	    processes = read_processes()
	    if runtime == "berth":
	        berth = os.path.realpath(berth_binary)
	        agents = {
	            pid for pid, (_, exe, argv) in processes.items()
	            if exe == berth and argv[1:2] == ["monitor"]
	            and (option(argv, "--bundle") or "").startswith(directory + "/")
	        }
	        # An infra process belongs to this daemon when it runs in the network
	        # namespace of one of its sandboxes, pinned in the state directory.
	        pinned = set()
	        for path in glob.glob(f"{directory}/state/**/ns/net", recursive=True):
	            try:
	                pinned.add(os.stat(path).st_ino)
	            except OSError:
	                pass
	        sandboxes = set()
	        for pid, (_, exe, argv) in processes.items():
	            if exe == berth and argv[1:2] == ["infra"]:
	                try:
	                    if os.stat(f"/proc/{pid}/ns/net").st_ino in pinned:
	                        sandboxes.add(pid)
	                except OSError:
	                    pass
	    else:
	        agents = {
	            pid for pid, (_, exe, argv) in processes.items()
	            if os.path.basename(exe) == "containerd-shim-runc-v2"
	            and option(argv, "-address") == f"{directory}/cri.sock"
	        }
	        sandboxes = {
	            pid for pid, (ppid, _, argv) in processes.items()
	            if ppid in agents and argv == ["/bin/sleep", "infinity"]
	        }
	    containers = {
	        pid for pid, (ppid, _, argv) in processes.items()
	        if ppid in agents | sandboxes and argv == ["sleep", "3600"]
	    }
	    return agents, sandboxes, containers


	def memory_kib(pid):
	    """Return (VmRSS, Pss) of PID in KiB."""
	    rss = pss = 0
	    with open(f"/proc/{pid}/status") as f:
	        for line in f:
	            if line.startswith("VmRSS:"):
	                rss = int(line.split()[1])
	    with open(f"/proc/{pid}/smaps_rollup") as f:
	        for line in f:
	            if line.startswith("Pss:"):
	                pss = int(line.split()[1])
	    return rss, pss


	command, runtime, directory, berth_binary = sys.argv[1:5]
	agents, sandboxes, containers = classify(runtime, directory, berth_binary)
	if command == "list":
	    print(" ".join(str(pid) for pid in [*containers, *sandboxes, *agents]))
	elif command == "measure":
	    daemon = int(sys.argv[5])
	    daemon_rss, daemon_pss = memory_kib(daemon)
	    pod_rss = pod_pss = 0
	    for pid in agents | sandboxes:
	        rss, pss = memory_kib(pid)
	        pod_rss += rss
	        pod_pss += pss
	    print(len(agents), len(sandboxes), len(containers), daemon_rss, daemon_pss, pod_rss, pod_pss)
EOF

hack/start-registry.sh "${workdir}/registry" >&2
set -a
# shellcheck source=/dev/null
. "${workdir}/registry/registry.env"
set +a
registry=${BERTH_TEST_REGISTRY}
image="${registry}/berth-test/busybox:latest"
pause_image="${registry}/berth-test/pause:3.9"
hack/build-test-images.sh --with-pause "${registry}" >/dev/null

cargo build --release -p berth-agent -p berth-tests --bins
target_dir=$(cargo metadata --no-deps --format-version 1 | jq -r .target_directory)
berth_bin="${target_dir}/release/berth"
cri_bench="${target_dir}/release/cri-bench"

# Write DIR/berth.toml and start `berth serve` on DIR. The built-in network is
# used because conf_dir is empty.
start_berth() {
	local dir=$1
	mkdir -p "${dir}/cni-conf"
	cat >"${dir}/berth.toml" <<-EOF
		[runtime]
		cgroup_parent = "${cgroup_parent[berth]}"

		[network]
		conf_dir = "${dir}/cni-conf"
		bin_dirs = ["${cni_bin_dir}"]
		default_bridge = "${bridge[berth]}"
		default_subnet = "${subnet_prefix[berth]}.0/24"
		default_ipam_data_dir = "${dir}/ipam"

		[registries."${registry}"]
		plain_http = true
	EOF
	"${berth_bin}" serve --config "${dir}/berth.toml" --root "${dir}/root" \
		--state-dir "${dir}/state" --socket "${dir}/cri.sock" \
		</dev/null >"${dir}/daemon.log" 2>&1 &
	daemon_pid=$!
}

# Write DIR/containerd.toml and DIR/cni/conf/10-bench.conflist and start
# containerd on DIR. The conflist has the plugins of Berth's built-in network
# with the same settings. The disabled snapshotters cannot work on this kind
# of host and only add errors to the log. netns_mounts_under_state_dir and the
# runc Root option keep the network namespaces and runc's state in DIR.
start_containerd() {
	local dir=$1
	mkdir -p "${dir}/cni/conf"
	cat >"${dir}/cni/conf/10-bench.conflist" <<-EOF
		{
		  "cniVersion": "1.0.0",
		  "name": "${containerd_network}",
		  "plugins": [
		    {
		      "type": "bridge",
		      "bridge": "${bridge[containerd]}",
		      "isGateway": true,
		      "ipMasq": true,
		      "hairpinMode": true,
		      "ipam": {
		        "type": "host-local",
		        "ranges": [[{ "subnet": "${subnet_prefix[containerd]}.0/24" }]],
		        "routes": [{ "dst": "0.0.0.0/0" }],
		        "dataDir": "${dir}/ipam"
		      }
		    },
		    {
		      "type": "portmap",
		      "capabilities": { "portMappings": true }
		    }
		  ]
		}
	EOF
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
		  sandbox_image = "${pause_image}"
		  netns_mounts_under_state_dir = true

		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"

		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"

		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        Root = "${dir}/runc"

		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "${cni_bin_dir}"
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

# Pull IMAGE_REF into RUNTIME's daemon on DIR, untimed.
pull() {
	local runtime=$1 dir=$2 image_ref=$3
	if ! "${cri_bench}" pull --socket "${dir}/cri.sock" "${image_ref}" >/dev/null; then
		tail -n 20 "${dir}/daemon.log" >&2
		die "pull of ${image_ref} into ${runtime} failed; log above"
	fi
}

results="${workdir}/results.tsv"
printf 'round\truntime\tload_1min\tp50_ms\tp99_ms\tp50_run_ms\tp99_run_ms\tp50_create_ms\tp99_create_ms\tp50_start_ms\tp99_start_ms\tidle_rss_kib\tdaemon_rss_kib\tdaemon_pss_kib\tpod_rss_kib\tpod_pss_kib\n' >"${results}"

# Run one round on RUNTIME and append its row to the results.
bench_one() {
	local round=$1 runtime=$2
	local dir="${workdir}/${runtime}-${round}"
	mkdir -p "${dir}"
	current_runtime=${runtime}
	current_dir=${dir}

	"start_${runtime}" "${dir}"
	wait_ready "${runtime}" "${dir}"
	pull "${runtime}" "${dir}" "${image}"
	if [[ ${runtime} == containerd ]]; then
		pull "${runtime}" "${dir}" "${pause_image}"
	fi
	local idle_rss
	idle_rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/${daemon_pid}/status")

	local load
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	echo "bench-pods.sh: round ${round}: ${runtime}: load average (1, 5, 15 min) ${load}; starting ${pod_count} pods" >&2
	if ! "${cri_bench}" pods --socket "${dir}/cri.sock" --image "${image}" --count "${pod_count}" \
		--cgroup-parent "${cgroup_parent[${runtime}]}" --log-dir "${dir}/logs" >"${dir}/pods.tsv"; then
		tail -n 20 "${dir}/daemon.log" >&2
		die "starting pods on ${runtime} failed; log above"
	fi
	cp "${dir}/pods.tsv" "${workdir}/pods-${runtime}-${round}.tsv"

	sleep "${settle_seconds}"
	local measurement agents sandboxes containers daemon_rss daemon_pss pod_rss pod_pss
	if ! measurement=$(python3 "${workdir}/pod_processes.py" measure "${runtime}" "${dir}" "${berth_bin}" "${daemon_pid}"); then
		tail -n 20 "${dir}/daemon.log" >&2
		die "measuring the memory of ${runtime} and its per-pod processes failed; daemon log above"
	fi
	read -r agents sandboxes containers daemon_rss daemon_pss pod_rss pod_pss <<<"${measurement}"
	echo "bench-pods.sh: round ${round}: ${runtime}: found ${agents} monitors or shims, ${sandboxes} infra or pause processes, ${containers} containers" >&2
	if ((agents != pod_count || containers != pod_count)); then
		die "${runtime} runs ${agents} monitors or shims and ${containers} \`sleep 3600\` containers; expected ${pod_count} of each"
	fi
	if [[ ${runtime} == containerd ]] && ((sandboxes != pod_count)); then
		die "containerd runs ${sandboxes} pause processes; expected ${pod_count}"
	fi

	local percentiles
	percentiles=$(awk -F'\t' '$1 == "p50" { p50 = $0 } $1 == "p99" { p99 = $0 } END {
		split(p50, a, "\t"); split(p99, b, "\t")
		print a[2], b[2], a[3], b[3], a[4], b[4], a[5], b[5] }' "${dir}/pods.tsv")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${round}" "${runtime}" "${load%% *}" \
		"${percentiles// /$'\t'}" "${idle_rss}" "${daemon_rss}" "${daemon_pss}" "${pod_rss}" "${pod_pss}" >>"${results}"
	local p50 p99
	read -r p50 p99 _ <<<"${percentiles}"
	echo "bench-pods.sh: round ${round}: ${runtime}: pod start p50 ${p50} ms, p99 ${p99} ms; daemon RSS ${daemon_rss} KiB; per-pod processes' RSS ${pod_rss} KiB in total" >&2

	if ! "${cri_bench}" remove-pods --socket "${dir}/cri.sock" >&2; then
		tail -n 20 "${dir}/daemon.log" >&2
		die "removing the pods from ${runtime} failed; log above"
	fi
	clean_runtime "${runtime}" "${dir}"
	current_runtime=
	current_dir=
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= rounds; round++)); do
	if ((round % 2 == 1)); then
		order=(berth containerd)
	else
		order=(containerd berth)
	fi
	for runtime in "${order[@]}"; do
		bench_one "${round}" "${runtime}"
	done
done

echo
echo "Start of ${pod_count} pods, one after another, one container (${image}, \`sleep 3600\`) each"
echo "$("${berth_bin}" --version) with $(runc --version | head -n 1); $(containerd --version | awk '{ print $1, $3 }') with the runc v2 shim; rounds: ${rounds}; $(date -u +%Y-%m-%d)"
echo "$(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r)"
echo "load average (1, 5, 15 min): ${load_before} before the rounds, $(cut -d' ' -f1-3 /proc/loadavg) after"
echo
python3 - "${results}" "${pod_count}" <<-'EOF'
	import csv
	import statistics
	import sys

	rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
	pod_count = int(sys.argv[2])
	runtimes = ["berth", "containerd"]

	print("| round | runtime | load (1 min) | p50 (ms) | p99 (ms) | daemon RSS (MiB) | per-pod RSS (KiB) |")
	print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
	for row in rows:
	    print(f"| {row['round']} | {row['runtime']} | {row['load_1min']} | {row['p50_ms']} | {row['p99_ms']} "
	          f"| {int(row['daemon_rss_kib']) / 1024:.1f} | {int(row['pod_rss_kib']) / pod_count:.0f} |")
	print()


	def median(runtime, field):
	    return statistics.median(float(row[field]) for row in rows if row["runtime"] == runtime)


	measures = [
	    ("pod start p50 (ms)", "p50_ms", 1, "{:.1f}"),
	    ("pod start p99 (ms)", "p99_ms", 1, "{:.1f}"),
	    ("RunPodSandbox p50 (ms)", "p50_run_ms", 1, "{:.1f}"),
	    ("CreateContainer p50 (ms)", "p50_create_ms", 1, "{:.1f}"),
	    ("StartContainer p50 (ms)", "p50_start_ms", 1, "{:.1f}"),
	    ("RunPodSandbox p99 (ms)", "p99_run_ms", 1, "{:.1f}"),
	    ("CreateContainer p99 (ms)", "p99_create_ms", 1, "{:.1f}"),
	    ("StartContainer p99 (ms)", "p99_start_ms", 1, "{:.1f}"),
	    ("daemon RSS, image pulled, no pods (MiB)", "idle_rss_kib", 1024, "{:.1f}"),
	    (f"daemon RSS with {pod_count} pods (MiB)", "daemon_rss_kib", 1024, "{:.1f}"),
	    (f"daemon PSS with {pod_count} pods (MiB)", "daemon_pss_kib", 1024, "{:.1f}"),
	    ("per-pod processes, RSS per pod (KiB)", "pod_rss_kib", pod_count, "{:.0f}"),
	    ("per-pod processes, PSS per pod (KiB)", "pod_pss_kib", pod_count, "{:.0f}"),
	]
	print("| median of rounds | berth | containerd | berth / containerd |")
	print("| --- | ---: | ---: | ---: |")
	for label, field, divisor, number in measures:
	    berth, containerd = (median(runtime, field) / divisor for runtime in runtimes)
	    ratio = f"{berth / containerd:.2f}" if containerd else "-"
	    print(f"| {label} | {number.format(berth)} | {number.format(containerd)} | {ratio} |")
EOF
echo
echo "Start latency of each pod in ms (RunPodSandbox + CreateContainer + StartContainer), in start order:"
for file in "${workdir}"/pods-*.tsv; do
	name=${file##*/pods-}
	echo "${name%.tsv}: $(awk -F'\t' '$1 ~ /^[0-9]+$/ { printf "%s%s", sep, $2; sep = " " }' "${file}")"
done
