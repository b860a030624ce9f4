//! Cgroup hierarchy detection from `/proc/self/mountinfo`: which version the host runs and, on
//! cgroup v1, where each controller is mounted.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::CgroupError;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Mount point of the cgroup hierarchies under systemd and on most distributions.
const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// Controllers a cgroup v1 mount can carry, as named in its mount options.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// Cgroup version of a host: v1 with one hierarchy per controller (or group of controllers), or
/// the single v2 hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// Mounted cgroup hierarchies of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub(super) layout: Layout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Layout {
    V1(V1Mounts),
    V2 { root: PathBuf },
}

/// Mount points of a cgroup v1 host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct V1Mounts {
    /// Mount point of each controller. Controllers mounted together (`cpu,cpuacct`) share one.
    pub(super) controllers: BTreeMap<String, PathBuf>,
    /// Every v1 hierarchy once, including named ones without a controller (`name=systemd`).
    pub(super) hierarchies: Vec<PathBuf>,
    /// The cgroup2 mount of a hybrid host (`/sys/fs/cgroup/unified`). runc places container
    /// processes there too, so cgroups are created and removed in it, but no limit is written.
    pub(super) unified: Option<PathBuf>,
}

impl Hierarchy {
    /// Detects the host's cgroup hierarchies from `/proc/self/mountinfo`.
    ///
    /// The host is cgroup v2 when `/sys/fs/cgroup` is a cgroup2 mount. Otherwise it is cgroup v1
    /// when any cgroup v1 hierarchy is mounted, and a cgroup2 mount elsewhere counts as the hybrid
    /// layout's `unified` hierarchy.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Io`] when mountinfo cannot be read, [`CgroupError::NoHierarchy`] when no
    /// cgroup filesystem is mounted.
    pub fn detect() -> Result<Hierarchy, CgroupError> {
        let path = Path::new(MOUNTINFO);
        let text = fs::read_to_string(path).map_err(|err| CgroupError::io("reading", path, err))?;
        let hierarchy = Hierarchy::from_mountinfo(&text)?;
        tracing::debug!(?hierarchy, "detected cgroup hierarchies");
        Ok(hierarchy)
    }

    /// Builds the hierarchy from the text of a `/proc/<pid>/mountinfo` file.
    ///
    /// # Errors
    ///
    /// [`CgroupError::NoHierarchy`] when the text lists no cgroup or cgroup2 mount.
    pub fn from_mountinfo(mountinfo: &str) -> Result<Hierarchy, CgroupError> {
        let mounts: Vec<CgroupMount> = mountinfo.lines().filter_map(parse_mount).collect();

        let v2_at_default = mounts
            .iter()
            .find(|mount| mount.v1_options.is_none() && mount.point == Path::new(DEFAULT_ROOT));
        if let Some(mount) = v2_at_default {
            return Ok(Hierarchy::v2(mount.point.clone()));
        }

        let mut v1 = V1Mounts::default();
        for mount in &mounts {
            let Some(options) = &mount.v1_options else {
                v1.unified.get_or_insert_with(|| mount.point.clone());
                continue;
            };
            // A hierarchy carries controllers, or only a name (`name=systemd`).
            let mut is_hierarchy = false;
            for option in options.split(',') {
                if V1_CONTROLLERS.contains(&option) {
                    v1.controllers
                        .entry(option.to_string())
                        .or_insert_with(|| mount.point.clone());
                    is_hierarchy = true;
                } else if option.starts_with("name=") {
                    is_hierarchy = true;
                }
            }
            if is_hierarchy && !v1.hierarchies.contains(&mount.point) {
                v1.hierarchies.push(mount.point.clone());
            }
        }
        if !v1.hierarchies.is_empty() {
            return Ok(Hierarchy {
                layout: Layout::V1(v1),
            });
        }

        if let Some(unified) = v1.unified {
            return Ok(Hierarchy::v2(unified));
        }
        Err(CgroupError::NoHierarchy {
            mountinfo: PathBuf::from(MOUNTINFO),
            reason: "no cgroup or cgroup2 filesystem is mounted".to_string(),
        })
    }

    /// Builds a hierarchy from a directory laid out like `/sys/fs/cgroup`, for tests on a
    /// temporary directory.
    ///
    /// For [`CgroupVersion::V2`] `root` is the cgroup2 mount itself. For [`CgroupVersion::V1`]
    /// each subdirectory of `root` is one hierarchy, named by its controllers joined with commas
    /// (`cpu,cpuacct`). `systemd` is the named hierarchy `name=systemd` and `unified` the hybrid
    /// layout's cgroup2 mount. Symbolic links such as `cpu -> cpu,cpuacct` are followed.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Io`] when `root` cannot be listed.
    pub fn at(root: impl Into<PathBuf>, version: CgroupVersion) -> Result<Hierarchy, CgroupError> {
        let root = root.into();
        if version == CgroupVersion::V2 {
            return Ok(Hierarchy::v2(root));
        }

        let entries = fs::read_dir(&root).map_err(|err| CgroupError::io("listing", &root, err))?;
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|err| CgroupError::io("listing", &root, err))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let target = path
                .canonicalize()
                .map_err(|err| CgroupError::io("resolving", &path, err))?;
            names.push((entry.file_name().to_string_lossy().into_owned(), target));
        }
        // Sorted so that the hierarchies come in the same order on every run.
        names.sort();

        let mut v1 = V1Mounts::default();
        for (name, target) in names {
            match name.as_str() {
                "unified" => v1.unified = Some(target.clone()),
                "systemd" => {}
                _ => {
                    for controller in name.split(',') {
                        v1.controllers
                            .entry(controller.to_string())
                            .or_insert_with(|| target.clone());
                    }
                }
            }
            if name != "unified" && !v1.hierarchies.contains(&target) {
                v1.hierarchies.push(target);
            }
        }
        Ok(Hierarchy {
            layout: Layout::V1(v1),
        })
    }

    fn v2(root: PathBuf) -> Hierarchy {
        Hierarchy {
            layout: Layout::V2 { root },
        }
    }

    /// Returns the cgroup version.
    pub fn version(&self) -> CgroupVersion {
        match self.layout {
            Layout::V1(_) => CgroupVersion::V1,
            Layout::V2 { .. } => CgroupVersion::V2,
        }
    }

    /// Returns the mount point that contains `controller`'s files: its own hierarchy on cgroup v1,
    /// the single root on cgroup v2 (whether or not the controller is enabled there).
    pub fn mount_point(&self, controller: &str) -> Option<&Path> {
        match &self.layout {
            Layout::V1(v1) => v1.controllers.get(controller).map(PathBuf::as_path),
            Layout::V2 { root } => Some(root),
        }
    }
}

/// Cgroup filesystem mount from one mountinfo line.
struct CgroupMount {
    point: PathBuf,
    /// Super options of a cgroup v1 mount (`rw,cpu,cpuacct`); `None` for cgroup2.
    v1_options: Option<String>,
}

/// Parses one mountinfo line, returning `None` for anything but a cgroup or cgroup2 mount.
///
/// The format, from proc(5): `ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - FSTYPE
/// SOURCE SUPER-OPTIONS`, with spaces in paths escaped as `\040`.
fn parse_mount(line: &str) -> Option<CgroupMount> {
    let (before, after) = line.split_once(" - ")?;
    let point = before.split(' ').nth(4)?;
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let super_options = after.nth(1).unwrap_or("");

    let v1_options = match fstype {
        "cgroup2" => None,
        "cgroup" => Some(super_options.to_string()),
        _ => return None,
    };
    Some(CgroupMount {
        point: PathBuf::from(unescape_octal(point)),
        v1_options,
    })
}

/// Decodes the `\NNN` octal escapes the kernel writes for space, tab, newline and backslash.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 4).filter(|digits| {
            bytes[i] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match escape {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                decoded.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
