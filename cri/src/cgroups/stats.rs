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
    /// Block I/O per device, sorted by device: v1 `blkio.throttle.io_service_bytes_recursive`
    /// and `io_serviced_recursive`, v2 `io.stat`. Empty without the controller or any I/O.
    pub io: Vec<DeviceIo>,
}

/// Block I/O of a cgroup and its descendants on one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Read operations: v1 `Read` of `io_serviced`, v2 `rios`.
    pub reads: u64,
    /// Write operations: v1 `Write` of `io_serviced`, v2 `wios`.
    pub writes: u64,
}

/// Parses a cgroup v2 `io.stat`: one line per device, `MAJ:MIN rbytes=N wbytes=N rios=N wios=N`
/// and more keys that are ignored.
pub(super) fn parse_io_stat(text: &str) -> Result<Vec<DeviceIo>, String> {
    let mut devices = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let mut device = parse_device(fields.next().unwrap_or_default())?;
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(format!("field {field:?} is not key=value"));
            };
            let value: u64 = value
                .parse()
                .map_err(|_| format!("{key} value {value:?} is not an unsigned integer"))?;
            match key {
                "rbytes" => device.read_bytes = value,
                "wbytes" => device.write_bytes = value,
                "rios" => device.reads = value,
                "wios" => device.writes = value,
                _ => {}
            }
        }
        devices.push(device);
    }
    devices.sort_by_key(|device| (device.major, device.minor));
    Ok(devices)
}

/// Parses cgroup v1 `blkio.throttle.io_service_bytes_recursive` and `io_serviced_recursive`:
/// lines of `MAJ:MIN Read N` and `MAJ:MIN Write N` (other operations and the `Total` lines are
/// ignored).
pub(super) fn parse_blkio(bytes: &str, operations: &str) -> Result<Vec<DeviceIo>, String> {
    let mut devices: BTreeMap<(u32, u32), DeviceIo> = BTreeMap::new();
    for (text, counts_bytes) in [(bytes, true), (operations, false)] {
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [device, operation, value] = fields[..] else {
                continue;
            };
            let parsed = parse_device(device)?;
            let value: u64 = value
                .parse()
                .map_err(|_| format!("{operation} value {value:?} is not an unsigned integer"))?;
            let entry = devices
                .entry((parsed.major, parsed.minor))
                .or_insert(parsed);
            match (operation, counts_bytes) {
                ("Read", true) => entry.read_bytes = value,
                ("Write", true) => entry.write_bytes = value,
                ("Read", false) => entry.reads = value,
                ("Write", false) => entry.writes = value,
                _ => {}
            }
        }
    }
    Ok(devices.into_values().collect())
}

fn parse_device(text: &str) -> Result<DeviceIo, String> {
    let parsed = text
        .split_once(':')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
    let Some((major, minor)) = parsed else {
        return Err(format!("device {text:?} is not MAJOR:MINOR"));
    };
    Ok(DeviceIo {
        major,
        minor,
        ..DeviceIo::default()
    })
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
