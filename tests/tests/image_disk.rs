//! A pull that runs out of disk space fails with RESOURCE_EXHAUSTED and keeps nothing.

use berth_tests::{Daemon, image};
use tonic::Code;

/// busybox needs about 1 MB for its layer blob and 2 MB unpacked. A 512 KiB disk fills up
/// while the blob downloads; a 2 MiB disk fills up while the layer unpacks.
#[tokio::test]
async fn disk_full_during_download() {
    full_disk_fails_pull_and_keeps_nothing("512k").await;
}

#[tokio::test]
async fn disk_full_during_unpack() {
    full_disk_fails_pull_and_keeps_nothing("2m").await;
}

async fn full_disk_fails_pull_and_keeps_nothing(size: &str) {
    let mut daemon = Daemon::prepare("");
    daemon.mount_root_tmpfs(size);
    daemon.restart().await;

    let err = daemon.pull(&image("busybox")).await.unwrap_err();

    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("No space left"),
        "message should say the disk is full: {}",
        err.message()
    );
    assert!(daemon.list().await.is_empty());
    assert!(
        daemon.entries("ingest").is_empty(),
        "ingest: {:?}",
        daemon.entries("ingest")
    );
    assert!(
        daemon.entries("layers").is_empty(),
        "layers: {:?}",
        daemon.entries("layers")
    );
    assert!(
        daemon.entries("blobs/sha256").is_empty(),
        "blobs: {:?}",
        daemon.entries("blobs/sha256")
    );

    daemon.resize_root_tmpfs("64m");
    let id = daemon
        .pull(&image("busybox"))
        .await
        .expect("pull after space was freed");
    assert!(id.starts_with("sha256:"));
}
