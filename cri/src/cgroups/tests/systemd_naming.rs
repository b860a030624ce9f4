//! The systemd driver's names and paths, the driver choice's checks, and the unit properties
//! that express a pod's resources.

use super::systemd::unit_properties;
use super::*;
use crate::cgroups::dbus::Value;

const UID: &str = "0b4c3e2a-7f1d-4a8e-9c6b-2d5f8e1a3b7c";
const ESCAPED: &str = "0b4c3e2a_7f1d_4a8e_9c6b_2d5f8e1a3b7c";

#[test]
fn slice_names_expand_into_their_ancestors() {
    let cases = [
        ("berth.slice", "/berth.slice"),
        (
            "kubepods-besteffort.slice",
            "/kubepods.slice/kubepods-besteffort.slice",
        ),
        (
            "kubepods-burstable-podab_cd.slice",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podab_cd.slice",
        ),
    ];
    for (slice, path) in cases {
        assert_eq!(slice_path(slice).unwrap().as_str(), path, "{slice}");
    }
}

#[test]
fn malformed_slice_names_are_rejected() {
    for slice in [
        "berth",
        "-.slice",
        ".slice",
        "-berth.slice",
        "berth-.slice",
        "a--b.slice",
        "a/b.slice",
        "a b.slice",
        "a.scope",
    ] {
        let err = slice_path(slice).expect_err(slice);
        assert!(err.is_invalid_argument(), "{slice}: {err}");
    }
}

#[test]
fn pod_slices_follow_the_kubelet_naming() {
    let cases = [
        (QosClass::Guaranteed, format!("kubepods-pod{ESCAPED}.slice")),
        (
            QosClass::Burstable,
            format!("kubepods-burstable-pod{ESCAPED}.slice"),
        ),
        (
            QosClass::BestEffort,
            format!("kubepods-besteffort-pod{ESCAPED}.slice"),
        ),
    ];
    for (qos, name) in cases {
        assert_eq!(pod_slice_name("kubepods.slice", qos, UID).unwrap(), name);
    }
    let path = DriverKind::Systemd
        .pod_path("kubepods.slice", QosClass::Burstable, UID)
        .unwrap();
    assert_eq!(
        path.as_str(),
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ESCAPED}.slice")
    );
    assert!(pod_slice_name("kubepods.slice", QosClass::Burstable, "a/b").is_err());
    assert!(pod_slice_name("/kubepods", QosClass::Burstable, UID).is_err());
}

#[test]
fn container_paths_per_driver() {
    let pod = CgroupPath::new("/kubepods/burstable/pod1").unwrap();
    let (spec, path) = DriverKind::Cgroupfs.container_paths(&pod, "c1").unwrap();
    assert_eq!(spec, "/kubepods/burstable/pod1/c1");
    assert_eq!(path.as_str(), "/kubepods/burstable/pod1/c1");

    let pod = slice_path("kubepods-burstable-pod1.slice").unwrap();
    let (spec, path) = DriverKind::Systemd.container_paths(&pod, "c1").unwrap();
    assert_eq!(spec, "kubepods-burstable-pod1.slice:berth:c1");
    assert_eq!(
        path.as_str(),
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/berth-c1.scope"
    );
}

#[test]
fn client_parent_mismatch_names_fix() {
    let err = DriverKind::Cgroupfs
        .client_parent_path("kubepods-burstable-pod1.slice")
        .unwrap_err();
    assert!(err.is_invalid_argument());
    assert!(
        err.to_string().contains("--cgroup-driver=cgroupfs"),
        "{err}"
    );

    let err = DriverKind::Systemd
        .client_parent_path("/kubepods/burstable/pod1")
        .unwrap_err();
    assert!(err.to_string().contains("--cgroup-driver=systemd"), "{err}");

    assert_eq!(
        DriverKind::Systemd
            .client_parent_path("kubepods-pod1.slice")
            .unwrap()
            .as_str(),
        "/kubepods.slice/kubepods-pod1.slice"
    );
    assert_eq!(
        DriverKind::Cgroupfs
            .client_parent_path("/kubepods/pod1")
            .unwrap()
            .as_str(),
        "/kubepods/pod1"
    );
}

#[test]
fn configured_parent_must_suit_the_driver() {
    assert!(DriverKind::Cgroupfs.check_parent("/berth").is_ok());
    assert!(DriverKind::Cgroupfs.check_parent("/").is_ok());
    assert!(DriverKind::Cgroupfs.check_parent("berth.slice").is_err());
    assert!(DriverKind::Systemd.check_parent("berth.slice").is_ok());
    assert!(DriverKind::Systemd.check_parent("/berth").is_err());
    assert_eq!("systemd".parse::<DriverKind>(), Ok(DriverKind::Systemd));
    assert!("Systemd".parse::<DriverKind>().is_err());
}

fn property<'a>(properties: &'a [(&'static str, Value)], name: &str) -> Option<&'a Value> {
    properties
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[test]
fn unit_properties_express_the_limits_on_v2() {
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        memory_swap_limit_bytes: Some(Limit::Value(96 * MIB)),
        cpu_shares: Some(1024),
        cpu_quota_us: Some(Limit::Value(25_000)),
        cpu_period_us: Some(100_000),
        pids_limit: Some(Limit::Unlimited),
        cpuset_cpus: Some("0,2-3".to_string()),
        ..Resources::default()
    };
    let properties = unit_properties(&resources, CgroupVersion::V2, true);

    assert_eq!(
        property(&properties, "MemoryAccounting"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        property(&properties, "MemoryMax"),
        Some(&Value::U64(64 * MIB))
    );
    assert_eq!(
        property(&properties, "MemorySwapMax"),
        Some(&Value::U64(32 * MIB))
    );
    assert_eq!(
        property(&properties, "CPUWeight"),
        Some(&Value::U64(cpu_shares_to_weight(1024)))
    );
    assert_eq!(
        property(&properties, "CPUQuotaPerSecUSec"),
        Some(&Value::U64(250_000))
    );
    assert_eq!(
        property(&properties, "CPUQuotaPeriodUSec"),
        Some(&Value::U64(100_000))
    );
    assert_eq!(
        property(&properties, "TasksMax"),
        Some(&Value::U64(u64::MAX))
    );
    assert_eq!(
        property(&properties, "AllowedCPUs"),
        Some(&Value::Bytes(vec![0b1101]))
    );
    assert_eq!(property(&properties, "CPUShares"), None);
}

#[test]
fn odd_quotas_round_up_to_systemd_granularity() {
    let resources = Resources {
        cpu_quota_us: Some(Limit::Value(1_234)),
        cpu_period_us: Some(100_000),
        ..Resources::default()
    };
    let properties = unit_properties(&resources, CgroupVersion::V2, false);
    // 12,340 us per second rounds up to 20 ms.
    assert_eq!(
        property(&properties, "CPUQuotaPerSecUSec"),
        Some(&Value::U64(20_000))
    );
    assert_eq!(property(&properties, "MemoryAccounting"), None);
}

#[test]
fn v1_uses_the_v1_property_names() {
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(MIB)),
        cpu_shares: Some(512),
        ..Resources::default()
    };
    let properties = unit_properties(&resources, CgroupVersion::V1, true);
    assert_eq!(property(&properties, "MemoryLimit"), Some(&Value::U64(MIB)));
    assert_eq!(property(&properties, "CPUShares"), Some(&Value::U64(512)));
    assert_eq!(property(&properties, "MemoryMax"), None);
}
