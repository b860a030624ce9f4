#!/usr/bin/env python3
"""Write Berth's test images into one OCI image layout, without docker.

Usage: write-test-images.py LAYOUT_DIR [--with-big] [--with-pause] [--many N]

Every image is a ref (the org.opencontainers.image.ref.name annotation) in
LAYOUT_DIR/index.json, and hack/build-test-images.sh pushes each ref with
skopeo. Layers are built from the host's static /bin/busybox and from files
generated here. Every tar entry has the same mtime and every config the same
creation time, so a second run on the same host writes the same digests.
Compressed bytes depend on the host's zlib and zstd versions, so digests can
differ between hosts.

Refs written:
  busybox              busybox layer; Cmd ["sh"]
  layered              busybox layer plus four layers with hard links,
                       symlinks, a FIFO, an xattr, whiteouts, an opaque
                       directory, a zstd layer and an uncompressed layer
  nonroot              busybox with User "app"
  nonroot-uid          busybox with User "1000:1000"
  multiarch            image index for linux/amd64, linux/arm64/v8, linux/arm/v7
  evil-traversal       layer entry "../../escape.txt"
  evil-absolute        layer entry "/abs-escape.txt"
  evil-symlink         symlink "link" -> "/tmp" then "link/escaped.txt", and
                       symlink "up" -> "../../.." then "up/escaped2.txt"
  evil-symlink-absolute  the first of those two cases alone
  evil-symlink-relative  the second of those two cases alone
  evil-bomb            gzip layer that expands to 64 MiB of zeros in one file
  unknown-mediatype    layer with media type application/vnd.example.unknown
  corruptible          busybox plus a layer of 256 KiB of random bytes used by
                       no other image, so a test may corrupt it in the
                       registry's storage
  medium               busybox plus a layer of 4 MiB of random bytes, slow
                       enough through a throttling proxy to cancel or kill
                       a pull midway
  big                  busybox plus 5 layers of 20 MB of random bytes
                       (only with --with-big)
  pause                busybox with Entrypoint ["/bin/sleep", "infinity"] and
                       no Cmd: a stand-in for a pod sandbox (pause) image, for
                       runtimes that need one (only with --with-pause)
  many-0000 ...        N images (only with --many N), each the busybox layer
                       plus one layer with a file of a few bytes that no
                       other image has, for benchmarks of many images
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile

# 2024-01-01T00:00:00Z: the mtime of every tar entry and the creation time of
# every image config.
EPOCH = 1704067200
CREATED = "2024-01-01T00:00:00Z"

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_UNKNOWN = "application/vnd.example.unknown"

BUSYBOX = "/bin/busybox"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Applets that get a /bin symlink to busybox in every image.
APPLETS = [
    "[", "ash", "awk", "basename", "cat", "chmod", "chown", "chroot", "cmp",
    "cp", "cut", "date", "dd", "df", "diff", "dirname", "du", "echo", "env",
    "expr", "false", "find", "free", "grep", "groups", "gunzip", "gzip",
    "head", "hexdump", "hostname", "httpd", "id", "ifconfig", "ip", "kill",
    "less", "ln", "ls", "md5sum", "mkdir", "mkfifo", "mknod", "mktemp",
    "more", "mount", "mv", "nc", "netstat", "nproc", "nslookup", "od",
    "ping", "printf", "ps", "pwd", "readlink", "realpath", "rm", "rmdir",
    "sed", "seq", "setpriv", "sh", "sha1sum", "sha256sum", "sleep", "stty", "sort",
    "stat", "su", "sync", "tail", "tar", "tee", "test", "timeout", "top",
    "touch", "tr", "true", "umount", "uname", "uniq", "unshare", "uptime",
    "usleep", "vi", "watch", "wc", "wget", "which", "whoami", "xargs", "yes",
    "zcat",
]

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
"""

GROUP = """\
root:x:0:
nogroup:x:65534:
app:x:1000:
"""

# Platforms of the multiarch index, as (architecture, variant).
MULTIARCH_PLATFORMS = [("amd64", None), ("arm64", "v8"), ("arm", "v7")]

BIG_LAYERS = 5
BIG_FILES_PER_LAYER = 4
BIG_FILE_BYTES = 5_000_000
BOMB_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024


class Layout:
    """An OCI image layout directory that blobs and refs are added to."""

    def __init__(self, root):
        self.root = root
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        self.refs = []
        os.makedirs(self.blob_dir, exist_ok=True)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)

    def add_blob_file(self, path, media_type):
        """Move the file at PATH into the layout and return its descriptor."""
        digest = hash_file(path)
        size = os.path.getsize(path)
        os.replace(path, os.path.join(self.blob_dir, digest.split(":", 1)[1]))
        return {"mediaType": media_type, "digest": digest, "size": size}

    def add_blob_bytes(self, data, media_type):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blob_dir, digest.split(":", 1)[1]), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_json(self, value, media_type):
        return self.add_blob_bytes(encode_json(value), media_type)

    def add_ref(self, name, descriptor):
        self.refs.append(
            dict(descriptor, annotations={"org.opencontainers.image.ref.name": name})
        )

    def write_index(self):
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": self.refs,
        }
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(encode_json(index))


class Layer:
    """A layer blob in the layout, with what its config entries need."""

    def __init__(self, descriptor, diff_id, created_by):
        self.descriptor = descriptor
        self.diff_id = diff_id
        self.created_by = created_by


def encode_json(value):
    return json.dumps(value, separators=(",", ":")).encode()


def hash_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


# Tar entries are (TarInfo, bytes or None) pairs. All are owned by root unless
# stated and carry the fixed mtime.


def entry(name, entry_type, mode, uid=0, gid=0, linkname="", pax_headers=None):
    info = tarfile.TarInfo(name)
    info.type = entry_type
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.uname = ""
    info.gname = ""
    info.mtime = EPOCH
    info.linkname = linkname
    if pax_headers:
        info.pax_headers = pax_headers
    return info


def file_entry(name, data, mode=0o644, uid=0, gid=0, pax_headers=None):
    info = entry(name, tarfile.REGTYPE, mode, uid, gid, pax_headers=pax_headers)
    info.size = len(data)
    return info, data


def dir_entry(name, mode=0o755, uid=0, gid=0):
    return entry(name, tarfile.DIRTYPE, mode, uid, gid), None


def symlink_entry(name, target):
    return entry(name, tarfile.SYMTYPE, 0o777, linkname=target), None


def hardlink_entry(name, target):
    return entry(name, tarfile.LNKTYPE, 0o644, linkname=target), None


def fifo_entry(name, mode=0o644):
    return entry(name, tarfile.FIFOTYPE, mode), None


def compress_gzip(source, destination, level):
    # An empty file name and mtime 0 keep the gzip header reproducible.
    with open(destination, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0
    ) as compressed:
        shutil.copyfileobj(source, compressed, CHUNK_BYTES)


def compress_zstd(source_path, destination):
    zstd = shutil.which("zstd")
    if zstd is None:
        sys.exit("write-test-images.py: zstd not found; run hack/install-deps.sh")
    subprocess.run(
        [zstd, "--quiet", "--force", "-19", source_path, "-o", destination],
        check=True,
    )


def write_layer(layout, entries, created_by, media_type=MEDIA_TYPE_LAYER_GZIP,
                gzip_level=9):
    """Write ENTRIES as a tar layer compressed for MEDIA_TYPE.

    The diff ID is the digest of the uncompressed tar for every media type,
    including the unknown one, whose blob is gzip-compressed.
    """
    with tempfile.NamedTemporaryFile(dir=layout.root, delete=False) as tar_file:
        with tarfile.open(fileobj=tar_file, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in entries:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
    tar_path = tar_file.name
    diff_id = hash_file(tar_path)

    if media_type == MEDIA_TYPE_LAYER_TAR:
        blob_path = tar_path
    else:
        blob_path = tar_path + ".compressed"
        if media_type == MEDIA_TYPE_LAYER_ZSTD:
            compress_zstd(tar_path, blob_path)
        else:
            with open(tar_path, "rb") as source:
                compress_gzip(source, blob_path, gzip_level)
        os.remove(tar_path)

    descriptor = layout.add_blob_file(blob_path, media_type)
    return Layer(descriptor, diff_id, created_by)


def write_image(layout, layers, architecture, variant=None, **config):
    """Write the config and manifest of an image and return the manifest descriptor.

    CONFIG contains the fields of the config's "config" object besides Env and
    Cmd. A field set to None, such as Cmd=None, is left out.
    """
    image_config = {
        "created": CREATED,
        "architecture": architecture,
        "os": "linux",
    }
    if variant:
        image_config["variant"] = variant
    fields = dict({"Env": [PATH_ENV], "Cmd": ["sh"]}, **config)
    image_config["config"] = {key: value for key, value in fields.items() if value is not None}
    image_config["rootfs"] = {
        "type": "layers",
        "diff_ids": [layer.diff_id for layer in layers],
    }
    image_config["history"] = [
        {"created": CREATED, "created_by": layer.created_by} for layer in layers
    ]

    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": layout.add_json(image_config, MEDIA_TYPE_CONFIG),
        "layers": [layer.descriptor for layer in layers],
    }
    return layout.add_json(manifest, MEDIA_TYPE_MANIFEST)


def host_architecture():
    machine = platform.machine()
    architectures = {"x86_64": "amd64", "aarch64": "arm64"}
    if machine not in architectures:
        sys.exit(f"write-test-images.py: unsupported host architecture {machine}; "
                 "expected x86_64 or aarch64")
    return architectures[machine]


def read_static_busybox():
    """Return the bytes of /bin/busybox after checking that it is statically linked.

    A dynamically linked busybox (Debian's busybox package rather than
    busybox-static) would not run in an image without a libc.
    """
    try:
        with open(BUSYBOX, "rb") as f:
            binary = f.read()
    except FileNotFoundError:
        sys.exit(f"write-test-images.py: {BUSYBOX} not found; run hack/install-deps.sh")

    if binary[:5] != b"\x7fELF\x02" or binary[5] != 1:
        sys.exit(f"write-test-images.py: {BUSYBOX} is not a 64-bit little-endian ELF file")
    # ELF64 header: e_phoff at offset 32, e_phentsize and e_phnum at 54 and 56.
    (program_headers_offset,) = struct.unpack_from("<Q", binary, 32)
    entry_size, entry_count = struct.unpack_from("<HH", binary, 54)
    pt_interp = 3
    for i in range(entry_count):
        (segment_type,) = struct.unpack_from(
            "<I", binary, program_headers_offset + i * entry_size
        )
        if segment_type == pt_interp:
            sys.exit(f"write-test-images.py: {BUSYBOX} is dynamically linked; "
                     "install busybox-static (hack/install-deps.sh)")

    available = set(
        subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True)
        .stdout.split()
    )
    missing = [applet for applet in APPLETS if applet not in available]
    if missing:
        sys.exit(f"write-test-images.py: {BUSYBOX} lacks the applets {' '.join(missing)}")
    return binary


def busybox_entries(binary):
    entries = [
        dir_entry("bin/"),
        file_entry("bin/busybox", binary, mode=0o755),
    ]
    entries += [symlink_entry(f"bin/{applet}", "busybox") for applet in APPLETS]
    entries += [
        dir_entry("dev/"),
        dir_entry("etc/"),
        file_entry("etc/passwd", PASSWD.encode()),
        file_entry("etc/group", GROUP.encode()),
        dir_entry("home/"),
        dir_entry("home/app/", uid=1000, gid=1000),
        dir_entry("proc/"),
        dir_entry("root/", mode=0o700),
        dir_entry("sys/"),
        dir_entry("tmp/", mode=0o1777),
    ]
    return entries


def layered_layers(layout):
    """Return layers 2 to 5 of the layered image."""
    features = write_layer(layout, [
        dir_entry("data/"),
        file_entry("data/a.txt", b"a from layer 2\n"),
        file_entry("data/b.txt", b"b from layer 2, deleted by layer 3\n"),
        hardlink_entry("data/hard", "data/a.txt"),
        symlink_entry("data/link", "a.txt"),
        file_entry("data/owned.sh", b"#!/bin/sh\necho owned by app\n",
                   mode=0o750, uid=1000, gid=1000),
        file_entry("data/xattr.txt", b"has the xattr user.berth=yes\n",
                   pax_headers={"SCHILY.xattr.user.berth": "yes"}),
        fifo_entry("data/fifo"),
        dir_entry("opaque/"),
        file_entry("opaque/old.txt", b"hidden by the opaque directory in layer 3\n"),
        dir_entry("opaque/sub/"),
        file_entry("opaque/sub/old-nested.txt", b"hidden by the opaque directory in layer 3\n"),
    ], "layer 2: hard link, symlink, owned file, xattr, FIFO, /opaque")

    deletions = write_layer(layout, [
        dir_entry("data/"),
        file_entry("data/.wh.b.txt", b""),
        dir_entry("opaque/"),
        file_entry("opaque/.wh..wh..opq", b""),
        file_entry("opaque/new.txt", b"new.txt from layer 3\n"),
    ], "layer 3: whiteout /data/b.txt, make /opaque opaque")

    zstd = write_layer(
        layout,
        [file_entry("zstd.txt", b"from the zstd layer\n")],
        "layer 4: zstd-compressed",
        media_type=MEDIA_TYPE_LAYER_ZSTD,
    )

    uncompressed = write_layer(
        layout,
        [file_entry("plain.txt", b"from the uncompressed layer\n")],
        "layer 5: uncompressed",
        media_type=MEDIA_TYPE_LAYER_TAR,
    )
    return [features, deletions, zstd, uncompressed]


def write_multiarch(layout, base):
    """Write the image index for the multiarch ref.

    Every platform reuses the host's busybox layer, so only the entry for the
    host architecture (amd64 on an x86_64 host) can run here. The others
    differ from it only in /platform.txt and in the config's architecture.
    """
    manifests = []
    for architecture, variant in MULTIARCH_PLATFORMS:
        name = f"linux/{architecture}" + (f"/{variant}" if variant else "")
        marker = write_layer(
            layout,
            [file_entry("platform.txt", f"{name}\n".encode())],
            f"platform marker {name}",
        )
        descriptor = write_image(layout, [base, marker], architecture, variant)
        target = {"architecture": architecture, "os": "linux"}
        if variant:
            target["variant"] = variant
        manifests.append(dict(descriptor, platform=target))

    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": manifests,
    }
    return layout.add_json(index, MEDIA_TYPE_INDEX)


def write_evil_images(layout, base, architecture):
    def add(ref, entries, created_by, media_type=MEDIA_TYPE_LAYER_GZIP):
        bad = write_layer(layout, entries, created_by, media_type)
        layout.add_ref(ref, write_image(layout, [base, bad], architecture))

    add("evil-traversal",
        [file_entry("../../escape.txt", b"escaped through ..\n")],
        "entry ../../escape.txt")

    # tarfile writes the name as given, with its leading slash.
    add("evil-absolute",
        [file_entry("/abs-escape.txt", b"escaped through an absolute name\n")],
        "entry /abs-escape.txt")

    absolute_symlink = [
        symlink_entry("link", "/tmp"),
        file_entry("link/escaped.txt", b"escaped through symlink link -> /tmp\n"),
    ]
    relative_symlink = [
        symlink_entry("up", "../../.."),
        file_entry("up/escaped2.txt", b"escaped through symlink up -> ../../..\n"),
    ]
    add("evil-symlink", absolute_symlink + relative_symlink,
        "symlinks link -> /tmp and up -> ../../.. with entries below them")
    add("evil-symlink-absolute", absolute_symlink,
        "symlink link -> /tmp with an entry below it")
    add("evil-symlink-relative", relative_symlink,
        "symlink up -> ../../.. with an entry below it")

    add("evil-bomb",
        [file_entry("zeros.bin", bytes(BOMB_BYTES))],
        "64 MiB of zeros")

    add("unknown-mediatype",
        [file_entry("unknown.txt", b"layer with an unknown media type\n")],
        f"layer with media type {MEDIA_TYPE_UNKNOWN}",
        media_type=MEDIA_TYPE_UNKNOWN)


def write_random_image(layout, base, architecture, ref, seed, size):
    """Add an image of the busybox layer plus one layer of `size` random bytes."""
    data = random.Random(seed).randbytes(size)
    layer = write_layer(layout, [file_entry(f"{ref}.bin", data)],
                        f"{size} random bytes", gzip_level=1)
    layout.add_ref(ref, write_image(layout, [base, layer], architecture))


def big_layers(layout):
    """Return 5 layers of incompressible bytes from fixed seeds, about 20 MB each."""
    layers = []
    for layer_number in range(1, BIG_LAYERS + 1):
        rng = random.Random(layer_number)
        entries = [dir_entry(f"big{layer_number}/")]
        for file_number in range(1, BIG_FILES_PER_LAYER + 1):
            entries.append(file_entry(
                f"big{layer_number}/random{file_number}.bin",
                rng.randbytes(BIG_FILE_BYTES),
            ))
        # Level 1 because random bytes do not compress at any level.
        layers.append(write_layer(
            layout, entries, f"big layer {layer_number}: random bytes", gzip_level=1,
        ))
    return layers


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("layout_dir", help="directory to write the OCI image layout to; "
                        "created if missing, and must be empty")
    parser.add_argument("--with-big", action="store_true",
                        help="also write the big image (about 100 MB)")
    parser.add_argument("--with-pause", action="store_true",
                        help="also write the pause image, whose entrypoint sleeps forever")
    parser.add_argument("--many", type=int, default=0, metavar="N",
                        help="also write N images many-0000 to many-<N-1>, each with one "
                        "tiny layer of its own on top of the busybox layer")
    args = parser.parse_args()
    if not 0 <= args.many <= 10000:
        parser.error(f"--many {args.many}: expected a number from 0 to 10000")

    os.makedirs(args.layout_dir, exist_ok=True)
    if os.listdir(args.layout_dir):
        sys.exit(f"write-test-images.py: {args.layout_dir} is not empty")

    architecture = host_architecture()
    layout = Layout(args.layout_dir)
    base = write_layer(layout, busybox_entries(read_static_busybox()),
                       "busybox-static and /etc files")

    layout.add_ref("busybox", write_image(layout, [base], architecture))
    layout.add_ref("layered",
                   write_image(layout, [base] + layered_layers(layout), architecture))
    layout.add_ref("nonroot", write_image(layout, [base], architecture, User="app"))
    layout.add_ref("nonroot-uid",
                   write_image(layout, [base], architecture, User="1000:1000"))
    layout.add_ref("multiarch", write_multiarch(layout, base))
    write_evil_images(layout, base, architecture)
    write_random_image(layout, base, architecture, "corruptible", seed=101, size=256 * 1024)
    write_random_image(layout, base, architecture, "medium", seed=102, size=4 * 1024 * 1024)
    if args.with_big:
        layout.add_ref("big", write_image(layout, [base] + big_layers(layout), architecture))
    if args.with_pause:
        layout.add_ref("pause", write_image(layout, [base], architecture,
                                            Entrypoint=["/bin/sleep", "infinity"], Cmd=None))

    for index in range(args.many):
        ref = f"many-{index:04d}"
        layer = write_layer(layout, [file_entry(f"{ref}.txt", f"{ref}\n".encode())],
                            f"file {ref}.txt")
        layout.add_ref(ref, write_image(layout, [base, layer], architecture))

    layout.write_index()


if __name__ == "__main__":
    main()
