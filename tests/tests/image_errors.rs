//! PullImage failures: each one returns the gRPC code for its cause and a message that names the
//! offending value, and leaves nothing behind in the image store.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use berth_tests::net::closed_address;
use berth_tests::{Daemon, env, image, registry};
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

/// Returns the error of a pull that must fail.
fn expect_failure(result: Result<String, Status>, reference: &str) -> Status {
    match result {
        Ok(id) => panic!("pull of {reference:?} succeeded with image {id}, expected an error"),
        Err(status) => status,
    }
}

/// Path of a file in the test registry's storage (shared by the plain and the TLS registry).
fn registry_storage(relative: &str) -> PathBuf {
    Path::new(&env("BERTH_TEST_REGISTRY_DATA"))
        .join("docker/registry/v2")
        .join(relative)
}

/// Path of a blob's content in the test registry's storage.
fn registry_blob_path(digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    registry_storage(&format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
}

/// Reads the manifest that `berth-test/NAME:latest` points at from the registry's storage.
fn registry_manifest(name: &str) -> serde_json::Value {
    let link = registry_storage(&format!(
        "repositories/berth-test/{name}/_manifests/tags/latest/current/link"
    ));
    let digest = std::fs::read_to_string(&link)
        .unwrap_or_else(|err| panic!("read {}: {err}", link.display()));
    let bytes = std::fs::read(registry_blob_path(digest.trim())).expect("read manifest blob");
    serde_json::from_slice(&bytes).expect("manifest is JSON")
}

/// Returns the digest of the last layer of `berth-test/NAME:latest`: the one that the
/// corruptible, evil and unknown-mediatype images add on top of the busybox layer.
fn top_layer_digest(name: &str) -> String {
    let manifest = registry_manifest(name);
    let layers = manifest["layers"].as_array().expect("manifest has layers");
    layers
        .last()
        .and_then(|layer| layer["digest"].as_str())
        .expect("last layer has a digest")
        .to_string()
}

fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// One byte of a blob in the registry's storage, inverted while this guard lives and restored
/// when it drops, also when the test fails.
struct CorruptedBlob {
    path: PathBuf,
    offset: u64,
    original: u8,
}

impl CorruptedBlob {
    /// Inverts the middle byte of the blob `digest`. The file keeps its length, so the registry
    /// still announces the descriptor's size.
    fn corrupt(digest: &str) -> CorruptedBlob {
        let path = registry_blob_path(digest);
        let mut data =
            std::fs::read(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
        let offset = data.len() / 2;
        if sha256_digest(&data) != digest {
            // A run killed before its guard dropped leaves the byte inverted. Inverting twice
            // restores it.
            data[offset] ^= 0xff;
            assert_eq!(
                sha256_digest(&data),
                digest,
                "{} does not match its digest; rebuild the test images with hack/build-test-images.sh",
                path.display()
            );
            write_byte(&path, offset as u64, data[offset]);
        }
        let original = data[offset];
        write_byte(&path, offset as u64, original ^ 0xff);
        CorruptedBlob {
            path,
            offset: offset as u64,
            original,
        }
    }
}

impl Drop for CorruptedBlob {
    fn drop(&mut self) {
        write_byte(&self.path, self.offset, self.original);
    }
}

/// Overwrites one byte in place, without truncating, so a concurrent reader never sees a short
/// file.
fn write_byte(path: &Path, offset: u64, value: u8) {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|err| panic!("open {} for writing: {err}", path.display()));
    file.write_all_at(&[value], offset)
        .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

#[tokio::test]
async fn malformed_reference_is_invalid_argument() {
    let daemon = Daemon::start("").await;

    for reference in [
        "UPPER/Case",
        "busybox:bad tag",
        "busybox@sha256:tooshort",
        "127.0.0.1:notaport/app",
    ] {
        let status = expect_failure(daemon.pull(reference).await, reference);

        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "pull {reference:?}: {status:?}"
        );
        assert!(
            status.message().contains(reference),
            "the message for {reference:?} does not name it: {}",
            status.message()
        );
    }
    for empty in ["", "   "] {
        let status = expect_failure(daemon.pull(empty).await, empty);

        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "pull {empty:?}: {status:?}"
        );
        assert!(
            status.message().contains("image.image"),
            "the message for an empty reference does not name the field: {}",
            status.message()
        );
    }

    assert!(daemon.list().await.is_empty(), "an image is listed");
    daemon
        .assert_no_leftovers("after malformed references")
        .await;
}

#[tokio::test]
async fn unknown_tag_is_not_found() {
    let daemon = Daemon::start("").await;
    let reference = format!("{}/berth-test/busybox:no-such-tag", registry());

    let status = expect_failure(daemon.pull(&reference).await, &reference);

    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains(&reference),
        "the message does not name {reference}: {}",
        status.message()
    );
    assert!(daemon.list().await.is_empty(), "an image is listed");
    daemon.assert_no_leftovers("after an unknown tag").await;
}

#[tokio::test]
async fn unknown_repository_is_not_found() {
    let daemon = Daemon::start("").await;
    let reference = format!("{}/berth-test/no-such-repository:latest", registry());

    let status = expect_failure(daemon.pull(&reference).await, &reference);

    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains(&reference),
        "the message does not name {reference}: {}",
        status.message()
    );
    assert!(daemon.list().await.is_empty(), "an image is listed");
    daemon
        .assert_no_leftovers("after an unknown repository")
        .await;
}

#[tokio::test]
async fn unknown_digest_is_not_found() {
    let daemon = Daemon::start("").await;
    let digest = format!("sha256:{}", "0".repeat(64));
    let reference = format!("{}/berth-test/busybox@{digest}", registry());

    let status = expect_failure(daemon.pull(&reference).await, &reference);

    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains(&digest),
        "the message does not name {digest}: {}",
        status.message()
    );
    assert!(daemon.list().await.is_empty(), "an image is listed");
    daemon.assert_no_leftovers("after an unknown digest").await;
}

#[tokio::test]
async fn closed_registry_is_unavailable() {
    let closed = closed_address();
    let daemon = Daemon::start(&format!("[registries.\"{closed}\"]\nplain_http = true\n")).await;
    let reference = format!("{closed}/berth-test/busybox:latest");

    let status = expect_failure(daemon.pull(&reference).await, &reference);

    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&closed),
        "the message does not name the registry {closed}: {}",
        status.message()
    );
    assert!(daemon.list().await.is_empty(), "an image is listed");
    daemon.assert_no_leftovers("after a closed registry").await;
}

#[tokio::test]
async fn tls_registry_without_ca_is_unavailable() {
    let daemon = Daemon::start_without_tls_ca("").await;
    let tls = env("BERTH_TEST_TLS_REGISTRY");
    let reference = format!("{tls}/berth-test/busybox:latest");

    let status = expect_failure(daemon.pull(&reference).await, &reference);

    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&tls),
        "the message does not name the registry {tls}: {}",
        status.message()
    );
    assert!(
        status.message().to_lowercase().contains("certificate"),
        "the message does not mention the certificate: {}",
        status.message()
    );
    assert!(daemon.list().await.is_empty(), "an image is listed");
    daemon
        .assert_no_leftovers("after an untrusted certificate")
        .await;
}

#[tokio::test]
async fn tls_registry_with_skip_verify_pulls() {
    let tls = env("BERTH_TEST_TLS_REGISTRY");
    let daemon =
        Daemon::start_without_tls_ca(&format!("[registries.\"{tls}\"]\nskip_verify = true\n"))
            .await;
    let reference = format!("{tls}/berth-test/busybox:latest");

    let id = daemon
        .pull(&reference)
        .await
        .expect("pull over TLS with skip_verify and no CA");

    let listed = daemon.status(&reference, false).await.image;
    assert_eq!(listed.map(|image| image.id), Some(id));
}

#[tokio::test]
async fn corrupted_blob_is_data_loss() {
    // Only this test pulls berth-test/corruptible, and no other image has its top layer, so
    // corrupting that blob in the shared registry storage disturbs no test running in parallel.
    let layer = top_layer_digest("corruptible");
    let daemon = Daemon::start("").await;
    let busybox = daemon.pull(&image("busybox")).await.expect("pull busybox");
    let _corrupted = CorruptedBlob::corrupt(&layer);
    let reference = image("corruptible");

    let status = expect_failure(daemon.pull(&reference).await, &reference);

    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(
        status.message().contains(&layer),
        "the message does not name the layer {layer}: {}",
        status.message()
    );
    let stored = daemon.root().join("blobs/sha256").join(&layer[7..]);
    assert!(
        !stored.exists(),
        "the corrupted blob was stored at {}",
        stored.display()
    );
    let ids: Vec<String> = daemon.list().await.into_iter().map(|i| i.id).collect();
    assert_eq!(ids, vec![busybox], "only busybox must be listed");
    daemon.assert_no_leftovers("after a corrupted blob").await;
}

/// Names that the evil layers try to write outside their layer directory.
const ESCAPE_NAMES: &[&str] = &[
    "escape.txt",
    "abs-escape.txt",
    "escaped.txt",
    "escaped2.txt",
];

/// Returns every file with an `ESCAPE_NAMES` name found where an escaping entry could land.
/// Absolute names and the `/tmp` symlink aim at `/` and `/tmp`. Names with `..` aim at the
/// directories from the daemon's layers directory up to three levels above its temp dir. Any
/// such file inside the daemon's temp dir counts too.
fn escaped_files(daemon: &Daemon) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut directories = vec![PathBuf::from("/tmp"), PathBuf::from("/")];
    directories.extend(
        daemon
            .root()
            .join("layers")
            .ancestors()
            .take(3 + 3)
            .map(Path::to_path_buf),
    );
    for directory in &directories {
        for name in ESCAPE_NAMES {
            let path = directory.join(name);
            if path.symlink_metadata().is_ok() {
                found.push(path);
            }
        }
    }

    let mut pending = vec![daemon.dir.path().to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().map(|kind| kind.is_dir()).unwrap_or(false);
            if is_dir {
                pending.push(path);
            } else if ESCAPE_NAMES.iter().any(|name| entry.file_name() == **name) {
                found.push(path);
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[tokio::test]
async fn escaping_layer_is_failed_precondition() {
    let daemon = Daemon::start("").await;
    let busybox = daemon.pull(&image("busybox")).await.expect("pull busybox");
    let before = escaped_files(&daemon);
    assert!(
        before.is_empty(),
        "files named like the escape targets exist before the test (left by an earlier run?): {before:?}"
    );

    for (name, expected) in [
        ("evil-traversal", "escapes the layer directory"),
        ("evil-absolute", "escapes the layer directory"),
        ("evil-symlink-absolute", "through the symlink"),
        ("evil-symlink-relative", "through the symlink"),
        ("evil-symlink", "through the symlink"),
    ] {
        let layer = top_layer_digest(name);
        let reference = image(name);

        let status = expect_failure(daemon.pull(&reference).await, &reference);

        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{name}: {status:?}"
        );
        assert!(
            status.message().contains(expected),
            "{name}: the message does not say {expected:?}: {}",
            status.message()
        );
        assert!(
            status.message().contains(&layer),
            "{name}: the message does not name the layer {layer}: {}",
            status.message()
        );
        let escaped = escaped_files(&daemon);
        assert!(
            escaped.is_empty(),
            "{name}: files were written outside the layer directory: {escaped:?}"
        );
        let ids: Vec<String> = daemon.list().await.into_iter().map(|i| i.id).collect();
        assert_eq!(
            ids,
            vec![busybox.clone()],
            "{name}: only busybox must be listed"
        );
        daemon.assert_no_leftovers(name).await;
    }
}

#[tokio::test]
async fn layer_over_max_layer_bytes_is_rejected() {
    let daemon = Daemon::start("[image]\nmax_layer_bytes = 16777216\n").await;
    let layer = top_layer_digest("evil-bomb");
    let reference = image("evil-bomb");

    let status = expect_failure(daemon.pull(&reference).await, &reference);

    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("max_layer_bytes"),
        "the message does not name the setting: {}",
        status.message()
    );
    assert!(
        status.message().contains("16777216"),
        "the message does not give the limit: {}",
        status.message()
    );
    assert!(
        status.message().contains(&layer),
        "the message does not name the layer {layer}: {}",
        status.message()
    );
    assert!(daemon.list().await.is_empty(), "an image is listed");
    daemon
        .assert_no_leftovers("after a layer over the limit")
        .await;
}

#[tokio::test]
async fn unknown_layer_media_type_is_rejected() {
    let daemon = Daemon::start("").await;
    let layer = top_layer_digest("unknown-mediatype");
    let reference = image("unknown-mediatype");

    let status = expect_failure(daemon.pull(&reference).await, &reference);

    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("application/vnd.example.unknown"),
        "the message does not name the media type: {}",
        status.message()
    );
    assert!(
        status.message().contains(&layer),
        "the message does not name the layer {layer}: {}",
        status.message()
    );
    assert!(daemon.list().await.is_empty(), "an image is listed");
    daemon
        .assert_no_leftovers("after an unknown media type")
        .await;
}
