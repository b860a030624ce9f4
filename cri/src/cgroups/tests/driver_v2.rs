//! The cgroupfs driver on a fake cgroup v2 layout: controller enabling, the exact values it
//! writes, and the v1-to-v2 conversions.

use super::*;

const POD: &str = "/berth/burstable/pod1";

#[test]
fn create_writes_every_resource() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    let mut resources = every_resource();
    resources
        .unified
        .insert("memory.high".to_string(), "50331648".to_string());

    fake.driver().create(&cgroup(POD), &resources).unwrap();

    assert_eq!(fake.read(POD, "memory.max"), "67108864");
    assert_eq!(
        fake.read(POD, "memory.swap.max"),
        "33554432",
        "swap.max is memory+swap minus memory"
    );
    assert_eq!(fake.read(POD, "cpu.weight"), "20");
    assert_eq!(fake.read(POD, "cpu.max"), "50000 100000");
    assert_eq!(fake.read(POD, "cpuset.cpus"), "1-2");
    assert_eq!(fake.read(POD, "cpuset.mems"), "0");
    assert_eq!(fake.read(POD, "pids.max"), "32");
    assert_eq!(fake.read(POD, "hugetlb.2MB.max"), "4194304");
    assert_eq!(fake.read(POD, "hugetlb.2MB.rsvd.max"), "4194304");
    assert_eq!(fake.read(POD, "memory.high"), "50331648");
}

#[test]
fn create_enables_controllers_in_ancestors() {
    let fake = FakeV2::new();
    fake.prepare(POD);

    fake.driver()
        .create(&cgroup(POD), &Resources::default())
        .unwrap();

    let all = "+cpu +cpuset +hugetlb +io +memory +pids";
    assert_eq!(fake.read("/", "cgroup.subtree_control"), all);
    assert_eq!(fake.read("/berth", "cgroup.subtree_control"), all);
    assert_eq!(fake.read("/berth/burstable", "cgroup.subtree_control"), all);
    assert_eq!(
        fake.read(POD, "cgroup.subtree_control"),
        "",
        "the leaf's own subtree_control belongs to whoever creates its children"
    );
}

#[test]
fn create_enables_only_missing_controllers() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    fake.write(
        "/",
        "cgroup.subtree_control",
        "cpuset cpu io memory hugetlb pids",
    );
    fake.write("/berth", "cgroup.subtree_control", "cpu memory");

    fake.driver()
        .create(&cgroup(POD), &Resources::default())
        .unwrap();

    assert_eq!(
        fake.read("/", "cgroup.subtree_control"),
        "cpuset cpu io memory hugetlb pids",
        "a level with every controller enabled must not be written"
    );
    assert_eq!(
        fake.read("/berth", "cgroup.subtree_control"),
        "+cpuset +hugetlb +io +pids"
    );
}

#[test]
fn shares_to_weight_conversion() {
    for (shares, weight) in [
        (0, 1),
        (1, 1),
        (2, 1),
        (512, 20),
        (1024, 39),
        (2048, 79),
        (262_144, 10_000),
        (1_000_000, 10_000),
    ] {
        assert_eq!(cpu_shares_to_weight(shares), weight, "shares {shares}");
    }
}

#[test]
fn shares_written_as_weight() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    let driver = fake.driver();

    for (shares, weight) in [(2, "1"), (1024, "39"), (262_144, "10000")] {
        let resources = Resources {
            cpu_shares: Some(shares),
            ..Resources::default()
        };
        driver.update(&cgroup(POD), &resources).unwrap();
        assert_eq!(fake.read(POD, "cpu.weight"), weight, "shares {shares}");
    }
}

#[test]
fn swap_converted_to_swap_max() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    let driver = fake.driver();
    let cases = [
        (
            Some(Limit::Value(64 * MIB)),
            Some(Limit::Value(64 * MIB)),
            "67108864",
            "0",
        ),
        (
            Some(Limit::Value(64 * MIB)),
            Some(Limit::Value(192 * MIB)),
            "67108864",
            "134217728",
        ),
        (
            Some(Limit::Value(64 * MIB)),
            Some(Limit::Unlimited),
            "67108864",
            "max",
        ),
        (Some(Limit::Unlimited), None, "max", "max"),
        (Some(Limit::Unlimited), Some(Limit::Unlimited), "max", "max"),
    ];

    for (memory, swap, memory_max, swap_max) in cases {
        fake.write(POD, "memory.max", "1");
        fake.write(POD, "memory.swap.max", "1");
        let resources = Resources {
            memory_limit_bytes: memory,
            memory_swap_limit_bytes: swap,
            ..Resources::default()
        };
        driver.update(&cgroup(POD), &resources).unwrap();
        assert_eq!(
            fake.read(POD, "memory.max"),
            memory_max,
            "{memory:?} {swap:?}"
        );
        assert_eq!(
            fake.read(POD, "memory.swap.max"),
            swap_max,
            "{memory:?} {swap:?}"
        );
    }
}

#[test]
fn memory_limit_alone_leaves_swap_max() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    fake.write(POD, "memory.swap.max", "12345");
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        ..Resources::default()
    };

    fake.driver().update(&cgroup(POD), &resources).unwrap();

    assert_eq!(fake.read(POD, "memory.max"), "67108864");
    assert_eq!(fake.read(POD, "memory.swap.max"), "12345");
}

#[test]
fn swap_skipped_without_swap_file() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    fake.remove(POD, "memory.swap.max");
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        memory_swap_limit_bytes: Some(Limit::Value(128 * MIB)),
        ..Resources::default()
    };

    fake.driver().update(&cgroup(POD), &resources).unwrap();

    assert_eq!(fake.read(POD, "memory.max"), "67108864");
    assert!(!fake.dir(POD).join("memory.swap.max").exists());
}

#[test]
fn cpu_max_forms() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    let driver = fake.driver();
    let cases = [
        (Some(Limit::Value(50_000)), None, "50000"),
        (Some(Limit::Value(20_000)), Some(50_000), "20000 50000"),
        (Some(Limit::Unlimited), Some(100_000), "max 100000"),
        (Some(Limit::Unlimited), None, "max"),
    ];

    for (quota, period, expected) in cases {
        let resources = Resources {
            cpu_quota_us: quota,
            cpu_period_us: period,
            ..Resources::default()
        };
        driver.update(&cgroup(POD), &resources).unwrap();
        assert_eq!(fake.read(POD, "cpu.max"), expected, "{quota:?} {period:?}");
    }
}

#[test]
fn cpu_period_alone_keeps_quota() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    fake.write(POD, "cpu.max", "25000 100000\n");
    let resources = Resources {
        cpu_period_us: Some(50_000),
        ..Resources::default()
    };

    fake.driver().update(&cgroup(POD), &resources).unwrap();

    assert_eq!(fake.read(POD, "cpu.max"), "25000 50000");
}

#[test]
fn missing_controller_is_reported() {
    let fake = FakeV2::new();
    fake.prepare_with(POD, "cpu memory");
    let resources = Resources {
        pids_limit: Some(Limit::Value(32)),
        ..Resources::default()
    };

    let err = fake.driver().update(&cgroup(POD), &resources).unwrap_err();

    match &err {
        CgroupError::ControllerMissing {
            controller, path, ..
        } => {
            assert_eq!(*controller, "pids");
            assert_eq!(path, POD);
        }
        other => panic!("expected ControllerMissing, got {other}"),
    }
    assert_eq!(fake.read(POD, "pids.max"), "max");
}

#[test]
fn hugepages_skipped_without_hugetlb() {
    let fake = FakeV2::new();
    fake.prepare_with(POD, "cpu memory pids");
    let resources = Resources {
        hugepage_limits: [("2MB".to_string(), 4 * MIB)].into(),
        ..Resources::default()
    };

    fake.driver().update(&cgroup(POD), &resources).unwrap();

    assert_eq!(fake.read(POD, "hugetlb.2MB.max"), "max");
}

#[test]
fn unified_key_of_disabled_controller() {
    let fake = FakeV2::new();
    fake.prepare_with(POD, "cpu memory");
    let resources = Resources {
        unified: [("io.weight".to_string(), "200".to_string())].into(),
        ..Resources::default()
    };

    let err = fake.driver().update(&cgroup(POD), &resources).unwrap_err();

    assert!(
        matches!(
            err,
            CgroupError::ControllerMissing {
                controller: "io",
                field: "unified",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unified_key_of_unknown_file() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    let resources = Resources {
        unified: [("nosuch.file".to_string(), "1".to_string())].into(),
        ..Resources::default()
    };

    let err = fake.driver().update(&cgroup(POD), &resources).unwrap_err();

    assert!(
        matches!(
            err,
            CgroupError::Invalid {
                field: "unified",
                ..
            }
        ),
        "{err}"
    );
    assert!(!fake.dir(POD).join("nosuch.file").exists());
}

#[test]
fn unified_checked_before_any_write() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        unified: [("nosuch.file".to_string(), "1".to_string())].into(),
        ..Resources::default()
    };

    fake.driver().update(&cgroup(POD), &resources).unwrap_err();

    assert_eq!(fake.read(POD, "memory.max"), "max");
}

#[test]
fn unified_overrides_typed_field() {
    let fake = FakeV2::new();
    fake.prepare(POD);
    let resources = Resources {
        pids_limit: Some(Limit::Value(32)),
        unified: [("pids.max".to_string(), "64".to_string())].into(),
        ..Resources::default()
    };

    fake.driver().update(&cgroup(POD), &resources).unwrap();

    assert_eq!(fake.read(POD, "pids.max"), "64");
}

#[test]
fn update_of_missing_cgroup_is_not_found() {
    let fake = FakeV2::new();

    let err = fake
        .driver()
        .update(&cgroup("/absent"), &Resources::default())
        .unwrap_err();

    assert!(matches!(err, CgroupError::NotFound { .. }), "{err}");
}

#[test]
fn failed_create_removes_new_leaf() {
    let fake = FakeV2::new();
    fake.prepare("/berth");
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        ..Resources::default()
    };

    // The new leaf is a plain directory without cgroup.controllers, so applying fails.
    let err = fake
        .driver()
        .create(&cgroup("/berth/pod1"), &resources)
        .unwrap_err();

    assert!(matches!(err, CgroupError::Io { .. }), "{err}");
    assert!(!fake.dir("/berth/pod1").exists(), "leaf left behind");
    assert!(fake.dir("/berth").is_dir(), "shared ancestor removed");
}

#[test]
fn remove_deletes_leaf_only() {
    let fake = FakeV2::new();
    fake.prepare("/berth");
    fs::create_dir(fake.dir("/berth/pod1")).unwrap();
    let driver = fake.driver();

    driver.remove(&cgroup("/berth/pod1")).unwrap();
    driver.remove(&cgroup("/berth/pod1")).unwrap();

    assert!(!fake.dir("/berth/pod1").exists());
    assert!(fake.dir("/berth").is_dir());
}
