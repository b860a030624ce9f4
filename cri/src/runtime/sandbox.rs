//! Pod sandboxes: pinned namespaces, the pod network, `/dev/shm`, hostname, hosts and
//! resolv.conf, and an infra process when the pod shares one PID namespace. No pause image.

use std::net::IpAddr;
use std::path::PathBuf;

use berth_proto::cri::{
    NamespaceMode, PodSandboxConfig, PodSandboxFilter, PodSandboxState, PortMapping, Protocol,
};
use prost::Message;

use super::{RuntimeError, RuntimeService, infra, mounts, new_id, resolve_id};
use crate::cgroups::{CgroupPath, QosClass, Resources};
use crate::network::{self, DEFAULT_INTERFACE, NamespaceKind, SandboxNetwork};
use crate::runtime::monitor::now_ns;
use crate::store::SandboxRecord;

/// A sandbox with its decoded CRI config, as the server reports it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub record: SandboxRecord,
    pub config: PodSandboxConfig,
}

impl Sandbox {
    fn from_record(record: SandboxRecord) -> Result<Self, RuntimeError> {
        let config = PodSandboxConfig::decode(record.config.as_slice()).map_err(|err| {
            RuntimeError::FailedPrecondition(format!(
                "sandbox {} has an unreadable config record: {err}",
                record.id
            ))
        })?;
        Ok(Self { record, config })
    }

    pub fn state(&self) -> PodSandboxState {
        if self.record.ready {
            PodSandboxState::SandboxReady
        } else {
            PodSandboxState::SandboxNotready
        }
    }

    fn namespace_mode(&self, pick: fn(&berth_proto::cri::NamespaceOption) -> i32) -> NamespaceMode {
        namespace_mode(&self.config, pick)
    }

    pub fn host_network(&self) -> bool {
        self.namespace_mode(|ns| ns.network) == NamespaceMode::Node
    }

    pub fn host_ipc(&self) -> bool {
        self.namespace_mode(|ns| ns.ipc) == NamespaceMode::Node
    }

    pub fn host_pid(&self) -> bool {
        self.namespace_mode(|ns| ns.pid) == NamespaceMode::Node
    }

    pub fn dir(&self) -> PathBuf {
        PathBuf::from(&self.record.dir)
    }
}

fn namespace_mode(
    config: &PodSandboxConfig,
    pick: fn(&berth_proto::cri::NamespaceOption) -> i32,
) -> NamespaceMode {
    config
        .linux
        .as_ref()
        .and_then(|linux| linux.security_context.as_ref())
        .and_then(|context| context.namespace_options.as_ref())
        .map(|options| NamespaceMode::try_from(pick(options)).unwrap_or(NamespaceMode::Pod))
        .unwrap_or(NamespaceMode::Pod)
}

/// Returns the unique name the kubelet expects for a sandbox: name, namespace, UID, attempt.
pub(super) fn reserved_name(record: &SandboxRecord) -> Result<String, RuntimeError> {
    let sandbox = Sandbox::from_record(record.clone())?;
    sandbox_name(&sandbox.config)
}

fn sandbox_name(config: &PodSandboxConfig) -> Result<String, RuntimeError> {
    let metadata = config
        .metadata
        .as_ref()
        .ok_or_else(|| RuntimeError::InvalidArgument {
            field: "config.metadata",
            reason: "a sandbox needs metadata with name, namespace and uid".to_string(),
        })?;
    for (field, value) in [
        ("config.metadata.name", &metadata.name),
        ("config.metadata.namespace", &metadata.namespace),
        ("config.metadata.uid", &metadata.uid),
    ] {
        if value.is_empty() {
            return Err(RuntimeError::InvalidArgument {
                field,
                reason: "must not be empty".to_string(),
            });
        }
    }
    Ok(format!(
        "{}_{}_{}_{}",
        metadata.name, metadata.namespace, metadata.uid, metadata.attempt
    ))
}

/// Undoes the steps of a sandbox start that did not complete.
#[derive(Default)]
struct Rollback {
    cgroup: Option<CgroupPath>,
    network: Option<SandboxNetwork>,
    infra_pid: Option<i32>,
    shm: Option<PathBuf>,
    namespaces: Option<PathBuf>,
    dir: Option<PathBuf>,
    name: Option<String>,
}

impl RuntimeService {
    /// Runs a pod sandbox and returns its ID. RunPodSandbox.
    pub async fn run_sandbox(
        &self,
        config: PodSandboxConfig,
        handler: &str,
    ) -> Result<String, RuntimeError> {
        let name = sandbox_name(&config)?;
        let handler = if handler.is_empty() {
            self.config.default_runtime.clone()
        } else {
            handler.to_string()
        };
        self.runtime(&handler)?;
        if namespace_mode(&config, |ns| ns.network) == NamespaceMode::Target
            || namespace_mode(&config, |ns| ns.pid) == NamespaceMode::Target
        {
            return Err(RuntimeError::InvalidArgument {
                field: "config.linux.security_context.namespace_options",
                reason: "TARGET namespace mode applies to containers, not sandboxes".to_string(),
            });
        }

        let id = new_id();
        self.reserve_name("sandbox", &name, &id)?;
        let mut rollback = Rollback {
            name: Some(name),
            ..Rollback::default()
        };
        match self
            .set_up_sandbox(&id, &config, &handler, &mut rollback)
            .await
        {
            Ok(()) => Ok(id),
            Err(err) => {
                tracing::warn!(sandbox = %id, error = %err, "RunPodSandbox failed, undoing its steps");
                self.roll_back(rollback).await;
                Err(err)
            }
        }
    }

    async fn set_up_sandbox(
        &self,
        id: &str,
        config: &PodSandboxConfig,
        handler: &str,
        rollback: &mut Rollback,
    ) -> Result<(), RuntimeError> {
        let dir = self.sandbox_dir(id);
        std::fs::create_dir_all(&dir).map_err(|err| RuntimeError::io("create", &dir, err))?;
        rollback.dir = Some(dir.clone());

        let host_network = namespace_mode(config, |ns| ns.network) == NamespaceMode::Node;
        let host_ipc = namespace_mode(config, |ns| ns.ipc) == NamespaceMode::Node;
        let shared_pid = namespace_mode(config, |ns| ns.pid) == NamespaceMode::Pod;
        // A pod that names no hostname gets the node's, as in containerd; crictl and critest
        // send none.
        let hostname = if host_network || config.hostname.is_empty() {
            nix::unistd::gethostname()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            config.hostname.clone()
        };

        let ns_dir = dir.join("ns");
        let mut kinds = Vec::new();
        if !host_network {
            kinds.extend([NamespaceKind::Net, NamespaceKind::Uts]);
        }
        if !host_ipc {
            kinds.push(NamespaceKind::Ipc);
        }
        // Pinning spawns and joins a thread of its own, so keep it off the async workers.
        let pinned = {
            let target = ns_dir.clone();
            let pinned_hostname = (!host_network).then(|| hostname.clone());
            tokio::task::spawn_blocking(move || {
                network::pin_namespaces(&target, &kinds, pinned_hostname.as_deref())
            })
            .await
            .map_err(|err| {
                RuntimeError::io("pin namespaces in", &ns_dir, std::io::Error::other(err))
            })??
        };
        rollback.namespaces = Some(ns_dir);

        if !host_ipc {
            let shm = dir.join("shm");
            mounts::mount_shm(&shm, self.config.shm_size_bytes)?;
            rollback.shm = Some(shm);
        }

        network::write_hostname(&dir.join("hostname"), &hostname)?;
        let dns = config.dns_config.clone().unwrap_or_default();
        network::write_resolv_conf(
            &dir.join("resolv.conf"),
            &dns.servers,
            &dns.searches,
            &dns.options,
        )?;

        let mut ips: Vec<IpAddr> = Vec::new();
        if !host_network {
            let sandbox_network = sandbox_network(id, config, pinned.net.clone())?;
            rollback.network = Some(sandbox_network.clone());
            ips = self.cni.setup(&sandbox_network).await?.ips;
        }
        if host_network {
            let hosts = dir.join("hosts");
            std::fs::copy("/etc/hosts", &hosts)
                .map_err(|err| RuntimeError::io("copy /etc/hosts to", &hosts, err))?;
        } else {
            network::write_hosts(&dir.join("hosts"), &hostname, &ips)?;
        }

        let infra_pid = if shared_pid {
            let pid = infra::spawn(
                &self.berth_binary,
                pinned.net.as_deref(),
                pinned.ipc.as_deref(),
                pinned.uts.as_deref(),
            )
            .await?;
            rollback.infra_pid = Some(pid);
            Some(pid)
        } else {
            None
        };

        let (cgroup_path, owns_cgroup) = self.pod_cgroup(config)?;
        let mut resources = pod_resources(config)?;
        if self.config.pod_pids_limit > 0 {
            resources.pids_limit = Some(crate::cgroups::Limit::Value(self.config.pod_pids_limit));
        }
        let create_path = cgroup_path.clone();
        self.with_cgroups(move |driver| driver.create(&create_path, &resources))
            .await?;
        if owns_cgroup {
            rollback.cgroup = Some(cgroup_path.clone());
        }

        let record = SandboxRecord {
            id: id.to_string(),
            config: config.encode_to_vec(),
            runtime_handler: handler.to_string(),
            ready: true,
            created_at_ns: now_ns(),
            ips: ips.iter().map(ToString::to_string).collect(),
            dir: dir.display().to_string(),
            infra_pid,
            cgroup_parent: cgroup_path.to_string(),
            owns_cgroup,
        };
        self.store.put_sandbox(&record)?;
        tracing::info!(sandbox = %id, pod = %pod_label(config), ips = ?record.ips, "sandbox ready");
        Ok(())
    }

    async fn roll_back(&self, rollback: Rollback) {
        if let Some(path) = rollback.cgroup
            && let Err(err) = self.with_cgroups(move |driver| driver.remove(&path)).await
        {
            tracing::warn!(error = %err, "removing the pod cgroup during rollback failed");
        }
        if let Some(sandbox_network) = &rollback.network
            && let Err(err) = self.cni.teardown(sandbox_network).await
        {
            tracing::warn!(sandbox = %sandbox_network.sandbox_id, error = %err, "CNI DEL during rollback failed");
        }
        if let Some(pid) = rollback.infra_pid {
            infra::stop(pid);
        }
        if let Some(shm) = &rollback.shm {
            let _ = mounts::unmount(shm);
        }
        if let Some(ns_dir) = &rollback.namespaces {
            let _ = network::unpin(ns_dir);
        }
        if let Some(dir) = &rollback.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(name) = &rollback.name {
            self.release_name(name);
        }
    }

    /// Finds a sandbox by ID or unique ID prefix.
    pub fn sandbox(&self, id: &str) -> Result<Sandbox, RuntimeError> {
        let records = self.store.sandboxes()?;
        let full =
            resolve_id(id, records.iter().map(|record| record.id.as_str())).ok_or_else(|| {
                RuntimeError::NotFound {
                    kind: "sandbox",
                    id: id.to_string(),
                }
            })?;
        let record = records
            .into_iter()
            .find(|record| record.id == full)
            .expect("resolved ID exists");
        Sandbox::from_record(record)
    }

    /// Lists sandboxes matching the filter. ListPodSandbox.
    pub fn list_sandboxes(
        &self,
        filter: Option<&PodSandboxFilter>,
    ) -> Result<Vec<Sandbox>, RuntimeError> {
        let mut sandboxes = Vec::new();
        for record in self.store.sandboxes()? {
            let sandbox = Sandbox::from_record(record)?;
            if let Some(filter) = filter {
                if !filter.id.is_empty() && !sandbox.record.id.starts_with(&filter.id) {
                    continue;
                }
                if let Some(state) = &filter.state
                    && state.state != sandbox.state() as i32
                {
                    continue;
                }
                if !labels_match(&filter.label_selector, &sandbox.config.labels) {
                    continue;
                }
            }
            sandboxes.push(sandbox);
        }
        sandboxes.sort_by_key(|sandbox| sandbox.record.created_at_ns);
        Ok(sandboxes)
    }

    /// Stops every container of the sandbox and releases its network, namespaces and `/dev/shm`.
    /// Stopping a stopped sandbox succeeds, as the kubelet retries stops. StopPodSandbox.
    pub async fn stop_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let sandbox = self.sandbox(id)?;
        let _lock = self.locks.lock(&sandbox.record.id).await;

        for container in self.containers_of(&sandbox.record.id)? {
            self.stop_container(&container.id, 0).await?;
        }
        self.release_sandbox_resources(&sandbox).await?;

        let mut record = sandbox.record.clone();
        if record.ready || record.infra_pid.is_some() {
            record.ready = false;
            record.infra_pid = None;
            // The addresses went back to IPAM with the network teardown.
            record.ips.clear();
            self.store.put_sandbox(&record)?;
            tracing::info!(sandbox = %record.id, "sandbox stopped");
        }
        Ok(())
    }

    async fn release_sandbox_resources(&self, sandbox: &Sandbox) -> Result<(), RuntimeError> {
        let dir = sandbox.dir();
        if !sandbox.host_network() {
            let netns = dir.join("ns").join("net");
            let netns = netns.exists().then_some(netns);
            let sandbox_network = sandbox_network(&sandbox.record.id, &sandbox.config, netns)?;
            self.cni.teardown(&sandbox_network).await?;
        }
        if let Some(pid) = sandbox.record.infra_pid {
            infra::stop(pid);
        }
        mounts::unmount(&dir.join("shm"))?;
        network::unpin(&dir.join("ns"))?;
        Ok(())
    }

    /// Removes a sandbox and its containers, stopping them first. Removing an unknown sandbox
    /// succeeds. RemovePodSandbox.
    pub async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let sandbox = match self.sandbox(id) {
            Ok(sandbox) => sandbox,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(err) => return Err(err),
        };
        self.stop_sandbox(&sandbox.record.id).await?;
        let _lock = self.locks.lock(&sandbox.record.id).await;

        for container in self.containers_of(&sandbox.record.id)? {
            self.remove_container(&container.id).await?;
        }
        let dir = sandbox.dir();
        std::fs::remove_dir_all(&dir)
            .or_else(|err| {
                if err.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(err)
                }
            })
            .map_err(|err| RuntimeError::io("remove", &dir, err))?;
        if sandbox.record.owns_cgroup {
            let path = CgroupPath::new(&sandbox.record.cgroup_parent)?;
            self.with_cgroups(move |driver| driver.remove(&path))
                .await?;
        }
        self.store.delete_sandbox(&sandbox.record.id)?;
        if let Ok(name) = sandbox_name(&sandbox.config) {
            self.release_name(&name);
        }
        tracing::info!(sandbox = %sandbox.record.id, "sandbox removed");
        Ok(())
    }

    /// Returns the pod's cgroup and whether Berth owns it. The request's cgroup parent, which
    /// the kubelet sets, is used as is and stays the kubelet's. It must be in the driver's form:
    /// a path for cgroupfs, a slice for systemd. Without one, the pod goes into the kubelet's
    /// QoS layout under `runtime.cgroup_parent`: `pod<uid>` for Guaranteed pods,
    /// `burstable/pod<uid>` and `besteffort/pod<uid>` for the others, or the same as slices.
    fn pod_cgroup(&self, config: &PodSandboxConfig) -> Result<(CgroupPath, bool), RuntimeError> {
        let requested = config
            .linux
            .as_ref()
            .map(|linux| linux.cgroup_parent.as_str())
            .filter(|parent| !parent.is_empty());
        if let Some(parent) = requested {
            return Ok((self.cgroup_kind.client_parent_path(parent)?, false));
        }
        let resources = pod_resources(config)?;
        let qos = QosClass::from_resources(&resources);
        let uid = config
            .metadata
            .as_ref()
            .map(|metadata| metadata.uid.as_str())
            .unwrap_or_default();
        let path = self
            .cgroup_kind
            .pod_path(&self.config.cgroup_parent, qos, uid)?;
        Ok((path, true))
    }

    /// Returns the paths a container of this sandbox joins.
    pub(super) fn sandbox_paths(&self, sandbox: &Sandbox) -> SandboxPaths {
        let dir = sandbox.dir();
        let pinned = |kind: &str, host: bool| (!host).then(|| dir.join("ns").join(kind));
        SandboxPaths {
            netns: pinned("net", sandbox.host_network()),
            ipcns: pinned("ipc", sandbox.host_ipc()),
            utsns: pinned("uts", sandbox.host_network()),
            pidns: sandbox
                .record
                .infra_pid
                .map(|pid| PathBuf::from(format!("/proc/{pid}/ns/pid"))),
            hostname: dir.join("hostname"),
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            shm: (!sandbox.host_ipc()).then(|| dir.join("shm")),
        }
    }
}

/// Files and namespaces of a sandbox that its containers use.
#[derive(Debug, Clone)]
pub(super) struct SandboxPaths {
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    pub pidns: Option<PathBuf>,
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    pub shm: Option<PathBuf>,
}

fn sandbox_network(
    id: &str,
    config: &PodSandboxConfig,
    netns: Option<PathBuf>,
) -> Result<SandboxNetwork, RuntimeError> {
    let metadata = config.metadata.clone().unwrap_or_default();
    let mut port_mappings = Vec::new();
    for mapping in &config.port_mappings {
        port_mappings.push(port_mapping(mapping)?);
    }
    Ok(SandboxNetwork {
        sandbox_id: id.to_string(),
        netns,
        ifname: DEFAULT_INTERFACE.to_string(),
        pod_name: metadata.name,
        pod_namespace: metadata.namespace,
        pod_uid: metadata.uid,
        port_mappings,
    })
}

fn port_mapping(mapping: &PortMapping) -> Result<network::PortMapping, RuntimeError> {
    let protocol = match Protocol::try_from(mapping.protocol).unwrap_or(Protocol::Tcp) {
        Protocol::Tcp => network::Protocol::Tcp,
        Protocol::Udp => network::Protocol::Udp,
        Protocol::Sctp => network::Protocol::Sctp,
    };
    let port = |field: &'static str, value: i32| {
        u16::try_from(value).map_err(|_| RuntimeError::InvalidArgument {
            field,
            reason: format!("{value} is not a port number from 0 to 65535"),
        })
    };
    Ok(network::PortMapping {
        host_port: port("config.port_mappings.host_port", mapping.host_port)?,
        container_port: port(
            "config.port_mappings.container_port",
            mapping.container_port,
        )?,
        protocol,
        host_ip: mapping.host_ip.clone(),
    })
}

/// Returns `namespace/name` of a pod for logs.
fn pod_label(config: &PodSandboxConfig) -> String {
    config
        .metadata
        .as_ref()
        .map(|metadata| format!("{}/{}", metadata.namespace, metadata.name))
        .unwrap_or_default()
}

/// Returns true when every selector label is present with the same value.
pub(super) fn labels_match(
    selector: &std::collections::HashMap<String, String>,
    labels: &std::collections::HashMap<String, String>,
) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// Returns the pod's resources, with the pod overhead added, as the request gives them.
fn pod_resources(config: &PodSandboxConfig) -> Result<Resources, RuntimeError> {
    let Some(linux) = config.linux.as_ref() else {
        return Ok(Resources::default());
    };
    let mut resources = match &linux.resources {
        Some(resources) => Resources::from_cri(resources)?,
        None => Resources::default(),
    };
    if let Some(overhead) = &linux.overhead {
        resources.add_overhead(&Resources::from_cri(overhead)?);
    }
    Ok(resources)
}
