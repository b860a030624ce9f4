//! The collector inside `berth serve`: CreateContainer moves an image's last-used time, and
//! the max-unused-age trigger removes an idle image while an image in use stays.

use std::time::Duration;

use berth_tests::image;
use berth_tests::pods::{PodDaemon, container_config};

/// Reads `lastUsedNs` from the verbose ImageStatus of `name`.
async fn last_used_ns(pods: &PodDaemon, name: &str) -> u64 {
    let status = pods.daemon.status(name, true).await;
    let info: serde_json::Value =
        serde_json::from_str(&status.info["info"]).expect("verbose info is JSON");
    info["lastUsedNs"].as_u64().expect("info.lastUsedNs")
}

#[tokio::test]
async fn create_container_moves_last_used() {
    let pods = PodDaemon::start(
        "[gc]\nschedule = \"\"\nhigh_threshold_percent = 100\nlow_threshold_percent = 99\n",
    )
    .await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let pulled = last_used_ns(&pods, &image("busybox")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let sandbox = pods.run_pod(pods.pod_config("gc-touch")).await;
    pods.create(
        &sandbox,
        pods.pod_config("gc-touch"),
        container_config("main", &image("busybox"), &["true"]),
    )
    .await;

    let created = last_used_ns(&pods, &image("busybox")).await;
    assert!(
        created > pulled,
        "lastUsedNs {created} did not move past the pull time {pulled}"
    );
}

#[tokio::test]
async fn daemon_removes_images_unused_too_long() {
    let pods = PodDaemon::start(
        "[gc]\nschedule = \"\"\nhigh_threshold_percent = 100\nlow_threshold_percent = 99\n\
         min_age_seconds = 0\nmax_unused_age_seconds = 5\ndisk_check_interval_seconds = 1\n",
    )
    .await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let sandbox = pods.run_pod(pods.pod_config("gc-idle")).await;
    pods.create(
        &sandbox,
        pods.pod_config("gc-idle"),
        container_config("main", &image("busybox"), &["sleep", "60"]),
    )
    .await;
    let idle = pods
        .daemon
        .pull(&image("layered"))
        .await
        .expect("pull layered");

    let listed_ids = || async {
        pods.daemon
            .list()
            .await
            .into_iter()
            .map(|image| image.id)
            .collect::<Vec<_>>()
    };
    // The image may go 5 s after its pull, at a disk check, which runs every second.
    let mut removed = false;
    for _ in 0..200 {
        if !listed_ids().await.contains(&idle) {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(
        removed,
        "layered was not removed within 20 s; log:\n{}",
        pods.daemon.log()
    );
    let remaining = listed_ids().await;
    assert_eq!(
        remaining.len(),
        1,
        "busybox, in use by a container, stays: {remaining:?}"
    );
    // The summary line is logged after the last removal returns, so it may trail the
    // removal that ListImages already shows.
    let summary = "image GC run (max-unused-age): removed 1 image";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pods.daemon.log().contains(summary) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = pods.daemon.log();
    assert!(log.contains(summary), "no summary line in the daemon log:\n{log}");
}
