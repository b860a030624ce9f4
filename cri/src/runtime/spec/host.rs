//! Facts about the host that change the generated spec. They are probed on every call of
//! [`generate_spec`](super::generate_spec), because the mount table changes while Berth runs.
//! Tests build a [`HostFeatures`] by hand instead.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Capabilities;

use super::SpecError;
use super::security::capabilities_from_mask;

/// Host properties that spec generation depends on.
#[derive(Debug, Clone)]
pub struct HostFeatures {
    /// Whether `/sys/fs/cgroup` is a cgroup v2 (unified) hierarchy.
    pub cgroup_v2: bool,
    /// Whether the memory controller accounts swap: `memory.memsw.limit_in_bytes` on cgroup v1,
    /// `memory.swap.max` on cgroup v2.
    pub swap_accounting: bool,
    /// Whether the hugetlb controller is mounted (v1) or enabled (v2).
    pub hugetlb: bool,
    /// Whether AppArmor is enabled in the kernel.
    pub apparmor: bool,
    /// Whether the kernel has `mount_setattr(2)` (Linux 5.12), which the OCI runtime needs for
    /// the `rro` mount option.
    pub recursive_read_only: bool,
    /// Berth's own effective capability set: the most any container may be granted, because the
    /// OCI runtime cannot raise a capability its parent lacks.
    pub capabilities: Capabilities,
    /// Host name, used for `HOSTNAME` when the pod config sets none.
    pub hostname: String,
    /// Running kernel version as (major, minor), for `minKernel` conditions in seccomp profiles.
    pub kernel_version: (u32, u32),
    /// Mount table of Berth's mount namespace, for mount propagation checks.
    pub mounts: Vec<MountInfo>,
}

/// One line of `/proc/self/mountinfo`, reduced to what propagation checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    /// Optional fields such as `shared:1` or `master:2`.
    pub optional_fields: Vec<String>,
}

impl MountInfo {
    pub fn is_shared(&self) -> bool {
        self.optional_fields
            .iter()
            .any(|f| f.starts_with("shared:"))
    }

    pub fn is_slave(&self) -> bool {
        self.optional_fields
            .iter()
            .any(|f| f.starts_with("master:"))
    }
}

impl HostFeatures {
    /// Probes the running host.
    ///
    /// # Errors
    ///
    /// [`SpecError::Io`] when `/proc/self/status`, `/proc/self/mountinfo` or the kernel version
    /// cannot be read.
    pub fn probe() -> Result<HostFeatures, SpecError> {
        let cgroup_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let kernel_version = parse_kernel_version(&read_proc("/proc/sys/kernel/osrelease")?);
        let status = read_proc("/proc/self/status")?;
        let mountinfo = read_proc("/proc/self/mountinfo")?;

        Ok(HostFeatures {
            cgroup_v2,
            swap_accounting: probe_swap_accounting(cgroup_v2),
            hugetlb: probe_hugetlb(cgroup_v2),
            apparmor: probe_apparmor(),
            recursive_read_only: kernel_version >= (5, 12),
            capabilities: capabilities_from_mask(parse_effective_capabilities(&status)),
            hostname: fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_string())
                .unwrap_or_default(),
            kernel_version,
            mounts: parse_mountinfo(&mountinfo),
        })
    }

    /// Returns the mount whose mount point is the longest prefix of `path`.
    pub fn mount_of(&self, path: &Path) -> Option<&MountInfo> {
        self.mounts
            .iter()
            .filter(|m| path.starts_with(&m.mount_point))
            .max_by_key(|m| m.mount_point.components().count())
    }
}

fn read_proc(path: &str) -> Result<String, SpecError> {
    fs::read_to_string(path).map_err(|e| SpecError::io("failed to read", path, e))
}

fn probe_swap_accounting(cgroup_v2: bool) -> bool {
    if !cgroup_v2 {
        return Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    }

    // On cgroup v2 the root cgroup has no memory.swap.max, so look next to Berth's own cgroup.
    let Ok(own) = fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    own.lines()
        .filter_map(|line| line.strip_prefix("0::"))
        .any(|cgroup| {
            let dir = Path::new("/sys/fs/cgroup").join(cgroup.trim_start_matches('/'));
            dir.join("memory.swap.max").exists()
                || dir
                    .parent()
                    .is_some_and(|parent| parent.join("memory.swap.max").exists())
        })
}

fn probe_hugetlb(cgroup_v2: bool) -> bool {
    if cgroup_v2 {
        return fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "hugetlb"));
    }
    // An unmounted v1 controller may still have an empty directory, so look for a control file.
    Path::new("/sys/fs/cgroup/hugetlb/cgroup.procs").exists()
}

fn probe_apparmor() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|enabled| enabled.starts_with('Y'))
}

/// Parses "6.18.44-fc" into (6, 18). Unparsable parts become 0.
pub(super) fn parse_kernel_version(release: &str) -> (u32, u32) {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Returns the `CapEff` mask from the text of `/proc/self/status`, or 0 when it is missing.
fn parse_effective_capabilities(status: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// Parses the text of `/proc/self/mountinfo`, skipping malformed lines.
pub(super) fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

// Format (proc(5)): "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw".
// Fields 5 (mount point) onwards: mount options, zero or more optional fields, then "-".
fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    let _mount_options = fields.next()?;
    let optional_fields = fields
        .take_while(|f| *f != "-")
        .map(str::to_string)
        .collect();
    Some(MountInfo {
        mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
        optional_fields,
    })
}

/// Decodes the octal escapes (`\040` for a space) the kernel writes in mountinfo paths.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match escape {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Returns `path` with symbolic links resolved when it exists, else `path` unchanged.
pub(super) fn resolve_host_path(path: &Path) -> Result<PathBuf, SpecError> {
    match fs::canonicalize(path) {
        Ok(resolved) => Ok(resolved),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(e) => Err(SpecError::io("failed to resolve", path, e)),
    }
}
