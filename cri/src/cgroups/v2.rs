//! The cgroupfs driver on cgroup v2: one tree, with controllers enabled per level through
//! `cgroup.subtree_control`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::files;
use super::resources::{MAX_CPU_SHARES, MIN_CPU_SHARES, V2_CONTROLLERS};
use super::stats::{CgroupStats, MemoryStatKeys, parse_io_stat};
use super::{CgroupError, CgroupPath, Resources};

/// Present only when the kernel accounts swap (`CONFIG_MEMCG_SWAP`).
const MEMORY_SWAP_MAX: &str = "memory.swap.max";

const MEMORY_STAT_KEYS: MemoryStatKeys = MemoryStatKeys {
    inactive_file: "inactive_file",
    rss: "anon",
    page_faults: "pgfault",
    major_page_faults: "pgmajfault",
};

/// Converts v1 CPU shares to a v2 `cpu.weight` with the linear mapping of the kubelet's
/// cgroupfs manager and of runc before 1.3.2: shares 2..=262144 map onto weights 1..=10000,
/// and shares outside that range are clamped first.
///
/// NOTE: runc 1.3.2 and crun 1.23 switched to a non-linear mapping that sends the default 1024
/// shares to weight 100 (this one gives 39), so their container cgroups can get other weights
/// than the pod cgroup written here.
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(MIN_CPU_SHARES, MAX_CPU_SHARES);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Enables the controllers in every ancestor, creates the cgroup, then applies `resources`. On
/// error the leaf directory is removed again if this call made it.
pub(super) fn create(
    root: &Path,
    path: &CgroupPath,
    resources: &Resources,
) -> Result<(), CgroupError> {
    resources.check_values()?;

    let mut created = Vec::new();
    let result = enable_controllers(root, path).and_then(|()| {
        let leaf = path.under(root);
        if files::create_dir(&leaf)? {
            created.push(leaf);
        }
        apply(root, path, resources)
    });
    if result.is_err() {
        files::remove_created(&created);
    }
    result
}

/// Applies `resources` to an existing cgroup.
pub(super) fn update(
    root: &Path,
    path: &CgroupPath,
    resources: &Resources,
) -> Result<(), CgroupError> {
    resources.check_values()?;
    check_exists(root, path)?;
    apply(root, path, resources)
}

/// Removes the cgroup's directory.
pub(super) fn remove(root: &Path, path: &CgroupPath) -> Result<(), CgroupError> {
    files::remove_dir(&path.under(root))
}

/// Reads the usage counters of the enabled controllers.
pub(super) fn stats(root: &Path, path: &CgroupPath) -> Result<CgroupStats, CgroupError> {
    check_exists(root, path)?;
    let dir = path.under(root);
    let mut stats = CgroupStats::default();

    // cpu.stat exists in every cgroup. Its throttling lines appear only with the cpu controller.
    if let Some(cpu_stat) = files::read_keyed_optional(&dir.join("cpu.stat"))? {
        let nanoseconds = |key: &str| cpu_stat.get(key).map(|usec| usec.saturating_mul(1000));
        stats.cpu_usage_ns = nanoseconds("usage_usec");
        stats.cpu_user_ns = nanoseconds("user_usec");
        stats.cpu_system_ns = nanoseconds("system_usec");
        stats.throttled_ns = nanoseconds("throttled_usec");
        stats.nr_periods = cpu_stat.get("nr_periods").copied();
        stats.throttled_periods = cpu_stat.get("nr_throttled").copied();
    }

    let usage = files::read_u64_optional(&dir.join("memory.current"))?;
    let memory_stat = files::read_keyed_optional(&dir.join("memory.stat"))?;
    stats.set_memory(usage, memory_stat.as_ref(), &MEMORY_STAT_KEYS);
    let events = files::read_keyed_optional(&dir.join("memory.events"))?;
    stats.oom_kills = events.and_then(|events| events.get("oom_kill").copied());

    stats.pids_current = files::read_u64_optional(&dir.join("pids.current"))?;

    let io_stat = dir.join("io.stat");
    if let Some(text) = files::read_optional(&io_stat)? {
        stats.io = parse_io_stat(&text).map_err(|reason| CgroupError::parse(&io_stat, reason))?;
    }
    Ok(stats)
}

/// Reads the `oom_kill` counter of `memory.events`, which counts this cgroup and its
/// descendants unless cgroup2 is mounted with `memory_localevents`.
pub(super) fn oom_kills(root: &Path, path: &CgroupPath) -> Result<u64, CgroupError> {
    check_exists(root, path)?;
    let file = path.under(root).join("memory.events");
    let Some(events) = files::read_keyed_optional(&file)? else {
        return Err(CgroupError::ControllerMissing {
            controller: "memory",
            field: "the OOM kill count",
            path: path.to_string(),
        });
    };
    events.get("oom_kill").copied().ok_or_else(|| {
        CgroupError::parse(&file, "no oom_kill line; the kernel predates Linux 4.13")
    })
}

fn check_exists(root: &Path, path: &CgroupPath) -> Result<(), CgroupError> {
    if path.under(root).is_dir() {
        Ok(())
    } else {
        Err(CgroupError::NotFound {
            path: path.to_string(),
        })
    }
}

/// Enables, in the root and in every ancestor of `path` (creating missing ones), each controller
/// that the level has available but not yet enabled for its children. Enabling all of them,
/// not only those this request writes, lets the containers created below use any controller.
fn enable_controllers(root: &Path, path: &CgroupPath) -> Result<(), CgroupError> {
    let mut levels = vec![root.to_path_buf()];
    let mut ancestor = PathBuf::from(root);
    let components: Vec<&str> = path.components().collect();
    for component in &components[..components.len() - 1] {
        ancestor.push(component);
        levels.push(ancestor.clone());
    }

    for level in levels {
        files::create_dir(&level)?;
        let available = read_controllers(&level.join("cgroup.controllers"))?;
        let enabled = read_controllers(&level.join("cgroup.subtree_control"))?;
        let missing: Vec<String> = available
            .difference(&enabled)
            .map(|controller| format!("+{controller}"))
            .collect();
        if !missing.is_empty() {
            files::write(&level, "cgroup.subtree_control", &missing.join(" "))?;
        }
    }
    Ok(())
}

fn read_controllers(file: &Path) -> Result<BTreeSet<String>, CgroupError> {
    let text = files::read_trimmed(file)?;
    Ok(text.split_whitespace().map(str::to_string).collect())
}

fn apply(root: &Path, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError> {
    let dir = path.under(root);
    let available = read_controllers(&dir.join("cgroup.controllers"))?;
    for (controller, field) in resources.needed_controllers() {
        if !available.contains(controller) {
            return Err(CgroupError::ControllerMissing {
                controller,
                field,
                path: path.to_string(),
            });
        }
    }
    check_unified_files(&dir, path, resources)?;

    if let Some(cpus) = &resources.cpuset_cpus {
        files::write(&dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = &resources.cpuset_mems {
        files::write(&dir, "cpuset.mems", mems)?;
    }
    set_memory(&dir, resources)?;
    set_cpu(&dir, resources)?;
    if let Some(limit) = resources.pids_limit {
        files::write(&dir, "pids.max", &limit.max_string())?;
    }
    set_hugetlb(&dir, path, available.contains("hugetlb"), resources)?;

    for (key, value) in &resources.unified {
        files::write(&dir, key, value)?;
    }
    Ok(())
}

/// Checks that every `unified` key names an existing interface file, before anything is
/// written. A missing file of a known controller means the controller is not enabled.
fn check_unified_files(
    dir: &Path,
    path: &CgroupPath,
    resources: &Resources,
) -> Result<(), CgroupError> {
    for key in resources.unified.keys() {
        if dir.join(key).is_file() {
            continue;
        }
        let prefix = key.split('.').next().unwrap_or_default();
        if let Some(controller) = V2_CONTROLLERS.iter().find(|&&known| known == prefix) {
            return Err(CgroupError::ControllerMissing {
                controller,
                field: "unified",
                path: path.to_string(),
            });
        }
        return Err(CgroupError::invalid(
            "unified",
            key,
            format!("no such cgroup interface file in {}", dir.display()),
        ));
    }
    Ok(())
}

/// Writes `memory.max` and `memory.swap.max`. The request's swap limit counts memory plus swap
/// (the v1 and CRI meaning), so `memory.swap.max` gets the difference.
fn set_memory(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    let memory = resources.memory_limit_bytes;
    let swap_max = resources.swap_only_limit();

    if let Some(memory) = memory {
        files::write(dir, "memory.max", &memory.max_string())?;
    }
    let Some(swap_max) = swap_max else {
        return Ok(());
    };
    if dir.join(MEMORY_SWAP_MAX).exists() {
        files::write(dir, MEMORY_SWAP_MAX, &swap_max.max_string())?;
    } else {
        tracing::debug!(path = %dir.display(), "kernel does not account swap; swap limit skipped");
    }
    Ok(())
}

fn set_cpu(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    if let Some(shares) = resources.cpu_shares {
        files::write(dir, "cpu.weight", &cpu_shares_to_weight(shares).to_string())?;
    }

    // cpu.max is "<quota> <period>" with the period optional; a period alone must keep the
    // current quota.
    let value = match (resources.cpu_quota_us, resources.cpu_period_us) {
        (None, None) => return Ok(()),
        (Some(quota), None) => quota.max_string(),
        (Some(quota), Some(period)) => format!("{} {period}", quota.max_string()),
        (None, Some(period)) => {
            let current = files::read_trimmed(&dir.join("cpu.max"))?;
            let quota = current.split_whitespace().next().unwrap_or("max");
            format!("{quota} {period}")
        }
    };
    files::write(dir, "cpu.max", &value)
}

/// Writes huge page limits, or skips them when the hugetlb controller is not enabled. The
/// kubelet sends a limit for every page size the node has, even for pods that use none, so a
/// missing controller is tolerated as on v1.
fn set_hugetlb(
    dir: &Path,
    path: &CgroupPath,
    hugetlb_enabled: bool,
    resources: &Resources,
) -> Result<(), CgroupError> {
    if resources.hugepage_limits.is_empty() {
        return Ok(());
    }
    if !hugetlb_enabled {
        tracing::debug!(cgroup = %path, "hugetlb cgroup controller is not enabled; hugepage limits skipped");
        return Ok(());
    }

    for (page_size, limit) in &resources.hugepage_limits {
        let file = format!("hugetlb.{page_size}.max");
        if !dir.join(&file).exists() {
            return Err(CgroupError::unsupported_page_size(
                page_size,
                &dir.join(&file),
            ));
        }
        files::write(dir, &file, &limit.to_string())?;

        let reserved = format!("hugetlb.{page_size}.rsvd.max");
        if dir.join(&reserved).exists() {
            files::write(dir, &reserved, &limit.to_string())?;
        }
    }
    Ok(())
}
