#!/usr/bin/env bash
# Build Berth's test images without docker and push them to a registry.
#
# Usage: hack/build-test-images.sh [--with-big] [--with-pause] REGISTRY
#
# REGISTRY is HOST:PORT of a plain-HTTP registry, such as the one that
# hack/start-registry.sh starts (BERTH_TEST_REGISTRY in its registry.env).
# hack/write-test-images.py writes every image into one OCI image layout in a
# temporary directory, and skopeo pushes each one as REGISTRY/berth-test/NAME.
# See write-test-images.py for what each image contains. --with-big adds
# berth-test/big (about 100 MB, for benchmarks). --with-pause adds
# berth-test/pause:3.9, a pod sandbox image for containerd whose entrypoint
# sleeps forever.
#
# Prints one line per pushed image: the reference and its manifest digest.
# Running it again on the same host pushes the same digests, because the
# layout is reproducible. skopeo runs with --preserve-digests, which makes it
# fail rather than recompress a layer or rewrite a manifest. Without that
# flag, skopeo 1.9 gzips the uncompressed layer of berth-test/layered on the
# way to the registry. Only berth-test/docker-schema2 is pushed without it,
# because skopeo converts that image to Docker schema 2 media types, and the
# conversion gives the same digest on every run.
set -euo pipefail

usage() {
	echo "usage: $0 [--with-big] [--with-pause] REGISTRY" >&2
	echo "  REGISTRY  HOST:PORT of a plain-HTTP registry, such as 127.0.0.1:5000" >&2
	echo "  --with-big  also build and push berth-test/big (about 100 MB)" >&2
	echo "  --with-pause  also build and push berth-test/pause:3.9 (a sandbox image for containerd)" >&2
	exit 2
}

with_big=()
with_pause=()
registry=
for argument in "$@"; do
	case ${argument} in
	--with-big) with_big=(--with-big) ;;
	--with-pause) with_pause=(--with-pause) ;;
	-h | --help) usage ;;
	-*)
		echo "build-test-images.sh: unknown option '${argument}'" >&2
		usage
		;;
	*)
		[[ -z ${registry} ]] || usage
		registry=${argument}
		;;
	esac
done
[[ -n ${registry} ]] || usage
if ! [[ ${registry} =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]]; then
	echo "build-test-images.sh: invalid REGISTRY '${registry}': expected HOST:PORT, such as 127.0.0.1:5000" >&2
	exit 2
fi

for tool in python3 skopeo zstd; do
	if ! command -v "${tool}" >/dev/null; then
		echo "build-test-images.sh: ${tool} not found; run hack/install-deps.sh" >&2
		exit 1
	fi
done

work_dir=$(mktemp -d)
trap 'rm -rf "${work_dir}"' EXIT
layout="${work_dir}/layout"

echo "build-test-images.sh: writing the OCI image layout in ${layout}" >&2
python3 "$(dirname "$0")/write-test-images.py" "${layout}" "${with_big[@]}" "${with_pause[@]}"

# Push the layout's REF as REGISTRY/NAME, with tag latest unless NAME has a
# tag, and print the reference with its manifest digest. Extra arguments go to
# skopeo copy.
push() {
	local ref=$1 name=$2
	shift 2
	local destination="${registry}/${name}"
	[[ ${name} == *:* ]] || destination+=":latest"
	local digest_file="${work_dir}/digest"

	if ! skopeo copy --quiet --dest-tls-verify=false --digestfile "${digest_file}" \
		"$@" "oci:${layout}:${ref}" "docker://${destination}" >&2; then
		echo "build-test-images.sh: pushing ${destination} failed" >&2
		exit 1
	fi
	echo "${destination} $(cat "${digest_file}")"
}

push busybox berth-test/busybox --preserve-digests
push layered berth-test/layered --preserve-digests
push nonroot berth-test/nonroot --preserve-digests
push nonroot-uid berth-test/nonroot-uid --preserve-digests
push multiarch berth-test/multiarch --preserve-digests --all
push busybox berth-test/docker-schema2 --format v2s2
push evil-traversal berth-test/evil-traversal --preserve-digests
push evil-absolute berth-test/evil-absolute --preserve-digests
push evil-symlink berth-test/evil-symlink --preserve-digests
push evil-symlink-absolute berth-test/evil-symlink-absolute --preserve-digests
push evil-symlink-relative berth-test/evil-symlink-relative --preserve-digests
push evil-bomb berth-test/evil-bomb --preserve-digests
push unknown-mediatype berth-test/unknown-mediatype --preserve-digests
push corruptible berth-test/corruptible --preserve-digests
push medium berth-test/medium --preserve-digests
if [[ ${#with_big[@]} -gt 0 ]]; then
	push big berth-test/big --preserve-digests
fi
if [[ ${#with_pause[@]} -gt 0 ]]; then
	push pause berth-test/pause:3.9 --preserve-digests
fi
