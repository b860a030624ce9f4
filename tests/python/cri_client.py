#!/usr/bin/python3
"""Call Berth's CRI socket with Python's grpcio, a gRPC client not written in Rust.

Usage: cri_client.py SOCKET [--keep-default-authority]

Calls RuntimeService/Version and ImageService/ListImages on the unix socket
SOCKET and prints one JSON object with the decoded responses:

  {"authority": ..., "version": {"version": ..., "runtime_name": ...,
   "runtime_version": ..., "runtime_api_version": ...},
   "images": [{"id": ..., "repo_tags": [...], "repo_digests": [...],
               "size": ...}]}

It needs no generated stubs: requests are encoded by hand and responses are
read with a minimal protobuf wire-format decoder. A failed call exits with
status 1 and prints the gRPC status code and details on stderr.

grpcio 1.51 (gRPC core 29.0.0, Debian 12's python3-grpcio) sends
`:authority: localhost` for a `unix:` target. Some gRPC clients send the
socket path there instead, which Berth must accept (cri/src/server/authority.rs
lists them and rewrites it). So the channel sets the grpc.default_authority
option to SOCKET, and the requests carry the socket path. With
--keep-default-authority it sets no options and grpcio's default applies.
"""

import argparse
import json
import sys

import grpc

# Seconds each call may take before grpcio gives up.
CALL_TIMEOUT_SECONDS = 10

# VersionRequest{version: "v1"}: field 1, wire type 2, length 2.
VERSION_REQUEST = b"\x0a\x02v1"
# ListImagesRequest{} with no filter.
LIST_IMAGES_REQUEST = b""


def read_varint(data, position):
    """Return the varint at POSITION in DATA and the position after it."""
    result = 0
    shift = 0
    while True:
        if position >= len(data):
            raise ValueError("varint runs past the end of the message")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def fields(message):
    """Yield (field number, value) for each field of a protobuf message.

    Varints become ints. Length-delimited values and fixed 32- and 64-bit
    values stay bytes.
    """
    position = 0
    while position < len(message):
        key, position = read_varint(message, position)
        number, wire_type = key >> 3, key & 0x7
        if wire_type == 0:
            value, position = read_varint(message, position)
        elif wire_type == 1:
            value, position = message[position:position + 8], position + 8
        elif wire_type == 2:
            length, position = read_varint(message, position)
            value, position = message[position:position + length], position + length
        elif wire_type == 5:
            value, position = message[position:position + 4], position + 4
        else:
            raise ValueError(f"field {number} has unsupported wire type {wire_type}")
        yield number, value


def decode_version(message):
    """Decode a VersionResponse: four string fields."""
    names = {1: "version", 2: "runtime_name", 3: "runtime_version",
             4: "runtime_api_version"}
    decoded = {name: "" for name in names.values()}
    for number, value in fields(message):
        if number in names:
            decoded[names[number]] = value.decode()
    return decoded


def decode_image(message):
    """Decode the id, repo_tags, repo_digests and size fields of an Image."""
    image = {"id": "", "repo_tags": [], "repo_digests": [], "size": 0}
    for number, value in fields(message):
        if number == 1:
            image["id"] = value.decode()
        elif number == 2:
            image["repo_tags"].append(value.decode())
        elif number == 3:
            image["repo_digests"].append(value.decode())
        elif number == 4:
            image["size"] = value
    return image


def decode_list_images(message):
    """Decode a ListImagesResponse: repeated Image in field 1."""
    return [decode_image(value) for number, value in fields(message) if number == 1]


def call(channel, method, request):
    """Make one unary call with raw bytes in and out."""
    stub = channel.unary_unary(
        method,
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    return stub(request, timeout=CALL_TIMEOUT_SECONDS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("socket", help="path of Berth's CRI unix socket")
    parser.add_argument(
        "--keep-default-authority",
        action="store_true",
        help="send grpcio's default :authority instead of the socket path",
    )
    args = parser.parse_args()

    authority = None if args.keep_default_authority else args.socket
    options = [] if authority is None else [("grpc.default_authority", authority)]
    with grpc.insecure_channel("unix:" + args.socket, options=options) as channel:
        try:
            version = call(channel, "/runtime.v1.RuntimeService/Version", VERSION_REQUEST)
            images = call(channel, "/runtime.v1.ImageService/ListImages",
                          LIST_IMAGES_REQUEST)
        except grpc.RpcError as err:
            print(f"CRI call failed: {err.code()}: {err.details()}", file=sys.stderr)
            return 1

    json.dump({
        "authority": authority,
        "version": decode_version(version),
        "images": decode_list_images(images),
    }, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
