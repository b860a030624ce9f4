//! The runtime service: pod sandboxes and containers, run through an OCI runtime.
//!
//! On disk, under the state directory:
//!
//! ```text
//! sandboxes/<id>/ns/{net,ipc,uts}   pinned namespaces (bind mounts of nsfs files)
//! sandboxes/<id>/shm                the pod's /dev/shm (tmpfs)
//! sandboxes/<id>/{hostname,hosts,resolv.conf}
//! containers/<id>/config.json       OCI bundle, with rootfs/ (the overlay mount)
//! containers/<id>/exit.json         the exit, written by the container's monitor
//! runc/                             the OCI runtime's own state
//! ```
//!
//! Writable layers live under the image root in `containers/<id>/{upper,work}`.

pub mod container;
mod error;
mod exec;
pub mod infra;
pub mod logs;
pub mod monitor;
mod mounts;
pub mod oci;
mod resources;
pub mod sandbox;
pub mod spec;
pub mod stats;
pub mod stream_target;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_proto::cri::ContainerEventResponse;
use tokio::sync::broadcast;

use crate::cgroups::{self, CgroupDriver, DriverKind, Hierarchy};
use crate::config::RuntimeConfig;
use crate::image::ImageService;
use crate::image::locks::KeyedLocks;
use crate::network::{Cni, NetworkConfig};
use crate::store::Store;
pub use container::ContainerState;
pub use error::RuntimeError;
pub use exec::ExecOutput;
use oci::OciRuntime;

/// Events buffered for slow GetContainerEvents subscribers before they miss some.
const EVENT_BUFFER: usize = 1024;

/// The runtime service over one state directory.
pub struct RuntimeService {
    state_dir: PathBuf,
    /// Directory of writable container layers: the image root's `containers/`.
    layers_dir: PathBuf,
    config: RuntimeConfig,
    store: Arc<Store>,
    images: Arc<ImageService>,
    cni: Cni,
    runtimes: BTreeMap<String, OciRuntime>,
    /// The `berth` binary, re-executed as the monitor and infra processes.
    berth_binary: PathBuf,
    /// Per-ID locks that serialize operations on one sandbox or container.
    locks: KeyedLocks,
    /// Reserved sandbox and container names, mapped to the ID that reserved each.
    names: Mutex<HashMap<String, String>>,
    events: broadcast::Sender<ContainerEventResponse>,
    /// The daemon's own oom_score_adj: containers may not ask for less, because this process
    /// may lack CAP_SYS_RESOURCE to lower it.
    min_oom_score_adj: i32,
    /// The cgroup driver, or `None` when no cgroup hierarchy was found: pods then run without
    /// pod-level cgroups and limits.
    cgroups: Option<Arc<dyn CgroupDriver>>,
    /// Driver kind that names and makes cgroups; cgroupfs naming also when `cgroups` is `None`.
    cgroup_kind: DriverKind,
}

impl RuntimeService {
    /// Opens the runtime state, detects the OCI runtimes and adopts the sandboxes and
    /// containers of an earlier run, whose monitors kept running while the daemon was away.
    pub async fn open(
        state_dir: &Path,
        config: RuntimeConfig,
        network: NetworkConfig,
        store: Arc<Store>,
        images: Arc<ImageService>,
    ) -> Result<Arc<Self>, RuntimeError> {
        for dir in ["sandboxes", "containers", "runc"] {
            let path = state_dir.join(dir);
            std::fs::create_dir_all(&path).map_err(|err| RuntimeError::io("create", &path, err))?;
        }
        let layers_dir = images.root().join("containers");
        let mut runtimes = detect_runtimes(&config, state_dir);
        let mut config = config;
        if config.default_runtime.is_empty() {
            config.default_runtime = pick_default_runtime(&runtimes);
            tracing::info!(handler = %config.default_runtime, "chose the default runtime handler");
        }
        if !runtimes.contains_key(&config.default_runtime) {
            tracing::warn!(
                handler = %config.default_runtime,
                "default OCI runtime not found: install the Debian package runc, or set runtime.runtimes"
            );
        }
        let cni = Cni::new(network, state_dir)?;
        let berth_binary = std::env::current_exe()
            .map_err(|err| RuntimeError::io("find", Path::new("/proc/self/exe"), err))?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (cgroup_kind, cgroups) = open_cgroups(&config)?;
        if config.cgroup_parent.is_empty() {
            config.cgroup_parent = cgroup_kind.default_parent().to_string();
        }
        crate::config::check_cgroup_parent(cgroup_kind, &config.cgroup_parent)
            .map_err(RuntimeError::Config)?;
        let systemd_cgroup = cgroup_kind == DriverKind::Systemd;
        for runtime in runtimes.values_mut() {
            runtime.systemd_cgroup = systemd_cgroup;
        }
        let service = Arc::new(Self {
            state_dir: state_dir.to_path_buf(),
            layers_dir,
            config,
            store,
            images,
            cni,
            runtimes,
            berth_binary,
            locks: KeyedLocks::default(),
            names: Mutex::new(HashMap::new()),
            events,
            min_oom_score_adj: own_oom_score_adj(),
            cgroup_kind,
            cgroups,
        });
        service.adopt()?;
        service.clone().spawn_exit_poller();
        Ok(service)
    }

    /// Returns the configured and detected runtime handlers, by name.
    pub fn handlers(&self) -> Vec<String> {
        self.runtimes.keys().cloned().collect()
    }

    /// Returns the cgroup driver, as RuntimeConfig reports it to the kubelet.
    pub fn cgroup_driver(&self) -> DriverKind {
        self.cgroup_kind
    }

    /// Runs a blocking cgroup operation off the async workers. Without a cgroup driver it does
    /// nothing and returns `None`.
    pub(crate) async fn with_cgroups<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&dyn CgroupDriver) -> Result<T, cgroups::CgroupError> + Send + 'static,
    ) -> Result<Option<T>, RuntimeError> {
        let Some(driver) = self.cgroups.clone() else {
            return Ok(None);
        };
        let result = tokio::task::spawn_blocking(move || operation(driver.as_ref()))
            .await
            .map_err(|err| {
                RuntimeError::io(
                    "run cgroup task for",
                    Path::new("/sys/fs/cgroup"),
                    std::io::Error::other(err),
                )
            })??;
        Ok(Some(result))
    }

    /// Returns true when the default runtime handler has an OCI runtime binary.
    pub fn default_handler_ready(&self) -> bool {
        self.runtimes.contains_key(&self.config.default_runtime)
    }

    /// Returns whether the pod network can be set up, with a reason when it cannot.
    pub fn network_status(&self) -> Result<(), String> {
        let status = self.cni.status();
        if status.ready {
            Ok(())
        } else {
            Err(status.message)
        }
    }

    /// Subscribes to container lifecycle events.
    pub fn subscribe(&self) -> broadcast::Receiver<ContainerEventResponse> {
        self.events.subscribe()
    }

    fn runtime(&self, handler: &str) -> Result<&OciRuntime, RuntimeError> {
        let handler = if handler.is_empty() {
            self.config.default_runtime.as_str()
        } else {
            handler
        };
        self.runtimes
            .get(handler)
            .ok_or_else(|| RuntimeError::UnknownHandler {
                handler: handler.to_string(),
                known: self.runtimes.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Reserves a unique name for `id`, as the kubelet relies on to detect duplicates.
    fn reserve_name(&self, kind: &'static str, name: &str, id: &str) -> Result<(), RuntimeError> {
        let mut names = self.names.lock().expect("name map poisoned");
        if let Some(owner) = names.get(name)
            && owner != id
        {
            return Err(RuntimeError::NameTaken {
                kind,
                name: name.to_string(),
                owner: owner.clone(),
            });
        }
        names.insert(name.to_string(), id.to_string());
        Ok(())
    }

    fn release_name(&self, name: &str) {
        self.names.lock().expect("name map poisoned").remove(name);
    }

    /// Reserves the names of recorded sandboxes and containers, and records the exits that
    /// happened while the daemon was not running.
    fn adopt(&self) -> Result<(), RuntimeError> {
        let sandboxes = self.store.sandboxes()?;
        for sandbox in &sandboxes {
            if let Ok(name) = sandbox::reserved_name(sandbox) {
                self.reserve_name("sandbox", &name, &sandbox.id)?;
            }
        }
        let containers = self.store.containers()?;
        for record in &containers {
            if let Ok(name) = container::reserved_name(record, &sandboxes) {
                self.reserve_name("container", &name, &record.id)?;
            }
            self.refresh_exit(record)?;
        }
        if !sandboxes.is_empty() || !containers.is_empty() {
            tracing::info!(
                sandboxes = sandboxes.len(),
                containers = containers.len(),
                "adopted sandboxes and containers of the previous run"
            );
        }
        Ok(())
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("sandboxes").join(id)
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("containers").join(id)
    }
}

/// Builds the runtime handler table: configured binaries, else runc and crun found in PATH.
fn detect_runtimes(config: &RuntimeConfig, state_dir: &Path) -> BTreeMap<String, OciRuntime> {
    let mut runtimes = BTreeMap::new();
    for name in ["runc", "crun"] {
        if let Some(binary) = oci::find_binary(name) {
            runtimes.insert(name.to_string(), binary);
        }
    }
    for (name, binary) in &config.runtimes {
        runtimes.insert(name.clone(), binary.clone());
    }
    runtimes
        .into_iter()
        .map(|(name, binary)| {
            let runtime = OciRuntime {
                state_root: state_dir.join("runc").join(&name),
                name: name.clone(),
                binary,
                systemd_cgroup: false,
            };
            (name, runtime)
        })
        .collect()
}

/// Picks crun, which starts containers faster than runc, unless it is missing or the host mixes
/// cgroup v1 controllers with a cgroup2 mount, which crun 1.8 refuses to run on.
fn pick_default_runtime(runtimes: &BTreeMap<String, OciRuntime>) -> String {
    if runtimes.contains_key("crun") && !is_hybrid_cgroup_host() {
        "crun".to_string()
    } else {
        "runc".to_string()
    }
}

/// Picks the cgroup driver from `runtime.cgroup_driver` and opens it. Without any cgroup
/// hierarchy, pods run without pod cgroups, unless systemd was asked for by name.
fn open_cgroups(
    config: &RuntimeConfig,
) -> Result<(DriverKind, Option<Arc<dyn CgroupDriver>>), RuntimeError> {
    let configured: Option<DriverKind> = if config.cgroup_driver.is_empty() {
        None
    } else {
        Some(config.cgroup_driver.parse().map_err(RuntimeError::Config)?)
    };
    let hierarchy = match Hierarchy::detect() {
        Ok(hierarchy) => hierarchy,
        Err(err) if configured == Some(DriverKind::Systemd) => {
            return Err(RuntimeError::Config(format!(
                "runtime.cgroup_driver is \"systemd\", but no cgroup hierarchy is usable: {err}"
            )));
        }
        Err(err) => {
            tracing::warn!(error = %err, "no usable cgroup hierarchy: pods run without pod cgroups");
            return Ok((configured.unwrap_or(DriverKind::Cgroupfs), None));
        }
    };

    let driver = match configured {
        Some(DriverKind::Cgroupfs) => cgroups::cgroupfs(hierarchy),
        Some(DriverKind::Systemd) => cgroups::systemd(hierarchy).map_err(|err| {
            let init = if cgroups::systemd_is_running() {
                ""
            } else {
                "systemd is not the init system here, and "
            };
            RuntimeError::Config(format!(
                "runtime.cgroup_driver is \"systemd\", but {init}{err}; run Berth where systemd \
                 is the init system and its D-Bus socket is reachable, or set \
                 runtime.cgroup_driver = \"cgroupfs\" and start the kubelet with \
                 --cgroup-driver=cgroupfs"
            ))
        })?,
        None => {
            let (kind, reason) = cgroups::pick_driver();
            tracing::info!(driver = %kind, reason, "picked the cgroup driver");
            match kind {
                DriverKind::Systemd => cgroups::systemd(hierarchy)?,
                DriverKind::Cgroupfs => cgroups::cgroupfs(hierarchy),
            }
        }
    };
    tracing::info!(driver = driver.name(), version = %driver.version(), "cgroup driver ready");
    Ok((driver.kind(), Some(driver)))
}

/// Returns true when cgroup v1 controllers are mounted and a cgroup2 hierarchy is mounted too.
fn is_hybrid_cgroup_host() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let types: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(" - ").nth(1))
        .filter_map(|right| right.split(' ').next())
        .collect();
    types.contains(&"cgroup") && types.contains(&"cgroup2")
}

/// Returns this process's oom_score_adj, or 0 when unreadable.
fn own_oom_score_adj() -> i32 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Returns a new random 64-hex-digit ID, the form containerd and CRI-O use.
fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Finds the one ID in `ids` that equals `prefix` or starts with it, as crictl allows.
fn resolve_id<'a>(prefix: &str, ids: impl Iterator<Item = &'a str>) -> Option<String> {
    if prefix.is_empty() {
        return None;
    }
    let mut matches = ids.filter(|id| id.starts_with(prefix));
    match (matches.next(), matches.next()) {
        (Some(id), None) => Some(id.to_string()),
        _ => None,
    }
}
