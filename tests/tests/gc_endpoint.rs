//! `berth gc --endpoint ... --once` as a CRI client of a Berth daemon. On a small tmpfs, the
//! disk trigger frees images least recently used first down to the low mark, spares kept and
//! in-use images, and reports the bytes it freed. Exited containers go before images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_proto::cri::{ListContainersRequest, StopPodSandboxRequest};
use berth_tests::pods::{PodDaemon, container_config};
use berth_tests::{berth_binary, image};
use serde_json::{Value, json};

/// Daemon settings that keep the daemon's own collector from acting during the test.
const DAEMON_GC_OFF: &str =
    "[gc]\nschedule = \"\"\nhigh_threshold_percent = 100\nlow_threshold_percent = 99\n";
const EXIT_WAIT: Duration = Duration::from_secs(20);
const SECOND_NS: u64 = 1_000_000_000;

/// Runs `berth gc --endpoint <socket> --once --output json` with `args`, an empty config file
/// and a state file in the test's directory, and returns the parsed report.
async fn run_gc(pods: &PodDaemon, args: &[&str]) -> Value {
    let dir = pods.daemon.dir.path();
    let config = dir.join("gc.toml");
    std::fs::write(&config, "").expect("write the gc config");
    let output = tokio::process::Command::new(berth_binary())
        .arg("gc")
        .arg("--config")
        .arg(&config)
        .arg("--endpoint")
        .arg(format!("unix://{}", pods.daemon.socket().display()))
        .arg("--state-file")
        .arg(state_file(dir))
        .args(["--once", "--output", "json"])
        .args(args)
        .output()
        .await
        .expect("run berth gc");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "berth gc {args:?} exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}\ndaemon log:\n{}",
        output.status,
        pods.daemon.log()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!("berth gc printed no JSON report ({err}):\n{stdout}\nstderr:\n{stderr}")
    })
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("gc-state.json")
}

/// Writes the collector's state file: every image first seen 10,000 s ago and last used the
/// given number of seconds ago.
fn write_state(dir: &Path, unused_seconds: &[(&str, u64)]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let images: serde_json::Map<String, Value> = unused_seconds
        .iter()
        .map(|(id, unused)| {
            let times = json!({
                "first_seen_ns": now - 10_000 * SECOND_NS,
                "last_used_ns": now - unused * SECOND_NS,
            });
            (id.to_string(), times)
        })
        .collect();
    let state = json!({ "version": 1, "images": images });
    std::fs::write(state_file(dir), state.to_string()).expect("write the state file");
}

/// Returns the used bytes and the capacity (used plus available) of the filesystem at `path`,
/// as df(1) reports them.
fn disk_usage(path: &Path) -> (u64, u64) {
    let output = std::process::Command::new("df")
        .args(["-B1", "--output=used,avail"])
        .arg(path)
        .output()
        .expect("run df");
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u64> = text
        .lines()
        .nth(1)
        .expect("df prints a data line")
        .split_whitespace()
        .map(|field| field.parse().expect("df prints numbers"))
        .collect();
    (numbers[0], numbers[0] + numbers[1])
}

fn ids(report: &Value, list: &str) -> Vec<String> {
    let pointer = format!("/{}", list.replace('.', "/"));
    report
        .pointer(&pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("report has no {list}: {report:#}"))
        .iter()
        .map(|item| match item {
            Value::String(id) => id.clone(),
            item => item["id"].as_str().expect("item has an id").to_string(),
        })
        .collect()
}

fn kept_reason<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["plan"]["keep"]
        .as_array()
        .and_then(|kept| kept.iter().find(|kept| kept["id"] == id))
        .map(|kept| &kept["why"])
        .unwrap_or_else(|| panic!("image {id} is not in plan.keep: {report:#}"))
}

async fn listed_image_ids(pods: &PodDaemon) -> Vec<String> {
    let mut ids: Vec<String> = pods
        .daemon
        .list()
        .await
        .into_iter()
        .map(|image| image.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn disk_trigger_frees_lru_images_to_low_mark() {
    let mut pods = PodDaemon::start(DAEMON_GC_OFF).await;
    pods.daemon.stop().await;
    pods.daemon.mount_root_tmpfs("48m");
    pods.daemon.restart().await;

    let mut id = HashMap::new();
    for name in ["busybox", "nonroot", "layered", "corruptible", "medium"] {
        let pulled = pods
            .daemon
            .pull(&image(name))
            .await
            .unwrap_or_else(|status| panic!("pull {name}: {status:?}"));
        id.insert(name, pulled);
    }
    let sizes: HashMap<String, u64> = pods
        .daemon
        .list()
        .await
        .into_iter()
        .map(|image| (image.id, image.size))
        .collect();
    let sandbox = pods.run_pod(pods.pod_config("gc-user")).await;
    pods.create(
        &sandbox,
        pods.pod_config("gc-user"),
        container_config("main", &image("nonroot"), &["sleep", "60"]),
    )
    .await;

    // Least recently used first: nonroot (in use) and busybox (keep pattern) are the oldest
    // but stay, then corruptible, medium and layered.
    write_state(
        pods.daemon.dir.path(),
        &[
            (&id["nonroot"], 5000),
            (&id["busybox"], 4000),
            (&id["corruptible"], 3000),
            (&id["medium"], 2000),
            (&id["layered"], 1000),
        ],
    );
    // Set the low mark so that about 3.3 MB must go. Removing corruptible frees about 0.5 MB,
    // because it shares its base layer with images that stay; medium frees about 8.4 MB.
    let root = pods.daemon.root();
    let (used, capacity) = disk_usage(&root);
    let low = (used - 3_250_000) * 100 / capacity;
    let high = low + 1;
    let (low, high) = (low.to_string(), high.to_string());
    let policy = [
        "--keep",
        "*/berth-test/busybox:*",
        "--high-threshold-percent",
        &high,
        "--low-threshold-percent",
        &low,
    ];

    let mut dry_run_args = policy.to_vec();
    dry_run_args.push("--dry-run");
    let dry_run = run_gc(&pods, &dry_run_args).await;

    assert_eq!(dry_run["dry_run"], true);
    assert_eq!(dry_run["plan"]["fired"], true, "{dry_run:#}");
    assert_eq!(
        ids(&dry_run, "plan.remove"),
        [id["corruptible"].as_str(), id["medium"].as_str()]
    );
    assert!(ids(&dry_run, "images_removed").is_empty());
    assert_eq!(
        listed_image_ids(&pods).await.len(),
        5,
        "a dry run removes nothing"
    );

    let report = run_gc(&pods, &policy).await;
    let (used_after, _) = disk_usage(&root);

    assert_eq!(
        ids(&report, "images_removed"),
        [id["corruptible"].as_str(), id["medium"].as_str()]
    );
    assert_eq!(report["low_mark_reached"], true, "{report:#}");
    let mut survivors = vec![
        id["busybox"].clone(),
        id["nonroot"].clone(),
        id["layered"].clone(),
    ];
    survivors.sort();
    assert_eq!(listed_image_ids(&pods).await, survivors);
    assert_eq!(
        kept_reason(&report, &id["busybox"]),
        &json!({"kind": "keep_pattern", "pattern": "*/berth-test/busybox:*"})
    );
    assert_eq!(
        kept_reason(&report, &id["nonroot"]),
        &json!({"kind": "in_use", "containers": 1})
    );
    assert!(
        used_after * 100 <= low.parse::<u64>().unwrap() * capacity,
        "usage {used_after} of {capacity} is above the low mark {low} %"
    );

    let estimated = report["bytes_estimated"].as_u64().expect("bytes_estimated");
    assert_eq!(estimated, sizes[&id["corruptible"]] + sizes[&id["medium"]]);
    let freed = report["bytes_freed"]
        .as_u64()
        .expect("bytes_freed is measured");
    let measured = used - used_after;
    // The metadata database may grow by a few pages between the two measurements.
    assert!(
        freed.abs_diff(measured) <= 64 * 1024,
        "report says {freed} bytes freed, df says {measured}"
    );
    pods.daemon.assert_no_leftovers("after berth gc").await;
}

#[tokio::test]
async fn exited_containers_beyond_limit_go_first() {
    let pods = PodDaemon::start(DAEMON_GC_OFF).await;
    for name in ["busybox", "layered"] {
        pods.daemon
            .pull(&image(name))
            .await
            .unwrap_or_else(|status| panic!("pull {name}: {status:?}"));
    }
    let busybox_id = pods
        .daemon
        .status(&image("busybox"), false)
        .await
        .image
        .expect("busybox")
        .id;
    let layered_id = pods
        .daemon
        .status(&image("layered"), false)
        .await
        .image
        .expect("layered")
        .id;

    let live_pod = pods.run_pod(pods.pod_config("gc-live")).await;
    let mut exited = Vec::new();
    for name in ["first", "second"] {
        let container = pods
            .create_and_start(
                &live_pod,
                pods.pod_config("gc-live"),
                container_config(name, &image("busybox"), &["true"]),
            )
            .await;
        pods.wait_exited(&container, EXIT_WAIT).await;
        exited.push(container);
    }
    let stopped_pod = pods.run_pod(pods.pod_config("gc-stopped")).await;
    let stopped_container = pods
        .create_and_start(
            &stopped_pod,
            pods.pod_config("gc-stopped"),
            container_config("job", &image("layered"), &["true"]),
        )
        .await;
    pods.wait_exited(&stopped_container, EXIT_WAIT).await;
    pods.runtime()
        .await
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: stopped_pod.clone(),
        })
        .await
        .expect("StopPodSandbox");

    let report = run_gc(&pods, &["--trigger", "schedule", "--min-age-seconds", "0"]).await;

    assert_eq!(
        ids(&report, "containers_removed"),
        [exited[0].clone(), stopped_container]
    );
    let remaining: Vec<String> = pods
        .runtime()
        .await
        .list_containers(ListContainersRequest::default())
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
        .into_iter()
        .map(|container| container.id)
        .collect();
    assert_eq!(remaining, [exited[1].clone()]);
    assert_eq!(ids(&report, "images_removed"), [layered_id]);
    assert_eq!(
        kept_reason(&report, &busybox_id),
        &json!({"kind": "in_use", "containers": 1})
    );
    assert_eq!(listed_image_ids(&pods).await, [busybox_id]);
}
