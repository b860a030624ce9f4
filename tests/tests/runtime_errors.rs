//! Requests that must fail, each with the gRPC code the kubelet acts on, and leave nothing
//! behind: unknown IDs, duplicate names, missing images and metadata, stopped sandboxes and
//! commands that do not exist.

use std::path::Path;

use berth_proto::cri::{
    ContainerConfig, ContainerState, ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest,
    ListContainersRequest, PodSandboxConfig, PodSandboxStatusRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
    StopPodSandboxRequest,
};
use berth_tests::image;
use berth_tests::pods::{PodDaemon, container_config, mounts_below};
use tonic::{Code, Status};

/// Returns an ID of the form the daemon uses that no sandbox or container has.
fn unknown_id() -> String {
    "0f".repeat(32)
}

async fn run_pod_request(pods: &PodDaemon, config: PodSandboxConfig) -> Result<String, Status> {
    pods.runtime()
        .await
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .map(|response| response.into_inner().pod_sandbox_id)
}

async fn create_request(pods: &PodDaemon, sandbox: &str, config: ContainerConfig) -> Result<String, Status> {
    pods.runtime()
        .await
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.to_string(),
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .map(|response| response.into_inner().container_id)
}

/// Returns the names of the entries of `dir`, or nothing when it does not exist.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn unknown_ids() {
    let pods = PodDaemon::start("").await;
    let mut client = pods.runtime().await;
    let unknown = unknown_id();

    let status = client
        .container_status(ContainerStatusRequest {
            container_id: unknown.clone(),
            verbose: false,
        })
        .await
        .expect_err("ContainerStatus of an unknown ID succeeded");
    assert_eq!(status.code(), Code::NotFound, "ContainerStatus: {status:?}");
    assert!(status.message().contains(&unknown), "the message names the ID: {status:?}");

    let start = client
        .start_container(StartContainerRequest { container_id: unknown.clone() })
        .await
        .expect_err("StartContainer of an unknown ID succeeded");
    assert_eq!(start.code(), Code::NotFound, "StartContainer: {start:?}");

    let exec = client
        .exec_sync(ExecSyncRequest {
            container_id: unknown.clone(),
            cmd: vec!["true".to_string()],
            timeout: 5,
        })
        .await
        .expect_err("ExecSync in an unknown container succeeded");
    assert_eq!(exec.code(), Code::NotFound, "ExecSync: {exec:?}");

    let sandbox_status = client
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: unknown.clone(),
            verbose: false,
        })
        .await
        .expect_err("PodSandboxStatus of an unknown ID succeeded");
    assert_eq!(sandbox_status.code(), Code::NotFound, "PodSandboxStatus: {sandbox_status:?}");

    pods.daemon.pull(&image("busybox")).await.expect("pull busybox");
    let create = create_request(&pods, &unknown, container_config("main", &image("busybox"), &["true"]))
        .await
        .expect_err("CreateContainer in an unknown sandbox succeeded");
    assert_eq!(create.code(), Code::NotFound, "CreateContainer in an unknown sandbox: {create:?}");

    client
        .remove_container(RemoveContainerRequest { container_id: unknown.clone() })
        .await
        .expect("RemoveContainer of an unknown ID succeeds");
    client
        .stop_container(StopContainerRequest {
            container_id: unknown.clone(),
            timeout: 1,
        })
        .await
        .expect("StopContainer of an unknown ID succeeds");
    client
        .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: unknown.clone() })
        .await
        .expect("RemovePodSandbox of an unknown ID succeeds");
    client
        .stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: unknown })
        .await
        .expect("StopPodSandbox of an unknown ID succeeds");
}

#[tokio::test]
async fn duplicate_sandbox_name() {
    let pods = PodDaemon::start("").await;
    let config = pods.pod_config("twin");
    let first = run_pod_request(&pods, config.clone()).await.expect("first RunPodSandbox");

    let second = run_pod_request(&pods, config.clone())
        .await
        .expect_err("a second sandbox with the same metadata was created");
    assert_eq!(second.code(), Code::AlreadyExists, "second RunPodSandbox: {second:?}");
    assert!(second.message().contains(&first), "the message names the sandbox that holds the name: {second:?}");
    let sandboxes = entries(&pods.daemon.dir.path().join("state/sandboxes"));
    assert_eq!(sandboxes, [first.as_str()], "the rejected sandbox left no state");

    let mut next_attempt = config.clone();
    next_attempt.metadata.as_mut().expect("metadata").attempt = 1;
    let retried = run_pod_request(&pods, next_attempt).await;
    assert!(retried.is_ok(), "another attempt number is another name: {retried:?}");

    pods.runtime()
        .await
        .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: first })
        .await
        .expect("RemovePodSandbox");
    let reused = run_pod_request(&pods, config).await;
    assert!(reused.is_ok(), "the name is free again after RemovePodSandbox: {reused:?}");
}

#[tokio::test]
async fn duplicate_container_name() {
    let pods = PodDaemon::start("").await;
    pods.daemon.pull(&image("busybox")).await.expect("pull busybox");
    let sandbox = pods.run_pod(pods.pod_config("twins")).await;
    let config = container_config("main", &image("busybox"), &["sleep", "600"]);
    let first = create_request(&pods, &sandbox, config.clone()).await.expect("first CreateContainer");

    let second = create_request(&pods, &sandbox, config.clone())
        .await
        .expect_err("a second container with the same name was created");
    assert_eq!(second.code(), Code::AlreadyExists, "second CreateContainer: {second:?}");
    assert!(second.message().contains(&first), "the message names the container that holds the name: {second:?}");
    let bundles = entries(&pods.daemon.dir.path().join("state/containers"));
    assert_eq!(bundles, [first.as_str()], "the rejected container left no bundle");

    pods.runtime()
        .await
        .remove_container(RemoveContainerRequest { container_id: first })
        .await
        .expect("RemoveContainer");
    let reused = create_request(&pods, &sandbox, config).await;
    assert!(reused.is_ok(), "the name is free again after RemoveContainer: {reused:?}");
}

#[tokio::test]
async fn image_not_pulled() {
    let pods = PodDaemon::start("").await;
    let sandbox = pods.run_pod(pods.pod_config("nopull")).await;
    let reference = image("nonroot");

    let error = create_request(&pods, &sandbox, container_config("main", &reference, &["true"]))
        .await
        .expect_err("CreateContainer with an image never pulled succeeded");

    assert_eq!(error.code(), Code::FailedPrecondition, "CreateContainer: {error:?}");
    assert!(error.message().contains(&reference), "the message names the image: {error:?}");
    let containers = pods
        .runtime()
        .await
        .list_containers(ListContainersRequest::default())
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert!(containers.is_empty(), "the failed create left a container record: {containers:?}");
}

#[tokio::test]
async fn create_in_stopped_sandbox() {
    let pods = PodDaemon::start("").await;
    pods.daemon.pull(&image("busybox")).await.expect("pull busybox");
    let sandbox = pods.run_pod(pods.pod_config("stopped")).await;
    pods.runtime()
        .await
        .stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sandbox.clone() })
        .await
        .expect("StopPodSandbox");

    let error = create_request(&pods, &sandbox, container_config("main", &image("busybox"), &["true"]))
        .await
        .expect_err("CreateContainer in a stopped sandbox succeeded");

    assert_eq!(error.code(), Code::FailedPrecondition, "CreateContainer: {error:?}");
    assert!(error.message().contains(&sandbox), "the message names the sandbox: {error:?}");
}

#[tokio::test]
async fn missing_command_start_error() {
    let pods = PodDaemon::start("").await;
    pods.daemon.pull(&image("busybox")).await.expect("pull busybox");
    let sandbox = pods.run_pod(pods.pod_config("nocommand")).await;
    let container = pods
        .create(
            &sandbox,
            pods.pod_config("nocommand"),
            container_config("main", &image("busybox"), &["no-such-command-x7"]),
        )
        .await;
    let mut client = pods.runtime().await;

    let error = client
        .start_container(StartContainerRequest {
            container_id: container.clone(),
        })
        .await
        .expect_err("StartContainer of a missing command succeeded");
    assert!(error.message().contains("no-such-command-x7"), "the error names the command: {error:?}");

    let status = pods.container_status(&container).await;
    assert_eq!(status.state, ContainerState::ContainerExited as i32, "state after a failed start");
    assert_eq!(status.reason, "StartError", "reason after a failed start");
    assert!(status.message.contains("no-such-command-x7"), "status message names the command: {status:?}");
    assert_ne!(status.exit_code, 0, "a failed start has a non-zero exit code");

    client
        .remove_container(RemoveContainerRequest {
            container_id: container.clone(),
        })
        .await
        .expect("RemoveContainer");
    let dir = pods.daemon.dir.path();
    let bundle = dir.join("state/containers").join(&container);
    assert!(!bundle.exists(), "the bundle {} remains", bundle.display());
    let layer = pods.daemon.root().join("containers").join(&container);
    assert!(!layer.exists(), "the writable layer {} remains", layer.display());
    let container_mounts = mounts_below(&dir.join("state/containers"));
    assert!(container_mounts.is_empty(), "container mounts remain: {container_mounts:?}");
    let runc_state = entries(&dir.join("state/runc/runc"));
    assert!(!runc_state.contains(&container), "runc still knows the container: {runc_state:?}");

    client
        .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox })
        .await
        .expect("RemovePodSandbox");
    let all_mounts = mounts_below(dir);
    assert!(all_mounts.is_empty(), "mounts remain under the daemon dir: {all_mounts:?}");
}

#[tokio::test]
async fn missing_metadata() {
    let pods = PodDaemon::start("").await;
    pods.daemon.pull(&image("busybox")).await.expect("pull busybox");

    let mut no_metadata = pods.pod_config("nometa");
    no_metadata.metadata = None;
    let sandbox_error = run_pod_request(&pods, no_metadata)
        .await
        .expect_err("RunPodSandbox without metadata succeeded");
    assert_eq!(sandbox_error.code(), Code::InvalidArgument, "RunPodSandbox without metadata: {sandbox_error:?}");
    assert!(sandbox_error.message().contains("metadata"), "the message names the field: {sandbox_error:?}");

    let mut no_uid = pods.pod_config("nouid");
    no_uid.metadata.as_mut().expect("metadata").uid = String::new();
    let uid_error = run_pod_request(&pods, no_uid).await.expect_err("RunPodSandbox without a UID succeeded");
    assert_eq!(uid_error.code(), Code::InvalidArgument, "RunPodSandbox without a UID: {uid_error:?}");

    let no_config = pods
        .runtime()
        .await
        .run_pod_sandbox(RunPodSandboxRequest {
            config: None,
            runtime_handler: String::new(),
        })
        .await
        .expect_err("RunPodSandbox without a config succeeded");
    assert_eq!(no_config.code(), Code::InvalidArgument, "RunPodSandbox without a config: {no_config:?}");

    let sandbox = pods.run_pod(pods.pod_config("meta")).await;
    let mut container = container_config("main", &image("busybox"), &["true"]);
    container.metadata = None;
    let container_error = create_request(&pods, &sandbox, container)
        .await
        .expect_err("CreateContainer without metadata succeeded");
    assert_eq!(container_error.code(), Code::InvalidArgument, "CreateContainer without metadata: {container_error:?}");
    assert!(container_error.message().contains("metadata"), "the message names the field: {container_error:?}");

    let sandboxes = entries(&pods.daemon.dir.path().join("state/sandboxes"));
    assert_eq!(sandboxes, [sandbox], "only the valid sandbox has state");
}
