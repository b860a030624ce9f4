//! ContainerStats, PodSandboxStats, their List and Stream forms, and the metrics RPCs
//! (ListMetricDescriptors, ListPodSandboxMetrics, StreamPodSandboxMetrics).
//!
//! The metrics carry cAdvisor's names, help texts and labels, because the kubelet serves them
//! on `/metrics/cadvisor` when its `PodAndContainerStatsFromCRI` feature gate is on.

mod metrics;

use berth_proto::cri::{
    ContainerAttributes, ContainerStats, ContainerStatsRequest, ContainerStatsResponse, CpuUsage,
    FilesystemIdentifier, FilesystemUsage, LinuxPodSandboxStats, ListContainerStatsRequest,
    ListContainerStatsResponse, ListMetricDescriptorsRequest, ListMetricDescriptorsResponse,
    ListPodSandboxMetricsRequest, ListPodSandboxMetricsResponse, ListPodSandboxStatsRequest,
    ListPodSandboxStatsResponse, MemoryUsage, NetworkInterfaceUsage, NetworkUsage,
    PodSandboxAttributes, PodSandboxMetrics, PodSandboxStats, PodSandboxStatsRequest,
    PodSandboxStatsResponse, ProcessUsage, StreamContainerStatsRequest,
    StreamContainerStatsResponse, StreamPodSandboxMetricsRequest, StreamPodSandboxMetricsResponse,
    StreamPodSandboxStatsRequest, StreamPodSandboxStatsResponse, SwapUsage, UInt64Value,
};
use tonic::Status;

use super::{CriRuntimeService, ResponseStream};
use crate::runtime::stats::{
    CgroupUsage, ContainerUsage, InterfaceUsage, NetworkUsage as RuntimeNetworkUsage, SandboxUsage,
    WritableLayerUsage,
};

/// Items per message of the Stream RPCs.
const STREAM_BATCH: usize = 256;

impl CriRuntimeService {
    pub(super) async fn container_stats(
        &self,
        request: ContainerStatsRequest,
    ) -> Result<ContainerStatsResponse, Status> {
        let usage = self
            .runtime()?
            .container_usage(&request.container_id)
            .await?;
        Ok(ContainerStatsResponse {
            stats: Some(to_cri_container_stats(&usage)),
        })
    }

    pub(super) async fn list_container_stats(
        &self,
        request: ListContainerStatsRequest,
    ) -> Result<ListContainerStatsResponse, Status> {
        let usages = self
            .runtime()?
            .list_container_usage(request.filter.as_ref())
            .await?;
        Ok(ListContainerStatsResponse {
            stats: usages.iter().map(to_cri_container_stats).collect(),
        })
    }

    pub(super) async fn stream_container_stats(
        &self,
        request: StreamContainerStatsRequest,
    ) -> Result<ResponseStream<StreamContainerStatsResponse>, Status> {
        let stats: Vec<ContainerStats> = self
            .runtime()?
            .list_container_usage(request.filter.as_ref())
            .await?
            .iter()
            .map(to_cri_container_stats)
            .collect();
        Ok(in_batches(stats, |container_stats| {
            StreamContainerStatsResponse { container_stats }
        }))
    }

    pub(super) async fn pod_sandbox_stats(
        &self,
        request: PodSandboxStatsRequest,
    ) -> Result<PodSandboxStatsResponse, Status> {
        let usage = self
            .runtime()?
            .sandbox_usage(&request.pod_sandbox_id)
            .await?;
        Ok(PodSandboxStatsResponse {
            stats: Some(to_cri_sandbox_stats(&usage)),
        })
    }

    pub(super) async fn list_pod_sandbox_stats(
        &self,
        request: ListPodSandboxStatsRequest,
    ) -> Result<ListPodSandboxStatsResponse, Status> {
        let usages = self
            .runtime()?
            .list_sandbox_usage(request.filter.as_ref())
            .await?;
        Ok(ListPodSandboxStatsResponse {
            stats: usages.iter().map(to_cri_sandbox_stats).collect(),
        })
    }

    pub(super) async fn stream_pod_sandbox_stats(
        &self,
        request: StreamPodSandboxStatsRequest,
    ) -> Result<ResponseStream<StreamPodSandboxStatsResponse>, Status> {
        let stats: Vec<PodSandboxStats> = self
            .runtime()?
            .list_sandbox_usage(request.filter.as_ref())
            .await?
            .iter()
            .map(to_cri_sandbox_stats)
            .collect();
        Ok(in_batches(stats, |pod_sandbox_stats| {
            StreamPodSandboxStatsResponse { pod_sandbox_stats }
        }))
    }

    pub(super) fn list_metric_descriptors(
        &self,
        _request: ListMetricDescriptorsRequest,
    ) -> ListMetricDescriptorsResponse {
        ListMetricDescriptorsResponse {
            descriptors: metrics::descriptors(),
        }
    }

    pub(super) async fn list_pod_sandbox_metrics(
        &self,
        _request: ListPodSandboxMetricsRequest,
    ) -> Result<ListPodSandboxMetricsResponse, Status> {
        let usages = self.runtime()?.list_sandbox_usage(None).await?;
        Ok(ListPodSandboxMetricsResponse {
            pod_metrics: usages.iter().map(metrics::to_cri_sandbox_metrics).collect(),
        })
    }

    pub(super) async fn stream_pod_sandbox_metrics(
        &self,
        _request: StreamPodSandboxMetricsRequest,
    ) -> Result<ResponseStream<StreamPodSandboxMetricsResponse>, Status> {
        let metrics: Vec<PodSandboxMetrics> = self
            .runtime()?
            .list_sandbox_usage(None)
            .await?
            .iter()
            .map(metrics::to_cri_sandbox_metrics)
            .collect();
        Ok(in_batches(metrics, |pod_sandbox_metrics| {
            StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            }
        }))
    }
}

/// Returns a stream of `items` in messages of at most [`STREAM_BATCH`] items each.
fn in_batches<T: Clone, R: Send + 'static>(
    items: Vec<T>,
    message: impl Fn(Vec<T>) -> R,
) -> ResponseStream<R> {
    let batches: Vec<Result<R, Status>> = items
        .chunks(STREAM_BATCH)
        .map(|chunk| Ok(message(chunk.to_vec())))
        .collect();
    Box::pin(futures::stream::iter(batches))
}

fn uint64(value: u64) -> UInt64Value {
    UInt64Value { value }
}

fn to_cri_container_stats(usage: &ContainerUsage) -> ContainerStats {
    let container = &usage.container;
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: container.record.id.clone(),
            metadata: container.config.metadata.clone(),
            labels: container.config.labels.clone(),
            annotations: container.config.annotations.clone(),
        }),
        cpu: usage.cgroup.as_ref().map(cpu_usage),
        memory: usage.cgroup.as_ref().map(memory_usage),
        writable_layer: usage.writable_layer.as_ref().map(filesystem_usage),
        swap: usage.cgroup.as_ref().and_then(swap_usage),
        io: None,
    }
}

fn to_cri_sandbox_stats(usage: &SandboxUsage) -> PodSandboxStats {
    let sandbox = &usage.sandbox;
    let cgroup = usage.cgroup.as_ref();
    PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: sandbox.record.id.clone(),
            metadata: sandbox.config.metadata.clone(),
            labels: sandbox.config.labels.clone(),
            annotations: sandbox.config.annotations.clone(),
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu: cgroup.map(cpu_usage),
            memory: cgroup.map(memory_usage),
            network: usage.network.as_ref().map(network_usage),
            process: cgroup.map(|cgroup| ProcessUsage {
                timestamp: cgroup.timestamp_ns,
                process_count: cgroup.stats.pids_current.map(uint64),
            }),
            containers: usage
                .containers
                .iter()
                .map(to_cri_container_stats)
                .collect(),
            io: None,
        }),
        windows: None,
    }
}

fn cpu_usage(cgroup: &CgroupUsage) -> CpuUsage {
    CpuUsage {
        timestamp: cgroup.timestamp_ns,
        usage_core_nano_seconds: cgroup.stats.cpu_usage_ns.map(uint64),
        usage_nano_cores: cgroup.cpu_nano_cores.map(uint64),
        psi: None,
    }
}

/// Returns the memory usage, with the bytes available before the limit when there is one.
fn memory_usage(cgroup: &CgroupUsage) -> MemoryUsage {
    let stats = &cgroup.stats;
    let available = cgroup
        .memory_limit_bytes
        .zip(stats.memory_working_set_bytes)
        .map(|(limit, working_set)| limit.saturating_sub(working_set));
    MemoryUsage {
        timestamp: cgroup.timestamp_ns,
        working_set_bytes: stats.memory_working_set_bytes.map(uint64),
        available_bytes: available.map(uint64),
        usage_bytes: stats.memory_usage_bytes.map(uint64),
        rss_bytes: stats.memory_rss_bytes.map(uint64),
        page_faults: stats.page_faults.map(uint64),
        major_page_faults: stats.major_page_faults.map(uint64),
        psi: None,
    }
}

fn swap_usage(cgroup: &CgroupUsage) -> Option<SwapUsage> {
    let swap = cgroup.swap?;
    Some(SwapUsage {
        timestamp: cgroup.timestamp_ns,
        swap_available_bytes: swap
            .limit_bytes
            .map(|limit| uint64(limit.saturating_sub(swap.usage_bytes))),
        swap_usage_bytes: Some(uint64(swap.usage_bytes)),
    })
}

fn filesystem_usage(layer: &WritableLayerUsage) -> FilesystemUsage {
    FilesystemUsage {
        timestamp: layer.timestamp_ns,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: layer.mountpoint.display().to_string(),
        }),
        used_bytes: Some(uint64(layer.used_bytes)),
        inodes_used: Some(uint64(layer.inodes_used)),
    }
}

fn network_usage(network: &RuntimeNetworkUsage) -> NetworkUsage {
    NetworkUsage {
        timestamp: network.timestamp_ns,
        default_interface: network.default_interface().map(interface_usage),
        interfaces: network.interfaces.iter().map(interface_usage).collect(),
    }
}

fn interface_usage(interface: &InterfaceUsage) -> NetworkInterfaceUsage {
    NetworkInterfaceUsage {
        name: interface.name.clone(),
        rx_bytes: Some(uint64(interface.rx_bytes)),
        rx_errors: Some(uint64(interface.rx_errors)),
        tx_bytes: Some(uint64(interface.tx_bytes)),
        tx_errors: Some(uint64(interface.tx_errors)),
    }
}
