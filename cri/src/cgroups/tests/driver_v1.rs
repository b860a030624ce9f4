//! The cgroupfs driver on a fake cgroup v1 layout: the exact values it writes, and what it
//! refuses before writing.

use super::*;

const POD: &str = "/berth/besteffort/pod1";

#[test]
fn create_writes_every_resource() {
    let fake = FakeV1::standard();
    fake.prepare(POD);

    fake.driver()
        .create(&cgroup(POD), &every_resource())
        .unwrap();

    assert_eq!(
        fake.read("memory", POD, "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(
        fake.read("memory", POD, "memory.memsw.limit_in_bytes"),
        "100663296"
    );
    assert_eq!(fake.read("cpu", POD, "cpu.shares"), "512");
    assert_eq!(fake.read("cpu", POD, "cpu.cfs_quota_us"), "50000");
    assert_eq!(fake.read("cpu", POD, "cpu.cfs_period_us"), "100000");
    assert_eq!(fake.read("cpuset", POD, "cpuset.cpus"), "1-2");
    assert_eq!(fake.read("cpuset", POD, "cpuset.mems"), "0");
    assert_eq!(fake.read("pids", POD, "pids.max"), "32");
    assert_eq!(
        fake.read("hugetlb", POD, "hugetlb.2MB.limit_in_bytes"),
        "4194304"
    );
    assert_eq!(
        fake.read("hugetlb", POD, "hugetlb.2MB.rsvd.limit_in_bytes"),
        "4194304"
    );
    assert_eq!(
        fake.read("hugetlb", POD, "hugetlb.1GB.limit_in_bytes"),
        V1_UNLIMITED,
        "a page size the request does not name must stay untouched"
    );
}

#[test]
fn create_with_no_resources_writes_no_limit() {
    let fake = FakeV1::standard();
    fake.prepare(POD);

    fake.driver()
        .create(&cgroup(POD), &Resources::default())
        .unwrap();

    assert_eq!(
        fake.read("memory", POD, "memory.limit_in_bytes"),
        V1_UNLIMITED
    );
    assert_eq!(fake.read("cpu", POD, "cpu.shares"), "1024");
    assert_eq!(fake.read("cpu", POD, "cpu.cfs_quota_us"), "-1");
    assert_eq!(fake.read("pids", POD, "pids.max"), "max");
}

#[test]
fn create_makes_directories_in_every_hierarchy() {
    let fake = FakeV1::new(&["cpu,cpuacct", "memory", "systemd"]);

    fake.driver()
        .create(&cgroup("/a/b"), &Resources::default())
        .unwrap();

    for hierarchy in ["cpu,cpuacct", "memory", "systemd"] {
        let dir = fake.root.path().join(hierarchy).join("a/b");
        assert!(dir.is_dir(), "{} was not created", dir.display());
    }
}

#[test]
fn create_copies_cpuset_into_new_ancestors() {
    let fake = FakeV1::standard();
    fake.prepare(POD);
    let resources = Resources {
        cpuset_cpus: Some("2".to_string()),
        ..Resources::default()
    };

    fake.driver().create(&cgroup(POD), &resources).unwrap();

    for ancestor in ["/berth", "/berth/besteffort"] {
        assert_eq!(
            fake.read("cpuset", ancestor, "cpuset.cpus"),
            "0-3",
            "{ancestor}"
        );
        assert_eq!(
            fake.read("cpuset", ancestor, "cpuset.mems"),
            "0",
            "{ancestor}"
        );
    }
    assert_eq!(fake.read("cpuset", POD, "cpuset.cpus"), "2");
    assert_eq!(
        fake.read("cpuset", POD, "cpuset.mems"),
        "0",
        "mems not in the request must still be inherited"
    );
}

#[test]
fn create_keeps_cpuset_an_ancestor_already_has() {
    let fake = FakeV1::standard();
    fake.prepare(POD);
    fake.write("cpuset", "/berth", "cpuset.cpus", "1");

    fake.driver()
        .create(&cgroup(POD), &Resources::default())
        .unwrap();

    assert_eq!(fake.read("cpuset", "/berth", "cpuset.cpus"), "1");
    assert_eq!(fake.read("cpuset", "/berth/besteffort", "cpuset.cpus"), "1");
    assert_eq!(fake.read("cpuset", POD, "cpuset.cpus"), "1");
}

#[test]
fn shares_clamped_to_kernel_range() {
    let fake = FakeV1::standard();
    fake.prepare(POD);
    let driver = fake.driver();

    for (requested, written) in [(1, "2"), (2, "2"), (1024, "1024"), (300_000, "262144")] {
        let resources = Resources {
            cpu_shares: Some(requested),
            ..Resources::default()
        };
        driver.update(&cgroup(POD), &resources).unwrap();
        assert_eq!(
            fake.read("cpu", POD, "cpu.shares"),
            written,
            "shares {requested}"
        );
    }
}

#[test]
fn unlimited_values_written_as_minus_one_or_max() {
    let fake = FakeV1::standard();
    fake.prepare(POD);
    fake.write("memory", POD, "memory.limit_in_bytes", "1048576");
    fake.write("memory", POD, "memory.memsw.limit_in_bytes", "1048576");
    fake.write("cpu", POD, "cpu.cfs_quota_us", "50000");
    fake.write("pids", POD, "pids.max", "10");
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Unlimited),
        cpu_quota_us: Some(Limit::Unlimited),
        pids_limit: Some(Limit::Unlimited),
        ..Resources::default()
    };

    fake.driver().update(&cgroup(POD), &resources).unwrap();

    assert_eq!(fake.read("memory", POD, "memory.limit_in_bytes"), "-1");
    assert_eq!(
        fake.read("memory", POD, "memory.memsw.limit_in_bytes"),
        "-1",
        "lifting the memory limit must lift memory+swap too"
    );
    assert_eq!(fake.read("cpu", POD, "cpu.cfs_quota_us"), "-1");
    assert_eq!(fake.read("pids", POD, "pids.max"), "max");
}

#[test]
fn swap_equal_to_memory_means_no_swap() {
    let fake = FakeV1::standard();
    fake.prepare(POD);
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        memory_swap_limit_bytes: Some(Limit::Value(64 * MIB)),
        ..Resources::default()
    };

    fake.driver().create(&cgroup(POD), &resources).unwrap();

    assert_eq!(
        fake.read("memory", POD, "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(
        fake.read("memory", POD, "memory.memsw.limit_in_bytes"),
        "67108864"
    );
}

#[test]
fn unlimited_swap_written_as_minus_one() {
    let fake = FakeV1::standard();
    fake.prepare(POD);
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        memory_swap_limit_bytes: Some(Limit::Unlimited),
        ..Resources::default()
    };

    fake.driver().create(&cgroup(POD), &resources).unwrap();

    assert_eq!(
        fake.read("memory", POD, "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(
        fake.read("memory", POD, "memory.memsw.limit_in_bytes"),
        "-1"
    );
}

#[test]
fn swap_skipped_without_swap_accounting() {
    let fake = FakeV1::standard();
    fake.prepare(POD);
    fs::remove_file(fake.dir("memory", POD).join("memory.memsw.limit_in_bytes")).unwrap();
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        memory_swap_limit_bytes: Some(Limit::Value(128 * MIB)),
        ..Resources::default()
    };

    fake.driver().create(&cgroup(POD), &resources).unwrap();

    assert_eq!(
        fake.read("memory", POD, "memory.limit_in_bytes"),
        "67108864"
    );
    assert!(
        !fake
            .dir("memory", POD)
            .join("memory.memsw.limit_in_bytes")
            .exists()
    );
}

#[test]
fn update_leaves_unset_fields_alone() {
    let fake = FakeV1::standard();
    fake.prepare(POD);
    let driver = fake.driver();
    driver.create(&cgroup(POD), &every_resource()).unwrap();
    let raise_memory = Resources {
        memory_limit_bytes: Some(Limit::Value(128 * MIB)),
        memory_swap_limit_bytes: Some(Limit::Value(128 * MIB)),
        ..Resources::default()
    };

    driver.update(&cgroup(POD), &raise_memory).unwrap();

    assert_eq!(
        fake.read("memory", POD, "memory.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(
        fake.read("memory", POD, "memory.memsw.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(fake.read("cpu", POD, "cpu.cfs_quota_us"), "50000");
    assert_eq!(fake.read("cpu", POD, "cpu.shares"), "512");
    assert_eq!(fake.read("pids", POD, "pids.max"), "32");
    assert_eq!(fake.read("cpuset", POD, "cpuset.cpus"), "1-2");
}

#[test]
fn update_of_missing_cgroup_is_not_found() {
    let fake = FakeV1::standard();
    let resources = Resources {
        pids_limit: Some(Limit::Value(5)),
        ..Resources::default()
    };

    let err = fake
        .driver()
        .update(&cgroup("/absent"), &resources)
        .unwrap_err();

    assert!(matches!(err, CgroupError::NotFound { .. }), "{err}");
    assert!(!fake.dir("pids", "/absent").exists());
}

#[test]
fn empty_update_of_missing_cgroup() {
    let fake = FakeV1::standard();

    let err = fake
        .driver()
        .update(&cgroup("/absent"), &Resources::default())
        .unwrap_err();

    assert!(matches!(err, CgroupError::NotFound { .. }), "{err}");
}

#[test]
fn unified_rejected_on_v1_before_mkdir() {
    let fake = FakeV1::standard();
    let resources = Resources {
        unified: [("memory.high".to_string(), "1000000".to_string())].into(),
        ..Resources::default()
    };

    let err = fake.driver().create(&cgroup(POD), &resources).unwrap_err();

    assert!(
        matches!(
            err,
            CgroupError::Unsupported {
                field: "unified",
                version: CgroupVersion::V1
            }
        ),
        "{err}"
    );
    assert!(err.is_invalid_argument());
    assert!(
        !fake.dir("memory", "/berth").exists(),
        "nothing may be created"
    );
}

#[test]
fn missing_controller_rejected_before_mkdir() {
    let fake = FakeV1::new(&["cpu", "memory"]);
    let resources = Resources {
        pids_limit: Some(Limit::Value(32)),
        ..Resources::default()
    };

    let err = fake.driver().create(&cgroup(POD), &resources).unwrap_err();

    match &err {
        CgroupError::ControllerMissing {
            controller, field, ..
        } => {
            assert_eq!(*controller, "pids");
            assert_eq!(*field, "pids_limit");
        }
        other => panic!("expected ControllerMissing, got {other}"),
    }
    assert!(
        !fake.dir("memory", "/berth").exists(),
        "nothing may be created"
    );
}

#[test]
fn invalid_value_rejected_before_mkdir() {
    let fake = FakeV1::standard();
    let resources = Resources {
        cpu_quota_us: Some(Limit::Value(500)),
        ..Resources::default()
    };

    let err = fake.driver().create(&cgroup(POD), &resources).unwrap_err();

    assert!(
        matches!(
            err,
            CgroupError::Invalid {
                field: "cpu_quota",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        !fake.dir("cpu", "/berth").exists(),
        "nothing may be created"
    );
}

#[test]
fn hugepages_skipped_without_hugetlb() {
    let fake = FakeV1::new(&["memory"]);
    fake.prepare(POD);
    let resources = Resources {
        hugepage_limits: [("2MB".to_string(), 0)].into(),
        ..Resources::default()
    };

    fake.driver().create(&cgroup(POD), &resources).unwrap();
}

#[test]
fn unknown_page_size_is_invalid() {
    let fake = FakeV1::standard();
    fake.prepare(POD);
    let resources = Resources {
        hugepage_limits: [("64KB".to_string(), 0)].into(),
        ..Resources::default()
    };

    let err = fake.driver().update(&cgroup(POD), &resources).unwrap_err();

    assert!(
        matches!(
            err,
            CgroupError::Invalid {
                field: "hugepage_limits.page_size",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("hugetlb.64KB.limit_in_bytes"),
        "{err}"
    );
}

#[test]
fn failed_create_removes_new_leaf() {
    // The memory hierarchy's directories are not prepared, so the new leaf has no interface
    // files and the first write fails.
    let fake = FakeV1::new(&["memory"]);
    fs::create_dir(fake.dir("memory", "/berth")).unwrap();
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        ..Resources::default()
    };

    let err = fake
        .driver()
        .create(&cgroup("/berth/pod1"), &resources)
        .unwrap_err();

    assert!(matches!(err, CgroupError::Write { .. }), "{err}");
    assert!(
        !fake.dir("memory", "/berth/pod1").exists(),
        "leaf left behind"
    );
    assert!(
        fake.dir("memory", "/berth").exists(),
        "shared ancestor removed"
    );
}

#[test]
fn remove_deletes_leaf_everywhere() {
    let fake = FakeV1::new(&["cpu,cpuacct", "memory", "systemd", "unified"]);
    let driver = fake.driver();
    driver
        .create(&cgroup("/berth/pod1"), &Resources::default())
        .unwrap();
    assert!(fake.root.path().join("unified/berth/pod1").is_dir());

    driver.remove(&cgroup("/berth/pod1")).unwrap();

    for hierarchy in ["cpu,cpuacct", "memory", "systemd", "unified"] {
        let hierarchy = fake.root.path().join(hierarchy);
        assert!(
            !hierarchy.join("berth/pod1").exists(),
            "{}",
            hierarchy.display()
        );
        assert!(hierarchy.join("berth").is_dir(), "{}", hierarchy.display());
    }
}

#[test]
fn remove_of_missing_cgroup_succeeds() {
    let fake = FakeV1::standard();

    fake.driver().remove(&cgroup("/absent/pod1")).unwrap();
}
