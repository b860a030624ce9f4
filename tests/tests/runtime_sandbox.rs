//! Pod sandboxes: listing and filters, status, idempotent stop and removal, host and shared
//! namespaces, and the hostname, hosts, resolv.conf and sysctls their containers see.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use berth_proto::cri::{
    DnsConfig, ListPodSandboxRequest, NamespaceOption, PodSandboxConfig, PodSandboxFilter,
    PodSandboxState, PodSandboxStateValue, PodSandboxStatus, PodSandboxStatusRequest,
    RemovePodSandboxRequest, StopPodSandboxRequest, StreamPodSandboxesRequest,
};
use berth_tests::pods::{PodDaemon, container_config};
use berth_tests::{image, wait_for};
use tonic::Code;

/// Sets the pod's network, PID and IPC namespace modes (NamespaceMode: POD 0, CONTAINER 1,
/// NODE 2).
fn set_namespaces(config: &mut PodSandboxConfig, network: i32, pid: i32, ipc: i32) {
    let options = config
        .linux
        .as_mut()
        .and_then(|linux| linux.security_context.as_mut())
        .expect("pod_config sets a security context");
    options.namespace_options = Some(NamespaceOption {
        network,
        pid,
        ipc,
        ..Default::default()
    });
}

async fn list_ids(pods: &PodDaemon, filter: Option<PodSandboxFilter>) -> Vec<String> {
    let items = pods
        .runtime()
        .await
        .list_pod_sandbox(ListPodSandboxRequest { filter })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    items.into_iter().map(|item| item.id).collect()
}

async fn stream_ids(pods: &PodDaemon, filter: Option<PodSandboxFilter>) -> Vec<String> {
    let mut stream = pods
        .runtime()
        .await
        .stream_pod_sandboxes(StreamPodSandboxesRequest { filter })
        .await
        .expect("StreamPodSandboxes")
        .into_inner();
    let mut ids = Vec::new();
    while let Some(message) = stream.message().await.expect("StreamPodSandboxes message") {
        ids.extend(message.pod_sandboxes.into_iter().map(|sandbox| sandbox.id));
    }
    ids
}

fn state_filter(state: PodSandboxState) -> Option<PodSandboxFilter> {
    Some(PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: state as i32,
        }),
        ..Default::default()
    })
}

fn label_filter(labels: &[(&str, &str)]) -> Option<PodSandboxFilter> {
    Some(PodSandboxFilter {
        label_selector: labels
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        ..Default::default()
    })
}

async fn sandbox_status(
    pods: &PodDaemon,
    id: &str,
    verbose: bool,
) -> (PodSandboxStatus, HashMap<String, String>) {
    let response = pods
        .runtime()
        .await
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    (
        response.status.expect("PodSandboxStatus has a status"),
        response.info,
    )
}

#[tokio::test]
async fn list_filters_and_stream() {
    let pods = PodDaemon::start("").await;
    let mut alpha_config = pods.pod_config("alpha");
    alpha_config
        .labels
        .insert("tier".to_string(), "web".to_string());
    let alpha = pods.run_pod(alpha_config).await;
    let beta = pods.run_pod(pods.pod_config("beta")).await;
    pods.runtime()
        .await
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: beta.clone(),
        })
        .await
        .expect("StopPodSandbox");

    let all = list_ids(&pods, None).await;
    assert_eq!(
        all,
        vec![alpha.clone(), beta.clone()],
        "unfiltered list, oldest first"
    );

    let by_prefix = list_ids(
        &pods,
        Some(PodSandboxFilter {
            id: alpha[..10].to_string(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(by_prefix, vec![alpha.clone()], "filter by ID prefix");

    let ready = list_ids(&pods, state_filter(PodSandboxState::SandboxReady)).await;
    assert_eq!(ready, vec![alpha.clone()], "filter by state READY");
    let not_ready = list_ids(&pods, state_filter(PodSandboxState::SandboxNotready)).await;
    assert_eq!(not_ready, vec![beta.clone()], "filter by state NOTREADY");

    let by_app = list_ids(&pods, label_filter(&[("app", "beta")])).await;
    assert_eq!(by_app, vec![beta.clone()], "filter by label app=beta");
    let by_two_labels = list_ids(&pods, label_filter(&[("app", "alpha"), ("tier", "web")])).await;
    assert_eq!(
        by_two_labels,
        vec![alpha.clone()],
        "filter by labels app=alpha, tier=web"
    );
    let mismatched = list_ids(&pods, label_filter(&[("app", "beta"), ("tier", "web")])).await;
    assert!(
        mismatched.is_empty(),
        "every selector label must match: {mismatched:?}"
    );

    let listed = pods
        .runtime()
        .await
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: label_filter(&[("app", "alpha")]),
        })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    let item = &listed[0];
    assert_eq!(
        item.metadata.as_ref().map(|m| m.name.as_str()),
        Some("alpha"),
        "listed metadata"
    );
    assert_eq!(
        item.labels.get("tier").map(String::as_str),
        Some("web"),
        "listed labels"
    );
    assert_eq!(
        item.state,
        PodSandboxState::SandboxReady as i32,
        "listed state"
    );
    assert!(item.created_at > 0, "listed created_at is set");

    let streamed_all = stream_ids(&pods, None).await;
    assert_eq!(streamed_all, all, "StreamPodSandboxes without filter");
    let streamed_ready = stream_ids(&pods, state_filter(PodSandboxState::SandboxReady)).await;
    assert_eq!(
        streamed_ready,
        vec![alpha.clone()],
        "StreamPodSandboxes filtered by state"
    );
    let streamed_label = stream_ids(&pods, label_filter(&[("app", "beta")])).await;
    assert_eq!(
        streamed_label,
        vec![beta.clone()],
        "StreamPodSandboxes filtered by label"
    );
}

#[tokio::test]
async fn status_verbose_info() {
    let pods = PodDaemon::start("").await;
    let mut config = pods.pod_config("verbose");
    config
        .annotations
        .insert("note".to_string(), "kept".to_string());
    let uid = config.metadata.as_ref().unwrap().uid.clone();
    let id = pods.run_pod(config).await;

    let (status, info) = sandbox_status(&pods, &id, false).await;
    assert!(info.is_empty(), "non-verbose status has no info: {info:?}");
    assert_eq!(status.id, id, "status ID");
    assert_eq!(
        status.state,
        PodSandboxState::SandboxReady as i32,
        "status state"
    );
    assert_eq!(
        status.metadata.as_ref().map(|m| m.name.as_str()),
        Some("verbose"),
        "status metadata"
    );
    assert_eq!(
        status.labels.get("app").map(String::as_str),
        Some("verbose"),
        "status labels"
    );
    assert_eq!(
        status.annotations.get("note").map(String::as_str),
        Some("kept"),
        "status annotations"
    );
    let options = status
        .linux
        .and_then(|linux| linux.namespaces)
        .and_then(|namespaces| namespaces.options)
        .expect("status has namespace options");
    assert_eq!(options.pid, 1, "the pod's PID mode CONTAINER is reported");

    let (_, info) = sandbox_status(&pods, &id, true).await;
    let details: serde_json::Value =
        serde_json::from_str(info.get("info").expect("verbose status has an info key"))
            .expect("info is JSON");
    let dir = details["dir"].as_str().expect("info.dir is a string");
    assert!(
        Path::new(dir).join("resolv.conf").is_file(),
        "info.dir {dir} holds the sandbox's resolv.conf"
    );
    assert_eq!(
        details["cgroupParent"].as_str(),
        Some(format!("{}/besteffort/pod{uid}", pods.cgroup_parent).as_str()),
        "info.cgroupParent is the BestEffort QoS path under the configured parent"
    );
    assert!(
        details["infraPid"].is_null(),
        "no infra process without a shared PID namespace: {details}"
    );
    assert_eq!(details["hostNetwork"], false, "info.hostNetwork");
    assert_eq!(
        details["runtimeHandler"], "runc",
        "info.runtimeHandler names the default handler"
    );
}

#[tokio::test]
async fn stop_and_remove_twice() {
    let pods = PodDaemon::start("").await;
    let (sandbox, container) = pods.run_busybox("twice", &["sleep", "600"]).await;
    let mut client = pods.runtime().await;
    let (status, _) = sandbox_status(&pods, &sandbox, false).await;
    let ip = status.network.expect("status has a network").ip;
    let lease = pods.daemon.dir.path().join("ipam").join("berth").join(&ip);
    assert!(
        lease.is_file(),
        "host-local lease {} exists while the pod runs",
        lease.display()
    );

    for attempt in 1..=2 {
        client
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox.clone(),
            })
            .await
            .unwrap_or_else(|status| panic!("StopPodSandbox #{attempt} failed: {status:?}"));
    }
    let (stopped, _) = sandbox_status(&pods, &sandbox, false).await;
    assert_eq!(
        stopped.state,
        PodSandboxState::SandboxNotready as i32,
        "state after stop"
    );
    let container_state = pods.container_status(&container).await.state;
    assert_eq!(
        container_state,
        berth_proto::cri::ContainerState::ContainerExited as i32,
        "stopping the pod stops its container"
    );
    assert!(
        !lease.exists(),
        "the pod IP {ip} is released by StopPodSandbox"
    );

    for attempt in 1..=2 {
        client
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox.clone(),
            })
            .await
            .unwrap_or_else(|status| panic!("RemovePodSandbox #{attempt} failed: {status:?}"));
    }
    let removed_status = client
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await
        .expect_err("PodSandboxStatus of a removed sandbox fails");
    assert_eq!(
        removed_status.code(),
        Code::NotFound,
        "status of a removed sandbox: {removed_status:?}"
    );

    let unknown = "0f".repeat(32);
    client
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: unknown.clone(),
        })
        .await
        .expect("StopPodSandbox of an unknown ID succeeds");
    client
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: unknown,
        })
        .await
        .expect("RemovePodSandbox of an unknown ID succeeds");
}

#[tokio::test]
async fn host_network_pod() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let mut config = pods.pod_config("hostnet");
    set_namespaces(&mut config, 2, 1, 0);
    let sandbox = pods.run_pod(config.clone()).await;
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            container_config("main", &image("busybox"), &["sleep", "600"]),
        )
        .await;

    let (status, info) = sandbox_status(&pods, &sandbox, true).await;
    let network = status.network.expect("status has a network");
    assert_eq!(network.ip, "", "a host-network pod has no pod IP");
    assert!(
        network.additional_ips.is_empty(),
        "a host-network pod has no additional IPs"
    );
    let details: serde_json::Value = serde_json::from_str(&info["info"]).expect("info is JSON");
    assert_eq!(details["hostNetwork"], true, "info.hostNetwork");

    let host_hostname =
        std::fs::read_to_string("/proc/sys/kernel/hostname").expect("read host hostname");
    let hostname = pods.exec_stdout(&container, &["hostname"]).await;
    assert_eq!(
        hostname.trim(),
        host_hostname.trim(),
        "the container's hostname is the host's"
    );
    let hostname_file = pods
        .exec_stdout(&container, &["cat", "/etc/hostname"])
        .await;
    assert_eq!(
        hostname_file.trim(),
        host_hostname.trim(),
        "/etc/hostname holds the host's name"
    );

    let host_netns = std::fs::read_link("/proc/self/ns/net").expect("read host netns link");
    let netns = pods
        .exec_stdout(&container, &["readlink", "/proc/self/ns/net"])
        .await;
    assert_eq!(
        netns.trim(),
        host_netns.display().to_string(),
        "the container is in the host's network namespace"
    );
    let host_utsns = std::fs::read_link("/proc/self/ns/uts").expect("read host UTS namespace link");
    let utsns = pods
        .exec_stdout(&container, &["readlink", "/proc/self/ns/uts"])
        .await;
    assert_eq!(
        utsns.trim(),
        host_utsns.display().to_string(),
        "the container is in the host's UTS namespace"
    );
}

#[tokio::test]
async fn host_ipc_pod() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let mut config = pods.pod_config("hostipc");
    set_namespaces(&mut config, 0, 1, 2);
    let sandbox = pods.run_pod(config.clone()).await;
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            container_config("main", &image("busybox"), &["sleep", "600"]),
        )
        .await;

    let host_ipcns = std::fs::read_link("/proc/self/ns/ipc").expect("read host IPC namespace link");
    let ipcns = pods
        .exec_stdout(&container, &["readlink", "/proc/self/ns/ipc"])
        .await;
    assert_eq!(
        ipcns.trim(),
        host_ipcns.display().to_string(),
        "the container is in the host's IPC namespace"
    );
    let host_netns = std::fs::read_link("/proc/self/ns/net").expect("read host netns link");
    let netns = pods
        .exec_stdout(&container, &["readlink", "/proc/self/ns/net"])
        .await;
    assert_ne!(
        netns.trim(),
        host_netns.display().to_string(),
        "host IPC does not imply host network"
    );
}

#[tokio::test]
async fn shared_pid_namespace() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let mut config = pods.pod_config("sharedpid");
    set_namespaces(&mut config, 0, 0, 0);
    let sandbox = pods.run_pod(config.clone()).await;
    let first = pods
        .create_and_start(
            &sandbox,
            config.clone(),
            container_config("first", &image("busybox"), &["sleep", "3001"]),
        )
        .await;
    let second = pods
        .create_and_start(
            &sandbox,
            config,
            container_config("second", &image("busybox"), &["sleep", "3002"]),
        )
        .await;

    let ps = pods.exec_stdout(&second, &["ps", "-o", "pid,args"]).await;
    let processes: Vec<(String, String)> = ps
        .lines()
        .skip(1)
        .filter_map(|line| {
            let line = line.trim();
            let (pid, args) = line.split_once(' ')?;
            Some((pid.to_string(), args.trim().to_string()))
        })
        .collect();
    let has = |pattern: &str| processes.iter().any(|(_, args)| args == pattern);
    assert!(
        has("sleep 3001"),
        "the second container sees the first's process: {ps}"
    );
    assert!(
        has("sleep 3002"),
        "the second container sees its own process: {ps}"
    );
    let init = processes
        .iter()
        .find(|(pid, _)| pid == "1")
        .map(|(_, args)| args.as_str());
    assert!(
        init.is_some_and(|args| args.ends_with("berth infra")),
        "PID 1 of the pod is the infra process: {ps}"
    );
    let ps_first = pods.exec_stdout(&first, &["ps", "-o", "pid,args"]).await;
    assert!(
        ps_first.contains("sleep 3002"),
        "the first container sees the second's process: {ps_first}"
    );

    let (_, info) = sandbox_status(&pods, &sandbox, true).await;
    let details: serde_json::Value = serde_json::from_str(&info["info"]).expect("info is JSON");
    let infra_pid = details["infraPid"]
        .as_i64()
        .expect("info.infraPid is set for a shared PID namespace");
    let proc_dir = format!("/proc/{infra_pid}");
    let cmdline = std::fs::read(format!("{proc_dir}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("infra"),
        "host PID {infra_pid} is the infra process: {cmdline:?}"
    );

    pods.runtime()
        .await
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .expect("StopPodSandbox");
    let reaped = wait_for(Duration::from_secs(5), || !Path::new(&proc_dir).exists()).await;
    assert!(
        reaped,
        "the infra process {infra_pid} is gone after StopPodSandbox"
    );
}

#[tokio::test]
async fn hostname_hosts_and_dns() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let mut config = pods.pod_config("dns");
    config.hostname = "berth-web-0".to_string();
    config.dns_config = Some(DnsConfig {
        servers: vec!["192.0.2.53".to_string(), "2001:db8::53".to_string()],
        searches: vec![
            "berth-e2e.svc.cluster.local".to_string(),
            "cluster.local".to_string(),
        ],
        options: vec!["ndots:5".to_string(), "timeout:1".to_string()],
    });
    let sandbox = pods.run_pod(config.clone()).await;
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            container_config("main", &image("busybox"), &["sleep", "600"]),
        )
        .await;
    let (status, _) = sandbox_status(&pods, &sandbox, false).await;
    let ip = status.network.expect("status has a network").ip;

    let hostname = pods.exec_stdout(&container, &["hostname"]).await;
    assert_eq!(hostname, "berth-web-0\n", "hostname");
    let hostname_file = pods
        .exec_stdout(&container, &["cat", "/etc/hostname"])
        .await;
    assert_eq!(hostname_file, "berth-web-0\n", "/etc/hostname");

    let hosts = pods.exec_stdout(&container, &["cat", "/etc/hosts"]).await;
    let hosts_lines: Vec<&str> = hosts.lines().collect();
    assert!(
        hosts_lines.contains(&format!("{ip}\tberth-web-0").as_str()),
        "/etc/hosts maps the pod IP {ip}: {hosts}"
    );
    assert!(
        hosts_lines.contains(&"127.0.0.1\tlocalhost"),
        "/etc/hosts has localhost: {hosts}"
    );

    let resolv = pods
        .exec_stdout(&container, &["cat", "/etc/resolv.conf"])
        .await;
    let resolv_lines: Vec<&str> = resolv.lines().collect();
    assert!(
        resolv_lines.contains(&"nameserver 192.0.2.53"),
        "IPv4 server: {resolv}"
    );
    assert!(
        resolv_lines.contains(&"nameserver 2001:db8::53"),
        "IPv6 server: {resolv}"
    );
    assert!(
        resolv_lines.contains(&"search berth-e2e.svc.cluster.local cluster.local"),
        "search domains in order: {resolv}"
    );
    assert!(
        resolv_lines.contains(&"options ndots:5 timeout:1"),
        "options: {resolv}"
    );
}

#[tokio::test]
async fn namespaced_sysctls() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let host_shm_rmid =
        std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").expect("read host sysctl");
    let host_port_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .expect("read host sysctl");
    let mut config = pods.pod_config("sysctl");
    let linux = config.linux.as_mut().expect("pod_config sets linux");
    linux
        .sysctls
        .insert("kernel.shm_rmid_forced".to_string(), "1".to_string());
    linux.sysctls.insert(
        "net.ipv4.ip_unprivileged_port_start".to_string(),
        "80".to_string(),
    );
    let sandbox = pods.run_pod(config.clone()).await;
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            container_config("main", &image("busybox"), &["sleep", "600"]),
        )
        .await;

    let shm_rmid = pods
        .exec_stdout(&container, &["cat", "/proc/sys/kernel/shm_rmid_forced"])
        .await;
    assert_eq!(
        shm_rmid, "1\n",
        "kernel.shm_rmid_forced in the pod's IPC namespace"
    );
    let port_start = pods
        .exec_stdout(
            &container,
            &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
        )
        .await;
    assert_eq!(
        port_start, "80\n",
        "net.ipv4.ip_unprivileged_port_start in the pod's network namespace"
    );

    let host_shm_rmid_after =
        std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").expect("read host sysctl");
    assert_eq!(
        host_shm_rmid_after, host_shm_rmid,
        "the host's kernel.shm_rmid_forced is unchanged"
    );
    let host_port_start_after =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .expect("read host sysctl");
    assert_eq!(
        host_port_start_after, host_port_start,
        "the host's ip_unprivileged_port_start is unchanged"
    );
}
