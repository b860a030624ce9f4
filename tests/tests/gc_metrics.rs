//! The Prometheus endpoint: `berth serve` and `berth gc` without `--once` serve `GET /metrics`
//! on the configured loopback port, and the removal counter rises after a max-unused-age run.

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_tests::{Daemon, berth_binary, image};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a max-unused-age run may take to remove the image: 2 s of max_unused_age plus
/// disk checks every second, with room for a loaded test machine.
const REMOVAL_WAIT: Duration = Duration::from_secs(20);

const REMOVED_BY_MAX_UNUSED_AGE: &str = "berth_gc_images_removed_total{trigger=\"max-unused-age\"}";

/// Returns a loopback address whose port was free a moment ago.
fn free_loopback_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

/// Sends `GET path` over plain TCP and returns the status line and the body.
async fn http_get(address: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    let status = head.lines().next().unwrap_or("").to_string();
    Ok((status, body.to_string()))
}

/// Returns the value of the sample line that starts with `series`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse().ok())
}

/// Polls `/metrics` on `address` until `series` is at least `minimum` and returns that body.
/// Returns the last body seen as the error when `REMOVAL_WAIT` passes first.
async fn wait_for_sample(
    address: SocketAddr,
    series: &str,
    minimum: f64,
) -> Result<String, String> {
    let deadline = Instant::now() + REMOVAL_WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok((_, body)) = http_get(address, "/metrics").await {
            if sample(&body, series).is_some_and(|value| value >= minimum) {
                return Ok(body);
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// Checks that every metric family of the image collector is in `body`.
fn assert_families(body: &str) {
    for family in [
        "berth_gc_runs_total",
        "berth_gc_images_removed_total",
        "berth_gc_containers_removed_total",
        "berth_gc_bytes_freed_total",
        "berth_gc_failures_total",
        "berth_gc_last_run_duration_seconds",
        "berth_gc_images_kept",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "no {family} in /metrics:\n{body}"
        );
    }
}

#[tokio::test]
async fn serve_metrics_count_removed_images() {
    let address = free_loopback_address();
    let daemon = Daemon::start(&format!(
        "[metrics]\naddress = \"{address}\"\n\
         [gc]\nschedule = \"\"\nhigh_threshold_percent = 100\nlow_threshold_percent = 99\n\
         min_age_seconds = 0\nmax_unused_age_seconds = 2\ndisk_check_interval_seconds = 1\n"
    ))
    .await;

    let (status, before) = http_get(address, "/metrics").await.unwrap_or_else(|err| {
        panic!(
            "GET /metrics on {address} failed: {err}; log:\n{}",
            daemon.log()
        )
    });
    assert_eq!(status, "HTTP/1.1 200 OK", "body:\n{before}");
    assert_families(&before);
    assert_eq!(
        sample(&before, REMOVED_BY_MAX_UNUSED_AGE),
        Some(0.0),
        "body:\n{before}"
    );

    daemon.pull(&image("busybox")).await.expect("pull busybox");
    let after = wait_for_sample(address, REMOVED_BY_MAX_UNUSED_AGE, 1.0)
        .await
        .unwrap_or_else(|last| {
            panic!(
                "{REMOVED_BY_MAX_UNUSED_AGE} did not reach 1 within {REMOVAL_WAIT:?}; last body:\n{last}\nlog:\n{}",
                daemon.log()
            )
        });
    assert!(
        sample(&after, "berth_gc_runs_total{trigger=\"max-unused-age\"}").unwrap_or(0.0) >= 1.0,
        "body:\n{after}"
    );
    assert!(
        sample(
            &after,
            "berth_gc_bytes_freed_total{trigger=\"max-unused-age\"}"
        )
        .unwrap_or(0.0)
            > 0.0,
        "body:\n{after}"
    );
    assert!(daemon.list().await.is_empty(), "busybox is still listed");
}

#[tokio::test]
async fn serve_metrics_other_paths_are_not_found() {
    let address = free_loopback_address();
    let daemon = Daemon::start(&format!("[metrics]\naddress = \"{address}\"\n")).await;

    let (status, _) = http_get(address, "/")
        .await
        .unwrap_or_else(|err| panic!("GET / on {address} failed: {err}; log:\n{}", daemon.log()));

    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[tokio::test]
async fn gc_scheduler_serves_metrics() {
    let daemon = Daemon::start(
        "[gc]\nschedule = \"\"\nhigh_threshold_percent = 100\nlow_threshold_percent = 99\n",
    )
    .await;
    daemon.pull(&image("busybox")).await.expect("pull busybox");
    let dir = daemon.dir.path();
    let config = dir.join("gc.toml");
    std::fs::write(&config, "").expect("write the gc config");
    let address = free_loopback_address();

    let mut gc = tokio::process::Command::new(berth_binary())
        .arg("gc")
        .arg("--config")
        .arg(&config)
        .arg("--endpoint")
        .arg(format!("unix://{}", daemon.socket().display()))
        .arg("--state-file")
        .arg(dir.join("gc-state.json"))
        .args(["--schedule", "", "--high-threshold-percent", "100"])
        .args(["--low-threshold-percent", "99", "--min-age-seconds", "0"])
        .args(["--max-unused-age-seconds", "2"])
        .args(["--disk-check-interval-seconds", "1"])
        .arg("--metrics-address")
        .arg(address.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start berth gc");

    let result = wait_for_sample(address, REMOVED_BY_MAX_UNUSED_AGE, 1.0).await;
    gc.start_kill().expect("stop berth gc");
    let output = gc.wait_with_output().await.expect("wait for berth gc");
    let stderr = String::from_utf8_lossy(&output.stderr);

    let body = result.unwrap_or_else(|last| {
        panic!(
            "{REMOVED_BY_MAX_UNUSED_AGE} did not reach 1 within {REMOVAL_WAIT:?}; last body:\n{last}\nberth gc stderr:\n{stderr}"
        )
    });
    assert_families(&body);
    assert!(daemon.list().await.is_empty(), "busybox is still listed");
}
