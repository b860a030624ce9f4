//! Pod and container cgroups: hierarchy detection, resource limits from the CRI, the kubelet's
//! QoS layout, and usage statistics, on cgroup v1 and v2.
//!
//! Callers go through a [`CgroupDriver`]. [`cgroupfs`] returns the driver that writes the
//! cgroup filesystem directly, the one Berth reports to the kubelet as `cgroupfs`; [`systemd`]
//! the one that has systemd create a slice per pod over D-Bus, reported as `systemd`. Both name
//! a cgroup by its path in the cgroup filesystem; [`DriverKind`] builds those paths in each
//! driver's naming.
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
mod dbus;
mod detect;
mod error;
mod files;
mod layout;
mod path;
mod resources;
mod stats;
mod systemd;
mod totals;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use cpuset::HostTopology;
pub use detect::{CgroupVersion, Hierarchy};
pub use error::CgroupError;
pub use layout::{QosClass, pod_cgroup_path, pod_slice_name, qos_cgroup_path, slice_path};
pub use path::CgroupPath;
pub use resources::{
    DEFAULT_CPU_PERIOD_US, Limit, MAX_CPU_PERIOD_US, MAX_CPU_QUOTA_US, MAX_CPU_SHARES,
    MIN_CPU_QUOTA_US, MIN_CPU_SHARES, Resources,
};
pub use stats::{CgroupStats, DeviceIo};
pub use v2::cpu_shares_to_weight;

use detect::Layout;

/// Prefix of the scope units that the OCI runtime creates for containers under the systemd
/// driver: `berth-<id>.scope`.
pub const SCOPE_PREFIX: &str = "berth";

/// Cgroup driver: the way pod and container cgroups are created, named as the kubelet's
/// `--cgroup-driver` flag names the two choices. The kubelet and the runtime must agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverKind {
    /// Directories written directly, named like `/kubepods/burstable/pod<uid>`.
    Cgroupfs,
    /// systemd units: slices like `kubepods-burstable-pod<uid>.slice`, scopes per container.
    Systemd,
}

impl DriverKind {
    /// Returns the name the kubelet's `--cgroup-driver` flag uses.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Cgroupfs => "cgroupfs",
            DriverKind::Systemd => "systemd",
        }
    }

    /// Returns the parent of the pods Berth places itself when the configuration names none.
    pub fn default_parent(self) -> &'static str {
        match self {
            DriverKind::Cgroupfs => "/berth",
            DriverKind::Systemd => "berth.slice",
        }
    }

    /// Checks a configured pod parent: a path for cgroupfs, a slice name for systemd.
    ///
    /// # Errors
    ///
    /// [`CgroupError::InvalidPath`] or [`CgroupError::Invalid`] naming what this driver expects.
    pub fn check_parent(self, parent: &str) -> Result<(), CgroupError> {
        match self {
            DriverKind::Cgroupfs => {
                if parent != "/" {
                    CgroupPath::new(parent)?;
                }
                Ok(())
            }
            DriverKind::Systemd => slice_path(parent).map(drop),
        }
    }

    /// Returns the cgroup of a pod that Berth places itself below `parent`, in the kubelet's
    /// QoS layout.
    ///
    /// # Errors
    ///
    /// As for [`pod_cgroup_path`] and [`pod_slice_name`].
    pub fn pod_path(
        self,
        parent: &str,
        qos: QosClass,
        pod_uid: &str,
    ) -> Result<CgroupPath, CgroupError> {
        match self {
            DriverKind::Cgroupfs => pod_cgroup_path(parent, qos, pod_uid),
            DriverKind::Systemd => slice_path(&pod_slice_name(parent, qos, pod_uid)?),
        }
    }

    /// Returns the path of a pod cgroup that a CRI client created and names in
    /// `LinuxPodSandboxConfig.cgroup_parent`: a path for cgroupfs, a slice for systemd.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Invalid`] when the name has the other driver's form, saying how to make
    /// the kubelet and Berth agree; other errors as for [`CgroupPath::new`] and [`slice_path`].
    pub fn client_parent_path(self, parent: &str) -> Result<CgroupPath, CgroupError> {
        let looks_like_slice = !parent.contains('/') && parent.ends_with(".slice");
        let (form, other) = match (self, looks_like_slice) {
            (DriverKind::Cgroupfs, false) => return CgroupPath::new(parent),
            (DriverKind::Systemd, true) => return slice_path(parent),
            (DriverKind::Cgroupfs, true) => ("a systemd slice", DriverKind::Systemd),
            (DriverKind::Systemd, false) => ("a cgroupfs path", DriverKind::Cgroupfs),
        };
        Err(CgroupError::invalid(
            "cgroup_parent",
            parent,
            format!(
                "this is {form}, but Berth runs the {self} cgroup driver; the kubelet and the \
                 runtime must use the same driver: set runtime.cgroup_driver = \"{other}\" in \
                 Berth's config or start the kubelet with --cgroup-driver={self}"
            ),
        ))
    }

    /// Returns a container's `linux.cgroupsPath` for the OCI runtime and the path of the cgroup
    /// the runtime will create. Under cgroupfs both are `<pod>/<id>`. Under systemd the first
    /// has the runtime's `slice:prefix:name` form, and the cgroup is `berth-<id>.scope` in the
    /// pod's slice.
    ///
    /// # Errors
    ///
    /// [`CgroupError::InvalidPath`] when `id` cannot be a cgroup name.
    pub fn container_paths(
        self,
        pod: &CgroupPath,
        id: &str,
    ) -> Result<(String, CgroupPath), CgroupError> {
        match self {
            DriverKind::Cgroupfs => {
                let path = pod.join(id)?;
                Ok((path.to_string(), path))
            }
            DriverKind::Systemd => {
                let slice = pod.components().last().unwrap_or_default();
                let path = pod.join(&format!("{SCOPE_PREFIX}-{id}.scope"))?;
                Ok((format!("{slice}:{SCOPE_PREFIX}:{id}"), path))
            }
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for DriverKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "cgroupfs" => Ok(DriverKind::Cgroupfs),
            "systemd" => Ok(DriverKind::Systemd),
            other => Err(format!(
                "unknown cgroup driver {other:?}: expected \"cgroupfs\" or \"systemd\""
            )),
        }
    }
}

/// Creates, limits, inspects and removes cgroups. Every driver names a cgroup by its path in
/// the cgroup filesystem; how it creates one (a directory, a systemd unit) is its own business.
///
/// Every method blocks on filesystem calls, and `remove` may sleep up to 150 ms while the
/// kernel reports a cgroup busy. Call them through `tokio::task::spawn_blocking` from async
/// code.
pub trait CgroupDriver: Send + Sync {
    /// Returns which driver this is.
    fn kind(&self) -> DriverKind;

    /// Returns the driver's name as the kubelet's `--cgroup-driver` flag spells it.
    fn name(&self) -> &'static str {
        self.kind().name()
    }

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

/// Returns the driver that has systemd create pod slices over D-Bus, after checking that
/// systemd accepts a D-Bus connection.
///
/// # Errors
///
/// [`CgroupError::SystemdUnreachable`] when neither systemd's private socket nor the system bus
/// accepts a connection: systemd is not PID 1, or D-Bus is not reachable from here.
pub fn systemd(hierarchy: Hierarchy) -> Result<Arc<dyn CgroupDriver>, CgroupError> {
    systemd::Systemd::check_reachable()?;
    Ok(Arc::new(systemd::Systemd {
        files: Cgroupfs { hierarchy },
    }))
}

/// Checks that systemd accepts a D-Bus connection, as [`systemd`] does before returning the driver.
///
/// # Errors
///
/// [`CgroupError::SystemdUnreachable`] saying why no connection could be made.
pub fn check_systemd() -> Result<(), CgroupError> {
    systemd::Systemd::check_reachable()
}

/// Picks the driver for an empty `runtime.cgroup_driver`: systemd when it is the init system
/// and accepts a D-Bus connection, else cgroupfs. Also returns the reason, for logs and
/// `berth check`.
pub fn pick_driver() -> (DriverKind, &'static str) {
    if !systemd_is_running() {
        (DriverKind::Cgroupfs, "systemd is not the init system")
    } else if check_systemd().is_ok() {
        (DriverKind::Systemd, "systemd is the init system")
    } else {
        (
            DriverKind::Cgroupfs,
            "systemd is the init system but D-Bus connections to it fail",
        )
    }
}

/// Returns true when systemd runs as the init system, by the test that `sd_booted` uses.
pub fn systemd_is_running() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// Driver that writes cgroupfs directly.
pub(crate) struct Cgroupfs {
    hierarchy: Hierarchy,
}

impl Cgroupfs {
    /// Returns true when the cgroup exists: on cgroup v2 its directory, on v1 its directory in
    /// any hierarchy.
    fn exists(&self, path: &CgroupPath) -> bool {
        match &self.hierarchy.layout {
            Layout::V1(mounts) => mounts
                .hierarchies
                .iter()
                .any(|mount| path.under(mount).is_dir()),
            Layout::V2 { root } => path.under(root).is_dir(),
        }
    }
}

impl CgroupDriver for Cgroupfs {
    fn kind(&self) -> DriverKind {
        DriverKind::Cgroupfs
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
