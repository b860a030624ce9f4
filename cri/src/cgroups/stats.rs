//! Usage counters of a cgroup, with the same meaning on cgroup v1 and v2.

use std::collections::BTreeMap;

/// Usage of one cgroup and its descendants. A field is `None` when its controller is not
/// mounted (v1) or not enabled (v2), or when the kernel does not provide the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Total CPU time in nanoseconds: v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec`.
    pub cpu_usage_ns: Option<u64>,
    /// CPU time in user mode in nanoseconds: v1 `cpuacct.usage_user`, v2 `user_usec`.
    pub cpu_user_ns: Option<u64>,
    /// CPU time in kernel mode in nanoseconds: v1 `cpuacct.usage_sys`, v2 `system_usec`.
    pub cpu_system_ns: Option<u64>,
    /// CFS periods that have elapsed while the cgroup had runnable tasks (`nr_periods`).
    pub nr_periods: Option<u64>,
    /// Periods in which the cgroup used up its quota (`nr_throttled`).
    pub throttled_periods: Option<u64>,
    /// Time the cgroup spent throttled in nanoseconds: v1 `throttled_time`, v2
    /// `throttled_usec`.
    pub throttled_ns: Option<u64>,
    /// Memory charged to the cgroup in bytes, page cache included: v1 `memory.usage_in_bytes`,
    /// v2 `memory.current`.
    pub memory_usage_bytes: Option<u64>,
    /// Usage minus inactive file pages, floored at 0, as cAdvisor computes it. The kubelet
    /// evicts on this value.
    pub memory_working_set_bytes: Option<u64>,
    /// Anonymous memory in bytes: v1 `total_rss`, v2 `anon`.
    pub memory_rss_bytes: Option<u64>,
    /// Page faults: v1 `total_pgfault`, v2 `pgfault`.
    pub page_faults: Option<u64>,
    /// Major page faults: v1 `total_pgmajfault`, v2 `pgmajfault`.
    pub major_page_faults: Option<u64>,
    /// Number of tasks: `pids.current`.
    pub pids_current: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup: the `oom_kill` counter.
    pub oom_kills: Option<u64>,
}

/// Memory figures of a `memory.stat` file, whose key names differ between versions.
pub(super) struct MemoryStatKeys {
    pub(super) inactive_file: &'static str,
    pub(super) rss: &'static str,
    pub(super) page_faults: &'static str,
    pub(super) major_page_faults: &'static str,
}

impl CgroupStats {
    /// Fills the memory fields from the usage file's value and the parsed `memory.stat`.
    pub(super) fn set_memory(
        &mut self,
        usage: Option<u64>,
        memory_stat: Option<&BTreeMap<String, u64>>,
        keys: &MemoryStatKeys,
    ) {
        let stat = |key: &str| memory_stat.and_then(|stat| stat.get(key).copied());

        self.memory_usage_bytes = usage;
        self.memory_working_set_bytes =
            usage.map(|usage| working_set(usage, stat(keys.inactive_file)));
        self.memory_rss_bytes = stat(keys.rss);
        self.page_faults = stat(keys.page_faults);
        self.major_page_faults = stat(keys.major_page_faults);
    }
}

/// Returns usage minus inactive file pages, floored at 0: the pages the kernel cannot drop
/// cheaply under pressure. Without the inactive figure, the whole usage counts.
pub(super) fn working_set(usage: u64, inactive_file: Option<u64>) -> u64 {
    usage.saturating_sub(inactive_file.unwrap_or(0))
}
