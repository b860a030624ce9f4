//! A daemon killed with SIGKILL and started again: containers keep running and logging under
//! their monitors, exits during the outage are recorded, and everything can still be removed.

use std::time::Duration;

use berth_proto::cri::{
    ContainerState, ContainerStatusRequest, PodSandboxState, PodSandboxStatusRequest, RemovePodSandboxRequest,
};
use berth_tests::pods::{PodDaemon, cgroup_dirs, container_config, log_messages, mounts_below, wait_for_log};
use berth_tests::{image, wait_for};
use tonic::Code;

/// Returns the counter values of `tick-N` messages.
fn ticks(messages: &[String]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|message| message.strip_prefix("tick-"))
        .map(|number| number.parse().expect("counter is a number"))
        .collect()
}

/// Returns the PID of a container's monitor from the verbose ContainerStatus.
async fn monitor_pid(pods: &PodDaemon, container: &str) -> Option<i64> {
    let info = pods
        .runtime()
        .await
        .container_status(ContainerStatusRequest {
            container_id: container.to_string(),
            verbose: true,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .info;
    let details: serde_json::Value = serde_json::from_str(&info["info"]).expect("info is JSON");
    details["monitorPid"].as_i64()
}

#[tokio::test]
async fn daemon_kill_and_restart() {
    let mut pods = PodDaemon::start("").await;
    let (sandbox, counter) = pods
        .run_busybox(
            "survivor",
            &["sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); usleep 200000; done"],
        )
        .await;
    let pod_cgroup = pods.pod_cgroup(&sandbox).await;
    let short = pods
        .create_and_start(
            &sandbox,
            pods.pod_config("survivor"),
            container_config("short", &image("busybox"), &["sh", "-c", "sleep 2; exit 3"]),
        )
        .await;
    let log_path = pods.log_dir("survivor").join("main.log");
    wait_for_log(&log_path, "tick-3", Duration::from_secs(10)).await;
    let counter_monitor = monitor_pid(&pods, &counter).await.expect("the running container has a monitor");

    pods.daemon.kill();
    let killed_at = now_ns();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks_while_down = ticks(&log_messages(&log_path));
    let restarted_at = now_ns();
    pods.daemon.restart().await;

    let running = pods.container_status(&counter).await;
    assert_eq!(running.state, ContainerState::ContainerRunning as i32, "the counter runs after the restart");
    let before = ticks(&log_messages(&log_path));
    wait_for_log(&log_path, &format!("tick-{}", before.len() + 5), Duration::from_secs(5)).await;
    let after = ticks(&log_messages(&log_path));
    let expected: Vec<u64> = (0..after.len() as u64).collect();
    assert_eq!(after, expected, "the log has every tick, also those written while the daemon was down");
    assert!(
        ticks_while_down.len() >= 15,
        "the monitor kept logging during the 3 s outage: {} ticks",
        ticks_while_down.len()
    );
    let hostname = pods.exec_stdout(&counter, &["hostname"]).await;
    assert_eq!(hostname, "survivor\n", "ExecSync works in an adopted container");

    let exited = pods.container_status(&short).await;
    assert_eq!(exited.state, ContainerState::ContainerExited as i32, "the short container exited during the outage");
    assert_eq!(exited.exit_code, 3, "exit code recorded by its monitor");
    assert_eq!(exited.reason, "Error", "reason of a non-zero exit");
    assert!(exited.finished_at > killed_at, "finished_at {} is before the kill", exited.finished_at);
    assert!(exited.finished_at < restarted_at, "finished_at {} is after the restart", exited.finished_at);

    let pod = pods
        .runtime()
        .await
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(pod.state, PodSandboxState::SandboxReady as i32, "the sandbox is still ready");
    let duplicate = pods
        .runtime()
        .await
        .create_container(berth_proto::cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config("main", &image("busybox"), &["true"])),
            sandbox_config: None,
        })
        .await
        .expect_err("a second container named main was created after the restart");
    assert_eq!(duplicate.code(), Code::AlreadyExists, "names are reserved again after the restart: {duplicate:?}");

    pods.runtime()
        .await
        .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox.clone() })
        .await
        .expect("RemovePodSandbox");

    let monitor_gone = wait_for(Duration::from_secs(5), || {
        !std::path::Path::new(&format!("/proc/{counter_monitor}")).exists()
    })
    .await;
    assert!(monitor_gone, "the monitor {counter_monitor} of the removed container still runs");
    let dir = pods.daemon.dir.path();
    let mounts = mounts_below(dir);
    assert!(mounts.is_empty(), "mounts remain under the daemon dir: {mounts:?}");
    let state = dir.join("state");
    let sandboxes: Vec<_> = std::fs::read_dir(state.join("sandboxes")).expect("sandboxes dir").collect();
    assert!(sandboxes.is_empty(), "sandbox state remains: {sandboxes:?}");
    let bundles: Vec<_> = std::fs::read_dir(state.join("containers")).expect("containers dir").collect();
    assert!(bundles.is_empty(), "container bundles remain: {bundles:?}");
    let layers: Vec<_> = std::fs::read_dir(pods.daemon.root().join("containers"))
        .map(|entries| entries.collect())
        .unwrap_or_default();
    assert!(layers.is_empty(), "writable layers remain: {layers:?}");
    for container in [&counter, &short] {
        let left = cgroup_dirs(&format!("{pod_cgroup}/{container}"));
        assert!(left.is_empty(), "cgroups of container {container} remain: {left:?}");
    }
    let pod_left = cgroup_dirs(&pod_cgroup);
    assert!(pod_left.is_empty(), "the pod's cgroups remain: {pod_left:?}");
}

/// Returns the current time in nanoseconds since the Unix epoch, the unit of CRI timestamps.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64
}
