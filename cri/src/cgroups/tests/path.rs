//! Cgroup path validation and the kernel's CPU list format.

use super::*;
use crate::cgroups::cpuset::IdList;

#[test]
fn valid_paths() {
    for path in [
        "/a",
        "/kubepods/burstable/pod1",
        "/a.b/c-d/e_f",
        "/berth-cgtest-1f2e",
    ] {
        assert_eq!(cgroup(path).as_str(), path);
    }
}

#[test]
fn invalid_paths() {
    let cases = [
        ("", "must be absolute"),
        ("a/b", "must be absolute"),
        ("/", "must name a cgroup below the root"),
        (
            "//a",
            "must not have empty components (a doubled or trailing /)",
        ),
        (
            "/a//b",
            "must not have empty components (a doubled or trailing /)",
        ),
        (
            "/a/",
            "must not have empty components (a doubled or trailing /)",
        ),
        ("/a/../b", "must not contain . or .. components"),
        ("/./a", "must not contain . or .. components"),
        ("/a\0b", "must not contain a NUL byte"),
    ];

    for (path, expected) in cases {
        match CgroupPath::new(path) {
            Err(CgroupError::InvalidPath { reason, .. }) => {
                assert_eq!(reason, expected, "path {path:?}")
            }
            other => panic!("path {path:?}: expected InvalidPath, got {other:?}"),
        }
    }
}

#[test]
fn overlong_component_rejected() {
    let path = format!("/{}", "a".repeat(256));

    assert!(CgroupPath::new(&path).is_err());
    assert!(CgroupPath::new(&format!("/{}", "a".repeat(255))).is_ok());
}

#[test]
fn parent_join_and_components() {
    let path = cgroup("/kubepods/burstable/pod1");

    assert_eq!(path.parent(), Some(cgroup("/kubepods/burstable")));
    assert_eq!(cgroup("/kubepods").parent(), None);
    assert_eq!(
        path.join("ctr").unwrap(),
        cgroup("/kubepods/burstable/pod1/ctr")
    );
    assert!(path.join("..").is_err());
    assert!(path.join("a/b").is_err());
    assert_eq!(
        path.components().collect::<Vec<_>>(),
        ["kubepods", "burstable", "pod1"]
    );
}

#[test]
fn id_list_round_trip() {
    let cases = [
        ("0", "0"),
        ("0-3", "0-3"),
        ("3,1,2,0", "0-3"),
        ("0-1,4-5,8", "0-1,4-5,8"),
        ("0-2,1-4", "0-4"),
        ("  0-1\n", "0-1"),
        ("", ""),
    ];

    for (text, formatted) in cases {
        assert_eq!(
            IdList::parse(text).unwrap().to_string(),
            formatted,
            "{text:?}"
        );
    }
}

#[test]
fn id_list_missing_from() {
    let online = IdList::parse("0-3,8-11").unwrap();
    let missing = |text: &str| {
        IdList::parse(text)
            .unwrap()
            .missing_from(&online)
            .map(|list| list.to_string())
    };

    assert_eq!(missing("1-2,9"), None);
    assert_eq!(missing("0-11"), Some("4-7".to_string()));
    assert_eq!(missing("12"), Some("12".to_string()));
    assert_eq!(missing("3-8"), Some("4-7".to_string()));
}

#[test]
fn host_topology_reads_sysfs() {
    let host = HostTopology::read().unwrap();

    assert!(!host.cpus.is_empty(), "no online CPU in {host:?}");
    assert!(!host.mems.is_empty(), "no online memory node in {host:?}");
}
