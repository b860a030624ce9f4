//! Pulls that stall, get cancelled or die with the daemon, mirror fallback, and concurrent pulls
//! that share blobs.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use berth_proto::cri::PullImageRequest;
use berth_tests::net::{RegistryProxy, SilentServer, closed_address};
use berth_tests::{Daemon, image, registry, spec, wait_for};
use tonic::Code;

/// Rate of the throttling proxy per connection, in bytes per second: the 4.2 MB top layer of
/// `berth-test/medium` then takes about 14 s, long enough to interrupt the pull midway.
const SLOW_RATE: usize = 300_000;

fn plain_http(host: &str) -> String {
    format!("[registries.\"{host}\"]\nplain_http = true\n\n")
}

#[tokio::test]
async fn silent_registry_times_out() {
    let silent = SilentServer::start().await;
    let config = format!(
        "{}[image]\nprogress_timeout_seconds = 1\n",
        plain_http(&silent.address)
    );
    let daemon = Daemon::start(&config).await;
    let reference = format!("{}/berth-test/busybox:latest", silent.address);
    let started = Instant::now();

    let result = daemon.pull(&reference).await;

    let elapsed = started.elapsed();
    let status = result.expect_err("a pull from a silent registry must fail");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        elapsed < Duration::from_secs(20),
        "the pull returned after {elapsed:?}, not soon after the 1 s progress timeout"
    );
    assert!(
        status.message().contains(&silent.address),
        "the message does not name the registry {}: {}",
        silent.address,
        status.message()
    );
    assert!(daemon.list().await.is_empty(), "an image is listed");
    daemon.assert_no_leftovers("after a silent registry").await;
}

#[tokio::test]
async fn closed_mirror_falls_back_to_next() {
    let closed = closed_address();
    let config = format!(
        "{}[registries.\"docker.io\"]\nmirrors = [\"{closed}\", \"{}\"]\n",
        plain_http(&closed),
        registry()
    );
    let daemon = Daemon::start(&config).await;

    let id = daemon
        .pull("berth-test/busybox")
        .await
        .expect("pull through the second mirror");

    let listed = daemon.status(&id, false).await.image.expect("image listed");
    assert_eq!(
        listed.repo_tags,
        vec!["docker.io/berth-test/busybox:latest".to_string()]
    );
    let log = daemon.log();
    let fallback = log
        .lines()
        .find(|line| line.contains("mirror failed") && line.contains(&closed));
    assert!(
        fallback.is_some(),
        "the log does not show that the closed mirror {closed} was tried first:\n{log}"
    );
}

#[tokio::test]
async fn cancelled_pull_leaves_nothing() {
    let proxy = RegistryProxy::start(&registry(), Some(SLOW_RATE)).await;
    let daemon = Daemon::start(&plain_http(&proxy.address)).await;
    let slow_reference = format!("{}/berth-test/medium:latest", proxy.address);

    // The pull runs for 1.5 s, then the timeout drops the RPC, which cancels it in the daemon.
    let watch_ingest = async {
        wait_for(Duration::from_millis(1500), || {
            !daemon.entries("ingest").is_empty()
        })
        .await
    };
    let pull = tokio::time::timeout(Duration::from_millis(1500), daemon.pull(&slow_reference));
    let (pulled, downloading) = tokio::join!(pull, watch_ingest);

    assert!(
        pulled.is_err(),
        "the pull ended within 1.5 s, before it could be cancelled: {pulled:?}"
    );
    assert!(
        downloading,
        "no download was under way when the pull was cancelled"
    );
    let ingest_cleared = wait_for(Duration::from_secs(5), || {
        daemon.entries("ingest").is_empty()
    })
    .await;
    assert!(
        ingest_cleared,
        "ingest files remain 5 s after the cancel: {:?}",
        daemon.entries("ingest")
    );
    let scratch_cleared = wait_for(Duration::from_secs(5), || {
        !daemon
            .entries("layers")
            .iter()
            .any(|name| name.starts_with(".tmp-"))
    })
    .await;
    assert!(
        scratch_cleared,
        "partly unpacked layers remain 5 s after the cancel: {:?}",
        daemon.entries("layers")
    );
    assert!(daemon.list().await.is_empty(), "an image is listed");

    let id = daemon
        .pull(&image("medium"))
        .await
        .expect("pull from the registry after the cancel");

    let ids: Vec<String> = daemon.list().await.into_iter().map(|i| i.id).collect();
    assert_eq!(ids, vec![id]);
    daemon.assert_no_leftovers("after the second pull").await;
}

#[tokio::test]
async fn killed_daemon_cleans_up_on_restart() {
    let proxy = RegistryProxy::start(&registry(), Some(SLOW_RATE)).await;
    let through_proxy = format!(
        "{}[registries.\"docker.io\"]\nmirrors = [\"{}\"]\n",
        plain_http(&proxy.address),
        proxy.address
    );
    let mut daemon = Daemon::start(&through_proxy).await;
    let mut client = daemon.images().await;
    let pull = tokio::spawn(async move {
        client
            .pull_image(PullImageRequest {
                image: Some(spec("berth-test/medium")),
                ..Default::default()
            })
            .await
    });

    let downloading = wait_for(Duration::from_secs(10), || {
        !daemon.entries("ingest").is_empty()
    })
    .await;
    assert!(downloading, "no download started within 10 s");
    daemon.kill();
    pull.abort();
    let direct = format!(
        "[registries.\"docker.io\"]\nmirrors = [\"{}\"]\n",
        registry()
    );
    daemon.set_config_extra(&direct);
    daemon.restart().await;

    assert!(daemon.list().await.is_empty(), "an image is listed");
    daemon.assert_no_leftovers("after the restart").await;
    assert!(
        daemon.entries("blobs/sha256").is_empty(),
        "blobs of the interrupted pull remain: {:?}",
        daemon.entries("blobs/sha256")
    );
    assert!(
        daemon.entries("layers").is_empty(),
        "layers of the interrupted pull remain: {:?}",
        daemon.entries("layers")
    );

    let id = daemon
        .pull("berth-test/medium")
        .await
        .expect("pull after the restart");

    let listed = daemon.status(&id, false).await.image.expect("image listed");
    assert_eq!(
        listed.repo_tags,
        vec!["docker.io/berth-test/medium:latest".to_string()]
    );
}

#[tokio::test]
async fn concurrent_pulls_fetch_each_blob_once() {
    let proxy = RegistryProxy::start(&registry(), None).await;
    let daemon = Daemon::start(&plain_http(&proxy.address)).await;
    let layered = format!("{}/berth-test/layered:latest", proxy.address);
    let nonroot = format!("{}/berth-test/nonroot:latest", proxy.address);

    let (first, second, third) = tokio::join!(
        daemon.pull(&layered),
        daemon.pull(&layered),
        daemon.pull(&nonroot)
    );

    let layered_id = first.expect("first pull of layered");
    assert_eq!(
        second.expect("second pull of layered"),
        layered_id,
        "both pulls of layered must return the same image"
    );
    third.expect("pull of nonroot");
    let mut expected = HashSet::new();
    for image in daemon.list().await {
        expected.insert(image.id.clone());
        let status = daemon.status(&image.id, true).await;
        let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
        for layer in info["layers"].as_array().expect("layers in verbose info") {
            expected.insert(layer["digest"].as_str().unwrap().to_string());
        }
    }
    let requests = proxy.blob_requests();
    let requested: HashSet<String> = requests.keys().cloned().collect();
    assert_eq!(
        requested, expected,
        "the blobs fetched must be the configs and layers of layered and nonroot"
    );
    for (digest, count) in &requests {
        assert_eq!(*count, 1, "blob {digest} was fetched {count} times");
    }
}
