//! The kubelet's pod cgroup layout under the cgroupfs driver, and the QoS class that picks a
//! pod's place in it:
//!
//! ```text
//! <parent>/pod<uid>               Guaranteed
//! <parent>/burstable/pod<uid>     Burstable
//! <parent>/besteffort/pod<uid>    BestEffort
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
    let uid_is_valid = !pod_uid.is_empty()
        && pod_uid
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
    if !uid_is_valid {
        return Err(CgroupError::invalid(
            "pod UID",
            pod_uid,
            "must be non-empty and contain only ASCII letters, digits and dashes",
        ));
    }

    let parent = parent_prefix(parent)?;
    let path = match qos.cgroup_name() {
        Some(name) => format!("{parent}/{name}/pod{pod_uid}"),
        None => format!("{parent}/pod{pod_uid}"),
    };
    CgroupPath::new(&path)
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
