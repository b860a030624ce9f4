#!/usr/bin/env bash
# Stop the registries that hack/start-registry.sh started in DIR.
#
# Usage: hack/stop-registry.sh DIR
#
# Sends SIGTERM to the PIDs in DIR/plain.pid and DIR/tls.pid, then SIGKILL to
# any that is still running after 10 s, and removes the pid files. A PID whose
# process is gone, or is no longer a registry serving a config in DIR, is
# skipped. DIR itself stays for the caller to inspect or remove.
set -euo pipefail

readonly stop_timeout_seconds=10

if [[ $# -ne 1 ]]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
if [[ ! -d $1 ]]; then
	echo "stop-registry.sh: directory '$1' not found" >&2
	exit 1
fi
dir=$(cd "$1" && pwd)

# Succeed when PID runs docker-registry with a config file in DIR, so that a
# PID reused by an unrelated process after the registry exited is not killed.
is_our_registry() {
	local pid=$1 name=$2 cmdline
	cmdline=$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null) || return 1
	[[ ${cmdline} == *docker-registry*" serve ${dir}/${name}.yml"* ]]
}

if [[ ! -f ${dir}/plain.pid && ! -f ${dir}/tls.pid ]]; then
	echo "stop-registry.sh: no pid files in ${dir}; nothing to stop"
	exit 0
fi

for name in plain tls; do
	pid_file="${dir}/${name}.pid"
	[[ -f ${pid_file} ]] || continue
	pid=$(cat "${pid_file}")

	if ! is_our_registry "${pid}" "${name}"; then
		echo "stop-registry.sh: the ${name} registry (PID ${pid}) is not running"
		rm -f "${pid_file}"
		continue
	fi

	kill -TERM "${pid}"
	for ((i = 0; i < stop_timeout_seconds * 10; i++)); do
		is_our_registry "${pid}" "${name}" || break
		sleep 0.1
	done
	if is_our_registry "${pid}" "${name}"; then
		echo "stop-registry.sh: the ${name} registry (PID ${pid}) did not exit ${stop_timeout_seconds} s after SIGTERM; sending SIGKILL" >&2
		kill -KILL "${pid}"
	fi

	rm -f "${pid_file}"
	echo "stop-registry.sh: stopped the ${name} registry (PID ${pid})"
done
