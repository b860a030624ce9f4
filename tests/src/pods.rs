//! A daemon set up to run pods: its own bridge, subnet, CNI directories and cgroup parent, all
//! removed again when the test ends, also when it fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::{
    ContainerConfig, ContainerMetadata, ContainerState as CriContainerState, ContainerStatus,
    ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest, ExecSyncResponse, ImageSpec,
    KeyValue, LinuxContainerConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListPodSandboxRequest, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
};
use tonic::transport::Channel;

use crate::{Daemon, image};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A daemon for pod tests, with the names of the host resources it may create.
pub struct PodDaemon {
    pub daemon: Daemon,
    pub bridge: String,
    /// The pod subnet's first three octets, such as `10.213.7`.
    pub subnet_prefix: String,
    /// The configured pod parent: a cgroups path, or a slice under the systemd driver.
    pub cgroup_parent: String,
    /// The configured cgroup driver, `cgroupfs` or `systemd`, from `BERTH_TEST_CGROUP_DRIVER`.
    pub cgroup_driver: String,
}

impl PodDaemon {
    /// Starts a daemon whose pods use a fresh bridge, subnet and cgroup parent. `config_extra`
    /// is appended to the generated config.
    pub async fn start(config_extra: &str) -> PodDaemon {
        PodDaemon::start_with_runtime("", config_extra).await
    }

    /// Starts a daemon like [`PodDaemon::start`], with `runtime_settings` (TOML lines such as
    /// `exec_sync_max_output_bytes = 1024`) added to the generated `[runtime]` table, which
    /// `config_extra` cannot open a second time.
    pub async fn start_with_runtime(runtime_settings: &str, config_extra: &str) -> PodDaemon {
        let daemon = Daemon::prepare("");
        let unique = unique_suffix();
        let bridge = format!("brt{unique}");
        let subnet_prefix = format!(
            "10.{}.{}",
            200 + (unique_number() % 50),
            unique_number() % 250
        );
        // A dash in a slice name starts a level below, so the systemd parent has none.
        let (cgroup_driver, cgroup_parent) = if systemd_cgroup_driver() {
            (
                "systemd",
                format!("berthe2e{}.slice", unique.replace('-', "")),
            )
        } else {
            ("cgroupfs", format!("/berth-e2e-{unique}"))
        };
        let dir = daemon.dir.path();
        let conf_dir = dir.join("cni-conf");
        std::fs::create_dir_all(&conf_dir).expect("create CNI conf dir");
        let extra = format!(
            "[runtime]\ncgroup_driver = \"{cgroup_driver}\"\ncgroup_parent = \"{cgroup_parent}\"\n{runtime_settings}\n\n[network]\nconf_dir = \"{conf}\"\ndefault_bridge = \"{bridge}\"\ndefault_subnet = \"{subnet_prefix}.0/24\"\ndefault_ipam_data_dir = \"{ipam}\"\n\n{config_extra}",
            conf = conf_dir.display(),
            ipam = dir.join("ipam").display(),
        );
        let mut pods = PodDaemon {
            daemon,
            bridge,
            subnet_prefix,
            cgroup_parent,
            cgroup_driver: cgroup_driver.to_string(),
        };
        pods.daemon.set_config_extra(&extra);
        pods.daemon.restart().await;
        pods
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        self.daemon.runtime().await
    }

    /// Returns the pod's cgroups path, from the verbose PodSandboxStatus.
    pub async fn pod_cgroup(&self, sandbox: &str) -> String {
        let status = self
            .runtime()
            .await
            .pod_sandbox_status(berth_proto::cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.to_string(),
                verbose: true,
            })
            .await
            .expect("verbose PodSandboxStatus")
            .into_inner();
        let info: serde_json::Value =
            serde_json::from_str(&status.info["info"]).expect("info is JSON");
        info["cgroupParent"]
            .as_str()
            .expect("info.cgroupParent")
            .to_string()
    }

    /// Returns the cgroups path of a container of the pod whose cgroups path is `pod_cgroup`:
    /// a child named after the container ID, or the `berth-<ID>.scope` unit under the systemd
    /// cgroup driver.
    pub fn container_cgroup(&self, pod_cgroup: &str, container: &str) -> String {
        let pod_cgroup = pod_cgroup.trim_end_matches('/');
        if systemd_cgroup_driver() {
            format!("{pod_cgroup}/berth-{container}.scope")
        } else {
            format!("{pod_cgroup}/{container}")
        }
    }

    /// Directory for the pod's container logs, under the test's temp dir.
    pub fn log_dir(&self, pod: &str) -> PathBuf {
        self.daemon.dir.path().join("logs").join(pod)
    }

    /// Pulls busybox, then runs a pod with one busybox container running `command`, and
    /// returns the sandbox and container IDs.
    pub async fn run_busybox(&self, pod: &str, command: &[&str]) -> (String, String) {
        self.daemon
            .pull(&image("busybox"))
            .await
            .expect("pull busybox");
        let sandbox = self.run_pod(self.pod_config(pod)).await;
        let container = self
            .create_and_start(
                &sandbox,
                self.pod_config(pod),
                container_config("main", &image("busybox"), command),
            )
            .await;
        (sandbox, container)
    }

    pub async fn run_pod(&self, config: PodSandboxConfig) -> String {
        self.runtime()
            .await
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "RunPodSandbox failed: {status:?}\nlog:\n{}",
                    self.daemon.log()
                )
            })
            .into_inner()
            .pod_sandbox_id
    }

    pub async fn create_and_start(
        &self,
        sandbox: &str,
        pod: PodSandboxConfig,
        config: ContainerConfig,
    ) -> String {
        let mut client = self.runtime().await;
        let id = client
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.to_string(),
                config: Some(config),
                sandbox_config: Some(pod),
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "CreateContainer failed: {status:?}\nlog:\n{}",
                    self.daemon.log()
                )
            })
            .into_inner()
            .container_id;
        client
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "StartContainer failed: {status:?}\nlog:\n{}",
                    self.daemon.log()
                )
            });
        id
    }

    /// Returns a pod config with a unique UID, logging under [`PodDaemon::log_dir`].
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_string(),
                uid: format!("uid-{name}-{}", unique_suffix()),
                namespace: "berth-e2e".to_string(),
                attempt: 0,
            }),
            hostname: name.to_string(),
            log_directory: self.log_dir(name).display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: 0,
                        pid: 1,
                        ipc: 0,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            ..Default::default()
        }
    }

    /// Removes every pod through the CRI on a thread of its own (the test's runtime may be
    /// blocked in a drop), then stops anything the OCI runtime still knows.
    fn remove_all_pods(&self) {
        let socket = self.daemon.socket();
        if !socket.exists() {
            return;
        }
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let cleanup = async {
                    let mut client = RuntimeServiceClient::new(crate::connect(&socket).await);
                    let Ok(list) = client
                        .list_pod_sandbox(ListPodSandboxRequest::default())
                        .await
                    else {
                        return;
                    };
                    for pod in list.into_inner().items {
                        let _ = client
                            .remove_pod_sandbox(RemovePodSandboxRequest {
                                pod_sandbox_id: pod.id,
                            })
                            .await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(60), cleanup).await;
            });
        })
        .join();
    }

    /// Deletes containers the OCI runtime still knows about, for a daemon that could not
    /// remove them itself.
    fn delete_runc_leftovers(&self) {
        let runc_root = self.daemon.dir.path().join("state/runc/runc");
        let Ok(output) = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["list", "-q"])
            .output()
        else {
            return;
        };
        for id in String::from_utf8_lossy(&output.stdout).lines() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["delete", "--force", id])
                .status();
        }
    }
}

/// Calls that most runtime tests make, failing the test with the daemon's log when one fails.
impl PodDaemon {
    /// Runs `command` in a container with ExecSync and a 30 s timeout.
    pub async fn exec(&self, container: &str, command: &[&str]) -> ExecSyncResponse {
        self.runtime()
            .await
            .exec_sync(ExecSyncRequest {
                container_id: container.to_string(),
                cmd: command.iter().map(|part| part.to_string()).collect(),
                timeout: 30,
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "ExecSync {command:?} failed: {status:?}\nlog:\n{}",
                    self.daemon.log()
                )
            })
            .into_inner()
    }

    /// Runs `command` in a container and returns its stdout, failing unless it exits with 0.
    pub async fn exec_stdout(&self, container: &str, command: &[&str]) -> String {
        let output = self.exec(container, command).await;
        assert_eq!(
            output.exit_code,
            0,
            "{command:?} exited with {}; stderr: {}",
            output.exit_code,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub async fn container_status(&self, container: &str) -> ContainerStatus {
        self.runtime()
            .await
            .container_status(ContainerStatusRequest {
                container_id: container.to_string(),
                verbose: false,
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "ContainerStatus failed: {status:?}\nlog:\n{}",
                    self.daemon.log()
                )
            })
            .into_inner()
            .status
            .expect("ContainerStatus has a status")
    }

    /// Polls ContainerStatus until the container exited, and returns that status. Fails the
    /// test when it still runs after `timeout`.
    pub async fn wait_exited(&self, container: &str, timeout: Duration) -> ContainerStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let status = self.container_status(container).await;
            if status.state == CriContainerState::ContainerExited as i32 {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "container {container} did not exit within {timeout:?}; status: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a container without starting it and returns its ID.
    pub async fn create(
        &self,
        sandbox: &str,
        pod: PodSandboxConfig,
        config: ContainerConfig,
    ) -> String {
        self.runtime()
            .await
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.to_string(),
                config: Some(config),
                sandbox_config: Some(pod),
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "CreateContainer failed: {status:?}\nlog:\n{}",
                    self.daemon.log()
                )
            })
            .into_inner()
            .container_id
    }
}

/// Polls a CRI log file until one of its lines contains `needle`, and returns the messages of
/// its entries (see [`log_messages`]). Fails the test when none does within `timeout`.
pub async fn wait_for_log(path: &Path, needle: &str, timeout: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let messages = log_messages(path);
        if messages.iter().any(|message| message.contains(needle)) {
            return messages;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} has no line containing {needle:?} after {timeout:?}; it has: {messages:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Returns the message of each entry of a CRI log file (`<time> <stream> <P|F> <message>`), or
/// nothing when the file does not exist. Malformed lines are returned whole.
pub fn log_messages(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| match line.splitn(4, ' ').nth(3) {
            Some(message) => message.to_string(),
            None => line.to_string(),
        })
        .collect()
}

impl Drop for PodDaemon {
    fn drop(&mut self) {
        self.remove_all_pods();
        self.daemon.kill();
        self.delete_runc_leftovers();
        unmount_below(self.daemon.dir.path());
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        if self.cgroup_driver == "systemd" {
            // Stopping the top slice stops every slice and scope below it.
            let _ = Command::new("systemctl")
                .args(["stop", &self.cgroup_parent])
                .output();
        } else {
            remove_cgroup_parent(&self.cgroup_parent);
        }
    }
}

/// Returns true when systemd runs as the init system, by the test that `sd_booted` uses.
pub fn systemd_is_init() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Returns whether the tests run against the systemd cgroup driver: `BERTH_TEST_CGROUP_DRIVER`
/// is `systemd`, or `cgroupfs` (the default when unset).
pub fn systemd_cgroup_driver() -> bool {
    match std::env::var("BERTH_TEST_CGROUP_DRIVER").as_deref() {
        Ok("systemd") => true,
        Ok("cgroupfs") | Ok("") | Err(_) => false,
        Ok(other) => {
            panic!("invalid BERTH_TEST_CGROUP_DRIVER {other:?}: expected cgroupfs or systemd")
        }
    }
}

/// Unmounts every mount below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut targets: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|target| target.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|target| std::cmp::Reverse(target.len()));
    for target in targets {
        let _ = Command::new("umount").args(["-l", target]).status();
    }
}

/// Returns the mounts below `dir` that are still present.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|target| target.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Removes a cgroup parent and its empty children from every mounted cgroup hierarchy.
pub fn remove_cgroup_parent(parent: &str) {
    for dir in cgroup_dirs(parent) {
        let mut nested: Vec<PathBuf> = walk_dirs(&dir);
        nested.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
        for path in nested {
            let _ = std::fs::remove_dir(&path);
        }
    }
}

/// Returns the directories of a cgroups path that exist in the mounted hierarchies.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path().join(path.trim_start_matches('/')))
        .filter(|dir| dir.is_dir())
        .collect();
    let unified = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    if unified.is_dir() && !dirs.contains(&unified) {
        dirs.push(unified);
    }
    dirs
}

fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut found = vec![root.to_path_buf()];
    let mut index = 0;
    while index < found.len() {
        if let Ok(entries) = std::fs::read_dir(&found[index]) {
            for entry in entries.flatten() {
                if entry.file_type().map(|kind| kind.is_dir()).unwrap_or(false) {
                    found.push(entry.path());
                }
            }
        }
        index += 1;
    }
    found
}

/// Returns a container config running `command` in `image`, logging to `<name>.log`.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: command.iter().map(|part| part.to_string()).collect(),
        envs: vec![KeyValue {
            key: "BERTH_TEST".to_string(),
            value: b"1".to_vec(),
        }],
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

fn unique_number() -> u32 {
    let pid = std::process::id();
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    let random: u32 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    pid.wrapping_mul(31)
        .wrapping_add(count.wrapping_mul(7919))
        .wrapping_add(random)
}

/// Returns six hex digits unique among the tests of this run.
fn unique_suffix() -> String {
    format!("{:06x}", unique_number() & 0xff_ffff)
}
