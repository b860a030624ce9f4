//! Conversion from the CRI's `LinuxContainerResources`, validation, sums and pod overhead.

use berth_proto::cri::{HugepageLimit, LinuxContainerResources};

use super::*;

fn convert(cri: &LinuxContainerResources) -> Result<Resources, CgroupError> {
    Resources::from_cri_on(cri, &four_cpus())
}

/// Returns the field of an `Invalid` error, failing the test on any other result.
fn invalid_field(result: Result<Resources, CgroupError>) -> &'static str {
    match result {
        Err(CgroupError::Invalid { field, .. }) => field,
        Err(other) => panic!("expected an Invalid error, got {other}"),
        Ok(resources) => panic!("expected an Invalid error, got {resources:?}"),
    }
}

#[test]
fn from_cri_converts_every_field() {
    let cri = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 * MIB as i64,
        oom_score_adj: -999,
        cpuset_cpus: "1-2".to_string(),
        cpuset_mems: "0".to_string(),
        hugepage_limits: vec![HugepageLimit {
            page_size: "2MB".to_string(),
            limit: 4 * MIB,
        }],
        unified: [("memory.high".to_string(), "50331648".to_string())].into(),
        memory_swap_limit_in_bytes: 96 * MIB as i64,
    };

    let resources = convert(&cri).unwrap();

    let mut expected = every_resource();
    expected.pids_limit = None;
    expected
        .unified
        .insert("memory.high".to_string(), "50331648".to_string());
    assert_eq!(resources, expected);
}

#[test]
fn from_cri_zero_means_unset() {
    let resources = convert(&LinuxContainerResources::default()).unwrap();

    assert_eq!(resources, Resources::default());
}

#[test]
fn from_cri_minus_one_means_unlimited() {
    let cri = LinuxContainerResources {
        memory_limit_in_bytes: -1,
        memory_swap_limit_in_bytes: -1,
        cpu_quota: -1,
        ..Default::default()
    };

    let resources = convert(&cri).unwrap();

    assert_eq!(resources.memory_limit_bytes, Some(Limit::Unlimited));
    assert_eq!(resources.memory_swap_limit_bytes, Some(Limit::Unlimited));
    assert_eq!(resources.cpu_quota_us, Some(Limit::Unlimited));
}

#[test]
fn from_cri_memory_without_swap_means_no_swap() {
    let cri = LinuxContainerResources {
        memory_limit_in_bytes: 64 * MIB as i64,
        ..Default::default()
    };

    let resources = convert(&cri).unwrap();

    assert_eq!(resources.memory_limit_bytes, Some(Limit::Value(64 * MIB)));
    assert_eq!(
        resources.memory_swap_limit_bytes,
        Some(Limit::Value(64 * MIB))
    );
}

#[test]
fn from_cri_accepts_boundaries() {
    for (quota, period) in [(1_000, 1_000), (1_000, 1_000_000), (-1, 1_000)] {
        let cri = LinuxContainerResources {
            cpu_quota: quota,
            cpu_period: period,
            ..Default::default()
        };
        convert(&cri).unwrap_or_else(|err| panic!("quota {quota} period {period}: {err}"));
    }
}

#[test]
fn from_cri_rejects_invalid_values() {
    type Edit = fn(&mut LinuxContainerResources);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "memory -2",
            |r| r.memory_limit_in_bytes = -2,
            "memory_limit_in_bytes",
        ),
        (
            "swap -5",
            |r| {
                r.memory_limit_in_bytes = 1 << 26;
                r.memory_swap_limit_in_bytes = -5;
            },
            "memory_swap_limit_in_bytes",
        ),
        (
            "swap below memory",
            |r| {
                r.memory_limit_in_bytes = 1 << 26;
                r.memory_swap_limit_in_bytes = 1 << 25;
            },
            "memory_swap_limit_in_bytes",
        ),
        (
            "swap without memory",
            |r| r.memory_swap_limit_in_bytes = 1 << 26,
            "memory_swap_limit_in_bytes",
        ),
        (
            "swap with unlimited memory",
            |r| {
                r.memory_limit_in_bytes = -1;
                r.memory_swap_limit_in_bytes = 1 << 26;
            },
            "memory_swap_limit_in_bytes",
        ),
        ("shares -1", |r| r.cpu_shares = -1, "cpu_shares"),
        ("quota -2", |r| r.cpu_quota = -2, "cpu_quota"),
        ("quota 999", |r| r.cpu_quota = 999, "cpu_quota"),
        ("quota 2^44", |r| r.cpu_quota = 1 << 44, "cpu_quota"),
        ("period -1", |r| r.cpu_period = -1, "cpu_period"),
        ("period 999", |r| r.cpu_period = 999, "cpu_period"),
        ("period 1000001", |r| r.cpu_period = 1_000_001, "cpu_period"),
        (
            "cpus offline",
            |r| r.cpuset_cpus = "2-7".into(),
            "cpuset_cpus",
        ),
        ("cpus syntax", |r| r.cpuset_cpus = "a".into(), "cpuset_cpus"),
        (
            "cpus reversed",
            |r| r.cpuset_cpus = "3-1".into(),
            "cpuset_cpus",
        ),
        (
            "cpus stride",
            |r| r.cpuset_cpus = "0-3:1/2".into(),
            "cpuset_cpus",
        ),
        (
            "cpus only commas",
            |r| r.cpuset_cpus = ",".into(),
            "cpuset_cpus",
        ),
        (
            "mems offline",
            |r| r.cpuset_mems = "1".into(),
            "cpuset_mems",
        ),
        (
            "page size MiB",
            |r| {
                r.hugepage_limits = vec![HugepageLimit {
                    page_size: "2MiB".into(),
                    limit: 0,
                }]
            },
            "hugepage_limits.page_size",
        ),
        (
            "page size twice",
            |r| {
                let limit = HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 0,
                };
                r.hugepage_limits = vec![limit.clone(), limit];
            },
            "hugepage_limits.page_size",
        ),
        (
            "hugepage limit above i64",
            |r| {
                r.hugepage_limits = vec![HugepageLimit {
                    page_size: "2MB".into(),
                    limit: u64::MAX,
                }]
            },
            "hugepage_limits.limit",
        ),
        (
            "unified traversal",
            |r| r.unified = [("../memory.max".into(), "1".into())].into(),
            "unified",
        ),
        (
            "unified without dot",
            |r| r.unified = [("memory".into(), "1".into())].into(),
            "unified",
        ),
    ];

    for (name, edit, field) in cases {
        let mut cri = LinuxContainerResources::default();
        edit(&mut cri);
        assert_eq!(invalid_field(convert(&cri)), *field, "case {name}");
    }
}

#[test]
fn invalid_error_names_value_and_reason() {
    let cri = LinuxContainerResources {
        cpuset_cpus: "0-7".to_string(),
        ..Default::default()
    };

    let err = convert(&cri).unwrap_err();

    assert!(err.is_invalid_argument());
    assert_eq!(
        err.to_string(),
        "invalid cpuset_cpus \"0-7\": CPU 4-7 is not online on this host (online: 0-3)"
    );
}

#[test]
fn validate_rejects_zero_limits() {
    for resources in [
        Resources {
            memory_limit_bytes: Some(Limit::Value(0)),
            ..Resources::default()
        },
        Resources {
            pids_limit: Some(Limit::Value(0)),
            ..Resources::default()
        },
        Resources {
            cpu_quota_us: Some(Limit::Value(0)),
            ..Resources::default()
        },
    ] {
        let err = resources.validate(&four_cpus()).unwrap_err();
        assert!(matches!(err, CgroupError::Invalid { .. }), "{resources:?}");
    }
}

#[test]
fn sum_adds_limits_set_everywhere() {
    let container = |memory: u64, quota: u64, shares: u64| Resources {
        memory_limit_bytes: Some(Limit::Value(memory * MIB)),
        memory_swap_limit_bytes: Some(Limit::Value(memory * MIB)),
        cpu_shares: Some(shares),
        cpu_quota_us: Some(Limit::Value(quota)),
        cpu_period_us: Some(100_000),
        pids_limit: Some(Limit::Value(10)),
        hugepage_limits: [("2MB".to_string(), 2 * MIB)].into(),
        ..Resources::default()
    };

    let total = Resources::sum(&[container(64, 50_000, 512), container(32, 25_000, 256)]);

    assert_eq!(total.memory_limit_bytes, Some(Limit::Value(96 * MIB)));
    assert_eq!(total.memory_swap_limit_bytes, Some(Limit::Value(96 * MIB)));
    assert_eq!(total.cpu_shares, Some(768));
    assert_eq!(total.cpu_quota_us, Some(Limit::Value(75_000)));
    assert_eq!(total.cpu_period_us, Some(100_000));
    assert_eq!(total.pids_limit, Some(Limit::Value(20)));
    assert_eq!(total.hugepage_limits, [("2MB".to_string(), 4 * MIB)].into());
}

#[test]
fn sum_with_one_unlimited_container() {
    let limited = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        cpu_quota_us: Some(Limit::Value(50_000)),
        cpu_shares: Some(512),
        ..Resources::default()
    };
    let unlimited = Resources {
        cpu_shares: Some(2),
        ..Resources::default()
    };

    let total = Resources::sum(&[limited, unlimited]);

    assert_eq!(total.memory_limit_bytes, Some(Limit::Unlimited));
    assert_eq!(total.cpu_quota_us, Some(Limit::Unlimited));
    assert_eq!(total.cpu_period_us, None);
    assert_eq!(total.cpu_shares, Some(514));
}

#[test]
fn sum_of_nothing_set_is_unset() {
    let total = Resources::sum(&[Resources::default(), Resources::default()]);

    assert_eq!(total, Resources::default());
    assert_eq!(Resources::sum(&[]), Resources::default());
}

#[test]
fn sum_rescales_differing_periods() {
    let half_cpu = Resources {
        cpu_quota_us: Some(Limit::Value(25_000)),
        cpu_period_us: Some(50_000),
        ..Resources::default()
    };
    let quarter_cpu = Resources {
        cpu_quota_us: Some(Limit::Value(25_000)),
        ..Resources::default()
    };

    let total = Resources::sum(&[half_cpu, quarter_cpu]);

    assert_eq!(total.cpu_quota_us, Some(Limit::Value(75_000)));
    assert_eq!(total.cpu_period_us, Some(100_000));
}

#[test]
fn sum_unions_cpusets() {
    let on = |cpus: &str| Resources {
        cpuset_cpus: Some(cpus.to_string()),
        cpuset_mems: Some("0".to_string()),
        ..Resources::default()
    };

    let total = Resources::sum(&[on("0-1"), on("3"), on("2")]);
    assert_eq!(total.cpuset_cpus.as_deref(), Some("0-3"));
    assert_eq!(total.cpuset_mems.as_deref(), Some("0"));

    let partly = Resources::sum(&[on("0"), Resources::default()]);
    assert_eq!(partly.cpuset_cpus, None, "one container may use every CPU");
}

#[test]
fn sum_leaves_unified_out() {
    let with_unified = Resources {
        unified: [("memory.high".to_string(), "1".to_string())].into(),
        ..Resources::default()
    };

    assert!(Resources::sum(&[with_unified]).unified.is_empty());
}

#[test]
fn overhead_raises_set_limits() {
    let mut pod = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        memory_swap_limit_bytes: Some(Limit::Value(64 * MIB)),
        cpu_shares: Some(512),
        cpu_quota_us: Some(Limit::Value(50_000)),
        cpu_period_us: Some(100_000),
        ..Resources::default()
    };
    let overhead = Resources {
        memory_limit_bytes: Some(Limit::Value(16 * MIB)),
        cpu_shares: Some(102),
        cpu_quota_us: Some(Limit::Value(5_000)),
        cpu_period_us: Some(50_000),
        ..Resources::default()
    };

    pod.add_overhead(&overhead);

    assert_eq!(pod.memory_limit_bytes, Some(Limit::Value(80 * MIB)));
    assert_eq!(
        pod.memory_swap_limit_bytes,
        Some(Limit::Value(80 * MIB)),
        "a pod without swap must stay without swap"
    );
    assert_eq!(pod.cpu_shares, Some(614));
    assert_eq!(
        pod.cpu_quota_us,
        Some(Limit::Value(60_000)),
        "5000 µs per 50000 µs is 10000 µs per 100000 µs"
    );
}

#[test]
fn overhead_leaves_unlimited_alone() {
    let mut pod = Resources {
        memory_limit_bytes: Some(Limit::Unlimited),
        ..Resources::default()
    };
    let overhead = Resources {
        memory_limit_bytes: Some(Limit::Value(16 * MIB)),
        cpu_shares: Some(102),
        cpu_quota_us: Some(Limit::Value(5_000)),
        ..Resources::default()
    };

    pod.add_overhead(&overhead);

    assert_eq!(pod.memory_limit_bytes, Some(Limit::Unlimited));
    assert_eq!(pod.cpu_quota_us, None);
    assert_eq!(pod.cpu_shares, Some(102));
}
