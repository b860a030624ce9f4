//! PullImage, ListImages, ImageStatus and RemoveImage against a real registry.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::process::Command;

use berth_proto::cri::{ImageFilter, ImageFsInfoRequest, ListImagesRequest, StreamImagesRequest};
use berth_tests::{Daemon, image, registry, spec};

fn verbose_info(response: &berth_proto::cri::ImageStatusResponse) -> serde_json::Value {
    serde_json::from_str(&response.info["info"]).expect("verbose info is JSON")
}

#[tokio::test]
async fn pull_busybox_then_list_and_inspect() {
    let daemon = Daemon::start("").await;
    let reference = image("busybox");

    let id = daemon.pull(&reference).await.expect("pull busybox");

    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "image_ref {id:?} is not a config digest"
    );
    let images = daemon.list().await;
    assert_eq!(images.len(), 1);
    let listed = &images[0];
    assert_eq!(listed.id, id);
    assert_eq!(listed.repo_tags, vec![reference.clone()]);
    assert_eq!(listed.repo_digests.len(), 1);
    assert!(
        listed.repo_digests[0].starts_with(&format!("{}/berth-test/busybox@sha256:", registry())),
        "{:?}",
        listed.repo_digests
    );
    assert!(
        listed.size > 500_000,
        "size {} is too small for busybox",
        listed.size
    );
    assert_eq!(listed.uid, None);
    assert_eq!(listed.username, "");

    for name in [
        reference.clone(),
        id.clone(),
        id.trim_start_matches("sha256:").to_string(),
        id[7..19].to_string(),
        listed.repo_digests[0].clone(),
        format!("{}/berth-test/busybox", registry()),
    ] {
        let status = daemon.status(&name, false).await;
        assert_eq!(
            status.image.map(|image| image.id),
            Some(id.clone()),
            "ImageStatus({name})"
        );
    }
}

#[tokio::test]
async fn image_status_verbose_has_config() {
    let daemon = Daemon::start("").await;
    daemon.pull(&image("busybox")).await.expect("pull");

    let status = daemon.status(&image("busybox"), true).await;
    let info = verbose_info(&status);

    assert_eq!(info["imageSpec"]["os"], "linux");
    assert_eq!(info["imageSpec"]["config"]["Cmd"][0], "sh");
    assert!(info["chainID"].as_str().unwrap().starts_with("sha256:"));
}

#[tokio::test]
async fn unknown_image_status_is_empty_not_error() {
    let daemon = Daemon::start("").await;

    let status = daemon.status(&image("never-pulled"), false).await;

    assert!(status.image.is_none());
}

#[tokio::test]
async fn list_filter_and_stream_images() {
    let daemon = Daemon::start("").await;
    let busybox = daemon.pull(&image("busybox")).await.expect("pull busybox");
    let nonroot = daemon
        .pull(&image("nonroot-uid"))
        .await
        .expect("pull nonroot-uid");
    let mut client = daemon.images().await;

    let filtered = client
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: Some(spec(&image("nonroot-uid"))),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    let mut stream = client
        .stream_images(StreamImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        streamed.extend(message.images.into_iter().map(|image| image.id));
    }

    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].id, nonroot);
    streamed.sort();
    let mut expected = vec![busybox, nonroot];
    expected.sort();
    assert_eq!(streamed, expected);
}

#[tokio::test]
async fn image_user_sets_uid_or_username() {
    let daemon = Daemon::start("").await;
    daemon.pull(&image("nonroot")).await.expect("pull nonroot");
    daemon
        .pull(&image("nonroot-uid"))
        .await
        .expect("pull nonroot-uid");

    let named = daemon.status(&image("nonroot"), false).await.image.unwrap();
    let numeric = daemon
        .status(&image("nonroot-uid"), false)
        .await
        .image
        .unwrap();

    assert_eq!(named.username, "app");
    assert_eq!(named.uid, None);
    assert_eq!(numeric.uid.map(|uid| uid.value), Some(1000));
    assert_eq!(numeric.username, "");
}

#[tokio::test]
async fn docker_schema2_image_pulls() {
    let daemon = Daemon::start("").await;

    let id = daemon
        .pull(&image("docker-schema2"))
        .await
        .expect("pull schema 2 image");

    let info = verbose_info(&daemon.status(&id, true).await);
    let layers = info["layers"].as_array().unwrap();
    assert_eq!(
        layers[0]["media_type"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
}

#[tokio::test]
async fn multiarch_index_resolves_host_platform() {
    let daemon = Daemon::start("").await;

    let id = daemon
        .pull(&image("multiarch"))
        .await
        .expect("pull multi-platform image");

    let status = daemon.status(&id, true).await;
    let info = verbose_info(&status);
    assert_eq!(info["imageSpec"]["architecture"], host_arch());
    let repo_digest = &status.image.unwrap().repo_digests[0];
    let index_digest = repo_digest.split('@').nth(1).unwrap();
    assert_ne!(
        index_digest, info["manifestDigest"],
        "the repo digest must name the index, not the platform manifest"
    );
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[tokio::test]
async fn pull_by_digest_records_no_tag() {
    let daemon = Daemon::start("").await;
    daemon.pull(&image("busybox")).await.expect("pull by tag");
    let repo_digest = daemon.list().await[0].repo_digests[0].clone();
    daemon.remove(&image("busybox")).await.expect("remove");

    let id = daemon.pull(&repo_digest).await.expect("pull by digest");

    let listed = daemon.status(&id, false).await.image.unwrap();
    assert!(listed.repo_tags.is_empty(), "{:?}", listed.repo_tags);
    assert_eq!(listed.repo_digests, vec![repo_digest]);
}

#[tokio::test]
async fn remove_image_frees_blobs_and_layers() {
    let daemon = Daemon::start("").await;
    let id = daemon.pull(&image("busybox")).await.expect("pull");
    assert!(!daemon.entries("blobs/sha256").is_empty());
    assert_eq!(daemon.entries("layers").len(), 1);

    daemon
        .remove(&image("busybox"))
        .await
        .expect("remove by tag");

    assert!(daemon.list().await.is_empty());
    assert!(daemon.status(&id, false).await.image.is_none());
    assert!(
        daemon.entries("blobs/sha256").is_empty(),
        "{:?}",
        daemon.entries("blobs/sha256")
    );
    assert!(
        daemon.entries("layers").is_empty(),
        "{:?}",
        daemon.entries("layers")
    );
}

#[tokio::test]
async fn remove_image_by_id_and_digest() {
    let daemon = Daemon::start("").await;
    let id = daemon.pull(&image("busybox")).await.expect("pull busybox");
    daemon
        .pull(&image("nonroot-uid"))
        .await
        .expect("pull nonroot-uid");
    let digest_ref = daemon
        .status(&image("nonroot-uid"), false)
        .await
        .image
        .unwrap()
        .repo_digests[0]
        .clone();

    daemon.remove(&id).await.expect("remove by ID");
    daemon
        .remove(&digest_ref)
        .await
        .expect("remove by digest reference");

    assert!(daemon.list().await.is_empty());
}

#[tokio::test]
async fn remove_unknown_image_succeeds() {
    let daemon = Daemon::start("").await;

    daemon
        .remove(&image("never-pulled"))
        .await
        .expect("remove unknown image");
    daemon
        .remove(&format!("sha256:{}", "0".repeat(64)))
        .await
        .expect("remove unknown ID");
}

#[tokio::test]
async fn shared_layer_is_stored_once() {
    let daemon = Daemon::start("").await;

    daemon.pull(&image("busybox")).await.expect("pull busybox");
    daemon.pull(&image("nonroot")).await.expect("pull nonroot");
    daemon.pull(&image("layered")).await.expect("pull layered");

    // busybox's layer is shared by all three; layered adds four more.
    assert_eq!(
        daemon.entries("layers").len(),
        5,
        "{:?}",
        daemon.entries("layers")
    );
}

#[tokio::test]
async fn layered_image_mounts_as_overlay() {
    let daemon = Daemon::start("").await;
    let id = daemon.pull(&image("layered")).await.expect("pull layered");
    let info = verbose_info(&daemon.status(&id, true).await);
    let layer_dirs: Vec<PathBuf> = info["imageSpec"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|diff_id| {
            let hex = diff_id.as_str().unwrap().trim_start_matches("sha256:");
            daemon.root().join("layers").join(hex)
        })
        .collect();
    assert_eq!(layer_dirs.len(), 5);

    // Layer 3 deletes /data/b.txt and makes /opaque opaque, in overlayfs form.
    let whiteout = std::fs::symlink_metadata(layer_dirs[2].join("data/b.txt")).unwrap();
    assert!(
        whiteout.file_type().is_char_device(),
        "whiteout is not a character device"
    );
    assert_eq!(whiteout.rdev(), 0, "whiteout device number is not 0/0");

    let merged = daemon.dir.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let lower: Vec<String> = layer_dirs
        .iter()
        .rev()
        .map(|dir| dir.display().to_string())
        .collect();
    let mount = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={}", lower.join(":")))
        .arg(&merged)
        .status()
        .expect("run mount");
    assert!(mount.success(), "overlay mount failed");
    let _unmount = Unmount(merged.clone());

    assert!(merged.join("bin/busybox").exists());
    assert!(merged.join("data/a.txt").exists());
    assert!(
        !merged.join("data/b.txt").exists(),
        "whiteout did not hide /data/b.txt"
    );
    assert!(
        !merged.join("opaque/old.txt").exists(),
        "opaque dir did not hide /opaque/old.txt"
    );
    assert!(merged.join("opaque/new.txt").exists());
    assert!(merged.join("zstd.txt").exists(), "zstd layer missing");
    assert!(
        merged.join("plain.txt").exists(),
        "uncompressed layer missing"
    );
    let link = std::fs::read_link(merged.join("data/link")).unwrap();
    assert_eq!(link, PathBuf::from("a.txt"));
    let hard = std::fs::metadata(merged.join("data/hard")).unwrap();
    let target = std::fs::metadata(merged.join("data/a.txt")).unwrap();
    assert_eq!(hard.ino(), target.ino(), "hard link lost");
}

/// Unmounts a test mount when dropped, also when an assertion fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn image_fs_info_reports_usage() {
    let daemon = Daemon::start("").await;
    let mut client = daemon.images().await;
    let empty = client
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();

    daemon.pull(&image("busybox")).await.expect("pull");
    let used = client
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();

    let before = empty.image_filesystems[0]
        .used_bytes
        .as_ref()
        .unwrap()
        .value;
    let after = &used.image_filesystems[0];
    assert_eq!(
        after.fs_id.as_ref().unwrap().mountpoint,
        daemon.root().display().to_string()
    );
    assert!(after.used_bytes.as_ref().unwrap().value > before + 1_000_000);
    assert!(after.inodes_used.as_ref().unwrap().value > 10);
    assert!(after.timestamp > 0);
    assert_eq!(used.container_filesystems.len(), 1);
}

#[tokio::test]
async fn images_persist_across_restart() {
    let mut daemon = Daemon::start("").await;
    let id = daemon.pull(&image("busybox")).await.expect("pull");
    let before = daemon.list().await;

    daemon.stop().await;
    daemon.restart().await;

    assert_eq!(daemon.list().await, before);
    assert_eq!(
        daemon
            .status(&image("busybox"), false)
            .await
            .image
            .unwrap()
            .id,
        id
    );
}

#[tokio::test]
async fn tls_registry_with_configured_ca() {
    let daemon = Daemon::start("").await;
    let reference = format!(
        "{}/berth-test/busybox:latest",
        berth_tests::env("BERTH_TEST_TLS_REGISTRY")
    );

    let id = daemon
        .pull(&reference)
        .await
        .expect("pull over TLS with the configured CA");

    assert!(id.starts_with("sha256:"));
}

#[tokio::test]
async fn mirror_serves_docker_hub_name() {
    let extra = format!(
        "[registries.\"docker.io\"]\nmirrors = [\"{}\"]\n",
        registry()
    );
    let daemon = Daemon::start(&extra).await;

    let id = daemon
        .pull("berth-test/busybox")
        .await
        .expect("pull docker.io name through the mirror");

    let listed = daemon.status(&id, false).await.image.unwrap();
    assert_eq!(
        listed.repo_tags,
        vec!["docker.io/berth-test/busybox:latest".to_string()]
    );
}
