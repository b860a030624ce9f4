//! The systemd driver against a real systemd. These tests run only where systemd is the init
//! system, such as the cgroup v2 test guest booted with systemd, and print a line when they skip.
//! Each works under a fresh slice with a random name and stops every unit it started, also when
//! it fails.

use std::process::Command;
use std::sync::Arc;

use super::*;

const UID: &str = "5e1f0c2a-93b4-4d7e-8a61-0f2c9d3b7e45";

/// Returns the driver, or `None` after printing why where systemd is not the init system.
fn systemd_driver() -> Option<(Arc<dyn CgroupDriver>, Hierarchy)> {
    if !systemd_is_running() {
        eprintln!("skipped: systemd is not the init system on this host");
        return None;
    }
    let hierarchy = Hierarchy::detect().expect("detecting the cgroup hierarchy");
    let driver = systemd(hierarchy.clone()).expect("systemd accepts a D-Bus connection");
    Some((driver, hierarchy))
}

/// Stops the test's slices, deepest first.
struct Slices {
    driver: Arc<dyn CgroupDriver>,
    paths: Vec<CgroupPath>,
}

impl Drop for Slices {
    fn drop(&mut self) {
        for path in self.paths.iter().rev() {
            if let Err(err) = self.driver.remove(path) {
                eprintln!("cleanup: removing {path}: {err}");
            }
        }
    }
}

fn read(hierarchy: &Hierarchy, controller: &str, path: &CgroupPath, file: &str) -> String {
    let mount = hierarchy
        .mount_point(controller)
        .expect("controller mounted");
    let file = path.under(mount).join(file);
    fs::read_to_string(&file)
        .unwrap_or_else(|err| panic!("reading {}: {err}", file.display()))
        .trim()
        .to_string()
}

/// Returns a unit property as `systemctl show` prints it.
fn unit_property(unit: &str, property: &str) -> String {
    let output = Command::new("systemctl")
        .args(["show", "--value", "-p", property, unit])
        .output()
        .expect("running systemctl");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn pod_slice_carries_limits_as_unit_properties() {
    let Some((driver, hierarchy)) = systemd_driver() else {
        return;
    };
    let parent = format!("berthtest{:08x}.slice", rand::random::<u32>());
    let path = DriverKind::Systemd
        .pod_path(&parent, QosClass::Burstable, UID)
        .unwrap();
    let tier = path.parent().unwrap();
    let top = tier.parent().unwrap();
    let _slices = Slices {
        driver: driver.clone(),
        paths: vec![top.clone(), tier.clone(), path.clone()],
    };
    let unit = path.components().last().unwrap().to_string();
    let resources = Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        cpu_quota_us: Some(Limit::Value(50_000)),
        cpu_period_us: Some(100_000),
        cpu_shares: Some(512),
        pids_limit: Some(Limit::Value(30)),
        ..Resources::default()
    };

    driver
        .create(&path, &resources)
        .expect("creating the pod slice");

    assert_eq!(unit_property(&unit, "ActiveState"), "active");
    assert_eq!(unit_property(&unit, "MemoryMax"), (64 * MIB).to_string());
    assert_eq!(unit_property(&unit, "TasksMax"), "30");
    assert_eq!(
        read(&hierarchy, "memory", &path, "memory.max"),
        (64 * MIB).to_string()
    );
    assert_eq!(read(&hierarchy, "pids", &path, "pids.max"), "30");
    if hierarchy.version() == CgroupVersion::V2 {
        assert_eq!(read(&hierarchy, "cpu", &path, "cpu.max"), "50000 100000");
        assert_eq!(
            read(&hierarchy, "cpu", &path, "cpu.weight"),
            cpu_shares_to_weight(512).to_string()
        );
    }

    let raised = Resources {
        memory_limit_bytes: Some(Limit::Value(128 * MIB)),
        ..Resources::default()
    };
    driver
        .update(&path, &raised)
        .expect("updating the pod slice");
    assert_eq!(unit_property(&unit, "MemoryMax"), (128 * MIB).to_string());
    assert_eq!(
        read(&hierarchy, "memory", &path, "memory.max"),
        (128 * MIB).to_string()
    );

    driver.remove(&path).expect("removing the pod slice");
    let dir = path.under(hierarchy.mount_point("memory").unwrap());
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert_ne!(unit_property(&unit, "ActiveState"), "active");
}

#[test]
fn systemd_driver_creates_no_scopes() {
    let Some((driver, _)) = systemd_driver() else {
        return;
    };
    let path = CgroupPath::new("/berthtest.slice/berth-c1.scope").unwrap();
    let err = driver
        .create(&path, &Resources::default())
        .expect_err("a scope is the OCI runtime's to create");
    assert!(err.is_invalid_argument(), "{err}");
}

#[test]
fn removing_an_unknown_unit_is_not_an_error() {
    let Some((driver, _)) = systemd_driver() else {
        return;
    };
    let path = CgroupPath::new(&format!("/berthgone{:08x}.slice", rand::random::<u32>())).unwrap();
    driver
        .remove(&path)
        .expect("a unit that never existed counts as removed");
}
