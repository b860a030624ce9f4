//! Containers: an overlay root filesystem over the image's layers, an OCI bundle, and a monitor
//! process that runs the container through the OCI runtime.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::cri::{
    ContainerConfig, ContainerEventResponse, ContainerEventType, ContainerFilter, PodSandboxConfig,
};
use prost::Message;
use tokio::io::AsyncBufReadExt;

use super::monitor::{ExitRecord, StartReport, now_ns};
use super::sandbox::labels_match;
use super::spec::{ContainerContext, SandboxContext, generate_spec};
use super::{RuntimeError, RuntimeService, mounts, new_id, resolve_id};
use crate::cgroups::CgroupPath;

/// crun's annotation naming the child cgroup of the systemd scope that the container runs in;
/// empty means the scope itself.
const CRUN_SYSTEMD_SUBGROUP: &str = "run.oci.systemd.subgroup";
use crate::store::{ContainerRecord, SandboxRecord};

/// How often StopContainer checks whether the container has exited.
const EXIT_POLL: Duration = Duration::from_millis(10);
/// How long StopContainer waits for the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Serializes the recording of exits. StopContainer, the task waiting for the monitor and the
/// exit poller can all see one exit file, and only the first may record it and emit the event.
static EXIT_RECORDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Lifecycle state of a container, derived from its record and its exit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

/// A container with its decoded CRI config and current state.
#[derive(Debug, Clone)]
pub struct Container {
    pub record: ContainerRecord,
    pub config: ContainerConfig,
    pub state: ContainerState,
}

impl Container {
    fn from_record(record: ContainerRecord) -> Result<Self, RuntimeError> {
        let config = ContainerConfig::decode(record.config.as_slice()).map_err(|err| {
            RuntimeError::FailedPrecondition(format!(
                "container {} has an unreadable config record: {err}",
                record.id
            ))
        })?;
        let state = if record.started_at_ns == 0 && record.finished_at_ns == 0 {
            ContainerState::Created
        } else if record.finished_at_ns != 0 {
            ContainerState::Exited
        } else {
            ContainerState::Running
        };
        Ok(Self {
            record,
            config,
            state,
        })
    }
}

/// Returns the unique name the kubelet expects for a container: its name, the sandbox's name,
/// namespace and UID, and the attempt.
pub(super) fn reserved_name(
    record: &ContainerRecord,
    sandboxes: &[SandboxRecord],
) -> Result<String, RuntimeError> {
    let config = ContainerConfig::decode(record.config.as_slice()).map_err(|err| {
        RuntimeError::FailedPrecondition(format!(
            "unreadable container record {}: {err}",
            record.id
        ))
    })?;
    let sandbox = sandboxes
        .iter()
        .find(|sandbox| sandbox.id == record.sandbox_id)
        .ok_or_else(|| RuntimeError::NotFound {
            kind: "sandbox",
            id: record.sandbox_id.clone(),
        })?;
    let sandbox_config = PodSandboxConfig::decode(sandbox.config.as_slice()).map_err(|err| {
        RuntimeError::FailedPrecondition(format!("unreadable sandbox record {}: {err}", sandbox.id))
    })?;
    container_name(&config, &sandbox_config)
}

fn container_name(
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
) -> Result<String, RuntimeError> {
    let metadata = config
        .metadata
        .as_ref()
        .filter(|metadata| !metadata.name.is_empty())
        .ok_or_else(|| RuntimeError::InvalidArgument {
            field: "config.metadata.name",
            reason: "a container needs a name".to_string(),
        })?;
    let pod = sandbox.metadata.clone().unwrap_or_default();
    Ok(format!(
        "{}_{}_{}_{}_{}",
        metadata.name, pod.name, pod.namespace, pod.uid, metadata.attempt
    ))
}

impl RuntimeService {
    /// Creates a container in a ready sandbox and returns its ID. CreateContainer.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let sandbox = self.sandbox(sandbox_id)?;
        if !sandbox.record.ready {
            return Err(RuntimeError::FailedPrecondition(format!(
                "sandbox {} is not ready: containers can only be created in a running sandbox",
                sandbox.record.id
            )));
        }
        let name = container_name(&config, &sandbox.config)?;
        let reference = config
            .image
            .as_ref()
            .map(|image| image.image.clone())
            .unwrap_or_default();
        if reference.is_empty() {
            return Err(RuntimeError::InvalidArgument {
                field: "config.image.image",
                reason: "a container needs an image".to_string(),
            });
        }
        let image = self
            .images
            .find(&reference)?
            .ok_or_else(|| RuntimeError::ImageNotPresent {
                reference: reference.clone(),
            })?;
        self.images.touch(&image.id)?;

        let id = new_id();
        self.reserve_name("container", &name, &id)?;
        let result = self.set_up_container(&id, &sandbox, &config, &image, &reference);
        match result {
            Ok(record) => {
                self.store.put_container(&record)?;
                self.emit(&record, ContainerEventType::ContainerCreatedEvent);
                tracing::info!(container = %id, sandbox = %sandbox.record.id, image = %reference, "container created");
                Ok(id)
            }
            Err(err) => {
                tracing::warn!(container = %id, error = %err, "CreateContainer failed, undoing its steps");
                self.remove_container_files(&id);
                self.release_name(&name);
                Err(err)
            }
        }
    }

    fn set_up_container(
        &self,
        id: &str,
        sandbox: &super::sandbox::Sandbox,
        config: &ContainerConfig,
        image: &crate::store::ImageRecord,
        reference: &str,
    ) -> Result<ContainerRecord, RuntimeError> {
        let bundle = self.bundle_dir(id);
        let rootfs = bundle.join("rootfs");
        let upper = self.layers_dir.join(id).join("upper");
        let work = self.layers_dir.join(id).join("work");
        for dir in [&rootfs, &upper, &work] {
            std::fs::create_dir_all(dir).map_err(|err| RuntimeError::io("create", dir, err))?;
        }
        let lower = self.images.layer_dirs(image)?;
        mounts::mount_overlay(&lower, &upper, &work, &rootfs)?;

        // A missing host path is created as a directory, as containerd and the kubelet's
        // hostPath DirectoryOrCreate rely on.
        for mount in &config.mounts {
            let host_path = std::path::Path::new(&mount.host_path);
            if !mount.host_path.is_empty() && std::fs::symlink_metadata(host_path).is_err() {
                std::fs::create_dir_all(host_path)
                    .map_err(|err| RuntimeError::io("create mount source", host_path, err))?;
            }
        }

        let image_config = self.images.config_json(image)?;
        let paths = self.sandbox_paths(sandbox);
        let pod_cgroup = CgroupPath::new(&sandbox.record.cgroup_parent)?;
        let (spec_cgroups_path, cgroup) = self.cgroup_kind.container_paths(&pod_cgroup, id)?;
        let cgroups_path = cgroup.to_string();
        let sandbox_context = SandboxContext {
            config: &sandbox.config,
            netns: paths.netns,
            ipcns: paths.ipcns,
            utsns: paths.utsns,
            pidns: paths.pidns,
            hostname_file: paths.hostname,
            hosts_file: paths.hosts,
            resolv_conf: paths.resolv_conf,
            shm_dir: paths.shm,
            cgroup_parent: sandbox.record.cgroup_parent.clone(),
        };
        let container_context = ContainerContext {
            id,
            config,
            image_config: &image_config,
            rootfs: rootfs.clone(),
            cgroups_path: spec_cgroups_path,
            min_oom_score_adj: self.min_oom_score_adj,
        };
        let mut spec = generate_spec(&sandbox_context, &container_context)?;
        if self.cgroup_kind == crate::cgroups::DriverKind::Systemd {
            // On cgroup v2, crun puts a container's processes and limits in a `container` child
            // of its systemd scope unless this annotation is empty. An empty one keeps both in
            // the scope, where Berth reads stats and OOM kills, as with runc.
            let mut annotations = spec.annotations().clone().unwrap_or_default();
            annotations
                .entry(CRUN_SYSTEMD_SUBGROUP.to_string())
                .or_default();
            spec.set_annotations(Some(annotations));
        }
        let user = spec
            .process()
            .as_ref()
            .map(|process| process.user().clone())
            .unwrap_or_default();
        let spec_path = bundle.join("config.json");
        let spec_json = serde_json::to_vec(&spec)
            .map_err(|err| RuntimeError::io("encode", &spec_path, std::io::Error::other(err)))?;
        std::fs::write(&spec_path, spec_json)
            .map_err(|err| RuntimeError::io("write", &spec_path, err))?;

        let log_path = if sandbox.config.log_directory.is_empty() || config.log_path.is_empty() {
            String::new()
        } else {
            PathBuf::from(&sandbox.config.log_directory)
                .join(&config.log_path)
                .display()
                .to_string()
        };
        Ok(ContainerRecord {
            id: id.to_string(),
            sandbox_id: sandbox.record.id.clone(),
            config: config.encode_to_vec(),
            image_id: image.id.clone(),
            image_ref: reference.to_string(),
            log_path,
            created_at_ns: now_ns(),
            cgroups_path,
            runtime_handler: sandbox.record.runtime_handler.clone(),
            uid: user.uid(),
            gid: user.gid(),
            supplemental_groups: user.additional_gids().clone().unwrap_or_default(),
            ..ContainerRecord::default()
        })
    }

    /// Starts a created container through its monitor process. StartContainer.
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<(), RuntimeError> {
        let container = self.container(id)?;
        let id = container.record.id.clone();
        let _lock = self.locks.lock(&id).await;
        let container = self.container(&id)?;
        if container.state != ContainerState::Created {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id} is {:?}: only a created container can be started",
                container.state
            )));
        }
        let sandbox = self.sandbox(&container.record.sandbox_id)?;
        if !sandbox.record.ready {
            return Err(RuntimeError::FailedPrecondition(format!(
                "sandbox {} of container {id} is not ready",
                sandbox.record.id
            )));
        }
        let runtime = self.runtime(&container.record.runtime_handler)?.clone();
        let bundle = self.bundle_dir(&id);
        let log_path = if container.record.log_path.is_empty() {
            "/dev/null".to_string()
        } else {
            container.record.log_path.clone()
        };

        let monitor_log = bundle.join("monitor.log");
        let monitor_log_file = std::fs::File::create(&monitor_log)
            .map_err(|err| RuntimeError::io("create", &monitor_log, err))?;
        let mut command = tokio::process::Command::new(&self.berth_binary);
        command
            .arg("monitor")
            .arg("--id")
            .arg(&id)
            .arg("--bundle")
            .arg(&bundle)
            .arg("--runtime")
            .arg(&runtime.binary)
            .arg("--runtime-root")
            .arg(&runtime.state_root)
            .arg("--log-path")
            .arg(&log_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(monitor_log_file));
        if container.config.tty {
            command.arg("--tty");
        }
        if container.config.stdin {
            command.arg("--stdin");
        }
        if container.config.stdin_once {
            command.arg("--stdin-once");
        }
        if runtime.systemd_cgroup {
            command.arg("--systemd-cgroup");
        }
        if !container.record.cgroups_path.is_empty() {
            command
                .arg("--cgroup-path")
                .arg(&container.record.cgroups_path);
        }
        // SAFETY: setsid is async-signal-safe; it detaches the monitor from the daemon's session
        // so that signals to the daemon's process group do not reach containers.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let mut monitor = command
            .spawn()
            .map_err(|err| RuntimeError::io("start monitor", &self.berth_binary, err))?;
        let monitor_pid = monitor.id().map(|pid| pid as i32);
        let stdout = monitor.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let timeout = Duration::from_secs(self.config.start_timeout_seconds);
        let read = tokio::time::timeout(
            timeout,
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await;
        let report = match read {
            Ok(Ok(n)) if n > 0 => {
                serde_json::from_str::<StartReport>(&line).unwrap_or_else(|err| {
                    StartReport::Failed {
                        message: format!("unreadable start report {line:?}: {err}"),
                    }
                })
            }
            Ok(_) => StartReport::Failed {
                message: format!(
                    "the monitor exited without a report; see {}",
                    monitor_log.display()
                ),
            },
            Err(_) => StartReport::Failed {
                message: format!("no start report within {} s", timeout.as_secs()),
            },
        };

        let mut record = container.record.clone();
        match report {
            StartReport::Started { pid, started_at_ns } => {
                record.pid = Some(pid);
                record.started_at_ns = started_at_ns;
                record.monitor_pid = monitor_pid;
                self.store.put_container(&record)?;
                self.emit(&record, ContainerEventType::ContainerStartedEvent);
                tracing::info!(container = %id, pid, "container started");
                let service = self.clone();
                tokio::spawn(async move {
                    let _ = monitor.wait().await;
                    if let Err(err) = service.refresh_exit_by_id(&id) {
                        tracing::warn!(container = %id, error = %err, "cannot record the container's exit");
                    }
                });
                Ok(())
            }
            StartReport::Failed { message } => {
                let _ = monitor.kill().await;
                let now = now_ns();
                record.started_at_ns = now;
                record.finished_at_ns = now;
                record.exit_code = 128;
                record.reason = "StartError".to_string();
                record.message = message.clone();
                self.store.put_container(&record)?;
                self.emit(&record, ContainerEventType::ContainerStoppedEvent);
                Err(RuntimeError::StartFailed { id, message })
            }
        }
    }

    /// Stops a running container: the image's stop signal, then SIGKILL after `timeout`
    /// seconds. Stopping a container that is not running or not known succeeds. StopContainer.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), RuntimeError> {
        // Stopping is idempotent for the kubelet, also for a container that is already gone.
        let container = match self.container(id) {
            Ok(container) => container,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(err) => return Err(err),
        };
        if container.state != ContainerState::Running {
            return Ok(());
        }
        let id = container.record.id.clone();
        let runtime = self.runtime(&container.record.runtime_handler)?;
        let bundle = self.bundle_dir(&id);

        if timeout > 0 {
            let signal = self.stop_signal(&container);
            runtime.kill(&id, signal, false).await?;
            if wait_for_exit(&bundle, Duration::from_secs(timeout as u64)).await {
                self.refresh_exit_by_id(&id)?;
                return Ok(());
            }
            tracing::info!(container = %id, timeout, "container ignored its stop signal, killing it");
        }
        runtime.kill(&id, libc::SIGKILL, true).await?;
        if !wait_for_exit(&bundle, KILL_WAIT).await {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id} did not exit within {} s of SIGKILL",
                KILL_WAIT.as_secs()
            )));
        }
        self.refresh_exit_by_id(&id)?;
        Ok(())
    }

    /// Removes a container, killing it first if it runs. Removing an unknown container
    /// succeeds. RemoveContainer.
    pub async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let container = match self.container(id) {
            Ok(container) => container,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(err) => return Err(err),
        };
        let id = container.record.id.clone();
        self.stop_container(&id, 0).await?;
        let _lock = self.locks.lock(&id).await;
        if let Ok(runtime) = self.runtime(&container.record.runtime_handler) {
            runtime.delete(&id).await?;
        }
        mounts::unmount(&self.bundle_dir(&id).join("rootfs"))?;
        self.remove_container_files(&id);
        self.store.delete_container(&id)?;
        let sandboxes = self.store.sandboxes()?;
        if let Ok(name) = reserved_name(&container.record, &sandboxes) {
            self.release_name(&name);
        }
        self.emit(&container.record, ContainerEventType::ContainerDeletedEvent);
        tracing::info!(container = %id, "container removed");
        Ok(())
    }

    fn remove_container_files(&self, id: &str) {
        let bundle = self.bundle_dir(id);
        let _ = mounts::unmount(&bundle.join("rootfs"));
        for dir in [bundle, self.layers_dir.join(id)] {
            if let Err(err) = std::fs::remove_dir_all(&dir)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(container = %id, path = %dir.display(), error = %err, "cannot remove container files");
            }
        }
    }

    /// Finds a container by ID or unique ID prefix, with its exit recorded if it happened.
    pub fn container(&self, id: &str) -> Result<Container, RuntimeError> {
        let records = self.store.containers()?;
        let full =
            resolve_id(id, records.iter().map(|record| record.id.as_str())).ok_or_else(|| {
                RuntimeError::NotFound {
                    kind: "container",
                    id: id.to_string(),
                }
            })?;
        let record = records
            .into_iter()
            .find(|record| record.id == full)
            .expect("resolved ID exists");
        let record = self.refresh_exit(&record)?.unwrap_or(record);
        Container::from_record(record)
    }

    /// Lists containers matching the filter. ListContainers.
    pub fn list_containers(
        &self,
        filter: Option<&ContainerFilter>,
    ) -> Result<Vec<Container>, RuntimeError> {
        let mut containers = Vec::new();
        for record in self.store.containers()? {
            let record = self.refresh_exit(&record)?.unwrap_or(record);
            let container = Container::from_record(record)?;
            if let Some(filter) = filter {
                if !filter.id.is_empty() && !container.record.id.starts_with(&filter.id) {
                    continue;
                }
                if !filter.pod_sandbox_id.is_empty()
                    && !container
                        .record
                        .sandbox_id
                        .starts_with(&filter.pod_sandbox_id)
                {
                    continue;
                }
                if let Some(state) = &filter.state
                    && state.state != cri_state(container.state) as i32
                {
                    continue;
                }
                if !labels_match(&filter.label_selector, &container.config.labels) {
                    continue;
                }
            }
            containers.push(container);
        }
        containers.sort_by_key(|container| container.record.created_at_ns);
        Ok(containers)
    }

    pub(super) fn containers_of(
        &self,
        sandbox_id: &str,
    ) -> Result<Vec<ContainerRecord>, RuntimeError> {
        Ok(self
            .store
            .containers()?
            .into_iter()
            .filter(|record| record.sandbox_id == sandbox_id)
            .collect())
    }

    /// Signals the monitor to reopen the container's log after the kubelet moved it away.
    /// ReopenContainerLog.
    pub fn reopen_log(&self, id: &str) -> Result<(), RuntimeError> {
        let container = self.container(id)?;
        if container.state != ContainerState::Running {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {} is not running, so it has no log to reopen",
                container.record.id
            )));
        }
        if container.record.log_path.is_empty() {
            return Ok(());
        }
        // Create the new file now, so it exists when this call returns, as the kubelet expects;
        // the monitor appends to it from its next write.
        let path = PathBuf::from(&container.record.log_path);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|err| RuntimeError::io("create", &path, err))?;
        if let Some(pid) = container.record.monitor_pid {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGUSR1,
            )
            .map_err(|err| {
                RuntimeError::FailedPrecondition(format!(
                    "cannot signal the monitor of container {}: {err}",
                    container.record.id
                ))
            })?;
        }
        Ok(())
    }

    fn stop_signal(&self, container: &Container) -> i32 {
        let from_image = self
            .images
            .find(&container.record.image_id)
            .ok()
            .flatten()
            .and_then(|image| self.images.config_json(&image).ok())
            .and_then(|config| {
                config
                    .pointer("/config/StopSignal")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            });
        from_image
            .as_deref()
            .and_then(parse_signal)
            .unwrap_or(libc::SIGTERM)
    }

    pub(super) fn refresh_exit_by_id(&self, id: &str) -> Result<(), RuntimeError> {
        if let Some(record) = self
            .store
            .containers()?
            .into_iter()
            .find(|record| record.id == id)
        {
            self.refresh_exit(&record)?;
        }
        Ok(())
    }

    /// Records the exit of a running container whose monitor wrote its exit file, and returns
    /// the updated record, also when another caller recorded the exit first.
    pub(super) fn refresh_exit(
        &self,
        record: &ContainerRecord,
    ) -> Result<Option<ContainerRecord>, RuntimeError> {
        if record.started_at_ns == 0 || record.finished_at_ns != 0 {
            return Ok(None);
        }
        let Some(exit) = ExitRecord::read(&self.bundle_dir(&record.id)) else {
            return Ok(None);
        };

        let _recording = EXIT_RECORDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(current) = self
            .store
            .containers()?
            .into_iter()
            .find(|stored| stored.id == record.id)
        else {
            return Ok(None);
        };
        if current.finished_at_ns != 0 {
            return Ok(Some(current));
        }

        let mut updated = current;
        updated.exit_code = exit.exit_code;
        updated.finished_at_ns = exit.finished_at_ns;
        updated.reason = if exit.oom_killed {
            "OOMKilled"
        } else if exit.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string();
        updated.monitor_pid = None;
        self.store.put_container(&updated)?;
        self.emit(&updated, ContainerEventType::ContainerStoppedEvent);
        tracing::info!(container = %updated.id, exit_code = exit.exit_code, reason = %updated.reason, "container exited");
        Ok(Some(updated))
    }

    /// Checks running containers for exits every second, for those whose monitor this daemon
    /// did not start (adopted after a restart).
    pub(super) fn spawn_exit_poller(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                let records = match self.store.containers() {
                    Ok(records) => records,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot read container records");
                        continue;
                    }
                };
                for record in records {
                    if let Err(err) = self.refresh_exit(&record) {
                        tracing::warn!(container = %record.id, error = %err, "cannot record the container's exit");
                    }
                }
            }
        });
    }

    fn emit(&self, record: &ContainerRecord, kind: ContainerEventType) {
        let event = ContainerEventResponse {
            container_id: record.id.clone(),
            container_event_type: kind as i32,
            created_at: now_ns(),
            ..ContainerEventResponse::default()
        };
        // No subscribers is not an error.
        let _ = self.events.send(event);
    }
}

/// Maps a container state to the CRI's.
pub fn cri_state(state: ContainerState) -> berth_proto::cri::ContainerState {
    match state {
        ContainerState::Created => berth_proto::cri::ContainerState::ContainerCreated,
        ContainerState::Running => berth_proto::cri::ContainerState::ContainerRunning,
        ContainerState::Exited => berth_proto::cri::ContainerState::ContainerExited,
    }
}

/// Parses a signal as images name it: `SIGTERM`, `TERM` or `15`.
fn parse_signal(text: &str) -> Option<i32> {
    if let Ok(number) = text.parse::<i32>() {
        return Some(number);
    }
    let name = text.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|signal| signal as i32)
}

async fn wait_for_exit(bundle: &std::path::Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ExitRecord::read(bundle).is_some() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_every_form() {
        assert_eq!(parse_signal("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("quit"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }
}
