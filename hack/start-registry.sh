#!/usr/bin/env bash
# Start two local docker-registry instances (Debian's /usr/bin/docker-registry,
# distribution 2.8) for tests: one on plain HTTP and one on HTTPS with a
# certificate signed by a test CA that this script creates.
#
# Usage: hack/start-registry.sh DIR [HTTP_PORT TLS_PORT]
#
# Everything lives under DIR: the CA (ca.crt, ca.key), the server certificate
# (server.crt, server.key), one config file, log file and pid file per
# instance, one storage root (plain-data) that both instances serve, so an
# image pushed to either is pulled from both, and registry.env, which contains:
#   BERTH_TEST_REGISTRY=127.0.0.1:HTTP_PORT
#   BERTH_TEST_TLS_REGISTRY=127.0.0.1:TLS_PORT
#   BERTH_TEST_CA=DIR/ca.crt
#   BERTH_TEST_REGISTRY_DATA=DIR/plain-data
# Load it with `set -a; . DIR/registry.env; set +a`.
#
# Both instances listen on 127.0.0.1 only, allow blob deletion and have no
# authentication. Without ports, the script picks two free ones. It exits
# once GET /v2/ returns 200 on both instances. Stop them with hack/stop-registry.sh DIR.
set -euo pipefail

readonly registry_bin=/usr/bin/docker-registry
readonly start_timeout_seconds=30

usage() {
	echo "usage: $0 DIR [HTTP_PORT TLS_PORT]" >&2
	exit 2
}

die() {
	echo "start-registry.sh: $*" >&2
	exit 1
}

if [[ $# -ne 1 && $# -ne 3 ]]; then
	usage
fi

for tool in "${registry_bin}" openssl curl python3; do
	command -v "${tool}" >/dev/null || die "${tool} not found; run hack/install-deps.sh"
done

mkdir -p "$1"
dir=$(cd "$1" && pwd)
# registry.env is read as plain KEY=VALUE lines without quoting.
if [[ ${dir} =~ [^A-Za-z0-9._/+-] ]]; then
	die "DIR '${dir}' contains characters other than letters, digits and ._/+-, which registry.env cannot contain unquoted"
fi

for name in plain tls; do
	pid_file="${dir}/${name}.pid"
	if [[ -f ${pid_file} ]] && kill -0 "$(cat "${pid_file}")" 2>/dev/null; then
		die "the ${name} registry in ${dir} is already running (PID $(cat "${pid_file}")); run hack/stop-registry.sh ${dir} first"
	fi
done

# Print a TCP port on 127.0.0.1 that is free now. Another process can still
# take it before the registry binds it; the start then fails and the log shows
# "address already in use".
free_port() {
	python3 -c '
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
'
}

if [[ $# -eq 3 ]]; then
	http_port=$2
	tls_port=$3
	for port in "${http_port}" "${tls_port}"; do
		if ! [[ ${port} =~ ^[0-9]+$ ]] || ((10#${port} < 1 || 10#${port} > 65535)); then
			die "invalid port '${port}': expected a number from 1 to 65535"
		fi
	done
else
	http_port=$(free_port)
	tls_port=$(free_port)
	while [[ ${tls_port} == "${http_port}" ]]; do
		tls_port=$(free_port)
	done
fi

# Create the CA and the server certificate once, so that clients that already
# trust DIR/ca.crt keep working when the registries restart on the same DIR.
# Both use P-256 keys and X.509 v3 extensions, as strict verifiers such as
# rustls require.
create_certificates() {
	local extensions="${dir}/server-ext.cnf"

	openssl req -x509 -new -nodes -days 3650 \
		-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "${dir}/ca.key" -out "${dir}/ca.crt" \
		-subj "/CN=Berth test registry CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash" 2>/dev/null

	openssl req -new -nodes \
		-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "${dir}/server.key" -out "${dir}/server.csr" \
		-subj "/CN=localhost" 2>/dev/null

	cat >"${extensions}" <<-'EOF'
		basicConstraints = critical,CA:FALSE
		keyUsage = critical,digitalSignature,keyEncipherment
		extendedKeyUsage = serverAuth
		subjectAltName = IP:127.0.0.1,DNS:localhost
		subjectKeyIdentifier = hash
		authorityKeyIdentifier = keyid,issuer
	EOF

	openssl x509 -req -days 825 -in "${dir}/server.csr" \
		-CA "${dir}/ca.crt" -CAkey "${dir}/ca.key" \
		-CAserial "${dir}/ca.srl" -CAcreateserial \
		-extfile "${extensions}" -out "${dir}/server.crt" 2>/dev/null

	rm -f "${dir}/server.csr" "${extensions}"
	chmod 600 "${dir}/ca.key" "${dir}/server.key"
}

if [[ ! -f ${dir}/ca.crt || ! -f ${dir}/server.crt || ! -f ${dir}/server.key ]]; then
	create_certificates
fi

# Write DIR/NAME.yml for one instance. The optional fourth argument adds TLS.
write_config() {
	local name=$1 port=$2 data=$3 tls=${4:-}

	mkdir -p "${data}"
	{
		echo "version: 0.1"
		echo "log:"
		echo "  level: info"
		echo "  fields:"
		echo "    service: berth-test-registry-${name}"
		echo "storage:"
		echo "  filesystem:"
		echo "    rootdirectory: ${data}"
		echo "  delete:"
		echo "    enabled: true"
		echo "http:"
		echo "  addr: 127.0.0.1:${port}"
		# Without a secret the registry logs a warning and makes one up.
		echo "  secret: $(openssl rand -hex 16)"
		if [[ -n ${tls} ]]; then
			echo "  tls:"
			echo "    certificate: ${dir}/server.crt"
			echo "    key: ${dir}/server.key"
		fi
	} >"${dir}/${name}.yml"
}

write_config plain "${http_port}" "${dir}/plain-data"
# The TLS instance serves the same storage, so every pushed image is reachable over TLS too.
write_config tls "${tls_port}" "${dir}/plain-data" with-tls

# nohup keeps the registries running after the calling shell exits. Their
# output goes to the log files, so a caller that captures this script's
# output with $(...) does not wait for them.
for name in plain tls; do
	nohup "${registry_bin}" serve "${dir}/${name}.yml" \
		</dev/null >"${dir}/${name}.log" 2>&1 &
	echo $! >"${dir}/${name}.pid"
done

# Wait until GET /v2/ returns 200. The TLS check verifies the certificate
# against DIR/ca.crt under both subject alternative names.
wait_ready() {
	local name=$1
	shift
	local pid
	pid=$(cat "${dir}/${name}.pid")

	for ((i = 0; i < start_timeout_seconds * 10; i++)); do
		if ! kill -0 "${pid}" 2>/dev/null; then
			echo "start-registry.sh: the ${name} registry (PID ${pid}) exited; last lines of ${dir}/${name}.log:" >&2
			tail -n 20 "${dir}/${name}.log" >&2
			"$(dirname "$0")/stop-registry.sh" "${dir}" >/dev/null
			exit 1
		fi
		if curl --silent --fail --output /dev/null --max-time 2 "$@"; then
			return 0
		fi
		sleep 0.1
	done

	echo "start-registry.sh: the ${name} registry (PID ${pid}) did not return 200 for $* within ${start_timeout_seconds} s; see ${dir}/${name}.log" >&2
	"$(dirname "$0")/stop-registry.sh" "${dir}" >/dev/null
	exit 1
}

wait_ready plain "http://127.0.0.1:${http_port}/v2/"
wait_ready tls --cacert "${dir}/ca.crt" "https://127.0.0.1:${tls_port}/v2/"
wait_ready tls --cacert "${dir}/ca.crt" \
	--resolve "localhost:${tls_port}:127.0.0.1" "https://localhost:${tls_port}/v2/"

cat >"${dir}/registry.env" <<EOF
BERTH_TEST_REGISTRY=127.0.0.1:${http_port}
BERTH_TEST_TLS_REGISTRY=127.0.0.1:${tls_port}
BERTH_TEST_CA=${dir}/ca.crt
BERTH_TEST_REGISTRY_DATA=${dir}/plain-data
EOF

echo "start-registry.sh: plain HTTP registry on 127.0.0.1:${http_port} (PID $(cat "${dir}/plain.pid"))"
echo "start-registry.sh: TLS registry on 127.0.0.1:${tls_port} (PID $(cat "${dir}/tls.pid")), CA ${dir}/ca.crt"
echo "start-registry.sh: wrote ${dir}/registry.env"
