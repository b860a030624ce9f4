//! The systemd cgroup driver: pod cgroups are transient slice units that systemd creates over
//! D-Bus, with the limits set as unit properties, so that systemd, which owns the cgroup tree,
//! keeps them when it re-applies its own settings. Container cgroups are scopes that the OCI
//! runtime creates itself when run with `--systemd-cgroup`.
//!
//! Limits that systemd has no property for (huge pages, `unified` keys) and the exact CPU quota
//! are written to cgroupfs afterwards, as runc's and the kubelet's systemd managers do. Reads
//! (stats, OOM kills) go to cgroupfs directly.

use std::thread;
use std::time::{Duration, Instant};

use super::dbus::{Call, Connection, DbusError, Encoder, Value};
use super::resources::Limit;
use super::{
    CgroupDriver, CgroupError, CgroupPath, CgroupStats, CgroupVersion, Cgroupfs, DriverKind,
    Resources, cpu_shares_to_weight, cpuset::IdList,
};

const DESTINATION: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER_INTERFACE: &str = "org.freedesktop.systemd1.Manager";

/// How long systemd may take to create or remove a unit's cgroup after accepting the job.
const UNIT_TIMEOUT: Duration = Duration::from_secs(10);

const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// systemd's CPU quota granularity: a quota per second that is not a multiple of 10 ms is
/// rounded up, so that systemd does not round it down below the request.
const QUOTA_GRANULARITY_US: u64 = 10_000;

/// The systemd driver: units over D-Bus, reads and the remaining writes through cgroupfs.
pub(super) struct Systemd {
    pub(super) files: Cgroupfs,
}

impl Systemd {
    /// Checks that systemd accepts a D-Bus connection.
    pub(super) fn check_reachable() -> Result<(), CgroupError> {
        Connection::systemd()
            .map(drop)
            .map_err(|err| CgroupError::SystemdUnreachable {
                reason: err.to_string(),
            })
    }

    fn call(
        &self,
        unit: &str,
        member: &'static str,
        signature: &'static str,
        body: Encoder,
    ) -> Result<(), DbusError> {
        let mut connection = Connection::systemd()?;
        tracing::debug!(unit, member, "systemd call");
        connection.call(&Call {
            destination: DESTINATION,
            path: MANAGER_PATH,
            interface: MANAGER_INTERFACE,
            member,
            signature,
            body: body.into_bytes(),
        })?;
        Ok(())
    }

    fn start_slice(&self, unit: &str, properties: &[(&str, Value)]) -> Result<(), DbusError> {
        let mut body = Encoder::new();
        body.str(unit);
        body.str("replace");
        body.properties(properties);
        // No auxiliary units.
        body.array(8, |_| {});
        self.call(unit, "StartTransientUnit", "ssa(sv)a(sa(sv))", body)
    }

    fn set_properties(&self, unit: &str, properties: &[(&str, Value)]) -> Result<(), DbusError> {
        let mut body = Encoder::new();
        body.str(unit);
        // Runtime only: the unit is transient, and nothing should outlive a reboot.
        body.bool(true);
        body.properties(properties);
        self.call(unit, "SetUnitProperties", "sba(sv)", body)
    }

    fn stop(&self, unit: &str) -> Result<(), DbusError> {
        let mut body = Encoder::new();
        body.str(unit);
        body.str("replace");
        self.call(unit, "StopUnit", "ss", body)
    }

    /// Waits until the cgroup exists (`present`) or is gone.
    fn wait_for(&self, path: &CgroupPath, present: bool) -> bool {
        let deadline = Instant::now() + UNIT_TIMEOUT;
        loop {
            if self.files.exists(path) == present {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl CgroupDriver for Systemd {
    fn kind(&self) -> DriverKind {
        DriverKind::Systemd
    }

    fn version(&self) -> CgroupVersion {
        self.files.hierarchy.version()
    }

    fn create(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError> {
        resources.check_values()?;
        let unit = unit_name(path);
        if !unit.ends_with(".slice") {
            return Err(CgroupError::invalid(
                "cgroup slice",
                unit,
                "the systemd driver creates slices only; container scopes come from the OCI runtime",
            ));
        }
        let properties = unit_properties(resources, self.version(), true);
        let failed = |reason: String| CgroupError::Systemd {
            action: "start",
            unit: unit.to_string(),
            reason,
        };

        let existed = self.files.exists(path);
        match self.start_slice(unit, &properties) {
            Ok(()) => {}
            Err(err) if err.remote_name() == Some("org.freedesktop.systemd1.UnitExists") => {
                self.set_properties(unit, &properties)
                    .map_err(|err| failed(err.to_string()))?;
            }
            Err(err) => return Err(failed(err.to_string())),
        }
        if !self.wait_for(path, true) {
            return Err(failed(format!(
                "its cgroup {path} did not appear within {} s",
                UNIT_TIMEOUT.as_secs()
            )));
        }

        let written = self.files.update(path, resources);
        if written.is_err() && !existed {
            let _ = self.stop(unit);
        }
        written
    }

    fn update(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError> {
        resources.check_values()?;
        if !self.files.exists(path) {
            return Err(CgroupError::NotFound {
                path: path.to_string(),
            });
        }
        let unit = unit_name(path);
        let properties = unit_properties(resources, self.version(), false);
        match self.set_properties(unit, &properties) {
            Ok(()) => {}
            // A cgroup that systemd does not know as a unit is still limited through cgroupfs.
            Err(err) if err.remote_name() == Some("org.freedesktop.systemd1.NoSuchUnit") => {
                tracing::debug!(unit, "no such systemd unit; limits go to cgroupfs only");
            }
            Err(err) => {
                return Err(CgroupError::Systemd {
                    action: "update",
                    unit: unit.to_string(),
                    reason: err.to_string(),
                });
            }
        }
        self.files.update(path, resources)
    }

    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        let unit = unit_name(path);
        match self.stop(unit) {
            Ok(()) => {
                if !self.wait_for(path, false) {
                    tracing::warn!(unit, "cgroup still present after stopping its unit");
                }
            }
            Err(err) if err.remote_name() == Some("org.freedesktop.systemd1.NoSuchUnit") => {}
            Err(err) => {
                return Err(CgroupError::Systemd {
                    action: "stop",
                    unit: unit.to_string(),
                    reason: err.to_string(),
                });
            }
        }
        // Whatever systemd left behind (a cgroup it never knew as a unit) is removed directly,
        // which also reports what keeps a busy cgroup alive.
        self.files.remove(path)
    }

    fn stats(&self, path: &CgroupPath) -> Result<CgroupStats, CgroupError> {
        self.files.stats(path)
    }

    fn oom_kills(&self, path: &CgroupPath) -> Result<u64, CgroupError> {
        self.files.oom_kills(path)
    }
}

/// Returns the unit that owns a cgroup: its last path component, such as
/// `kubepods-burstable-pod<uid>.slice` or `berth-<id>.scope`.
fn unit_name(path: &CgroupPath) -> &str {
    path.components().last().unwrap_or_default()
}

/// Returns the unit properties that express `resources`. `accounting` adds the accounting
/// switches, which make systemd enable the controllers for the unit and its children.
pub(super) fn unit_properties(
    resources: &Resources,
    version: CgroupVersion,
    accounting: bool,
) -> Vec<(&'static str, Value)> {
    let v2 = version == CgroupVersion::V2;
    let mut properties = Vec::new();
    if accounting {
        properties.push(("Description", Value::Str("Berth pod cgroup".to_string())));
        properties.push(("DefaultDependencies", Value::Bool(false)));
        for switch in [
            "MemoryAccounting",
            "CPUAccounting",
            "IOAccounting",
            "TasksAccounting",
        ] {
            properties.push((switch, Value::Bool(true)));
        }
    }

    let limit = |limit: Limit| limit.value().unwrap_or(u64::MAX);
    if let Some(memory) = resources.memory_limit_bytes {
        let name = if v2 { "MemoryMax" } else { "MemoryLimit" };
        properties.push((name, Value::U64(limit(memory))));
    }
    if v2 && let Some(swap) = resources.swap_only_limit() {
        properties.push(("MemorySwapMax", Value::U64(limit(swap))));
    }

    if let Some(shares) = resources.cpu_shares {
        if v2 {
            properties.push(("CPUWeight", Value::U64(cpu_shares_to_weight(shares))));
        } else {
            properties.push(("CPUShares", Value::U64(shares)));
        }
    }
    if let Some(period) = resources.cpu_period_us {
        properties.push(("CPUQuotaPeriodUSec", Value::U64(period)));
    }
    if let Some(quota) = resources.cpu_quota_us {
        let per_second = match quota {
            Limit::Unlimited => u64::MAX,
            Limit::Value(quota) => {
                let period = resources
                    .cpu_period_us
                    .unwrap_or(super::DEFAULT_CPU_PERIOD_US)
                    .max(1);
                let exact = quota.saturating_mul(1_000_000) / period;
                exact.div_ceil(QUOTA_GRANULARITY_US) * QUOTA_GRANULARITY_US
            }
        };
        properties.push(("CPUQuotaPerSecUSec", Value::U64(per_second)));
    }

    if let Some(pids) = resources.pids_limit {
        properties.push(("TasksMax", Value::U64(limit(pids))));
    }
    if v2 {
        let masks = [
            ("AllowedCPUs", &resources.cpuset_cpus),
            ("AllowedMemoryNodes", &resources.cpuset_mems),
        ];
        for (name, list) in masks {
            if let Some(list) = list
                && let Ok(ids) = IdList::parse(list)
            {
                properties.push((name, Value::Bytes(ids.bitmask())));
            }
        }
    }
    properties
}
