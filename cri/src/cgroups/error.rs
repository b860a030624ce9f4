//! Errors of cgroup detection, validation and cgroupfs writes.

use std::io;
use std::path::{Path, PathBuf};

use super::CgroupVersion;

/// Error of a cgroup operation. [`CgroupError::is_invalid_argument`] returns true for the errors
/// that come from the request (gRPC `InvalidArgument`) rather than from the host.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A resource value the kernel would reject or that breaks a CRI rule. `field` is the CRI
    /// field's name where the CRI has one (`cpu_quota`, `memory_limit_in_bytes`).
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },

    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    #[error(
        "the {controller} cgroup controller is not available for {path}, but {field} needs it; \
         mount it (cgroup v1) or enable it in the parent's cgroup.subtree_control (cgroup v2)"
    )]
    ControllerMissing {
        controller: &'static str,
        field: &'static str,
        path: String,
    },

    #[error("{field} is not supported on cgroup {version}")]
    Unsupported {
        field: &'static str,
        version: CgroupVersion,
    },

    #[error("cgroup {path} not found in any hierarchy")]
    NotFound { path: String },

    #[error("removing cgroup {} failed: it is busy ({detail})", path.display())]
    Busy { path: PathBuf, detail: String },

    #[error("writing {value:?} to {} failed: {source}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },

    #[error("{action} {} failed: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot parse {}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },

    /// No D-Bus connection to systemd could be made.
    #[error("{reason}")]
    SystemdUnreachable { reason: String },

    /// systemd refused or failed a unit operation of the systemd driver.
    #[error("systemd cannot {action} unit {unit}: {reason}")]
    Systemd {
        action: &'static str,
        unit: String,
        reason: String,
    },

    #[error("no cgroup hierarchy found in {}: {reason}", mountinfo.display())]
    NoHierarchy { mountinfo: PathBuf, reason: String },
}

impl CgroupError {
    /// Returns true for errors caused by the request's values, which the CRI server reports as
    /// `InvalidArgument`.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            CgroupError::Invalid { .. }
                | CgroupError::InvalidPath { .. }
                | CgroupError::Unsupported { .. }
        )
    }

    pub(super) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        CgroupError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(super) fn invalid(
        field: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        CgroupError::Invalid {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(super) fn parse(path: &Path, reason: impl Into<String>) -> Self {
        CgroupError::Parse {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// Error for a huge page size whose hugetlb file is missing: the host has no such pages.
    pub(super) fn unsupported_page_size(page_size: &str, file: &Path) -> Self {
        CgroupError::invalid(
            "hugepage_limits.page_size",
            page_size,
            format!(
                "the host has no huge pages of this size ({} does not exist)",
                file.display()
            ),
        )
    }
}
