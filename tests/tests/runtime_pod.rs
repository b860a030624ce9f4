//! Pod sandboxes and containers run for real: pinned namespaces, CNI, overlayfs and runc.

use std::time::Duration;

use berth_proto::cri::{
    ContainerState, ContainerStatusRequest, ExecSyncRequest, PodSandboxState,
    PodSandboxStatusRequest, RemoveContainerRequest, RemovePodSandboxRequest, StopContainerRequest,
    StopPodSandboxRequest,
};
use berth_tests::pods::{PodDaemon, cgroup_dirs, mounts_below};

#[tokio::test]
async fn pod_runs_logs_execs_and_is_removed() {
    let pods = PodDaemon::start("").await;
    let (sandbox, container) = pods
        .run_busybox(
            "web",
            &[
                "sh",
                "-c",
                "trap 'exit 7' TERM; echo hello from berth; echo to stderr >&2; sleep 600 & wait",
            ],
        )
        .await;
    let mut client = pods.runtime().await;

    let pod = client
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(pod.state, PodSandboxState::SandboxReady as i32);
    let ip = pod.network.unwrap().ip;
    assert!(
        ip.starts_with(&format!("{}.", pods.subnet_prefix)),
        "pod IP {ip} outside the test subnet"
    );

    let status = client
        .container_status(ContainerStatusRequest {
            container_id: container.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    assert!(status.started_at > 0);

    let log_path = pods.log_dir("web").join("main.log");
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("to stderr") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.contains(" stdout F hello from berth\n"), "log: {log:?}");
    assert!(log.contains(" stderr F to stderr\n"), "log: {log:?}");

    let exec = client
        .exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /etc/hostname; echo $BERTH_TEST; exit 3".into(),
            ],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exec.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "web\n1\n");

    client
        .stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 2,
        })
        .await
        .unwrap();
    let stopped = client
        .container_status(ContainerStatusRequest {
            container_id: container.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(stopped.state, ContainerState::ContainerExited as i32);
    assert_eq!(stopped.exit_code, 7, "the TERM trap should have run");
    assert_eq!(stopped.reason, "Error");

    client
        .remove_container(RemoveContainerRequest {
            container_id: container.clone(),
        })
        .await
        .unwrap();
    client
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    client
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    client
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .expect("removing a removed sandbox succeeds");

    let state_dir = pods.daemon.dir.path().join("state");
    assert!(
        mounts_below(&state_dir).is_empty(),
        "mounts left: {:?}",
        mounts_below(&state_dir)
    );
    assert!(
        std::fs::read_dir(state_dir.join("sandboxes"))
            .unwrap()
            .next()
            .is_none(),
        "sandbox dir left"
    );
    assert!(
        std::fs::read_dir(state_dir.join("containers"))
            .unwrap()
            .next()
            .is_none(),
        "bundle left"
    );
    let container_cgroups: Vec<_> = cgroup_dirs(&format!(
        "{}/pod-{}/{container}",
        pods.cgroup_parent,
        &sandbox[..12]
    ));
    assert!(
        container_cgroups.is_empty(),
        "container cgroups left: {container_cgroups:?}"
    );
    let pod_cgroups = cgroup_dirs(&format!("{}/pod-{}", pods.cgroup_parent, &sandbox[..12]));
    assert!(pod_cgroups.is_empty(), "pod cgroups left: {pod_cgroups:?}");
}
