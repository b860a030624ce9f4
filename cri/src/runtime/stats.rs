//! Usage statistics of containers and pod sandboxes, for the CRI's stats and metrics RPCs: CPU,
//! memory and process counts from cgroups, writable layer usage from a walk of the container's
//! upper directory, and interface counters from the pod's network namespace.
//!
//! The values follow cAdvisor's meaning, which the kubelet's CRI stats provider expects. The
//! working set is usage minus inactive file pages. The CPU rate is the growth of CPU time
//! between two samples of the same cgroup, divided by the time elapsed between them.

mod cpu;
mod layer;
mod memory;
mod network;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::cri::{
    ContainerFilter, ContainerState as CriContainerState, ContainerStateValue,
    ContainerStatsFilter, PodSandboxFilter, PodSandboxState, PodSandboxStateValue,
    PodSandboxStatsFilter,
};

use super::container::{Container, ContainerState};
use super::monitor::now_ns;
use super::sandbox::Sandbox;
use super::{RuntimeError, RuntimeService};
use crate::cgroups::{CgroupDriver, CgroupError, CgroupPath, CgroupStats};
use crate::network::DEFAULT_INTERFACE;

/// Age after which an unused CPU sample or layer measurement leaves its cache, which drops the
/// entries of deleted containers and pods.
const CACHE_RETENTION: Duration = Duration::from_secs(600);

/// Interval between two searches of a cache for entries to drop.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Usage of one cgroup at one instant.
#[derive(Debug, Clone, Default)]
pub struct CgroupUsage {
    /// When the counters were read, in nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    pub stats: CgroupStats,
    /// Average CPU use in billionths of a core between an earlier sample of this cgroup and this
    /// one. `None` on the first sample of a cgroup: Berth does not resample to get a rate at
    /// once, so the first ContainerStats or PodSandboxStats call returns quickly.
    pub cpu_nano_cores: Option<u64>,
    /// Memory limit in bytes, `None` without a limit.
    pub memory_limit_bytes: Option<u64>,
    /// Swap use, `None` when the kernel does not account swap.
    pub swap: Option<SwapUsage>,
}

/// Swap use of one cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwapUsage {
    pub usage_bytes: u64,
    /// Swap limit in bytes, `None` without a limit.
    pub limit_bytes: Option<u64>,
}

/// Disk use of a container's writable layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritableLayerUsage {
    /// When the layer was measured, in nanoseconds since the Unix epoch. A cached measurement
    /// keeps its original time.
    pub timestamp_ns: i64,
    /// The directory of all writable layers, the container filesystem that ImageFsInfo reports.
    pub mountpoint: PathBuf,
    /// Allocated bytes (`st_blocks` × 512, as `du` counts them), hard links counted once.
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// A container and its usage.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub container: Container,
    /// `None` while the container has no cgroup: created and not started, exited, or on a host
    /// without a cgroup hierarchy.
    pub cgroup: Option<CgroupUsage>,
    /// `None` when the writable layer cannot be measured, such as after its removal.
    pub writable_layer: Option<WritableLayerUsage>,
}

/// Counters of one network interface, as `/proc/net/dev` lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceUsage {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Interface counters of a pod's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkUsage {
    /// When the counters were read, in nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// Every interface but loopback, which cAdvisor leaves out too.
    pub interfaces: Vec<InterfaceUsage>,
}

impl NetworkUsage {
    /// Returns the pod's CNI interface, `eth0`, if the namespace has it.
    pub fn default_interface(&self) -> Option<&InterfaceUsage> {
        self.interfaces
            .iter()
            .find(|interface| interface.name == DEFAULT_INTERFACE)
    }
}

/// A pod sandbox, its own usage and that of its running containers.
#[derive(Debug, Clone)]
pub struct SandboxUsage {
    pub sandbox: Sandbox,
    /// Usage of the pod cgroup, which contains the containers' cgroups.
    pub cgroup: Option<CgroupUsage>,
    /// `None` for host-network pods and stopped pods, whose namespace is gone.
    pub network: Option<NetworkUsage>,
    pub containers: Vec<ContainerUsage>,
}

impl RuntimeService {
    /// Samples one container, in any state. ContainerStats.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] for an unknown ID. Counters that cannot be read are left out
    /// and logged, not returned as errors.
    pub async fn container_usage(&self, id: &str) -> Result<ContainerUsage, RuntimeError> {
        let container = self.container(id)?;
        let sampler = self.sampler();
        let mut usages = run_blocking(move || sampler.containers(vec![container])).await?;
        Ok(usages.remove(0))
    }

    /// Samples the running containers that match `filter`. ListContainerStats.
    pub async fn list_container_usage(
        &self,
        filter: Option<&ContainerStatsFilter>,
    ) -> Result<Vec<ContainerUsage>, RuntimeError> {
        let filter = filter.cloned().unwrap_or_default();
        let containers = self.list_containers(Some(&ContainerFilter {
            id: filter.id,
            state: Some(ContainerStateValue {
                state: CriContainerState::ContainerRunning as i32,
            }),
            pod_sandbox_id: filter.pod_sandbox_id,
            label_selector: filter.label_selector,
        }))?;
        let sampler = self.sampler();
        run_blocking(move || sampler.containers(containers)).await
    }

    /// Samples one sandbox, in any state, with its running containers. PodSandboxStats.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] for an unknown ID.
    pub async fn sandbox_usage(&self, id: &str) -> Result<SandboxUsage, RuntimeError> {
        let sandbox = self.sandbox(id)?;
        let containers = self.running_containers(Some(&sandbox.record.id))?;
        let sampler = self.sampler();
        let mut usages = run_blocking(move || sampler.sandboxes(vec![sandbox], containers)).await?;
        Ok(usages.remove(0))
    }

    /// Samples the ready sandboxes that match `filter`, each with its running containers.
    /// ListPodSandboxStats and ListPodSandboxMetrics.
    pub async fn list_sandbox_usage(
        &self,
        filter: Option<&PodSandboxStatsFilter>,
    ) -> Result<Vec<SandboxUsage>, RuntimeError> {
        let filter = filter.cloned().unwrap_or_default();
        let sandboxes = self.list_sandboxes(Some(&PodSandboxFilter {
            id: filter.id,
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            label_selector: filter.label_selector,
        }))?;
        let containers = self.running_containers(None)?;
        let sampler = self.sampler();
        run_blocking(move || sampler.sandboxes(sandboxes, containers)).await
    }

    fn running_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<Container>, RuntimeError> {
        self.list_containers(Some(&ContainerFilter {
            pod_sandbox_id: sandbox_id.unwrap_or_default().to_string(),
            state: Some(ContainerStateValue {
                state: CriContainerState::ContainerRunning as i32,
            }),
            ..ContainerFilter::default()
        }))
    }

    fn sampler(&self) -> Sampler {
        Sampler {
            cgroups: self.cgroups.clone(),
            layers_dir: self.layers_dir.clone(),
        }
    }
}

/// Runs a sampling pass off the async workers, because every read blocks on a file system.
async fn run_blocking<T: Send + 'static>(
    pass: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(pass).await.map_err(|err| {
        RuntimeError::io(
            "run the stats task for",
            Path::new("/sys/fs/cgroup"),
            io::Error::other(err),
        )
    })
}

/// Parts of the runtime service that a blocking sampling pass needs.
struct Sampler {
    cgroups: Option<Arc<dyn CgroupDriver>>,
    layers_dir: PathBuf,
}

impl Sampler {
    fn containers(&self, containers: Vec<Container>) -> Vec<ContainerUsage> {
        containers
            .into_iter()
            .map(|container| self.container(container))
            .collect()
    }

    fn container(&self, container: Container) -> ContainerUsage {
        // A created container has a cgroups path but no cgroup until the OCI runtime starts it.
        let cgroup = match container.state {
            ContainerState::Created => None,
            ContainerState::Running | ContainerState::Exited => {
                self.cgroup(&container.record.cgroups_path)
            }
        };
        let writable_layer = layer::writable_layer(&self.layers_dir, &container.record.id);
        ContainerUsage {
            container,
            cgroup,
            writable_layer,
        }
    }

    /// Samples `sandboxes`, giving each the containers of `containers` that belong to it.
    fn sandboxes(&self, sandboxes: Vec<Sandbox>, containers: Vec<Container>) -> Vec<SandboxUsage> {
        let mut by_sandbox: HashMap<String, Vec<Container>> = HashMap::new();
        for container in containers {
            by_sandbox
                .entry(container.record.sandbox_id.clone())
                .or_default()
                .push(container);
        }

        sandboxes
            .into_iter()
            .map(|sandbox| {
                let containers = by_sandbox.remove(&sandbox.record.id).unwrap_or_default();
                SandboxUsage {
                    cgroup: self.cgroup(&sandbox.record.cgroup_parent),
                    network: network::sandbox_network(&sandbox),
                    containers: self.containers(containers),
                    sandbox,
                }
            })
            .collect()
    }

    /// Reads a cgroup's counters and limits, or returns `None` when there is no cgroup
    /// hierarchy, no such cgroup, or its counters cannot be read.
    fn cgroup(&self, path: &str) -> Option<CgroupUsage> {
        let driver = self.cgroups.as_ref()?;
        let path = match CgroupPath::new(path) {
            Ok(path) => path,
            Err(err) => {
                tracing::warn!(cgroup = path, error = %err, "cannot sample an invalid cgroups path");
                return None;
            }
        };
        let stats = match driver.stats(&path) {
            Ok(stats) => stats,
            Err(CgroupError::NotFound { .. }) => return None,
            Err(err) => {
                tracing::warn!(cgroup = %path, error = %err, "reading cgroup stats failed");
                return None;
            }
        };
        let timestamp_ns = now_ns();
        let cpu_nano_cores = stats
            .cpu_usage_ns
            .and_then(|usage| cpu::nano_cores(path.as_str(), usage));
        let memory = memory::read_memory_limits(driver.version(), &path, stats.memory_usage_bytes);
        Some(CgroupUsage {
            timestamp_ns,
            stats,
            cpu_nano_cores,
            memory_limit_bytes: memory.limit_bytes,
            swap: memory.swap,
        })
    }
}
