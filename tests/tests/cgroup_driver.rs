//! The cgroup driver choice from a kubelet's side. RuntimeConfig reports it, and a pod cgroup
//! parent in the other driver's form is rejected with a message naming the fix. A systemd
//! driver that cannot reach systemd stops the daemon at start.

use std::process::Command;

use berth_proto::cri::{
    CgroupDriver, ListPodSandboxRequest, RunPodSandboxRequest, RuntimeConfigRequest,
};
use berth_tests::pods::{PodDaemon, systemd_is_init};
use berth_tests::{Daemon, berth_binary};
use tonic::Code;

#[tokio::test]
async fn runtime_config_reports_the_configured_driver() {
    let pods = PodDaemon::start("").await;
    let config = pods
        .runtime()
        .await
        .runtime_config(RuntimeConfigRequest {})
        .await
        .expect("RuntimeConfig")
        .into_inner();
    let reported = config.linux.expect("linux section").cgroup_driver;
    let expected = match pods.cgroup_driver.as_str() {
        "systemd" => CgroupDriver::Systemd,
        _ => CgroupDriver::Cgroupfs,
    };
    assert_eq!(reported, expected as i32);
}

#[tokio::test]
async fn parent_in_the_other_drivers_form_is_invalid() {
    let pods = PodDaemon::start("").await;
    let (parent, fix) = if pods.cgroup_driver == "systemd" {
        ("/kubepods/burstable/pod1", "--cgroup-driver=systemd")
    } else {
        ("kubepods-burstable-pod1.slice", "--cgroup-driver=cgroupfs")
    };
    let mut config = pods.pod_config("mismatch");
    config
        .linux
        .get_or_insert_with(Default::default)
        .cgroup_parent = parent.to_string();

    let err = pods
        .runtime()
        .await
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("a parent of the other driver must be refused");

    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains(fix), "{}", err.message());
    let sandboxes = pods
        .runtime()
        .await
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    assert!(
        sandboxes.is_empty(),
        "a refused sandbox stays: {sandboxes:?}"
    );
}

#[test]
fn systemd_driver_without_systemd_stops_the_daemon() {
    if systemd_is_init() {
        eprintln!("skipped: systemd is the init system here, so the driver can start");
        return;
    }
    let daemon = Daemon::prepare("[runtime]\ncgroup_driver = \"systemd\"\n");
    let output = Command::new(berth_binary())
        .arg("serve")
        .arg("--config")
        .arg(daemon.dir.path().join("config.toml"))
        .arg("--root")
        .arg(daemon.root())
        .arg("--state-dir")
        .arg(daemon.dir.path().join("state"))
        .arg("--socket")
        .arg(daemon.socket())
        .output()
        .expect("run berth serve");

    assert!(!output.status.success(), "berth serve must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("runtime.cgroup_driver"), "{stderr}");
    assert!(stderr.contains("--cgroup-driver=cgroupfs"), "{stderr}");
    assert!(!daemon.socket().exists(), "no socket may be left behind");
}
