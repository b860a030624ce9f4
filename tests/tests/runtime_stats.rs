//! Container and pod statistics and metrics, read from real cgroups, writable layers and pod
//! network namespaces.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use berth_proto::cri::{
    ContainerStats, ContainerStatsFilter, ContainerStatsRequest, LinuxContainerConfig,
    LinuxContainerResources, ListContainerStatsRequest, ListMetricDescriptorsRequest,
    ListPodSandboxMetricsRequest, ListPodSandboxStatsRequest, MetricDescriptor, PodSandboxStats,
    PodSandboxStatsFilter, PodSandboxStatsRequest, StreamContainerStatsRequest,
    StreamPodSandboxMetricsRequest, StreamPodSandboxStatsRequest, UInt64Value,
};
use berth_tests::image;
use berth_tests::pods::{PodDaemon, container_config};
use tonic::Code;

const MIB: u64 = 1024 * 1024;

/// Metrics that the kubelet's CRI stats provider reads from ListPodSandboxMetrics.
const REQUIRED_METRICS: [&str; 11] = [
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_memory_usage_bytes",
    "container_memory_rss",
    "container_spec_memory_limit_bytes",
    "container_cpu_cfs_throttled_periods_total",
    "container_cpu_cfs_periods_total",
    "container_oom_events_total",
    "container_processes",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
];

async fn container_stats(pods: &PodDaemon, container: &str) -> ContainerStats {
    pods.runtime()
        .await
        .container_stats(ContainerStatsRequest {
            container_id: container.to_string(),
        })
        .await
        .unwrap_or_else(|status| {
            panic!(
                "ContainerStats failed: {status:?}\nlog:\n{}",
                pods.daemon.log()
            )
        })
        .into_inner()
        .stats
        .expect("ContainerStats has stats")
}

async fn pod_stats(pods: &PodDaemon, sandbox: &str) -> PodSandboxStats {
    pods.runtime()
        .await
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: sandbox.to_string(),
        })
        .await
        .unwrap_or_else(|status| {
            panic!(
                "PodSandboxStats failed: {status:?}\nlog:\n{}",
                pods.daemon.log()
            )
        })
        .into_inner()
        .stats
        .expect("PodSandboxStats has stats")
}

async fn list_container_stats(
    pods: &PodDaemon,
    filter: ContainerStatsFilter,
) -> Vec<ContainerStats> {
    pods.runtime()
        .await
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .expect("ListContainerStats")
        .into_inner()
        .stats
}

fn stats_ids(stats: &[ContainerStats]) -> HashSet<String> {
    stats
        .iter()
        .map(|stats| stats.attributes.as_ref().expect("attributes").id.clone())
        .collect()
}

fn cpu_total(stats: &ContainerStats) -> u64 {
    stats
        .cpu
        .as_ref()
        .and_then(|cpu| cpu.usage_core_nano_seconds.as_ref())
        .expect("cpu.usage_core_nano_seconds")
        .value
}

fn layer_used_bytes(stats: &ContainerStats) -> u64 {
    stats
        .writable_layer
        .as_ref()
        .and_then(|layer| layer.used_bytes.as_ref())
        .expect("writable_layer.used_bytes")
        .value
}

/// Polls ContainerStats until `check` accepts the stats, and returns them. Fails the test with
/// the last stats after `timeout`.
async fn wait_for_stats(
    pods: &PodDaemon,
    container: &str,
    timeout: Duration,
    expectation: &str,
    check: impl Fn(&ContainerStats) -> bool,
) -> ContainerStats {
    let deadline = Instant::now() + timeout;
    loop {
        let stats = container_stats(pods, container).await;
        if check(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "{expectation} not seen within {timeout:?}; last stats: {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn busy_container_cpu_usage_grows() {
    let pods = PodDaemon::start("").await;
    let (_sandbox, container) = pods
        .run_busybox("busy", &["sh", "-c", "while :; do :; done"])
        .await;

    let first = container_stats(&pods, &container).await;
    let attributes = first.attributes.as_ref().expect("attributes");
    assert_eq!(attributes.id, container);
    assert_eq!(
        attributes
            .metadata
            .as_ref()
            .map(|metadata| metadata.name.as_str()),
        Some("main")
    );
    assert!(
        first
            .cpu
            .as_ref()
            .is_some_and(|cpu| cpu.usage_nano_cores.is_none()),
        "the first sample of a cgroup has no rate yet: {:?}",
        first.cpu
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = container_stats(&pods, &container).await;

    let cpu = second.cpu.as_ref().expect("cpu stats");
    assert!(cpu.timestamp > first.cpu.as_ref().expect("cpu").timestamp);
    assert!(
        cpu_total(&second) > cpu_total(&first),
        "CPU time did not grow: {} then {}",
        cpu_total(&first),
        cpu_total(&second)
    );
    let nano_cores = cpu
        .usage_nano_cores
        .as_ref()
        .expect("usage_nano_cores on the second sample");
    assert!(
        nano_cores.value > 0,
        "a busy loop used no CPU: {nano_cores:?}"
    );
}

#[tokio::test]
async fn memory_working_set_counts_shell_variable() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let config = pods.pod_config("memory");
    let sandbox = pods.run_pod(config.clone()).await;
    // `sleep & wait` keeps the shell, and so the variable, alive: busybox sh would exec a
    // plain trailing `sleep` in place of itself.
    let mut container = container_config(
        "main",
        &image("busybox"),
        &[
            "sh",
            "-c",
            "x=$(head -c 20000000 /dev/zero | tr '\\0' a); sleep 600 & wait",
        ],
    );
    let limit = 256 * MIB;
    container.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: limit as i64,
            ..Default::default()
        }),
        ..Default::default()
    });
    let container = pods.create_and_start(&sandbox, config, container).await;

    let stats = wait_for_stats(
        &pods,
        &container,
        Duration::from_secs(30),
        "a working set above 15 MB",
        |stats| {
            stats
                .memory
                .as_ref()
                .and_then(|memory| memory.working_set_bytes.as_ref())
                .is_some_and(|working_set| working_set.value > 15_000_000)
        },
    )
    .await;

    let memory = stats.memory.expect("memory stats");
    let working_set = memory.working_set_bytes.expect("working_set_bytes").value;
    let usage = memory.usage_bytes.expect("usage_bytes").value;
    assert!(
        usage >= working_set,
        "usage {usage} below working set {working_set}"
    );
    assert!(memory.rss_bytes.is_some(), "rss_bytes missing");
    assert!(memory.page_faults.is_some(), "page_faults missing");
    assert_eq!(
        memory.available_bytes.map(|available| available.value),
        Some(limit - working_set),
        "available bytes are the limit minus the working set"
    );
}

#[tokio::test]
async fn written_file_grows_writable_layer() {
    let pods = PodDaemon::start("").await;
    let (_sandbox, container) = pods.run_busybox("layer", &["sleep", "600"]).await;

    let before = container_stats(&pods, &container).await;
    let layer = before.writable_layer.as_ref().expect("writable_layer");
    let mountpoint = &layer.fs_id.as_ref().expect("fs_id").mountpoint;
    assert!(
        mountpoint.ends_with("/containers"),
        "fs_id should be the writable layers' directory: {mountpoint}"
    );
    let inodes_before = layer.inodes_used.as_ref().expect("inodes_used").value;

    pods.exec_stdout(
        &container,
        &[
            "sh",
            "-c",
            "head -c 5242880 /dev/urandom > /written.bin && sync",
        ],
    )
    .await;

    // Layer usage is cached for a few seconds, so the new file shows up on a later call.
    let target = layer_used_bytes(&before) + 5 * MIB;
    let after = wait_for_stats(
        &pods,
        &container,
        Duration::from_secs(20),
        "5 MiB more in the writable layer",
        |stats| layer_used_bytes(stats) >= target,
    )
    .await;
    let inodes_after = after
        .writable_layer
        .as_ref()
        .and_then(|layer| layer.inodes_used.as_ref())
        .expect("inodes_used")
        .value;
    assert!(
        inodes_after > inodes_before,
        "the new file adds an inode: {inodes_before} then {inodes_after}"
    );
}

#[tokio::test]
async fn created_container_has_only_layer_stats() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let config = pods.pod_config("created");
    let sandbox = pods.run_pod(config.clone()).await;
    let container = pods
        .create(
            &sandbox,
            config,
            container_config("idle", &image("busybox"), &["sleep", "600"]),
        )
        .await;

    let stats = container_stats(&pods, &container).await;
    assert_eq!(
        stats
            .attributes
            .as_ref()
            .map(|attributes| attributes.id.as_str()),
        Some(container.as_str())
    );
    assert!(
        stats.cpu.is_none(),
        "a container that never started has no cgroup: {:?}",
        stats.cpu
    );
    assert!(
        stats.memory.is_none(),
        "no memory stats expected: {:?}",
        stats.memory
    );
    assert!(
        stats.writable_layer.is_some(),
        "the writable layer exists from creation"
    );

    let listed = list_container_stats(&pods, ContainerStatsFilter::default()).await;
    assert!(
        !stats_ids(&listed).contains(&container),
        "ListContainerStats lists running containers only"
    );
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let pods = PodDaemon::start("").await;
    let mut client = pods.runtime().await;

    let container = client
        .container_stats(ContainerStatsRequest {
            container_id: "0123456789abcdef".to_string(),
        })
        .await
        .expect_err("ContainerStats of an unknown container");
    assert_eq!(container.code(), Code::NotFound, "{container:?}");

    let sandbox = client
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: "0123456789abcdef".to_string(),
        })
        .await
        .expect_err("PodSandboxStats of an unknown sandbox");
    assert_eq!(sandbox.code(), Code::NotFound, "{sandbox:?}");
}

#[tokio::test]
async fn list_container_stats_filters() {
    let pods = PodDaemon::start("").await;
    let (sandbox_a, container_a) = pods.run_busybox("filter-a", &["sleep", "600"]).await;
    let config_b = pods.pod_config("filter-b");
    let sandbox_b = pods.run_pod(config_b.clone()).await;
    let mut labelled = container_config("labelled", &image("busybox"), &["sleep", "600"]);
    labelled.labels = HashMap::from([("tier".to_string(), "backend".to_string())]);
    let container_b = pods.create_and_start(&sandbox_b, config_b, labelled).await;

    let all = stats_ids(&list_container_stats(&pods, ContainerStatsFilter::default()).await);
    assert_eq!(
        all,
        HashSet::from([container_a.clone(), container_b.clone()])
    );

    let by_pod = list_container_stats(
        &pods,
        ContainerStatsFilter {
            pod_sandbox_id: sandbox_a.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(stats_ids(&by_pod), HashSet::from([container_a.clone()]));
    assert!(by_pod[0].cpu.is_some(), "listed stats have CPU usage");

    let by_id = list_container_stats(
        &pods,
        ContainerStatsFilter {
            id: container_b.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(stats_ids(&by_id), HashSet::from([container_b.clone()]));

    let by_label = list_container_stats(
        &pods,
        ContainerStatsFilter {
            label_selector: HashMap::from([("tier".to_string(), "backend".to_string())]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(stats_ids(&by_label), HashSet::from([container_b.clone()]));

    let mut stream = pods
        .runtime()
        .await
        .stream_container_stats(StreamContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: sandbox_b.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("StreamContainerStats")
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .expect("StreamContainerStats message")
    {
        streamed.extend(message.container_stats);
    }
    assert_eq!(stats_ids(&streamed), HashSet::from([container_b]));
}

#[tokio::test]
async fn pod_stats_include_containers_and_network() {
    let pods = PodDaemon::start("").await;
    let (sandbox, first) = pods.run_busybox("netpod", &["sleep", "600"]).await;
    let second = pods
        .create_and_start(
            &sandbox,
            pods.pod_config("netpod"),
            container_config("sidecar", &image("busybox"), &["sleep", "600"]),
        )
        .await;

    let before = pod_stats(&pods, &sandbox).await;
    let eth0_before = before
        .linux
        .as_ref()
        .and_then(|linux| linux.network.as_ref())
        .and_then(|network| network.default_interface.clone())
        .expect("network.default_interface before the ping");

    // The gateway is the test bridge's address on the host, so the packets cross eth0.
    let gateway = format!("{}.1", pods.subnet_prefix);
    let ping = pods
        .exec(&first, &["ping", "-c", "2", "-W", "2", &gateway])
        .await;
    assert_eq!(
        ping.exit_code,
        0,
        "ping {gateway} failed: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );

    let stats = pod_stats(&pods, &sandbox).await;
    assert_eq!(
        stats
            .attributes
            .as_ref()
            .map(|attributes| attributes.id.as_str()),
        Some(sandbox.as_str())
    );
    let linux = stats.linux.expect("linux stats");

    let containers: HashSet<String> = linux
        .containers
        .iter()
        .map(|container| {
            container
                .attributes
                .as_ref()
                .expect("attributes")
                .id
                .clone()
        })
        .collect();
    assert_eq!(containers, HashSet::from([first.clone(), second.clone()]));

    let process_count = linux
        .process
        .as_ref()
        .and_then(|process| process.process_count.as_ref())
        .expect("process.process_count")
        .value;
    assert!(
        process_count >= 2,
        "two sleeping containers, {process_count} processes counted"
    );
    assert!(
        linux
            .cpu
            .as_ref()
            .and_then(|cpu| cpu.usage_core_nano_seconds.as_ref())
            .is_some(),
        "pod CPU usage missing: {:?}",
        linux.cpu
    );
    assert!(
        linux
            .memory
            .as_ref()
            .and_then(|memory| memory.working_set_bytes.as_ref())
            .is_some(),
        "pod working set missing: {:?}",
        linux.memory
    );

    let network = linux.network.expect("network stats");
    let eth0 = network
        .default_interface
        .clone()
        .expect("network.default_interface");
    assert_eq!(eth0.name, "eth0");
    let counter = |value: &Option<UInt64Value>| value.as_ref().expect("counter").value;
    // An echo request or reply with busybox's default 56 data bytes is an 84-byte IP packet.
    let ping_bytes = 2 * 84;
    assert!(
        counter(&eth0.tx_bytes) >= counter(&eth0_before.tx_bytes) + ping_bytes,
        "two echo requests should add at least {ping_bytes} transmitted bytes: {eth0_before:?} then {eth0:?}"
    );
    assert!(
        counter(&eth0.rx_bytes) >= counter(&eth0_before.rx_bytes) + ping_bytes,
        "two echo replies should add at least {ping_bytes} received bytes: {eth0_before:?} then {eth0:?}"
    );
    assert!(eth0.rx_errors.is_some(), "rx_errors missing");
    assert!(eth0.tx_errors.is_some(), "tx_errors missing");
    assert!(
        network
            .interfaces
            .iter()
            .any(|interface| interface.name == "eth0"),
        "eth0 missing from interfaces: {:?}",
        network.interfaces
    );
    assert!(
        network
            .interfaces
            .iter()
            .all(|interface| interface.name != "lo"),
        "loopback is left out, as cAdvisor does"
    );

    let mut client = pods.runtime().await;
    let listed = client
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter {
                label_selector: HashMap::from([("app".to_string(), "netpod".to_string())]),
                ..Default::default()
            }),
        })
        .await
        .expect("ListPodSandboxStats")
        .into_inner()
        .stats;
    let listed_ids: Vec<&str> = listed
        .iter()
        .filter_map(|stats| {
            stats
                .attributes
                .as_ref()
                .map(|attributes| attributes.id.as_str())
        })
        .collect();
    assert_eq!(listed_ids, vec![sandbox.as_str()]);

    let mut stream = client
        .stream_pod_sandbox_stats(StreamPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter {
                id: sandbox.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("StreamPodSandboxStats")
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .expect("StreamPodSandboxStats message")
    {
        streamed.extend(message.pod_sandbox_stats);
    }
    assert_eq!(streamed.len(), 1);
    assert_eq!(
        streamed[0]
            .linux
            .as_ref()
            .map(|linux| linux.containers.len()),
        Some(2)
    );
}

#[tokio::test]
async fn metrics_name_cadvisor_series() {
    let pods = PodDaemon::start("").await;
    let (sandbox, container) = pods.run_busybox("metrics", &["sleep", "600"]).await;
    let mut client = pods.runtime().await;

    let descriptors: Vec<MetricDescriptor> = client
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors;
    let by_name: HashMap<&str, &MetricDescriptor> = descriptors
        .iter()
        .map(|descriptor| (descriptor.name.as_str(), descriptor))
        .collect();
    for name in REQUIRED_METRICS {
        let descriptor = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not described; described: {:?}", by_name.keys()));
        assert!(!descriptor.help.is_empty(), "{name} has no help text");
        assert!(
            descriptor.label_keys.iter().any(|key| key == "pod"),
            "{name} lacks the pod label: {:?}",
            descriptor.label_keys
        );
    }

    let pod_metrics = client
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner()
        .pod_metrics;
    let pod = pod_metrics
        .iter()
        .find(|pod| pod.pod_sandbox_id == sandbox)
        .unwrap_or_else(|| panic!("no metrics for pod {sandbox}: {pod_metrics:#?}"));

    let container_metrics = pod
        .container_metrics
        .iter()
        .find(|metrics| metrics.container_id == container)
        .unwrap_or_else(|| panic!("no metrics for container {container}: {pod:#?}"));
    let working_set = container_metrics
        .metrics
        .iter()
        .find(|metric| metric.name == "container_memory_working_set_bytes")
        .expect("container_memory_working_set_bytes for the container");
    assert!(
        working_set
            .value
            .as_ref()
            .is_some_and(|value| value.value > 0),
        "a running container has a working set: {working_set:?}"
    );
    for metric in pod.metrics.iter().chain(&container_metrics.metrics) {
        let descriptor = by_name
            .get(metric.name.as_str())
            .unwrap_or_else(|| panic!("{} has no descriptor", metric.name));
        assert_eq!(
            metric.label_values.len(),
            descriptor.label_keys.len(),
            "label values of {} do not match its keys {:?}",
            metric.name,
            descriptor.label_keys
        );
    }
    let labels: HashMap<&str, &str> = by_name["container_memory_working_set_bytes"]
        .label_keys
        .iter()
        .map(String::as_str)
        .zip(working_set.label_values.iter().map(String::as_str))
        .collect();
    assert_eq!(labels.get("container"), Some(&"main"));
    assert_eq!(labels.get("pod"), Some(&"metrics"));
    assert_eq!(labels.get("namespace"), Some(&"berth-e2e"));

    assert!(
        pod.metrics.iter().any(
            |metric| metric.name == "container_network_receive_bytes_total"
                && metric.label_values.last().map(String::as_str) == Some("eth0")
        ),
        "no received bytes of eth0 among the pod metrics: {:#?}",
        pod.metrics
    );

    let mut stream = client
        .stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest {})
        .await
        .expect("StreamPodSandboxMetrics")
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(message) = stream
        .message()
        .await
        .expect("StreamPodSandboxMetrics message")
    {
        streamed.extend(message.pod_sandbox_metrics);
    }
    assert!(
        streamed.iter().any(|pod| pod.pod_sandbox_id == sandbox),
        "StreamPodSandboxMetrics left out pod {sandbox}"
    );
}
