//! Memory limit and swap use of a cgroup, which `CgroupDriver::stats` does not report.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use super::SwapUsage;
use crate::cgroups::{CgroupPath, CgroupVersion, Hierarchy};

/// Limits above this many bytes count as unlimited. Cgroup v1 reports "no limit" as
/// `PAGE_COUNTER_MAX` times the page size, about 2^63, and cAdvisor and containerd use the
/// same 2^62 cutoff.
const UNLIMITED_MEMORY_BYTES: u64 = 1 << 62;

/// Memory limit and swap use of a cgroup.
#[derive(Debug, Default)]
pub(super) struct MemoryLimits {
    pub(super) limit_bytes: Option<u64>,
    pub(super) swap: Option<SwapUsage>,
}

/// Returns the host's cgroup hierarchies, detected once.
fn hierarchy() -> Option<&'static Hierarchy> {
    static HIERARCHY: OnceLock<Option<Hierarchy>> = OnceLock::new();
    HIERARCHY.get_or_init(|| Hierarchy::detect().ok()).as_ref()
}

/// Reads the memory limit and swap use of a cgroup. `usage` is the memory usage from the same
/// sample, which cgroup v1 needs to derive swap use from memory+swap use.
///
/// NOTE: `CgroupDriver::stats` carries no limits, so this reads cgroupfs files directly and
/// works only with the cgroupfs driver's layout.
pub(super) fn read_memory_limits(
    version: CgroupVersion,
    path: &CgroupPath,
    usage: Option<u64>,
) -> MemoryLimits {
    let Some(mount) = hierarchy().and_then(|hierarchy| hierarchy.mount_point("memory")) else {
        return MemoryLimits::default();
    };
    let dir = mount.join(path.as_str().trim_start_matches('/'));
    let read = |file: &str| read_limit(&dir.join(file));

    match version {
        CgroupVersion::V1 => {
            let limit = read("memory.limit_in_bytes").flatten();
            let swap = match (read("memory.memsw.usage_in_bytes").flatten(), usage) {
                (Some(with_swap), Some(usage)) => Some(SwapUsage {
                    usage_bytes: with_swap.saturating_sub(usage),
                    limit_bytes: read("memory.memsw.limit_in_bytes")
                        .flatten()
                        .zip(limit)
                        .map(|(with_swap, memory)| with_swap.saturating_sub(memory)),
                }),
                _ => None,
            };
            MemoryLimits {
                limit_bytes: limit,
                swap,
            }
        }
        CgroupVersion::V2 => {
            let swap = read("memory.swap.current")
                .flatten()
                .map(|usage_bytes| SwapUsage {
                    usage_bytes,
                    limit_bytes: read("memory.swap.max").flatten(),
                });
            MemoryLimits {
                limit_bytes: read("memory.max").flatten(),
                swap,
            }
        }
    }
}

/// Reads a byte count or limit file: `None` when the file is missing or unreadable, `Some(None)`
/// for `max` or a value above [`UNLIMITED_MEMORY_BYTES`].
fn read_limit(file: &Path) -> Option<Option<u64>> {
    let text = fs::read_to_string(file).ok()?;
    let text = text.trim();
    if text == "max" {
        return Some(None);
    }
    let value: u64 = text.parse().ok()?;
    Some((value <= UNLIMITED_MEMORY_BYTES).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_files_parse_max_and_huge_values() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap();
            path
        };
        assert_eq!(read_limit(&write("v2", "max\n")), Some(None));
        assert_eq!(
            read_limit(&write("v1", "9223372036854771712\n")),
            Some(None)
        );
        assert_eq!(
            read_limit(&write("set", "268435456\n")),
            Some(Some(268_435_456))
        );
        assert_eq!(read_limit(&dir.path().join("missing")), None);
    }
}
