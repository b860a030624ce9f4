//! The kubelet's pod cgroup layout, and the QoS class that picks a pod's place in it. Under the
//! cgroupfs driver:
//!
//! ```text
//! <parent>/pod<uid>               Guaranteed
//! <parent>/burstable/pod<uid>     Burstable
//! <parent>/besteffort/pod<uid>    BestEffort
//! ```
//!
//! Under the systemd driver the same tree is made of slices, each named after its ancestors,
//! with the UID's dashes turned into underscores since a dash separates levels:
//!
//! ```text
//! kubepods-pod<uid>.slice              Guaranteed
//! kubepods-burstable-pod<uid>.slice    Burstable, at /kubepods.slice/kubepods-burstable.slice/...
//! kubepods-besteffort-pod<uid>.slice   BestEffort
//! ```

use std::fmt;

use super::resources::{DEFAULT_CPU_PERIOD_US, Limit, MIN_CPU_SHARES};
use super::{CgroupError, CgroupPath, Resources};

/// Kubernetes QoS class of a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// Classifies a pod from its cgroup resources, as the kubelet's requests and limits show
    /// through them.
    ///
    /// - BestEffort: no memory limit, no CPU quota and CPU shares of at most 2 (the kubelet's
    ///   minimum, given to pods without a CPU request).
    /// - Guaranteed: a memory limit, a CPU quota, and shares equal to the quota's share of a CPU
    ///   (`shares == quota * 1024 / period`, give or take 1 for rounding), which is what a CPU
    ///   request equal to the CPU limit produces.
    /// - Burstable: everything else.
    ///
    /// Memory requests do not reach the cgroup, so a memory request below the limit looks the
    /// same as an equal one.
    pub fn from_resources(resources: &Resources) -> QosClass {
        let memory_limit = resources.memory_limit_bytes.and_then(Limit::value);
        let cpu_quota = resources.cpu_quota_us.and_then(Limit::value);
        let shares = resources.cpu_shares.unwrap_or(0);

        if memory_limit.is_none() && cpu_quota.is_none() && shares <= MIN_CPU_SHARES {
            return QosClass::BestEffort;
        }

        if let (Some(_), Some(quota)) = (memory_limit, cpu_quota) {
            let period = resources.cpu_period_us.unwrap_or(DEFAULT_CPU_PERIOD_US);
            let limit_shares = u128::from(quota) * 1024 / u128::from(period.max(1));
            if u128::from(shares).abs_diff(limit_shares) <= 1 {
                return QosClass::Guaranteed;
            }
        }
        QosClass::Burstable
    }

    /// Returns the class's cgroup below the pods' parent, or `None` for Guaranteed, whose pods
    /// sit directly in the parent.
    pub fn cgroup_name(self) -> Option<&'static str> {
        match self {
            QosClass::Guaranteed => None,
            QosClass::Burstable => Some("burstable"),
            QosClass::BestEffort => Some("besteffort"),
        }
    }
}

impl fmt::Display for QosClass {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        })
    }
}

/// Returns the cgroup of a QoS class below `parent` (such as `/kubepods`): the parent itself
/// for Guaranteed.
///
/// # Errors
///
/// [`CgroupError::InvalidPath`] when `parent` is neither `/` nor a valid cgroup path, or when it
/// is `/` for Guaranteed, since the root is no cgroup of its own.
pub fn qos_cgroup_path(parent: &str, qos: QosClass) -> Result<CgroupPath, CgroupError> {
    let parent = parent_prefix(parent)?;
    let path = match qos.cgroup_name() {
        Some(name) => format!("{parent}/{name}"),
        None => parent.to_string(),
    };
    CgroupPath::new(&path)
}

/// Returns a pod's cgroup: `<parent>/pod<uid>` for Guaranteed, `<parent>/burstable/pod<uid>`
/// and `<parent>/besteffort/pod<uid>` for the others. The UID keeps its dashes, as the kubelet's
/// cgroupfs driver writes it (the systemd driver would escape them).
///
/// # Errors
///
/// [`CgroupError::InvalidPath`] when `parent` is neither `/` nor a valid cgroup path;
/// [`CgroupError::Invalid`] when the UID is empty or has characters other than ASCII letters,
/// digits and dashes.
pub fn pod_cgroup_path(
    parent: &str,
    qos: QosClass,
    pod_uid: &str,
) -> Result<CgroupPath, CgroupError> {
    check_pod_uid(pod_uid)?;
    let parent = parent_prefix(parent)?;
    let path = match qos.cgroup_name() {
        Some(name) => format!("{parent}/{name}/pod{pod_uid}"),
        None => format!("{parent}/pod{pod_uid}"),
    };
    CgroupPath::new(&path)
}

/// Returns the slice unit of a pod below the slice `parent` (such as `kubepods.slice`), as the
/// kubelet's systemd driver names it: `kubepods-burstable-pod<uid>.slice`, with the UID's
/// dashes escaped as underscores.
///
/// # Errors
///
/// As for [`slice_path`] for `parent`; [`CgroupError::Invalid`] for a UID as in
/// [`pod_cgroup_path`].
pub fn pod_slice_name(parent: &str, qos: QosClass, pod_uid: &str) -> Result<String, CgroupError> {
    check_pod_uid(pod_uid)?;
    slice_path(parent)?;
    let prefix = parent.trim_end_matches(SLICE_SUFFIX);
    let escaped = pod_uid.replace('-', "_");
    Ok(match qos.cgroup_name() {
        Some(name) => format!("{prefix}-{name}-pod{escaped}{SLICE_SUFFIX}"),
        None => format!("{prefix}-pod{escaped}{SLICE_SUFFIX}"),
    })
}

/// Returns where systemd puts the cgroup of a slice unit: each dash-separated prefix of the
/// name is a parent slice, so `a-b-c.slice` lives at `/a.slice/a-b.slice/a-b-c.slice`.
///
/// # Errors
///
/// [`CgroupError::Invalid`] when `slice` does not end in `.slice`, is the root slice `-.slice`,
/// has an empty level (a leading, trailing or doubled dash), or has characters that a unit name
/// cannot hold.
pub fn slice_path(slice: &str) -> Result<CgroupPath, CgroupError> {
    let invalid = |reason: &str| CgroupError::invalid("cgroup slice", slice, reason);
    let Some(base) = slice.strip_suffix(SLICE_SUFFIX) else {
        return Err(invalid("a systemd slice name must end in .slice"));
    };
    if base == "-" || base.is_empty() {
        return Err(invalid("must name a slice below the root slice"));
    }
    let valid_characters = base
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b":_.\\-".contains(&byte));
    if !valid_characters {
        return Err(invalid(
            "a unit name holds only ASCII letters, digits and the characters : _ . \\ -",
        ));
    }
    if base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return Err(invalid(
            "must not start or end with a dash or hold two dashes in a row",
        ));
    }

    let mut path = String::new();
    let mut end = 0;
    for level in base.split('-') {
        end += level.len();
        path.push('/');
        path.push_str(&base[..end]);
        path.push_str(SLICE_SUFFIX);
        end += 1;
    }
    CgroupPath::new(&path)
}

const SLICE_SUFFIX: &str = ".slice";

fn check_pod_uid(pod_uid: &str) -> Result<(), CgroupError> {
    let uid_is_valid = !pod_uid.is_empty()
        && pod_uid
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
    if uid_is_valid {
        Ok(())
    } else {
        Err(CgroupError::invalid(
            "pod UID",
            pod_uid,
            "must be non-empty and contain only ASCII letters, digits and dashes",
        ))
    }
}

/// Validates the parent and maps the root `/` to the empty prefix, so that joining does not
/// double the slash.
fn parent_prefix(parent: &str) -> Result<&str, CgroupError> {
    if parent == "/" {
        return Ok("");
    }
    CgroupPath::new(parent)?;
    Ok(parent)
}
