//! Pod and container cgroups: hierarchy detection, resource limits from the CRI, the kubelet's
//! QoS layout, and usage statistics, on cgroup v1 and v2.
//!
//! Callers go through a [`CgroupDriver`]. [`cgroupfs`] returns the driver that writes the
//! cgroup filesystem directly, the one Berth reports to the kubelet as `cgroupfs`. A systemd
//! driver can be added behind the same trait without touching callers.
//!
//! Berth has its own thin cgroupfs layer rather than the `cgroups-rs` crate, because that crate
//! pulls in a D-Bus stack and an older `nix` than this workspace uses.
//!
//! A typical pod start:
//!
//! ```no_run
//! use berth_cri::cgroups::{self, Hierarchy, QosClass, Resources};
//! # fn main() -> Result<(), cgroups::CgroupError> {
//! # let containers: Vec<berth_proto::cri::LinuxContainerResources> = Vec::new();
//! let driver = cgroups::cgroupfs(Hierarchy::detect()?);
//! let per_container = containers
//!     .iter()
//!     .map(Resources::from_cri)
//!     .collect::<Result<Vec<_>, _>>()?;
//! let pod = Resources::sum(&per_container);
//! let path = cgroups::pod_cgroup_path("/kubepods", QosClass::from_resources(&pod), "8c4e6a1f")?;
//! driver.create(&path, &pod)?;
//! # Ok(())
//! # }
//! ```

mod cpuset;
mod detect;
mod error;
mod files;
mod layout;
mod path;
mod resources;
mod stats;
mod totals;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use cpuset::HostTopology;
pub use detect::{CgroupVersion, Hierarchy};
pub use error::CgroupError;
pub use layout::{QosClass, pod_cgroup_path, qos_cgroup_path};
pub use path::CgroupPath;
pub use resources::{
    DEFAULT_CPU_PERIOD_US, Limit, MAX_CPU_PERIOD_US, MAX_CPU_QUOTA_US, MAX_CPU_SHARES,
    MIN_CPU_QUOTA_US, MIN_CPU_SHARES, Resources,
};
pub use stats::CgroupStats;
pub use v2::cpu_shares_to_weight;

use detect::Layout;

/// Creates, limits, inspects and removes cgroups. Paths are the same for every driver; how a
/// driver turns them into cgroups (directories, systemd units) is its own business.
///
/// Every method blocks on filesystem calls, and `remove` may sleep up to 150 ms while the
/// kernel reports a cgroup busy. Call them through `tokio::task::spawn_blocking` from async
/// code.
pub trait CgroupDriver: Send + Sync {
    /// Returns the driver's name as the kubelet's `--cgroup-driver` flag spells it.
    fn name(&self) -> &'static str;

    /// Returns the cgroup version of the host.
    fn version(&self) -> CgroupVersion;

    /// Creates the cgroup and any missing ancestors, then applies `resources`. Creating a cgroup
    /// that exists only applies `resources`.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Invalid`] or [`CgroupError::Unsupported`] before anything is written;
    /// [`CgroupError::ControllerMissing`] when a requested limit's controller is unavailable;
    /// [`CgroupError::Write`] when the kernel rejects a value. On error the leaf cgroup is
    /// removed again if this call created it; ancestors stay, since other cgroups may share them.
    fn create(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError>;

    /// Applies `resources` to an existing cgroup, leaving fields that are `None` unchanged.
    ///
    /// # Errors
    ///
    /// As for [`CgroupDriver::create`], plus [`CgroupError::NotFound`] when the cgroup does not
    /// exist.
    fn update(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError>;

    /// Removes the cgroup. Its ancestors stay. A cgroup that does not exist counts as removed.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Busy`] naming the path and what is left in it, when processes or child
    /// cgroups remain.
    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError>;

    /// Reads the cgroup's usage counters. Fields of controllers that are not available are
    /// `None`.
    ///
    /// # Errors
    ///
    /// [`CgroupError::NotFound`] when the cgroup does not exist; [`CgroupError::Parse`] when a
    /// counter file has an unexpected format.
    fn stats(&self, path: &CgroupPath) -> Result<CgroupStats, CgroupError>;

    /// Returns how many processes the OOM killer has killed in the cgroup.
    ///
    /// # Errors
    ///
    /// [`CgroupError::NotFound`] when the cgroup does not exist;
    /// [`CgroupError::ControllerMissing`] without the memory controller.
    fn oom_kills(&self, path: &CgroupPath) -> Result<u64, CgroupError>;
}

/// Returns the driver that manages cgroups by writing the cgroup filesystem of `hierarchy`.
pub fn cgroupfs(hierarchy: Hierarchy) -> Arc<dyn CgroupDriver> {
    Arc::new(Cgroupfs { hierarchy })
}

/// Driver that writes cgroupfs directly.
struct Cgroupfs {
    hierarchy: Hierarchy,
}

impl CgroupDriver for Cgroupfs {
    fn name(&self) -> &'static str {
        "cgroupfs"
    }

    fn version(&self) -> CgroupVersion {
        self.hierarchy.version()
    }

    fn create(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError> {
        tracing::debug!(cgroup = %path, ?resources, "creating cgroup");
        match &self.hierarchy.layout {
            Layout::V1(mounts) => v1::create(mounts, path, resources),
            Layout::V2 { root } => v2::create(root, path, resources),
        }
    }

    fn update(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError> {
        tracing::debug!(cgroup = %path, ?resources, "updating cgroup");
        match &self.hierarchy.layout {
            Layout::V1(mounts) => v1::update(mounts, path, resources),
            Layout::V2 { root } => v2::update(root, path, resources),
        }
    }

    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        tracing::debug!(cgroup = %path, "removing cgroup");
        match &self.hierarchy.layout {
            Layout::V1(mounts) => v1::remove(mounts, path),
            Layout::V2 { root } => v2::remove(root, path),
        }
    }

    fn stats(&self, path: &CgroupPath) -> Result<CgroupStats, CgroupError> {
        match &self.hierarchy.layout {
            Layout::V1(mounts) => v1::stats(mounts, path),
            Layout::V2 { root } => v2::stats(root, path),
        }
    }

    fn oom_kills(&self, path: &CgroupPath) -> Result<u64, CgroupError> {
        match &self.hierarchy.layout {
            Layout::V1(mounts) => v1::oom_kills(mounts, path),
            Layout::V2 { root } => v2::oom_kills(root, path),
        }
    }
}
