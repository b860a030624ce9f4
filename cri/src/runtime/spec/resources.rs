//! Cgroup limits (`linux.resources`) and the OOM score adjustment from the CRI's
//! `LinuxContainerResources`, with containerd's rules.

use berth_proto::cri::LinuxContainerResources;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroup, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
    LinuxResources, LinuxResourcesBuilder,
};

use super::SpecError;
use super::host::HostFeatures;

/// Builds `linux.resources`. A CRI value of 0 means "not set" and leaves the field out.
///
/// With a memory limit and no swap limit, swap is capped at the memory limit (no swap use),
/// as containerd does. Both swap settings need swap accounting on the host, so they are skipped
/// without it. Hugepage limits are skipped when the hugetlb controller is missing, as with
/// containerd's default `tolerate_missing_hugetlb_controller = true`: kubelet sends a limit for
/// every page size the node has, even when the pod requests none. The CRI has no per-container
/// PIDs limit, so `pids` stays unset.
///
/// # Errors
///
/// [`SpecError::InvalidResource`] for negative CPU shares or period, or a hugepage limit above
/// `i64::MAX`.
pub(super) fn linux_resources(
    requested: Option<&LinuxContainerResources>,
    device_rules: Vec<LinuxDeviceCgroup>,
    host: &HostFeatures,
) -> Result<LinuxResources, SpecError> {
    let builder = LinuxResourcesBuilder::default().devices(device_rules);
    let Some(requested) = requested else {
        return Ok(builder.build()?);
    };

    let mut cpu = LinuxCpuBuilder::default();
    if requested.cpu_period != 0 {
        cpu = cpu.period(non_negative("cpu_period", requested.cpu_period)?);
    }
    if requested.cpu_quota != 0 {
        cpu = cpu.quota(requested.cpu_quota);
    }
    if requested.cpu_shares != 0 {
        cpu = cpu.shares(non_negative("cpu_shares", requested.cpu_shares)?);
    }
    if !requested.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(requested.cpuset_cpus.clone());
    }
    if !requested.cpuset_mems.is_empty() {
        cpu = cpu.mems(requested.cpuset_mems.clone());
    }

    let mut memory = LinuxMemoryBuilder::default();
    let limit = requested.memory_limit_in_bytes;
    let swap = requested.memory_swap_limit_in_bytes;
    if limit != 0 {
        memory = memory.limit(limit);
    }
    if host.swap_accounting {
        if swap != 0 {
            memory = memory.swap(swap);
        } else if limit != 0 {
            memory = memory.swap(limit);
        }
    }

    let mut builder = builder.cpu(cpu.build()?).memory(memory.build()?);

    if !requested.hugepage_limits.is_empty() {
        if host.hugetlb {
            let limits = requested
                .hugepage_limits
                .iter()
                .map(|h| {
                    let limit = i64::try_from(h.limit).map_err(|_| SpecError::InvalidResource {
                        field: "hugepage_limits.limit",
                        value: h.limit.to_string(),
                        reason: "must not exceed i64::MAX",
                    })?;
                    Ok(LinuxHugepageLimitBuilder::default()
                        .page_size(h.page_size.clone())
                        .limit(limit)
                        .build()?)
                })
                .collect::<Result<Vec<_>, SpecError>>()?;
            builder = builder.hugepage_limits(limits);
        } else {
            tracing::debug!("hugetlb cgroup controller is missing; hugepage limits skipped");
        }
    }

    if !requested.unified.is_empty() {
        builder = builder.unified(requested.unified.clone());
    }
    Ok(builder.build()?)
}

fn non_negative(field: &'static str, value: i64) -> Result<u64, SpecError> {
    u64::try_from(value).map_err(|_| SpecError::InvalidResource {
        field,
        value: value.to_string(),
        reason: "must not be negative",
    })
}

/// Returns `process.oomScoreAdj`: the requested value raised to at least `minimum`, the
/// daemon's own score, because a process without CAP_SYS_RESOURCE may not lower its score and
/// the OCI runtime would fail to start the container. `None` when the CRI sends no resources.
pub(super) fn oom_score_adj(
    requested: Option<&LinuxContainerResources>,
    minimum: i32,
) -> Option<i32> {
    // -1000..=1000 is the kernel's range, so the result always fits an i32.
    let requested = requested?.oom_score_adj.clamp(-1000, 1000);
    let clamped = requested.max(i64::from(minimum));
    Some(i32::try_from(clamped).unwrap_or(minimum))
}
