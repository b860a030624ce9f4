//! QoS classification and the kubelet's pod cgroup paths.

use super::*;

const UID: &str = "0b4c3e2a-7f1d-4a8e-9c6b-2d5f8e1a3b7c";

fn resources(memory: Option<u64>, quota: Option<u64>, shares: Option<u64>) -> Resources {
    Resources {
        memory_limit_bytes: memory.map(Limit::Value),
        cpu_quota_us: quota.map(Limit::Value),
        cpu_shares: shares,
        ..Resources::default()
    }
}

#[test]
fn qos_classification() {
    let cases = [
        (
            "nothing set",
            resources(None, None, None),
            QosClass::BestEffort,
        ),
        (
            "minimum shares",
            resources(None, None, Some(2)),
            QosClass::BestEffort,
        ),
        (
            "a CPU request",
            resources(None, None, Some(102)),
            QosClass::Burstable,
        ),
        (
            "memory limit only",
            resources(Some(MIB), None, Some(2)),
            QosClass::Burstable,
        ),
        (
            "quota only",
            resources(None, Some(50_000), Some(512)),
            QosClass::Burstable,
        ),
        // 500m: quota 50000 per 100000 µs, shares 500 * 1024 / 1000 = 512.
        (
            "request equals limit",
            resources(Some(MIB), Some(50_000), Some(512)),
            QosClass::Guaranteed,
        ),
        // 333m: shares 340 from the request, 33300 * 1024 / 100000 = 340.99 from the limit.
        (
            "rounding by one",
            resources(Some(MIB), Some(33_300), Some(341)),
            QosClass::Guaranteed,
        ),
        (
            "request below limit",
            resources(Some(MIB), Some(50_000), Some(256)),
            QosClass::Burstable,
        ),
        (
            "no shares",
            resources(Some(MIB), Some(50_000), None),
            QosClass::Burstable,
        ),
    ];

    for (name, resources, expected) in cases {
        assert_eq!(
            QosClass::from_resources(&resources),
            expected,
            "case {name}"
        );
    }
}

#[test]
fn qos_uses_period() {
    let mut guaranteed = resources(Some(MIB), Some(25_000), Some(512));
    guaranteed.cpu_period_us = Some(50_000);

    assert_eq!(QosClass::from_resources(&guaranteed), QosClass::Guaranteed);
}

#[test]
fn unlimited_counts_as_no_limit() {
    let unlimited = Resources {
        memory_limit_bytes: Some(Limit::Unlimited),
        cpu_quota_us: Some(Limit::Unlimited),
        ..Resources::default()
    };

    assert_eq!(QosClass::from_resources(&unlimited), QosClass::BestEffort);
}

#[test]
fn pod_paths_per_class() {
    let cases = [
        (QosClass::Guaranteed, format!("/kubepods/pod{UID}")),
        (QosClass::Burstable, format!("/kubepods/burstable/pod{UID}")),
        (
            QosClass::BestEffort,
            format!("/kubepods/besteffort/pod{UID}"),
        ),
    ];

    for (qos, expected) in cases {
        let path = pod_cgroup_path("/kubepods", qos, UID).unwrap();
        assert_eq!(path.as_str(), expected, "{qos}");
    }
}

#[test]
fn pod_path_under_root() {
    let path = pod_cgroup_path("/", QosClass::Burstable, "abc").unwrap();

    assert_eq!(path.as_str(), "/burstable/podabc");
}

#[test]
fn pod_path_rejects_bad_uid() {
    for uid in ["", "../x", "a/b", "a b", "a_b"] {
        let err = pod_cgroup_path("/kubepods", QosClass::Guaranteed, uid).unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::Invalid {
                    field: "pod UID",
                    ..
                }
            ),
            "uid {uid:?}: {err}"
        );
    }
}

#[test]
fn pod_path_rejects_bad_parent() {
    for parent in ["kubepods", "/kubepods/", "/a/../b", ""] {
        let err = pod_cgroup_path(parent, QosClass::Burstable, "abc").unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidPath { .. }),
            "parent {parent:?}: {err}"
        );
    }
}

#[test]
fn qos_paths() {
    let path = |qos| qos_cgroup_path("/kubepods", qos).unwrap().to_string();

    assert_eq!(path(QosClass::Guaranteed), "/kubepods");
    assert_eq!(path(QosClass::Burstable), "/kubepods/burstable");
    assert_eq!(path(QosClass::BestEffort), "/kubepods/besteffort");
}
