//! cgroup checks: hierarchy layout, usable controllers and the cgroup driver.

use berth_cri::cgroups::{self, DriverKind};
use berth_cri::config::{RuntimeConfig, check_cgroup_parent};

use super::Finding;

/// Controllers without which Berth cannot apply a pod's CPU, memory and process limits.
const REQUIRED: &[&str] = &["cpu", "memory", "pids"];
/// Controllers some pods need. The block I/O controller is `blkio` in v1 and `io` in v2.
const OPTIONAL_V1: &[&str] = &["cpuset", "hugetlb", "blkio"];
const OPTIONAL_V2: &[&str] = &["cpuset", "hugetlb", "io"];

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Layout of the host's cgroup hierarchies, in the terms runc and systemd use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Only cgroup v2, mounted on /sys/fs/cgroup.
    Unified,
    /// cgroup v1 controllers, plus a cgroup2 hierarchy at /sys/fs/cgroup/unified.
    Hybrid,
    /// Only cgroup v1.
    Legacy,
    /// No cgroup filesystem mounted.
    Unmounted,
}

/// The fields of one /proc/self/mountinfo line that the checks read.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    mount_point: String,
    fs_type: String,
    /// Filesystem-wide options. For a cgroup v1 mount they name its controllers.
    super_options: String,
}

/// Reason a controller cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unusable {
    /// Not built into the kernel.
    Missing,
    /// Listed in /proc/cgroups with `enabled` 0, as after `cgroup_disable=` on the command line.
    Disabled,
    /// Enabled, but no cgroup v1 hierarchy is mounted with it.
    NotMounted,
    /// Not in /sys/fs/cgroup/cgroup.controllers.
    NotInV2Root,
}

/// Reports whether the host runs cgroup v2 only, v1 beside a cgroup2 hierarchy (hybrid), or v1
/// only.
pub fn check_version() -> Finding {
    const NAME: &str = "cgroup version";
    match read_layout() {
        Layout::Unified => Finding::ok(NAME, "v2 (cgroup2 on /sys/fs/cgroup)"),
        Layout::Hybrid => Finding::ok(NAME, "v1, hybrid (with cgroup2 on /sys/fs/cgroup/unified)"),
        Layout::Legacy => Finding::ok(NAME, "v1"),
        Layout::Unmounted => Finding::fail(
            NAME,
            "no cgroup filesystem is mounted",
            "mount -t cgroup2 cgroup2 /sys/fs/cgroup",
        ),
    }
}

/// Checks that cpu, memory and pids are usable in the host's cgroup layout.
pub fn check_required_controllers() -> Finding {
    const NAME: &str = "cgroup controllers";
    let unusable = find_unusable(REQUIRED);
    if unusable.is_empty() {
        Finding::ok(NAME, REQUIRED.join(", "))
    } else {
        let (detail, fix) = describe_unusable(&unusable);
        Finding::fail(NAME, detail, fix)
    }
}

/// Checks cpuset, hugetlb and blkio (v1) or io (v2); pods that set their limits need them.
pub fn check_optional_controllers() -> Finding {
    const NAME: &str = "optional cgroup controllers";
    let controllers = if read_layout() == Layout::Unified {
        OPTIONAL_V2
    } else {
        OPTIONAL_V1
    };
    let unusable = find_unusable(controllers);
    if unusable.is_empty() {
        Finding::ok(NAME, controllers.join(", "))
    } else {
        let (detail, fix) = describe_unusable(&unusable);
        Finding::warn(NAME, detail, fix)
    }
}

/// Reports the cgroup driver that `berth serve` would use and the pod parent under it, and
/// fails when the configured driver cannot work here.
pub fn check_driver(runtime: &RuntimeConfig) -> Finding {
    const NAME: &str = "cgroup driver";
    let systemd_init = cgroups::systemd_is_running();
    let reachable = || cgroups::check_systemd().map_err(|err| err.to_string());
    let configured: Option<DriverKind> = if runtime.cgroup_driver.is_empty() {
        None
    } else {
        match runtime.cgroup_driver.parse() {
            Ok(kind) => Some(kind),
            Err(err) => {
                return Finding::fail(
                    NAME,
                    format!("runtime.cgroup_driver: {err}"),
                    "set runtime.cgroup_driver to \"cgroupfs\", \"systemd\" or \"\" (pick at start)",
                );
            }
        }
    };

    let (driver, how) = match configured {
        Some(DriverKind::Systemd) if !systemd_init => {
            return Finding::fail(
                NAME,
                format!(
                    "systemd is configured, but PID 1 is {}, not systemd",
                    pid1_name()
                ),
                "set runtime.cgroup_driver = \"cgroupfs\" and start the kubelet with --cgroup-driver=cgroupfs",
            );
        }
        Some(DriverKind::Systemd) => {
            if let Err(err) = reachable() {
                return Finding::fail(
                    NAME,
                    format!("systemd is configured, but {err}"),
                    "make /run/systemd/private or /run/dbus/system_bus_socket reachable (mount /run/systemd into Berth's container), or set runtime.cgroup_driver = \"cgroupfs\"",
                );
            }
            (DriverKind::Systemd, "configured".to_string())
        }
        Some(DriverKind::Cgroupfs) => (DriverKind::Cgroupfs, "configured".to_string()),
        None => {
            let (kind, reason) = cgroups::pick_driver();
            (kind, format!("picked: {reason}"))
        }
    };

    let parent = if runtime.cgroup_parent.is_empty() {
        driver.default_parent()
    } else {
        runtime.cgroup_parent.as_str()
    };
    if let Err(err) = check_cgroup_parent(driver, parent) {
        return Finding::fail(
            NAME,
            format!("{driver} ({how}), but runtime.cgroup_parent {parent:?} does not suit it"),
            err,
        );
    }
    let detail = format!(
        "{driver} ({how}); pods without a parent go under {parent}; start the kubelet with --cgroup-driver={driver}"
    );
    if driver == DriverKind::Cgroupfs && systemd_init {
        return Finding::warn(
            NAME,
            format!(
                "{detail}; systemd also manages cgroups here and may undo changes it does not know of"
            ),
            "set runtime.cgroup_driver = \"systemd\" and start the kubelet with --cgroup-driver=systemd",
        );
    }
    Finding::ok(NAME, detail)
}

/// Returns the name of PID 1, such as `systemd` or `bash`.
fn pid1_name() -> String {
    std::fs::read_to_string("/proc/1/comm")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Returns true when cgroup v1 controllers are mounted next to a cgroup2 hierarchy.
pub fn is_hybrid() -> bool {
    read_layout() == Layout::Hybrid
}

fn read_layout() -> Layout {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    layout_of(&parse_mountinfo(&mountinfo))
}

/// Derives the layout from the filesystem type mounted on /sys/fs/cgroup. mountinfo names the
/// type that statfs(2) reports as CGROUP2_SUPER_MAGIC (0x63677270) `cgroup2`.
fn layout_of(mounts: &[Mount]) -> Layout {
    // A later line for the same mount point is mounted over the earlier ones.
    let type_at = |point: &str| {
        mounts
            .iter()
            .rev()
            .find(|mount| mount.mount_point == point)
            .map(|mount| mount.fs_type.as_str())
    };
    if type_at(CGROUP_ROOT) == Some("cgroup2") {
        Layout::Unified
    } else if !mounts.iter().any(|mount| mount.fs_type == "cgroup") {
        Layout::Unmounted
    } else if type_at("/sys/fs/cgroup/unified") == Some("cgroup2") {
        Layout::Hybrid
    } else {
        Layout::Legacy
    }
}

/// Returns each of `controllers` that cannot be used, with the reason.
fn find_unusable(controllers: &[&'static str]) -> Vec<(&'static str, Unusable)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = parse_mountinfo(&mountinfo);
    if layout_of(&mounts) == Layout::Unified {
        let path = format!("{CGROUP_ROOT}/cgroup.controllers");
        let available = std::fs::read_to_string(path).unwrap_or_default();
        return unusable_v2(controllers, &available);
    }
    let proc_cgroups = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
    unusable_v1(controllers, &parse_proc_cgroups(&proc_cgroups), &mounts)
}

/// In v2, a controller is usable when the root's cgroup.controllers lists it.
fn unusable_v2(
    controllers: &[&'static str],
    cgroup_controllers: &str,
) -> Vec<(&'static str, Unusable)> {
    let available: Vec<&str> = cgroup_controllers.split_whitespace().collect();
    controllers
        .iter()
        .filter(|name| !available.contains(name))
        .map(|name| (*name, Unusable::NotInV2Root))
        .collect()
}

/// In v1, a controller is usable when /proc/cgroups enables it and a cgroup v1 hierarchy is
/// mounted with it.
fn unusable_v1(
    controllers: &[&'static str],
    proc_cgroups: &[(String, bool)],
    mounts: &[Mount],
) -> Vec<(&'static str, Unusable)> {
    let is_mounted = |name: &str| {
        mounts
            .iter()
            .filter(|mount| mount.fs_type == "cgroup")
            .any(|mount| mount.super_options.split(',').any(|option| option == name))
    };
    let mut unusable = Vec::new();
    for &name in controllers {
        let enabled = proc_cgroups
            .iter()
            .find(|(listed, _)| listed == name)
            .map(|(_, enabled)| *enabled);
        let reason = match enabled {
            None => Unusable::Missing,
            Some(false) => Unusable::Disabled,
            Some(true) if !is_mounted(name) => Unusable::NotMounted,
            Some(true) => continue,
        };
        unusable.push((name, reason));
    }
    unusable
}

/// Describes unusable controllers and the fix for each, for a finding's detail and fix.
fn describe_unusable(unusable: &[(&str, Unusable)]) -> (String, String) {
    let mut details = Vec::new();
    let mut fixes = Vec::new();
    for &(name, reason) in unusable {
        let (detail, fix) = match reason {
            Unusable::Missing => (
                "not in /proc/cgroups",
                format!("a kernel built with {}", kernel_option(name)),
            ),
            Unusable::Disabled => (
                "disabled in /proc/cgroups",
                format!("boot with cgroup_enable={name} and without cgroup_disable={name}"),
            ),
            Unusable::NotMounted => (
                "enabled but not mounted",
                format!(
                    "mkdir -p {CGROUP_ROOT}/{name} && mount -t cgroup -o {name} cgroup {CGROUP_ROOT}/{name}"
                ),
            ),
            Unusable::NotInV2Root => (
                "not in /sys/fs/cgroup/cgroup.controllers",
                format!(
                    "a kernel built with {}, and no cgroup v1 hierarchy mounted with {name}",
                    kernel_option(name)
                ),
            ),
        };
        details.push(format!("{name} {detail}"));
        fixes.push(fix);
    }
    (details.join(", "), fixes.join("; "))
}

/// Returns the kernel option that builds a controller in.
fn kernel_option(controller: &str) -> &'static str {
    match controller {
        "cpu" => "CONFIG_CGROUP_SCHED",
        "memory" => "CONFIG_MEMCG",
        "pids" => "CONFIG_CGROUP_PIDS",
        "cpuset" => "CONFIG_CPUSETS",
        "hugetlb" => "CONFIG_CGROUP_HUGETLB",
        "blkio" | "io" => "CONFIG_BLK_CGROUP",
        _ => "the controller",
    }
}

/// Parses /proc/cgroups into (controller, enabled) pairs. Its columns are `subsys_name`,
/// `hierarchy`, `num_cgroups` and `enabled`, after a `#` header line.
fn parse_proc_cgroups(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [name, _hierarchy, _count, enabled] => Some((name.to_string(), *enabled == "1")),
                _ => None,
            }
        })
        .collect()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// Parses one mountinfo line (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS
/// [OPTIONAL...] - FS_TYPE SOURCE SUPER_OPTIONS`. The optional fields vary in number, so the
/// ` - ` separator splits the line.
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut after = after.split(' ');
    let fs_type = after.next()?;
    let _source = after.next()?;
    let super_options = after.next()?;
    Some(Mount {
        mount_point: unescape_octal(mount_point),
        fs_type: fs_type.to_string(),
        super_options: super_options.to_string(),
    })
}

/// Undoes mountinfo's escaping of space, tab, newline and backslash as `\040`, `\011`, `\012`
/// and `\134`.
fn unescape_octal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(index) = rest.find('\\') {
        out.push_str(&rest[..index]);
        let code = rest
            .get(index + 1..index + 4)
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[index + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[index + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/cgroups of a cgroup v1 host where hugetlb is enabled but unmounted and pids is
    /// disabled.
    const PROC_CGROUPS: &str = "\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t1\t1
cpuacct\t2\t1\t1
blkio\t7\t1\t1
memory\t4\t37\t1
hugetlb\t0\t1\t1
pids\t0\t1\t0
";

    /// mountinfo of a hybrid host where cpu and cpuacct are separate hierarchies.
    const MOUNTINFO: &str = "\
24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:7 master:2 - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn proc_cgroups_parses_enabled_column() {
        let parsed = parse_proc_cgroups(PROC_CGROUPS);

        assert_eq!(parsed.len(), 7);
        assert_eq!(parsed[0], ("cpuset".to_string(), true));
        assert!(parsed.contains(&("hugetlb".to_string(), true)));
        assert!(parsed.contains(&("pids".to_string(), false)));
    }

    #[test]
    fn proc_cgroups_skips_malformed_lines() {
        let parsed = parse_proc_cgroups("#subsys_name\thierarchy\ncpu 1 1\n\nmemory 4 2 1\n");

        assert_eq!(parsed, vec![("memory".to_string(), true)]);
    }

    #[test]
    fn mountinfo_line_with_optional_fields() {
        let line = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:7 master:2 - cgroup cgroup rw,memory";

        let mount = parse_mountinfo_line(line).unwrap();

        assert_eq!(mount.mount_point, "/sys/fs/cgroup/memory");
        assert_eq!(mount.fs_type, "cgroup");
        assert_eq!(mount.super_options, "rw,memory");
    }

    #[test]
    fn mountinfo_line_unescapes_mount_point() {
        let line = r"90 24 0:50 / /mnt/with\040space\134x rw - tmpfs none rw";

        let mount = parse_mountinfo_line(line).unwrap();

        assert_eq!(mount.mount_point, r"/mnt/with space\x");
        assert_eq!(mount.fs_type, "tmpfs");
    }

    #[test]
    fn mountinfo_line_without_separator_is_skipped() {
        assert_eq!(parse_mountinfo_line("31 23 0:28 / /sys/fs/cgroup rw"), None);
        assert_eq!(parse_mountinfo_line(""), None);
    }

    #[test]
    fn layout_detects_hybrid_unified_legacy() {
        let hybrid = parse_mountinfo(MOUNTINFO);
        assert_eq!(layout_of(&hybrid), Layout::Hybrid);

        let unified = parse_mountinfo(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(layout_of(&unified), Layout::Unified);

        let legacy = parse_mountinfo(
            "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
        );
        assert_eq!(layout_of(&legacy), Layout::Legacy);

        assert_eq!(layout_of(&parse_mountinfo("")), Layout::Unmounted);
    }

    #[test]
    fn layout_uses_topmost_mount() {
        let stacked = parse_mountinfo(
            "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
             32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
             50 31 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        );

        assert_eq!(layout_of(&stacked), Layout::Unified);
    }

    #[test]
    fn v1_controller_needs_enabled_and_mounted() {
        let proc_cgroups = parse_proc_cgroups(PROC_CGROUPS);
        let mounts = parse_mountinfo(MOUNTINFO);

        let unusable = unusable_v1(
            &["cpu", "memory", "pids", "hugetlb", "blkio", "rdma"],
            &proc_cgroups,
            &mounts,
        );

        assert_eq!(
            unusable,
            vec![
                ("pids", Unusable::Disabled),
                ("hugetlb", Unusable::NotMounted),
                ("rdma", Unusable::Missing),
            ]
        );
    }

    #[test]
    fn v1_mount_options_match_whole_names() {
        let proc_cgroups = vec![("systemd".to_string(), true)];
        let mounts = parse_mountinfo(MOUNTINFO);

        let unusable = unusable_v1(&["systemd"], &proc_cgroups, &mounts);

        assert_eq!(unusable, vec![("systemd", Unusable::NotMounted)]);
    }

    #[test]
    fn v2_controller_needs_root_listing() {
        let unusable = unusable_v2(&["cpu", "memory", "pids", "io"], "cpuset cpu io memory\n");

        assert_eq!(unusable, vec![("pids", Unusable::NotInV2Root)]);
    }

    #[test]
    fn unusable_description_names_each_fix() {
        let (detail, fix) = describe_unusable(&[
            ("pids", Unusable::Disabled),
            ("hugetlb", Unusable::NotMounted),
        ]);

        assert_eq!(
            detail,
            "pids disabled in /proc/cgroups, hugetlb enabled but not mounted"
        );
        assert!(fix.contains("cgroup_disable=pids"), "{fix}");
        assert!(
            fix.contains("mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb"),
            "{fix}"
        );
    }
}
