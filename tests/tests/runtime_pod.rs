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
    let pod_cgroup = pods.pod_cgroup(&sandbox).await;
    assert!(
        pod_cgroup.starts_with(&format!("{}/besteffort/pod", pods.cgroup_parent)),
        "a pod without resources is BestEffort: {pod_cgroup}"
    );
    assert!(!cgroup_dirs(&pod_cgroup).is_empty(), "pod cgroup {pod_cgroup} was not created");

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
    let container_cgroups: Vec<_> = cgroup_dirs(&format!("{pod_cgroup}/{container}"));
    assert!(
        container_cgroups.is_empty(),
        "container cgroups left: {container_cgroups:?}"
    );
    let pod_cgroups = cgroup_dirs(&pod_cgroup);
    assert!(pod_cgroups.is_empty(), "pod cgroups left: {pod_cgroups:?}");
}

/// crun 1.8 rejects hosts that mount cgroup v1 controllers next to a cgroup2 hierarchy. On
/// such a host the pod must fail with crun's reason in the message; elsewhere it must run.
#[tokio::test]
async fn crun_handler_runs_container() {
    let pods = PodDaemon::start("").await;
    pods.daemon.pull(&berth_tests::image("busybox")).await.expect("pull busybox");
    let mut client = pods.runtime().await;
    let config = pods.pod_config("crunpod");
    let sandbox = client
        .run_pod_sandbox(berth_proto::cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: "crun".to_string(),
        })
        .await
        .expect("RunPodSandbox with the crun handler")
        .into_inner()
        .pod_sandbox_id;
    let container = client
        .create_container(berth_proto::cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(berth_tests::pods::container_config("main", &berth_tests::image("busybox"), &["sleep", "600"])),
            sandbox_config: Some(config),
        })
        .await
        .expect("CreateContainer with crun")
        .into_inner()
        .container_id;
    let started = client
        .start_container(berth_proto::cri::StartContainerRequest {
            container_id: container.clone(),
        })
        .await;

    if hybrid_cgroup_host() {
        let err = started.expect_err("crun 1.8 should refuse a hybrid cgroup host");
        assert!(err.message().contains("hybrid"), "message should carry crun's reason: {}", err.message());
    } else {
        started.expect("StartContainer with crun");
        let exec = client
            .exec_sync(ExecSyncRequest {
                container_id: container.clone(),
                cmd: vec!["cat".into(), "/etc/hostname".into()],
                timeout: 10,
            })
            .await
            .expect("ExecSync through crun")
            .into_inner();
        assert_eq!(String::from_utf8_lossy(&exec.stdout), "crunpod\n");
    }

    client
        .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox })
        .await
        .expect("remove the crun pod");
}

fn hybrid_cgroup_host() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.contains(" - cgroup ") && mountinfo.contains(" - cgroup2 ")
}

/// crictl and critest send pod configs without a hostname: the pod gets the node's.
#[tokio::test]
async fn pod_without_hostname_gets_node_name() {
    let pods = PodDaemon::start("").await;
    pods.daemon.pull(&berth_tests::image("busybox")).await.expect("pull busybox");
    let mut config = pods.pod_config("nameless");
    config.hostname.clear();
    let sandbox = pods.run_pod(config.clone()).await;
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            berth_tests::pods::container_config("main", &berth_tests::image("busybox"), &["sleep", "600"]),
        )
        .await;

    let exec = pods
        .runtime()
        .await
        .exec_sync(ExecSyncRequest {
            container_id: container,
            cmd: vec!["hostname".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync hostname")
        .into_inner();

    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(String::from_utf8_lossy(&exec.stdout), node);
}
