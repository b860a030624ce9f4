//! Hierarchy detection from mountinfo samples and from directories laid out like cgroupfs.

use super::*;
use crate::cgroups::detect::{Layout, V1Mounts};

/// A v1 host with each controller mounted on its own and an empty cgroup2 at `unified`, as
/// Berth's test machines have it.
const SEPARATE_V1: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// A systemd hybrid host with the usual joined mounts.
const JOINED_V1: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,net_cls,net_prio
32 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
";

const PURE_V2: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

fn v1_mounts(hierarchy: &Hierarchy) -> &V1Mounts {
    match &hierarchy.layout {
        Layout::V1(mounts) => mounts,
        Layout::V2 { .. } => panic!("expected cgroup v1, got {hierarchy:?}"),
    }
}

#[test]
fn separate_v1_mounts() {
    let hierarchy = Hierarchy::from_mountinfo(SEPARATE_V1).unwrap();

    assert_eq!(hierarchy.version(), CgroupVersion::V1);
    for controller in ["cpu", "cpuacct", "cpuset", "memory", "pids", "blkio"] {
        assert_eq!(
            hierarchy.mount_point(controller),
            Some(Path::new(&format!("/sys/fs/cgroup/{controller}"))),
            "{controller}"
        );
    }
    assert_eq!(hierarchy.mount_point("hugetlb"), None);
    let mounts = v1_mounts(&hierarchy);
    assert_eq!(mounts.hierarchies.len(), 9, "{:?}", mounts.hierarchies);
    assert!(
        mounts
            .hierarchies
            .contains(&PathBuf::from("/sys/fs/cgroup/systemd"))
    );
    assert_eq!(
        mounts.unified.as_deref(),
        Some(Path::new("/sys/fs/cgroup/unified"))
    );
}

#[test]
fn joined_v1_mounts() {
    let hierarchy = Hierarchy::from_mountinfo(JOINED_V1).unwrap();

    let joined = Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"));
    assert_eq!(hierarchy.mount_point("cpu"), joined);
    assert_eq!(hierarchy.mount_point("cpuacct"), joined);
    assert_eq!(
        hierarchy.mount_point("net_prio"),
        Some(Path::new("/sys/fs/cgroup/net_cls,net_prio"))
    );
    assert_eq!(
        hierarchy.mount_point("xattr"),
        None,
        "a mount option is no controller"
    );
    assert_eq!(v1_mounts(&hierarchy).hierarchies.len(), 4);
}

#[test]
fn pure_v2() {
    let hierarchy = Hierarchy::from_mountinfo(PURE_V2).unwrap();

    assert_eq!(hierarchy.version(), CgroupVersion::V2);
    assert_eq!(
        hierarchy.mount_point("memory"),
        Some(Path::new("/sys/fs/cgroup"))
    );
}

#[test]
fn v2_elsewhere_without_v1() {
    let mountinfo = "30 1 0:40 / /run/cgroup\\040two rw - cgroup2 none rw\n";

    let hierarchy = Hierarchy::from_mountinfo(mountinfo).unwrap();

    assert_eq!(hierarchy.version(), CgroupVersion::V2);
    assert_eq!(
        hierarchy.mount_point("cpu"),
        Some(Path::new("/run/cgroup two")),
        "octal escapes must be decoded"
    );
}

#[test]
fn no_cgroup_mount() {
    let mountinfo = "22 1 0:21 / /sys rw - sysfs sysfs rw\n";

    let err = Hierarchy::from_mountinfo(mountinfo).unwrap_err();

    assert!(matches!(err, CgroupError::NoHierarchy { .. }), "{err}");
}

#[test]
fn detect_reads_this_host() {
    let hierarchy = Hierarchy::detect().unwrap();

    assert!(hierarchy.mount_point("memory").is_some(), "{hierarchy:?}");
}

#[test]
fn at_follows_symlinks_once() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("cpu,cpuacct")).unwrap();
    fs::create_dir(root.path().join("memory")).unwrap();
    fs::create_dir(root.path().join("unified")).unwrap();
    std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
    let canonical = root.path().canonicalize().unwrap();

    let hierarchy = Hierarchy::at(root.path(), CgroupVersion::V1).unwrap();

    let joined = canonical.join("cpu,cpuacct");
    assert_eq!(hierarchy.mount_point("cpu"), Some(joined.as_path()));
    assert_eq!(hierarchy.mount_point("cpuacct"), Some(joined.as_path()));
    let mounts = v1_mounts(&hierarchy);
    assert_eq!(
        mounts.hierarchies,
        [joined.clone(), canonical.join("memory")],
        "the symlink must not add a second hierarchy"
    );
    assert_eq!(mounts.unified, Some(canonical.join("unified")));
}
