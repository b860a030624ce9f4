#!/usr/bin/env bash
# Runs the cgroup tests again inside a throw-away QEMU guest whose only cgroup hierarchy is
# cgroup v2: the end-to-end tests in tests/tests/runtime_cgroups.rs, cgroup_driver.rs and
# check.rs, and berth-cri's unit tests under `cgroups::`. A host with cgroup v1 controllers
# (v1 or hybrid) cannot run Berth's v2 code paths against a real kernel, so this complements
# hack/test.sh rather than replacing it.
#
# Usage: sudo V2VM_TOOLS=DIR hack/test-cgroup-v2.sh [--driver cgroupfs|systemd|all]
#
#   --driver cgroupfs  boot the guest with a busybox init and test the cgroupfs driver
#   --driver systemd   boot the guest with systemd as PID 1 and test the systemd driver
#   --driver all       both, one after the other (the default)
#
# Environment:
#   V2VM_TOOLS          (required) directory with run-in-guest.sh and build-guest.sh, the tools
#                       that build and boot the guest
#   BERTH_V2VM_DIR      where the guest image lives (default /var/cache/berth-v2vm). The script
#                       builds the image when it is missing or was built with other packages.
#   BERTH_V2VM_TIMEOUT  seconds after which a guest run is killed (default 1800)
#   BERTH_V2VM_TEST_THREADS  tests that each test binary runs at once in the guest (default 2;
#                       1 doubles the run time of the end-to-end tests)
#   CARGO_TARGET_DIR    the cargo build directory, as for hack/test.sh
#   RUST_BACKTRACE      passed on to the tests in the guest when set
#
# The host builds the test images into a registry's storage directory under /var/tmp (the
# guest cannot see the host's /tmp) and compiles the test binaries. The guest serves that
# storage with its own registry on 127.0.0.1 and runs copies of the host-built binaries in the
# shared work directory. Only that directory is shared, so the repository may live anywhere,
# /tmp included. The guest has no network interface
# besides loopback. The guest runs under QEMU's TCG emulation, several times slower than the
# host: on a two-core host, the cgroupfs pass took about 1 minute in the guest, plus 15 s to
# build the images and binaries once they were compiled.
set -euo pipefail

cd "$(dirname "$0")/.."

# Debian packages that the guest needs beyond those build-guest.sh always installs (runc,
# busybox-static, iproute2, systemd and a few more). crun is the default OCI runtime on a pure
# cgroup v2 host. The CNI plugins and iptables set up pod networks, docker-registry serves the
# test images, and util-linux and mount provide mount and nsenter.
# ca-certificates too, because berth cannot build its registry client, and so cannot pull,
# without a system CA store.
readonly guest_packages=crun,containernetworking-plugins,iptables,docker-registry,util-linux,mount,ca-certificates
# Ports of the registries inside the guest. Not 5000: in the guest that boots systemd, the
# docker-registry package's own service listens there.
readonly guest_registry_port=15000
readonly guest_tls_registry_port=15001

usage() {
	echo "usage: $0 [--driver cgroupfs|systemd|all]" >&2
	echo "  --driver  the cgroup driver to test: cgroupfs, systemd, or all (default)" >&2
	echo "  Set V2VM_TOOLS to the directory with run-in-guest.sh and build-guest.sh." >&2
	exit 2
}

die() {
	echo "test-cgroup-v2.sh: $*" >&2
	exit 1
}

driver_option=all
while [[ $# -gt 0 ]]; do
	case $1 in
	--driver)
		[[ $# -ge 2 ]] || usage
		driver_option=$2
		shift 2
		;;
	--driver=*)
		driver_option=${1#--driver=}
		shift
		;;
	-h | --help) usage ;;
	*)
		echo "test-cgroup-v2.sh: unknown argument '$1'" >&2
		usage
		;;
	esac
done
case ${driver_option} in
cgroupfs | systemd) drivers=("${driver_option}") ;;
all) drivers=(cgroupfs systemd) ;;
*)
	echo "test-cgroup-v2.sh: invalid driver '${driver_option}': expected cgroupfs, systemd or all" >&2
	usage
	;;
esac

if [[ ${EUID} -ne 0 ]]; then
	die "run as root: building the guest image needs debootstrap, and the tests create cgroups and mount overlayfs in the guest"
fi
if [[ -z ${V2VM_TOOLS:-} ]]; then
	die "V2VM_TOOLS is not set: set it to the directory that contains run-in-guest.sh and build-guest.sh"
fi
for tool in run-in-guest.sh build-guest.sh; do
	if [[ ! -x ${V2VM_TOOLS}/${tool} ]]; then
		die "${V2VM_TOOLS}/${tool} not found or not executable: check V2VM_TOOLS"
	fi
done
for tool in cargo python3; do
	command -v "${tool}" >/dev/null || die "${tool} not found; run hack/install-deps.sh and install a Rust toolchain"
done

image_dir=${BERTH_V2VM_DIR:-/var/cache/berth-v2vm}
guest_timeout=${BERTH_V2VM_TIMEOUT:-1800}
if ! [[ ${guest_timeout} =~ ^[0-9]+$ ]] || ((10#${guest_timeout} < 1)); then
	die "invalid BERTH_V2VM_TIMEOUT '${guest_timeout}': expected a number of seconds, 1 or more"
fi
test_threads=${BERTH_V2VM_TEST_THREADS:-2}
if ! [[ ${test_threads} =~ ^[0-9]+$ ]] || ((10#${test_threads} < 1)); then
	die "invalid BERTH_V2VM_TEST_THREADS '${test_threads}': expected a number of threads, 1 or more"
fi

hack/install-deps.sh

# Build the guest image when it is missing, when the stamp file shows that it was built with
# other extra packages, or when it has no stamp (an image built by hand). The stamp is written
# only after a successful build, so an interrupted build is redone on the next run.
stamp="${image_dir}/berth-guest-packages"
image_ready() {
	local file
	for file in vmlinuz initrd.img rootfs.img; do
		[[ -f ${image_dir}/images/${file} ]] || return 1
	done
	[[ -f ${stamp} && $(cat "${stamp}") == "${guest_packages}" ]]
}
if image_ready; then
	echo "test-cgroup-v2.sh: using the guest image in ${image_dir}"
else
	echo "test-cgroup-v2.sh: building the guest image in ${image_dir} with ${guest_packages}"
	rm -f "${stamp}"
	mkdir -p "${image_dir}"
	V2VM_DIR=${image_dir} EXTRA_PACKAGES=${guest_packages} "${V2VM_TOOLS}/build-guest.sh"
	echo "${guest_packages}" >"${stamp}"
fi

# The work directory is shared with the guest, so it cannot be under /tmp: the guest mounts
# its own tmpfs there.
workdir=$(mktemp -d /var/tmp/berth-cgroup-v2.XXXXXX)
cleanup() {
	if [[ -d ${workdir}/registry ]]; then
		hack/stop-registry.sh "${workdir}/registry" >/dev/null || true
	fi
	rm -rf "${workdir}"
}
trap cleanup EXIT

hack/start-registry.sh "${workdir}/registry"
set -a
# shellcheck source=/dev/null
. "${workdir}/registry/registry.env"
set +a
hack/build-test-images.sh "${BERTH_TEST_REGISTRY}"
# The guest serves the same storage with a registry of its own.
hack/stop-registry.sh "${workdir}/registry"

# Print the executable of the target named NAME in cargo's JSON messages in FILE: the test
# harness when KIND is test, the plain build otherwise. Fails unless there is exactly one.
# (cargo test --no-run also builds the package's binaries, which the integration tests run.)
executable() {
	local file=$1 name=$2 kind=$3 found
	found=$(python3 -c '
import json
import sys

name, want_test = sys.argv[1], sys.argv[2] == "test"
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    message = json.loads(line)
    if (
        message.get("reason") == "compiler-artifact"
        and message.get("executable")
        and message["target"]["name"] == name
        and message["profile"]["test"] == want_test
    ):
        print(message["executable"])
' "${name}" "${kind}" <"${file}")
	if [[ -z ${found} || ${found} == *$'\n'* ]]; then
		die "expected one executable of target ${name} in cargo's output, found: ${found:-none}"
	fi
	echo "${found}"
}

# json-render-diagnostics prints compiler errors on stderr as usual and only the artifact
# messages as JSON on stdout.
cargo build -p berth-agent --message-format=json-render-diagnostics >"${workdir}/build-agent.json"
berth_bin=$(executable "${workdir}/build-agent.json" berth bin)
# The same build as hack/test.sh's `cargo test --workspace`, so that a run after it compiles
# nothing: a build of single packages resolves dependency features differently.
cargo test --no-run --workspace --message-format=json-render-diagnostics >"${workdir}/build-tests.json"
cgroup_tests=$(executable "${workdir}/build-tests.json" runtime_cgroups test)
driver_tests=$(executable "${workdir}/build-tests.json" cgroup_driver test)
check_tests=$(executable "${workdir}/build-tests.json" check test)
cri_tests=$(executable "${workdir}/build-tests.json" berth_cri test)

# The guest runs copies of the binaries, because another cargo command on the host may rebuild
# the target directory while the guest runs. A binary replaced during the run would mix two
# builds, such as a daemon of one build that starts monitors of the other.
mkdir "${workdir}/bin"
cp "${berth_bin}" "${cgroup_tests}" "${driver_tests}" "${check_tests}" "${cri_tests}" "${workdir}/bin/"
berth_bin=${workdir}/bin/$(basename "${berth_bin}")
cgroup_tests=${workdir}/bin/$(basename "${cgroup_tests}")
driver_tests=${workdir}/bin/$(basename "${driver_tests}")
check_tests=${workdir}/bin/$(basename "${check_tests}")
cri_tests=${workdir}/bin/$(basename "${cri_tests}")

# The script that runs in the guest. It reads its settings from the environment that
# run-in-guest.sh exports (V2VM_ENV below).
cat >"${workdir}/guest.sh" <<'GUEST'
#!/usr/bin/env bash
# Runs inside the guest: starts the test registries on the host-built storage, runs each test
# binary and writes one result line per binary to GUEST_RESULTS.
set -euo pipefail

fs_type=$(stat -f -c %T /sys/fs/cgroup)
if [[ ${fs_type} != cgroup2fs ]]; then
	echo "guest: /sys/fs/cgroup is ${fs_type}, not cgroup2fs; the guest is not a cgroup v2 system" >&2
	exit 1
fi
echo "guest: kernel $(uname -r), init $(cat /proc/1/comm), cgroup v2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"

registry_dir=/tmp/berth-registry
mkdir -p "${registry_dir}"
registry_pids=()
stop_registries() {
	local pid
	for pid in "${registry_pids[@]}"; do
		kill -TERM "${pid}" 2>/dev/null || true
		wait "${pid}" 2>/dev/null || true
	done
}
trap stop_registries EXIT

# Write the config of one registry instance. The optional third argument adds TLS with the
# certificate that hack/start-registry.sh created on the host.
write_registry_config() {
	local name=$1 port=$2 tls=${3:-}
	{
		echo "version: 0.1"
		echo "log:"
		echo "  level: warn"
		echo "storage:"
		echo "  filesystem:"
		echo "    rootdirectory: ${GUEST_REGISTRY_DATA}"
		echo "http:"
		echo "  addr: 127.0.0.1:${port}"
		echo "  secret: $(cat /proc/sys/kernel/random/uuid)"
		if [[ -n ${tls} ]]; then
			echo "  tls:"
			echo "    certificate: ${GUEST_REGISTRY_CERT_DIR}/server.crt"
			echo "    key: ${GUEST_REGISTRY_CERT_DIR}/server.key"
		fi
	} >"${registry_dir}/${name}.yml"
}

start_registry() {
	local name=$1
	/usr/bin/docker-registry serve "${registry_dir}/${name}.yml" \
		</dev/null >"${registry_dir}/${name}.log" 2>&1 &
	registry_pids+=("$!")
}

# Wait until PORT accepts TCP connections, failing after 60 s or when PID exits.
wait_for_port() {
	local name=$1 port=$2 pid=$3 i
	for ((i = 0; i < 600; i++)); do
		if ! kill -0 "${pid}" 2>/dev/null; then
			echo "guest: the ${name} registry (PID ${pid}) exited; its log:" >&2
			cat "${registry_dir}/${name}.log" >&2
			exit 1
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "guest: the ${name} registry did not listen on port ${port} within 60 s; its log:" >&2
	cat "${registry_dir}/${name}.log" >&2
	exit 1
}

write_registry_config plain "${GUEST_REGISTRY_PORT}"
write_registry_config tls "${GUEST_TLS_REGISTRY_PORT}" with-tls
start_registry plain
start_registry tls
wait_for_port plain "${GUEST_REGISTRY_PORT}" "${registry_pids[0]}"
wait_for_port tls "${GUEST_TLS_REGISTRY_PORT}" "${registry_pids[1]}"
if ! busybox wget -q -O /dev/null "http://127.0.0.1:${GUEST_REGISTRY_PORT}/v2/"; then
	echo "guest: GET /v2/ on the plain registry failed; its log:" >&2
	cat "${registry_dir}/plain.log" >&2
	exit 1
fi

export BERTH_TEST_REGISTRY=127.0.0.1:${GUEST_REGISTRY_PORT}
export BERTH_TEST_TLS_REGISTRY=127.0.0.1:${GUEST_TLS_REGISTRY_PORT}
export BERTH_TEST_CA=${GUEST_REGISTRY_CERT_DIR}/ca.crt
export BERTH_TEST_REGISTRY_DATA=${GUEST_REGISTRY_DATA}
export BERTH_BIN=${GUEST_BERTH_BIN}
export BERTH_TEST_CGROUP_DRIVER=${GUEST_DRIVER}
# Daemon roots, sockets and overlay upper dirs go under the temp dir, which must be the
# guest's own tmpfs: 9p shares cannot hold sockets or overlayfs whiteouts.
unset TMPDIR

: >"${GUEST_RESULTS}"
failed=0
# Run one test binary in DIR with CARGO_MANIFEST_DIR set to it, and record the result. The
# tests run here read no files of their package.
run_tests() {
	local name=$1 dir=$2 binary=$3 start end rc
	shift 3
	echo "guest: running ${name}: ${binary} $*"
	start=$(date +%s)
	rc=0
	(cd "${dir}" && CARGO_MANIFEST_DIR=${dir} "${binary}" "$@") || rc=$?
	end=$(date +%s)
	if [[ ${rc} -eq 0 ]]; then
		echo "passed  ${name} ($((end - start)) s)" >>"${GUEST_RESULTS}"
	else
		echo "FAILED  ${name} (exit code ${rc}, $((end - start)) s)" >>"${GUEST_RESULTS}"
		failed=1
	fi
}

run_tests "berth-cri unit tests cgroups::" "${GUEST_WORKDIR}" "${GUEST_CRI_TESTS}" \
	cgroups:: --test-threads="${GUEST_TEST_THREADS}"
run_tests "tests/tests/runtime_cgroups.rs" "${GUEST_WORKDIR}" "${GUEST_CGROUP_TESTS}" \
	--test-threads="${GUEST_TEST_THREADS}"
run_tests "tests/tests/cgroup_driver.rs" "${GUEST_WORKDIR}" "${GUEST_DRIVER_TESTS}" \
	--test-threads="${GUEST_TEST_THREADS}"
run_tests "tests/tests/check.rs" "${GUEST_WORKDIR}" "${GUEST_CHECK_TESTS}" \
	--test-threads="${GUEST_TEST_THREADS}"
exit "${failed}"
GUEST

export GUEST_REGISTRY_DATA=${BERTH_TEST_REGISTRY_DATA}
export GUEST_REGISTRY_CERT_DIR=${workdir}/registry
export GUEST_REGISTRY_PORT=${guest_registry_port}
export GUEST_TLS_REGISTRY_PORT=${guest_tls_registry_port}
export GUEST_BERTH_BIN=${berth_bin}
export GUEST_CGROUP_TESTS=${cgroup_tests}
export GUEST_DRIVER_TESTS=${driver_tests}
export GUEST_CHECK_TESTS=${check_tests}
export GUEST_CRI_TESTS=${cri_tests}
export GUEST_WORKDIR=${workdir}
export GUEST_TEST_THREADS=${test_threads}

# Boot one guest for DRIVER and run the tests in it. Sets the summary line of the driver.
declare -A summary
any_failed=0
run_guest() {
	local driver=$1 init start end rc
	export GUEST_DRIVER=${driver}
	export GUEST_RESULTS=${workdir}/results-${driver}.txt
	case ${driver} in
	cgroupfs) init=busybox ;;
	systemd) init=systemd ;;
	esac
	rm -f "${GUEST_RESULTS}"

	echo "test-cgroup-v2.sh: testing the ${driver} driver in a cgroup v2 guest (init: ${init})"
	start=$(date +%s)
	rc=0
	V2VM_DIR=${image_dir} V2VM_INIT=${init} \
		V2VM_TIMEOUT=${guest_timeout} \
		V2VM_ENV="GUEST_REGISTRY_DATA GUEST_REGISTRY_CERT_DIR GUEST_REGISTRY_PORT GUEST_TLS_REGISTRY_PORT GUEST_BERTH_BIN GUEST_CGROUP_TESTS GUEST_DRIVER_TESTS GUEST_CHECK_TESTS GUEST_CRI_TESTS GUEST_WORKDIR GUEST_TEST_THREADS GUEST_DRIVER GUEST_RESULTS RUST_BACKTRACE" \
		"${V2VM_TOOLS}/run-in-guest.sh" "${workdir}" bash "${workdir}/guest.sh" || rc=$?
	end=$(date +%s)

	local text="${driver} driver: "
	if [[ ${rc} -eq 0 ]]; then
		text+="passed"
	elif [[ ${rc} -eq 124 ]]; then
		text+="FAILED (timed out after ${guest_timeout} s; set BERTH_V2VM_TIMEOUT to wait longer)"
		any_failed=1
	else
		text+="FAILED (guest exit code ${rc})"
		any_failed=1
	fi
	text+=" in $((end - start)) s"
	if [[ -s ${GUEST_RESULTS} ]]; then
		text+=$'\n'$(sed 's/^/    /' "${GUEST_RESULTS}")
	fi
	summary[${driver}]=${text}
}

for driver in "${drivers[@]}"; do
	run_guest "${driver}"
done

echo
echo "test-cgroup-v2.sh: summary"
for driver in "${drivers[@]}"; do
	echo "  ${summary[${driver}]}"
done
exit "${any_failed}"
