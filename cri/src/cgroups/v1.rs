//! The cgroupfs driver on cgroup v1: one directory per hierarchy, each controller's files in its
//! own hierarchy.

use std::path::{Path, PathBuf};

use super::detect::V1Mounts;
use super::files;
use super::resources::{Limit, MAX_CPU_SHARES, MIN_CPU_SHARES};
use super::stats::{CgroupStats, MemoryStatKeys, parse_blkio};
use super::{CgroupError, CgroupPath, CgroupVersion, Resources};

const MEMORY_LIMIT: &str = "memory.limit_in_bytes";
/// Present only when the kernel accounts swap (`CONFIG_MEMCG_SWAP` and `swapaccount=1`).
const MEMORY_SWAP_LIMIT: &str = "memory.memsw.limit_in_bytes";

const MEMORY_STAT_KEYS: MemoryStatKeys = MemoryStatKeys {
    inactive_file: "total_inactive_file",
    rss: "total_rss",
    page_faults: "total_pgfault",
    major_page_faults: "total_pgmajfault",
};

/// Creates the cgroup in every hierarchy, then applies `resources`. On error the leaf
/// directories this call made are removed again.
pub(super) fn create(
    mounts: &V1Mounts,
    path: &CgroupPath,
    resources: &Resources,
) -> Result<(), CgroupError> {
    check_request(mounts, path, resources)?;

    let mut created = Vec::new();
    let result = make_dirs(mounts, path, &mut created)
        .and_then(|()| init_cpuset(mounts, path))
        .and_then(|()| apply(mounts, path, resources));
    if result.is_err() {
        files::remove_created(&created);
    }
    result
}

/// Applies `resources` to an existing cgroup.
pub(super) fn update(
    mounts: &V1Mounts,
    path: &CgroupPath,
    resources: &Resources,
) -> Result<(), CgroupError> {
    check_request(mounts, path, resources)?;
    check_exists(mounts, path)?;
    for (controller, _) in resources.needed_controllers() {
        let Some(mount) = mounts.controllers.get(controller) else {
            continue;
        };
        if !path.under(mount).is_dir() {
            return Err(CgroupError::NotFound {
                path: path.to_string(),
            });
        }
    }
    apply(mounts, path, resources)
}

/// Removes the cgroup's directory from every hierarchy. Every hierarchy is tried, and the first
/// error is returned.
pub(super) fn remove(mounts: &V1Mounts, path: &CgroupPath) -> Result<(), CgroupError> {
    let mut first_error = None;
    for mount in all_hierarchies(mounts) {
        let Err(err) = files::remove_dir(&path.under(mount)) else {
            continue;
        };
        if first_error.is_none() {
            first_error = Some(err);
        } else {
            tracing::warn!(cgroup = %path, %err, "removing cgroup failed");
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Reads the usage counters of each mounted controller.
pub(super) fn stats(mounts: &V1Mounts, path: &CgroupPath) -> Result<CgroupStats, CgroupError> {
    check_exists(mounts, path)?;
    let mut stats = CgroupStats::default();

    if let Some(dir) = controller_dir(mounts, "cpuacct", path) {
        stats.cpu_usage_ns = files::read_u64_optional(&dir.join("cpuacct.usage"))?;
        stats.cpu_user_ns = files::read_u64_optional(&dir.join("cpuacct.usage_user"))?;
        stats.cpu_system_ns = files::read_u64_optional(&dir.join("cpuacct.usage_sys"))?;
    }

    if let Some(dir) = controller_dir(mounts, "cpu", path)
        && let Some(cpu_stat) = files::read_keyed_optional(&dir.join("cpu.stat"))?
    {
        stats.nr_periods = cpu_stat.get("nr_periods").copied();
        stats.throttled_periods = cpu_stat.get("nr_throttled").copied();
        stats.throttled_ns = cpu_stat.get("throttled_time").copied();
    }

    if let Some(dir) = controller_dir(mounts, "memory", path) {
        let usage = files::read_u64_optional(&dir.join("memory.usage_in_bytes"))?;
        let memory_stat = files::read_keyed_optional(&dir.join("memory.stat"))?;
        stats.set_memory(usage, memory_stat.as_ref(), &MEMORY_STAT_KEYS);
        let oom_control = files::read_keyed_optional(&dir.join("memory.oom_control"))?;
        stats.oom_kills = oom_control.and_then(|values| values.get("oom_kill").copied());
    }

    if let Some(dir) = controller_dir(mounts, "pids", path) {
        stats.pids_current = files::read_u64_optional(&dir.join("pids.current"))?;
    }

    if let Some(dir) = controller_dir(mounts, "blkio", path) {
        let bytes_file = dir.join("blkio.throttle.io_service_bytes_recursive");
        let operations_file = dir.join("blkio.throttle.io_serviced_recursive");
        if let (Some(bytes), Some(operations)) = (
            files::read_optional(&bytes_file)?,
            files::read_optional(&operations_file)?,
        ) {
            stats.io = parse_blkio(&bytes, &operations)
                .map_err(|reason| CgroupError::parse(&bytes_file, reason))?;
        }
    }
    Ok(stats)
}

/// Reads the `oom_kill` counter of `memory.oom_control` (Linux 4.13 and later).
pub(super) fn oom_kills(mounts: &V1Mounts, path: &CgroupPath) -> Result<u64, CgroupError> {
    let Some(dir) = controller_dir(mounts, "memory", path) else {
        return Err(CgroupError::ControllerMissing {
            controller: "memory",
            field: "the OOM kill count",
            path: path.to_string(),
        });
    };
    let file = dir.join("memory.oom_control");
    let Some(values) = files::read_keyed_optional(&file)? else {
        return Err(CgroupError::NotFound {
            path: path.to_string(),
        });
    };
    values.get("oom_kill").copied().ok_or_else(|| {
        CgroupError::parse(&file, "no oom_kill line; the kernel predates Linux 4.13")
    })
}

/// Checks the request before anything is written, so that an invalid request changes nothing.
fn check_request(
    mounts: &V1Mounts,
    path: &CgroupPath,
    resources: &Resources,
) -> Result<(), CgroupError> {
    resources.check_values()?;
    if !resources.unified.is_empty() {
        return Err(CgroupError::Unsupported {
            field: "unified",
            version: CgroupVersion::V1,
        });
    }
    for (controller, field) in resources.needed_controllers() {
        if !mounts.controllers.contains_key(controller) {
            return Err(CgroupError::ControllerMissing {
                controller,
                field,
                path: path.to_string(),
            });
        }
    }
    Ok(())
}

fn all_hierarchies(mounts: &V1Mounts) -> impl Iterator<Item = &PathBuf> {
    mounts.hierarchies.iter().chain(&mounts.unified)
}

fn controller_dir(mounts: &V1Mounts, controller: &str, path: &CgroupPath) -> Option<PathBuf> {
    mounts
        .controllers
        .get(controller)
        .map(|mount| path.under(mount))
}

fn check_exists(mounts: &V1Mounts, path: &CgroupPath) -> Result<(), CgroupError> {
    if mounts
        .hierarchies
        .iter()
        .any(|mount| path.under(mount).is_dir())
    {
        Ok(())
    } else {
        Err(CgroupError::NotFound {
            path: path.to_string(),
        })
    }
}

fn make_dirs(
    mounts: &V1Mounts,
    path: &CgroupPath,
    created: &mut Vec<PathBuf>,
) -> Result<(), CgroupError> {
    for mount in all_hierarchies(mounts) {
        let dir = path.under(mount);
        if files::create_dir(&dir)? {
            created.push(dir);
        }
    }
    Ok(())
}

/// Copies `cpuset.cpus` and `cpuset.mems` from the parent into every cgroup on the path that
/// has them empty. A v1 cpuset cgroup starts with both empty, and the kernel refuses to attach
/// tasks to it (ENOSPC) or to configure children from it until they are filled.
fn init_cpuset(mounts: &V1Mounts, path: &CgroupPath) -> Result<(), CgroupError> {
    let Some(mount) = mounts.controllers.get("cpuset") else {
        return Ok(());
    };

    let mut parent = mount.clone();
    for component in path.components() {
        let dir = parent.join(component);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if files::read_trimmed(&dir.join(file))?.is_empty() {
                let inherited = files::read_trimmed(&parent.join(file))?;
                files::write(&dir, file, &inherited)?;
            }
        }
        parent = dir;
    }
    Ok(())
}

fn apply(mounts: &V1Mounts, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError> {
    if let Some(dir) = controller_dir(mounts, "cpuset", path) {
        if let Some(cpus) = &resources.cpuset_cpus {
            files::write(&dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = &resources.cpuset_mems {
            files::write(&dir, "cpuset.mems", mems)?;
        }
    }
    if let Some(dir) = controller_dir(mounts, "memory", path) {
        set_memory(&dir, resources)?;
    }
    if let Some(dir) = controller_dir(mounts, "cpu", path) {
        set_cpu(&dir, resources)?;
    }
    if let (Some(dir), Some(limit)) = (controller_dir(mounts, "pids", path), resources.pids_limit) {
        files::write(&dir, "pids.max", &limit.max_string())?;
    }
    set_hugetlb(mounts, path, resources)
}

/// Writes the memory and memory+swap limits in the order the kernel accepts: it rejects a
/// memory limit above the memory+swap limit, and a memory+swap limit below the memory limit.
fn set_memory(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    let memory = resources.memory_limit_bytes;
    let mut swap = resources.memory_swap_limit_bytes;
    let swap_accounted = dir.join(MEMORY_SWAP_LIMIT).exists();

    // Lifting the memory limit while memory+swap stays limited would fail, so both are lifted,
    // as runc does.
    if memory == Some(Limit::Unlimited) && swap.is_none() && swap_accounted {
        swap = Some(Limit::Unlimited);
    }
    if swap.is_some() && !swap_accounted {
        tracing::debug!(
            path = %dir.display(),
            "kernel does not account swap; memory+swap limit skipped"
        );
        swap = None;
    }

    if let (Some(memory), Some(swap)) = (memory, swap) {
        let current = files::read_trimmed(&dir.join(MEMORY_LIMIT))?;
        let current: u64 = current.parse().map_err(|_| {
            CgroupError::parse(
                &dir.join(MEMORY_LIMIT),
                format!("{current:?} is not a number"),
            )
        })?;
        let raising = match swap {
            Limit::Unlimited => true,
            Limit::Value(swap) => current < swap,
        };
        if raising {
            files::write(dir, MEMORY_SWAP_LIMIT, &swap.v1_string())?;
            return files::write(dir, MEMORY_LIMIT, &memory.v1_string());
        }
    }

    if let Some(memory) = memory {
        files::write(dir, MEMORY_LIMIT, &memory.v1_string())?;
    }
    if let Some(swap) = swap {
        files::write(dir, MEMORY_SWAP_LIMIT, &swap.v1_string())?;
    }
    Ok(())
}

fn set_cpu(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    if let Some(shares) = resources.cpu_shares {
        let shares = shares.clamp(MIN_CPU_SHARES, MAX_CPU_SHARES);
        files::write(dir, "cpu.shares", &shares.to_string())?;
    }

    let quota = resources.cpu_quota_us.map(Limit::v1_string);
    if let Some(period) = resources.cpu_period_us {
        match files::write(dir, "cpu.cfs_period_us", &period.to_string()) {
            Ok(()) => {}
            // A shorter period raises the old quota's CPU fraction, which the kernel rejects
            // (EINVAL) when it would exceed the parent's. Writing the new quota first can make
            // it fit, as crun does.
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
            {
                tracing::debug!(path = %dir.display(), period, "CFS period rejected; retrying after the quota");
                if let Some(quota) = &quota {
                    files::write(dir, "cpu.cfs_quota_us", quota)?;
                }
                return files::write(dir, "cpu.cfs_period_us", &period.to_string());
            }
            Err(err) => return Err(err),
        }
    }
    if let Some(quota) = &quota {
        files::write(dir, "cpu.cfs_quota_us", quota)?;
    }
    Ok(())
}

/// Writes huge page limits, or skips them when the hugetlb controller is not mounted. The
/// kubelet sends a limit for every page size the node has, even for pods that use none. So
/// containerd tolerates a missing controller by default, and Berth does the same.
fn set_hugetlb(
    mounts: &V1Mounts,
    path: &CgroupPath,
    resources: &Resources,
) -> Result<(), CgroupError> {
    if resources.hugepage_limits.is_empty() {
        return Ok(());
    }
    let Some(dir) = controller_dir(mounts, "hugetlb", path) else {
        tracing::debug!(cgroup = %path, "hugetlb cgroup controller is not mounted; hugepage limits skipped");
        return Ok(());
    };

    for (page_size, limit) in &resources.hugepage_limits {
        let file = format!("hugetlb.{page_size}.limit_in_bytes");
        if !dir.join(&file).exists() {
            return Err(CgroupError::unsupported_page_size(
                page_size,
                &dir.join(&file),
            ));
        }
        files::write(&dir, &file, &limit.to_string())?;

        // The OCI runtime spec applies the limit to reservations where the kernel supports
        // them (Linux 5.7 and later), so the reservation limit gets the same value.
        let reserved = format!("hugetlb.{page_size}.rsvd.limit_in_bytes");
        if dir.join(&reserved).exists() {
            files::write(&dir, &reserved, &limit.to_string())?;
        }
    }
    Ok(())
}
