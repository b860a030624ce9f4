//! Cgroup resource limits, converted from the CRI's `LinuxContainerResources` and validated
//! before any cgroupfs write.

use std::collections::BTreeMap;

use berth_proto::cri::LinuxContainerResources;

use super::CgroupError;
use super::cpuset::{HostTopology, IdList};

/// CFS period the kernel uses when none is set, in microseconds.
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

/// Smallest CFS quota and period the kernel accepts, in microseconds (1 ms).
pub const MIN_CPU_QUOTA_US: u64 = 1_000;

/// Largest CFS period the kernel accepts, in microseconds (1 s).
pub const MAX_CPU_PERIOD_US: u64 = 1_000_000;

/// Largest CFS quota the kernel accepts, in microseconds (about 203 days): `max_cfs_runtime` in
/// kernel/sched/core.c, which is `MAX_BW` (2^44 - 1) microseconds.
pub const MAX_CPU_QUOTA_US: u64 = (1 << 44) - 1;

/// Smallest v1 `cpu.shares` the kernel accepts; smaller values are clamped up to it.
pub const MIN_CPU_SHARES: u64 = 2;

/// Largest v1 `cpu.shares` the kernel accepts; larger values are clamped down to it.
pub const MAX_CPU_SHARES: u64 = 262_144;

/// Cgroup v2 controllers whose interface files a `unified` key may name while the controller
/// is not yet enabled. A key with another prefix must name a file that exists.
pub(super) const V2_CONTROLLERS: &[&str] = &[
    "cpu", "cpuset", "hugetlb", "io", "memory", "misc", "pids", "rdma",
];

/// Limit that can be lifted. The CRI and cgroup v1 write "no limit" as -1, cgroup v2 as `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Value(u64),
}

impl Limit {
    /// Returns the value, or `None` when unlimited.
    pub fn value(self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::Value(value) => Some(value),
        }
    }

    /// Formats the limit as cgroup v1 files take it (`-1` for no limit).
    pub(super) fn v1_string(self) -> String {
        match self {
            Limit::Unlimited => "-1".to_string(),
            Limit::Value(value) => value.to_string(),
        }
    }

    /// Formats the limit as cgroup v2 files and v1 `pids.max` take it (`max` for no limit).
    pub(super) fn max_string(self) -> String {
        match self {
            Limit::Unlimited => "max".to_string(),
            Limit::Value(value) => value.to_string(),
        }
    }
}

/// Resource limits of one cgroup. A `None` field, an empty map or an absent map key leaves the
/// cgroup's current value alone, which for a new cgroup is the kernel's default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// Memory limit in bytes: v1 `memory.limit_in_bytes`, v2 `memory.max`. On v1 a limit above
    /// the current memory+swap limit fails unless the same request raises the swap limit, which
    /// [`Resources::from_cri`] always sets along with the memory limit.
    pub memory_limit_bytes: Option<Limit>,
    /// Limit on memory plus swap in bytes, as in v1 `memory.memsw.limit_in_bytes`. Equal to the
    /// memory limit means no swap. On v2, `memory.swap.max` gets this minus the memory limit.
    pub memory_swap_limit_bytes: Option<Limit>,
    /// Relative CPU weight in v1 shares (2 to 262144; other values are clamped). On v2 it is
    /// converted to `cpu.weight`.
    pub cpu_shares: Option<u64>,
    /// CFS quota per period in microseconds, at least 1000.
    pub cpu_quota_us: Option<Limit>,
    /// CFS period in microseconds, 1000 to 1000000.
    pub cpu_period_us: Option<u64>,
    /// CPUs in list format (`0-3,8`): `cpuset.cpus`.
    pub cpuset_cpus: Option<String>,
    /// NUMA memory nodes in list format: `cpuset.mems`.
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks: `pids.max`. The CRI has no per-container field for it, so the
    /// caller sets it, for example from the kubelet's pod PIDs limit.
    pub pids_limit: Option<Limit>,
    /// Huge page limit in bytes per page size, keyed by the size's name in the cgroup files
    /// (`2MB`, `1GB`).
    pub hugepage_limits: BTreeMap<String, u64>,
    /// Cgroup v2 interface files to write as they are, keyed by file name (`memory.high`).
    /// Written last, so a key overrides the typed field that writes the same file.
    pub unified: BTreeMap<String, String>,
}

impl Resources {
    /// Converts the CRI's container resources and validates them against the host's online
    /// CPUs and memory nodes.
    ///
    /// A CRI value of 0 means "not set". -1 means "no limit" for the memory, swap and CPU quota
    /// limits. With a memory limit and no swap limit, swap is set equal to the memory limit (no
    /// swap use), as containerd does. `oom_score_adj` is not a cgroup setting and is ignored.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Invalid`] for a value [`Resources::validate`] rejects, a negative value
    /// other than -1 where -1 is allowed, or a hugepage limit above `i64::MAX`.
    /// [`CgroupError::Io`] or [`CgroupError::Parse`] when the host's topology cannot be read.
    pub fn from_cri(cri: &LinuxContainerResources) -> Result<Resources, CgroupError> {
        Resources::from_cri_on(cri, &HostTopology::read()?)
    }

    /// Same as [`Resources::from_cri`], with the host's topology given.
    ///
    /// # Errors
    ///
    /// As for [`Resources::from_cri`].
    pub fn from_cri_on(
        cri: &LinuxContainerResources,
        host: &HostTopology,
    ) -> Result<Resources, CgroupError> {
        let memory_limit_bytes =
            optional_limit("memory_limit_in_bytes", cri.memory_limit_in_bytes)?;
        let mut memory_swap_limit_bytes =
            optional_limit("memory_swap_limit_in_bytes", cri.memory_swap_limit_in_bytes)?;
        if memory_swap_limit_bytes.is_none()
            && let Some(Limit::Value(memory)) = memory_limit_bytes
        {
            memory_swap_limit_bytes = Some(Limit::Value(memory));
        }

        let mut hugepage_limits = BTreeMap::new();
        for hugepage in &cri.hugepage_limits {
            if i64::try_from(hugepage.limit).is_err() {
                return Err(CgroupError::invalid(
                    "hugepage_limits.limit",
                    hugepage.limit,
                    "must not exceed i64::MAX",
                ));
            }
            if hugepage_limits
                .insert(hugepage.page_size.clone(), hugepage.limit)
                .is_some()
            {
                return Err(CgroupError::invalid(
                    "hugepage_limits.page_size",
                    &hugepage.page_size,
                    "is listed more than once",
                ));
            }
        }

        let resources = Resources {
            memory_limit_bytes,
            memory_swap_limit_bytes,
            cpu_shares: optional_positive("cpu_shares", cri.cpu_shares)?,
            cpu_quota_us: optional_limit("cpu_quota", cri.cpu_quota)?,
            cpu_period_us: optional_positive("cpu_period", cri.cpu_period)?,
            cpuset_cpus: non_empty(&cri.cpuset_cpus),
            cpuset_mems: non_empty(&cri.cpuset_mems),
            pids_limit: None,
            hugepage_limits,
            unified: cri
                .unified
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        };
        resources.validate(host)?;
        Ok(resources)
    }

    /// Checks every value against the kernel's limits and the host's online CPUs and nodes.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Invalid`] naming the field when:
    /// - a memory, swap, CPU quota or PIDs limit is 0;
    /// - a swap limit is set without a memory limit, or is below it;
    /// - the CPU quota is below 1000 µs or above the kernel's maximum;
    /// - the CPU period is outside 1000 to 1000000 µs;
    /// - a cpuset is not in list format or names a CPU or node that is not online;
    /// - a huge page size is not a number followed by KB, MB or GB;
    /// - a `unified` key is not a plain interface file name such as `memory.high`.
    pub fn validate(&self, host: &HostTopology) -> Result<(), CgroupError> {
        self.check_values()?;
        check_cpuset(
            "cpuset_cpus",
            self.cpuset_cpus.as_deref(),
            &host.cpus,
            "CPU",
        )?;
        check_cpuset(
            "cpuset_mems",
            self.cpuset_mems.as_deref(),
            &host.mems,
            "memory node",
        )?;
        Ok(())
    }

    /// Runs the checks of [`Resources::validate`] that need no knowledge of the host. The driver
    /// runs them before it writes anything.
    /// Returns the limit of swap alone, as cgroup v2's `memory.swap.max` and systemd's
    /// `MemorySwapMax` take it: the request's swap limit counts memory plus swap (the v1 and
    /// CRI meaning), so the difference. `None` leaves the current value.
    pub(super) fn swap_only_limit(&self) -> Option<Limit> {
        match (self.memory_swap_limit_bytes, self.memory_limit_bytes) {
            (Some(Limit::Unlimited), _) => Some(Limit::Unlimited),
            // check_values has made sure that swap >= memory.
            (Some(Limit::Value(swap)), Some(Limit::Value(memory))) => {
                Some(Limit::Value(swap.saturating_sub(memory)))
            }
            (Some(Limit::Value(_)), _) => None,
            // Lifting the memory limit lifts the swap limit too, as on v1.
            (None, Some(Limit::Unlimited)) => Some(Limit::Unlimited),
            (None, _) => None,
        }
    }

    pub(super) fn check_values(&self) -> Result<(), CgroupError> {
        let limits = [
            ("memory_limit_in_bytes", self.memory_limit_bytes),
            ("memory_swap_limit_in_bytes", self.memory_swap_limit_bytes),
            ("cpu_quota", self.cpu_quota_us),
            ("pids_limit", self.pids_limit),
        ];
        for (field, limit) in limits {
            if limit == Some(Limit::Value(0)) {
                return Err(CgroupError::invalid(
                    field,
                    0,
                    "must be positive (leave it unset to keep the current value)",
                ));
            }
        }

        self.check_swap()?;
        self.check_cpu_bandwidth()?;
        for (field, list) in [
            ("cpuset_cpus", &self.cpuset_cpus),
            ("cpuset_mems", &self.cpuset_mems),
        ] {
            if let Some(list) = list {
                IdList::parse(list).map_err(|reason| CgroupError::invalid(field, list, reason))?;
            }
        }
        for page_size in self.hugepage_limits.keys() {
            check_page_size(page_size)?;
        }
        for key in self.unified.keys() {
            check_unified_key(key)?;
        }
        Ok(())
    }

    /// Returns the controllers the requested fields write to, each with the first field that
    /// needs it. Hugetlb is left out: a missing hugetlb controller is tolerated.
    pub(super) fn needed_controllers(&self) -> Vec<(&'static str, &'static str)> {
        let mut needed = Vec::new();
        if self.memory_limit_bytes.is_some() {
            needed.push(("memory", "memory_limit_in_bytes"));
        } else if self.memory_swap_limit_bytes.is_some() {
            needed.push(("memory", "memory_swap_limit_in_bytes"));
        }
        if self.cpu_shares.is_some() {
            needed.push(("cpu", "cpu_shares"));
        } else if self.cpu_quota_us.is_some() {
            needed.push(("cpu", "cpu_quota"));
        } else if self.cpu_period_us.is_some() {
            needed.push(("cpu", "cpu_period"));
        }
        if self.cpuset_cpus.is_some() {
            needed.push(("cpuset", "cpuset_cpus"));
        } else if self.cpuset_mems.is_some() {
            needed.push(("cpuset", "cpuset_mems"));
        }
        if self.pids_limit.is_some() {
            needed.push(("pids", "pids_limit"));
        }
        needed
    }

    fn check_swap(&self) -> Result<(), CgroupError> {
        let Some(Limit::Value(swap)) = self.memory_swap_limit_bytes else {
            return Ok(());
        };
        match self.memory_limit_bytes {
            Some(Limit::Value(memory)) if swap < memory => Err(CgroupError::invalid(
                "memory_swap_limit_in_bytes",
                swap,
                format!(
                    "is the limit on memory plus swap, so it must be at least the memory limit \
                     {memory}"
                ),
            )),
            Some(Limit::Value(_)) => Ok(()),
            _ => Err(CgroupError::invalid(
                "memory_swap_limit_in_bytes",
                swap,
                "needs a memory limit (memory_limit_in_bytes) in the same request",
            )),
        }
    }

    fn check_cpu_bandwidth(&self) -> Result<(), CgroupError> {
        if let Some(Limit::Value(quota)) = self.cpu_quota_us {
            if quota < MIN_CPU_QUOTA_US {
                return Err(CgroupError::invalid(
                    "cpu_quota",
                    quota,
                    "is below the kernel's minimum of 1000 µs",
                ));
            }
            if quota > MAX_CPU_QUOTA_US {
                return Err(CgroupError::invalid(
                    "cpu_quota",
                    quota,
                    format!("exceeds the kernel's maximum of {MAX_CPU_QUOTA_US} µs"),
                ));
            }
        }
        if let Some(period) = self.cpu_period_us
            && !(MIN_CPU_QUOTA_US..=MAX_CPU_PERIOD_US).contains(&period)
        {
            return Err(CgroupError::invalid(
                "cpu_period",
                period,
                "must be between 1000 and 1000000 µs",
            ));
        }
        Ok(())
    }
}

/// Maps a CRI value where 0 is unset and -1 is no limit.
fn optional_limit(field: &'static str, value: i64) -> Result<Option<Limit>, CgroupError> {
    match value {
        0 => Ok(None),
        -1 => Ok(Some(Limit::Unlimited)),
        1.. => Ok(Some(Limit::Value(value.unsigned_abs()))),
        _ => Err(CgroupError::invalid(
            field,
            value,
            "must be positive, -1 for no limit, or 0 to leave it unset",
        )),
    }
}

/// Maps a CRI value where 0 is unset and negative values are invalid.
fn optional_positive(field: &'static str, value: i64) -> Result<Option<u64>, CgroupError> {
    match value {
        0 => Ok(None),
        1.. => Ok(Some(value.unsigned_abs())),
        _ => Err(CgroupError::invalid(
            field,
            value,
            "must not be negative (0 leaves it unset)",
        )),
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

fn check_cpuset(
    field: &'static str,
    list: Option<&str>,
    online: &IdList,
    noun: &str,
) -> Result<(), CgroupError> {
    let Some(list) = list else {
        return Ok(());
    };
    let requested =
        IdList::parse(list).map_err(|reason| CgroupError::invalid(field, list, reason))?;
    if requested.is_empty() {
        return Err(CgroupError::invalid(
            field,
            list,
            "names no ID (leave it unset to allow every one)",
        ));
    }
    match requested.missing_from(online) {
        None => Ok(()),
        Some(missing) => Err(CgroupError::invalid(
            field,
            list,
            format!("{noun} {missing} is not online on this host (online: {online})"),
        )),
    }
}

/// Checks a huge page size name as the hugetlb controller spells it: a number and KB, MB or GB.
fn check_page_size(page_size: &str) -> Result<(), CgroupError> {
    let digits = page_size
        .strip_suffix("KB")
        .or_else(|| page_size.strip_suffix("MB"))
        .or_else(|| page_size.strip_suffix("GB"));
    let valid = digits.is_some_and(|digits| {
        !digits.is_empty()
            && !digits.starts_with('0')
            && digits.bytes().all(|byte| byte.is_ascii_digit())
    });
    if valid {
        Ok(())
    } else {
        Err(CgroupError::invalid(
            "hugepage_limits.page_size",
            page_size,
            "must be a number followed by KB, MB or GB, such as 2MB",
        ))
    }
}

/// Checks that a `unified` key is a bare interface file name (`<controller>.<file>`), so that
/// it cannot reach outside the cgroup's directory.
fn check_unified_key(key: &str) -> Result<(), CgroupError> {
    let reason = if key.contains('/') || key.contains('\0') {
        Some("must be a file name without /")
    } else if key.starts_with('.') || key.ends_with('.') || !key.contains('.') {
        Some("must be a cgroup interface file name such as memory.high")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CgroupError::invalid("unified", key, reason)),
        None => Ok(()),
    }
}
