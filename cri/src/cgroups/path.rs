//! Cgroup paths in the cgroupfs driver's form, such as `/kubepods/burstable/pod<uid>/<ctr>`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::CgroupError;

/// Maximum length in bytes of one path component: Linux's `NAME_MAX`.
const NAME_MAX: usize = 255;

/// Validated cgroup path relative to each hierarchy's mount point: absolute, below the root,
/// with no empty, `.` or `..` components and no NUL byte. The same path names the cgroup in every
/// v1 hierarchy and in the v2 tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CgroupPath(String);

impl CgroupPath {
    /// Parses and validates a cgroupfs path.
    ///
    /// # Errors
    ///
    /// [`CgroupError::InvalidPath`] when the path is relative, is `/` itself, or has an empty,
    /// `.`, `..` or over-long component.
    pub fn new(path: &str) -> Result<Self, CgroupError> {
        let invalid = |reason| CgroupError::InvalidPath {
            path: path.to_string(),
            reason,
        };

        let Some(rest) = path.strip_prefix('/') else {
            return Err(invalid("must be absolute"));
        };
        if rest.is_empty() {
            return Err(invalid("must name a cgroup below the root"));
        }
        if path.contains('\0') {
            return Err(invalid("must not contain a NUL byte"));
        }
        for component in rest.split('/') {
            check_component(component).map_err(invalid)?;
        }
        Ok(CgroupPath(path.to_string()))
    }

    /// Returns the path as given, with its leading `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the path of a child cgroup named `name`.
    ///
    /// # Errors
    ///
    /// [`CgroupError::InvalidPath`] when `name` is empty, `.`, `..` or contains a `/`.
    pub fn join(&self, name: &str) -> Result<CgroupPath, CgroupError> {
        let path = format!("{}/{name}", self.0);
        if name.contains('/') {
            return Err(CgroupError::InvalidPath {
                path,
                reason: "a child name must not contain /",
            });
        }
        CgroupPath::new(&path)
    }

    /// Returns the parent cgroup, or `None` for a cgroup directly below the root.
    pub fn parent(&self) -> Option<CgroupPath> {
        let (parent, _) = self.0.rsplit_once('/')?;
        if parent.is_empty() {
            None
        } else {
            Some(CgroupPath(parent.to_string()))
        }
    }

    /// Returns the path's components from the top, without the leading `/`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0[1..].split('/')
    }

    /// Returns this cgroup's directory in the hierarchy mounted at `mount`.
    pub(super) fn under(&self, mount: &Path) -> PathBuf {
        mount.join(&self.0[1..])
    }
}

fn check_component(component: &str) -> Result<(), &'static str> {
    match component {
        "" => Err("must not have empty components (a doubled or trailing /)"),
        "." | ".." => Err("must not contain . or .. components"),
        _ if component.len() > NAME_MAX => Err("has a component longer than 255 bytes"),
        _ => Ok(()),
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl FromStr for CgroupPath {
    type Err = CgroupError;

    fn from_str(path: &str) -> Result<Self, Self::Err> {
        CgroupPath::new(path)
    }
}

impl AsRef<str> for CgroupPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
