//! Pod and container limits enforced by real cgroups: OOM kills, CPU throttling, a pids limit,
//! live updates and the pod cgroup's limit as the sum of its containers'.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::cri::{
    LinuxContainerResources, RemovePodSandboxRequest, StopPodSandboxRequest,
    UpdateContainerResourcesRequest, UpdatePodSandboxResourcesRequest,
};
use berth_tests::image;
use berth_tests::pods::{PodDaemon, container_config, systemd_cgroup_driver};
use tonic::Code;

const MIB: i64 = 1 << 20;

/// A shell loop that doubles a string until the memory limit stops it.
const MEMORY_HOG: &str = "x=a; while true; do x=$x$x; done";

/// Returns whether `/sys/fs/cgroup` is a cgroup v2 (unified) mount rather than cgroup v1
/// controller hierarchies.
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Returns the path of a cgroup file: under the `controller` hierarchy on cgroup v1, under the
/// unified hierarchy on cgroup v2.
fn cgroup_file(path: &str, controller: &str, file: &str) -> PathBuf {
    let relative = path.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    if cgroup_v2() {
        root.join(relative).join(file)
    } else {
        root.join(controller).join(relative).join(file)
    }
}

fn read_cgroup_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

fn read_number(path: &Path) -> u64 {
    let text = read_cgroup_file(path);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} contains {text:?}, not a number", path.display()))
}

/// Returns the memory limit of a cgroup in bytes: `memory.limit_in_bytes` on v1, `memory.max`
/// on v2. Without a limit, v1 returns the kernel's largest value and v2 fails the test (`max`).
fn memory_limit(cgroup: &str) -> u64 {
    let file = if cgroup_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    read_number(&cgroup_file(cgroup, "memory", file))
}

/// Returns the CFS quota of a cgroup in microseconds per period, or `None` when it has none:
/// `cpu.cfs_quota_us` on v1 (`-1` without a quota), the first field of `cpu.max` on v2 (`max`
/// without a quota).
fn cpu_quota(cgroup: &str) -> Option<u64> {
    let (path, text) = if cgroup_v2() {
        let path = cgroup_file(cgroup, "cpu", "cpu.max");
        let text = read_cgroup_file(&path);
        let quota = text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        (path, quota)
    } else {
        let path = cgroup_file(cgroup, "cpu", "cpu.cfs_quota_us");
        let text = read_cgroup_file(&path).trim().to_string();
        (path, text)
    };
    if text == "max" || text == "-1" {
        return None;
    }
    let quota = text
        .parse()
        .unwrap_or_else(|_| panic!("{} has quota {text:?}, not a number", path.display()));
    Some(quota)
}

fn limited(
    mut config: berth_proto::cri::ContainerConfig,
    resources: LinuxContainerResources,
) -> berth_proto::cri::ContainerConfig {
    config.linux.get_or_insert_with(Default::default).resources = Some(resources);
    config
}

#[tokio::test]
async fn container_over_memory_limit_is_oom_killed() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let config = pods.pod_config("oom");
    let sandbox = pods.run_pod(config.clone()).await;
    let resources = LinuxContainerResources {
        memory_limit_in_bytes: 32 * MIB,
        ..Default::default()
    };
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            limited(
                container_config("hog", &image("busybox"), &["sh", "-c", MEMORY_HOG]),
                resources,
            ),
        )
        .await;

    let status = pods.wait_exited(&container, Duration::from_secs(60)).await;

    assert_eq!(status.exit_code, 137, "an OOM kill is SIGKILL");
    assert_eq!(status.reason, "OOMKilled");
}

#[tokio::test]
async fn pod_limit_oom_is_charged_to_container() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let mut config = pods.pod_config("podoom");
    config.linux.get_or_insert_with(Default::default).resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 48 * MIB,
        ..Default::default()
    });
    let sandbox = pods.run_pod(config.clone()).await;
    let pod_cgroup = pods.pod_cgroup(&sandbox).await;
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            container_config("hog", &image("busybox"), &["sh", "-c", MEMORY_HOG]),
        )
        .await;

    let status = pods.wait_exited(&container, Duration::from_secs(60)).await;

    assert_eq!(
        memory_limit(&pod_cgroup),
        48 << 20,
        "the pod cgroup carries the pod's limit"
    );
    assert_eq!(status.exit_code, 137, "an OOM kill is SIGKILL");
    assert_eq!(
        status.reason, "OOMKilled",
        "a pod-level OOM is reported on the container it hit"
    );
}

#[tokio::test]
async fn cpu_quota_throttles_busy_loop() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let config = pods.pod_config("throttle");
    let sandbox = pods.run_pod(config.clone()).await;
    let pod_cgroup = pods.pod_cgroup(&sandbox).await;
    let resources = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 10_000,
        ..Default::default()
    };
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            limited(
                container_config(
                    "spin",
                    &image("busybox"),
                    &["sh", "-c", "while :; do :; done"],
                ),
                resources,
            ),
        )
        .await;
    let container_cgroup = pods.container_cgroup(&pod_cgroup, &container);

    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert_eq!(
        cpu_quota(&container_cgroup),
        Some(10_000),
        "the quota reached the container cgroup"
    );
    let stat = read_cgroup_file(&cgroup_file(&container_cgroup, "cpu", "cpu.stat"));
    let throttled: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("nr_throttled "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no nr_throttled in {stat:?}"));
    assert!(
        throttled > 3,
        "a busy loop under a 10% quota should be throttled, nr_throttled = {throttled}"
    );
}

#[tokio::test]
async fn pids_limit_stops_fork_loop() {
    let pods = PodDaemon::start_with_runtime("pod_pids_limit = 20\n", "").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let config = pods.pod_config("forks");
    let sandbox = pods.run_pod(config.clone()).await;
    let pod_cgroup = pods.pod_cgroup(&sandbox).await;
    // busybox sh gives up at the first refused fork. The outer shell then replaces itself with
    // sleep, which needs no fork, so the container and its cgroup stay: a systemd scope is
    // removed as soon as it is empty.
    let command = "sh -c 'i=0; while [ $i -lt 60 ]; do sleep 300 & i=$((i+1)); done; sleep 300'; exec sleep 300";
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            container_config("forker", &image("busybox"), &["sh", "-c", command]),
        )
        .await;
    let log = pods.log_dir("forks").join("forker.log");

    // busybox sh reports the failed fork and stops the loop.
    let messages =
        berth_tests::pods::wait_for_log(&log, "can't fork", Duration::from_secs(30)).await;

    let max = std::fs::read_to_string(cgroup_file(&pod_cgroup, "pids", "pids.max"))
        .expect("read pids.max");
    assert_eq!(max.trim(), "20");
    // pids.events counts the refusals. Linux 6.1 counts them in the forking
    // task's own cgroup, on v1 and v2 alike. The check adds the pod's count too, so that it
    // does not depend on which cgroup a kernel counts them in.
    let refused = |path: &str| -> u64 {
        let events = std::fs::read_to_string(cgroup_file(path, "pids", "pids.events"))
            .unwrap_or_else(|err| panic!("read pids.events of {path}: {err}"));
        events
            .lines()
            .find_map(|line| line.strip_prefix("max "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no max line in pids.events {events:?}"))
    };
    let container_cgroup = pods.container_cgroup(&pod_cgroup, &container);
    let total = refused(&pod_cgroup) + refused(&container_cgroup);
    assert!(total > 0, "no cgroup of the pod counted a refused fork");
    let current = std::fs::read_to_string(cgroup_file(&pod_cgroup, "pids", "pids.current"))
        .expect("read pids.current");
    let current: u64 = current.trim().parse().expect("pids.current is a number");
    assert!(
        (2..=20).contains(&current),
        "the pod runs its sleeps within the limit: pids.current = {current}"
    );
    assert!(
        messages
            .iter()
            .any(|line| line.contains("Resource temporarily unavailable")),
        "the fork failure should be EAGAIN: {messages:?}"
    );
}

#[tokio::test]
async fn update_raises_memory_limit_for_running_process() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let config = pods.pod_config("grow");
    let sandbox = pods.run_pod(config.clone()).await;
    let pod_cgroup = pods.pod_cgroup(&sandbox).await;
    let small = LinuxContainerResources {
        memory_limit_in_bytes: 16 * MIB,
        ..Default::default()
    };
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            limited(
                container_config("app", &image("busybox"), &["sleep", "600"]),
                small,
            ),
        )
        .await;
    let container_cgroup = pods.container_cgroup(&pod_cgroup, &container);
    assert_eq!(memory_limit(&container_cgroup), 16 << 20, "initial limit");

    pods.runtime()
        .await
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: container.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 256 * MIB,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("UpdateContainerResources");

    assert_eq!(memory_limit(&container_cgroup), 256 << 20, "updated limit");
    // 2^25 bytes is twice the old limit; building it needs about three times that.
    let grown = pods
        .exec_stdout(
            &container,
            &[
                "sh",
                "-c",
                "x=a; i=0; while [ $i -lt 25 ]; do x=$x$x; i=$((i+1)); done; echo ${#x}",
            ],
        )
        .await;
    assert_eq!(
        grown.trim(),
        "33554432",
        "the process can use memory past the old limit"
    );
}

#[tokio::test]
async fn pod_cgroup_limit_is_sum_with_overhead() {
    let pods = PodDaemon::start("").await;
    let mut config = pods.pod_config("sum");
    // As the kubelet does: the pod's resources are the sum of its containers', and the
    // RuntimeClass overhead comes on top.
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: (64 + 32) * MIB,
        cpu_period: 100_000,
        cpu_quota: 50_000 + 25_000,
        cpu_shares: 768,
        ..Default::default()
    });
    linux.overhead = Some(LinuxContainerResources {
        memory_limit_in_bytes: 8 * MIB,
        cpu_period: 100_000,
        cpu_quota: 10_000,
        ..Default::default()
    });
    let sandbox = pods.run_pod(config).await;
    let pod_cgroup = pods.pod_cgroup(&sandbox).await;

    // The cgroupfs driver nests the QoS class and the pod as path components. The systemd
    // driver joins them into a slice name with `-`.
    let burstable = if systemd_cgroup_driver() {
        "-burstable-pod"
    } else {
        "/burstable/pod"
    };
    assert!(
        pod_cgroup.contains(burstable),
        "limits without matching requests are Burstable: {pod_cgroup}"
    );
    assert_eq!(memory_limit(&pod_cgroup), 104 << 20);
    assert_eq!(cpu_quota(&pod_cgroup), Some(85_000));

    pods.runtime()
        .await
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: sandbox.clone(),
            overhead: None,
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 200 * MIB,
                ..Default::default()
            }),
        })
        .await
        .expect("UpdatePodSandboxResources");
    assert_eq!(memory_limit(&pod_cgroup), 200 << 20);
}

#[tokio::test]
async fn invalid_resources_are_rejected() {
    let pods = PodDaemon::start("").await;
    let cases = [
        (
            "quota below the kernel minimum",
            LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 500,
                ..Default::default()
            },
        ),
        (
            "negative memory",
            LinuxContainerResources {
                memory_limit_in_bytes: -5,
                ..Default::default()
            },
        ),
        (
            "cpuset outside the host",
            LinuxContainerResources {
                cpuset_cpus: "4096".into(),
                ..Default::default()
            },
        ),
    ];
    for (case, resources) in cases {
        let mut config = pods.pod_config("invalid");
        config.linux.get_or_insert_with(Default::default).resources = Some(resources);
        let err = pods
            .runtime()
            .await
            .run_pod_sandbox(berth_proto::cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .expect_err(case);
        assert_eq!(err.code(), Code::InvalidArgument, "{case}: {err:?}");
    }
}

/// The monitor records the OOM kill while the daemon is down; the restarted daemon reports it.
#[tokio::test]
async fn oom_kill_reported_after_daemon_restart() {
    let mut pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let config = pods.pod_config("oomrestart");
    let sandbox = pods.run_pod(config.clone()).await;
    let resources = LinuxContainerResources {
        memory_limit_in_bytes: 32 * MIB,
        ..Default::default()
    };
    let command = format!("sleep 2; {MEMORY_HOG}");
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            limited(
                container_config("hog", &image("busybox"), &["sh", "-c", &command]),
                resources,
            ),
        )
        .await;

    pods.daemon.kill();
    tokio::time::sleep(Duration::from_secs(6)).await;
    pods.daemon.restart().await;

    let status = pods.wait_exited(&container, Duration::from_secs(30)).await;
    assert_eq!(status.exit_code, 137, "an OOM kill is SIGKILL");
    assert_eq!(
        status.reason, "OOMKilled",
        "the exit recorded while the daemon was down"
    );
}

/// Removing a pod removes its cgroup and its containers' cgroups: the directories under
/// cgroupfs, the slice and scope units under systemd.
#[tokio::test]
async fn removed_pod_leaves_no_cgroup() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let config = pods.pod_config("gone");
    let sandbox = pods.run_pod(config.clone()).await;
    let pod_cgroup = pods.pod_cgroup(&sandbox).await;
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            container_config("app", &image("busybox"), &["sleep", "600"]),
        )
        .await;
    let container_cgroup = pods.container_cgroup(&pod_cgroup, &container);
    let pod_dir = cgroup_file(&pod_cgroup, "memory", "");
    let container_dir = cgroup_file(&container_cgroup, "memory", "");
    assert!(
        pod_dir.is_dir(),
        "{} exists while the pod runs",
        pod_dir.display()
    );
    assert!(
        container_dir.is_dir(),
        "{} exists while the container runs",
        container_dir.display()
    );

    let mut runtime = pods.runtime().await;
    runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .expect("StopPodSandbox");
    runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .expect("RemovePodSandbox");

    assert!(
        !container_dir.exists(),
        "{} remains",
        container_dir.display()
    );
    assert!(!pod_dir.exists(), "{} remains", pod_dir.display());
    if systemd_cgroup_driver() {
        let unit = pod_cgroup.rsplit('/').next().unwrap_or_default();
        let state = std::process::Command::new("systemctl")
            .args(["is-active", unit])
            .output()
            .expect("run systemctl");
        let state = String::from_utf8_lossy(&state.stdout);
        assert_ne!(state.trim(), "active", "{unit} is still active");
    }
}
