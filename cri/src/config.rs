//! Settings of the CRI services, read from the `[image]` and `[registries]` tables of the
//! daemon's TOML config file. Every field has a default, so an empty file is a valid config.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::cgroups::DriverKind;

/// Settings of the image service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Layers of one image downloaded at the same time.
    pub max_concurrent_downloads: usize,
    /// Largest uncompressed size of one layer, in bytes; a layer that expands past it is rejected
    /// as a likely decompression bomb.
    pub max_layer_bytes: u64,
    /// Seconds a registry may send nothing during a blob or manifest download before the pull is
    /// aborted.
    pub progress_timeout_seconds: u64,
    /// Docker `config.json` whose `auths` supply credentials when a pull request carries none.
    /// Defaults to `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            max_concurrent_downloads: 3,
            max_layer_bytes: 32 << 30,
            progress_timeout_seconds: 60,
            docker_config: None,
        }
    }
}

impl ImageConfig {
    /// Returns the progress timeout as a duration.
    pub fn progress_timeout(&self) -> Duration {
        Duration::from_secs(self.progress_timeout_seconds)
    }

    /// Returns the Docker config file to read credentials from, if one is known.
    pub fn docker_config_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.docker_config {
            return Some(path.clone());
        }
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
    }

    /// Checks the values that have no sensible meaning, naming the field and a valid example.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent_downloads == 0 {
            return Err("image.max_concurrent_downloads must be at least 1, for example 3".into());
        }
        if self.max_layer_bytes == 0 {
            return Err("image.max_layer_bytes must be positive, for example 34359738368".into());
        }
        if self.progress_timeout_seconds == 0 {
            return Err("image.progress_timeout_seconds must be positive, for example 60".into());
        }
        Ok(())
    }
}

/// How to reach one registry host, keyed in the config file by the host name as it appears in
/// image references (`docker.io`, `registry.k8s.io`, `127.0.0.1:5000`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryHost {
    /// Hosts tried in order before this one; the first that serves the image wins, and the
    /// upstream host is tried last. Each mirror's own entry sets its TLS and HTTP settings.
    pub mirrors: Vec<String>,
    /// Speak plain HTTP to this host instead of HTTPS.
    pub plain_http: bool,
    /// PEM file with extra CA certificates trusted for this host.
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate from this host. Unsafe outside tests and labs.
    pub skip_verify: bool,
}

/// Per-host registry settings.
pub type RegistryHosts = BTreeMap<String, RegistryHost>;

/// Settings of the runtime service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Runtime handler used when a pod names none. Empty picks one: crun when it is installed
    /// and the host's cgroups are not a v1/v2 hybrid (crun 1.8 rejects hybrid layouts), else
    /// runc.
    pub default_runtime: String,
    /// OCI runtime binaries by runtime handler name, such as `runc = "/usr/sbin/runc"`.
    /// Handlers named here replace the detected ones; `runc` and `crun` are detected in PATH.
    pub runtimes: BTreeMap<String, PathBuf>,
    /// Cgroup driver, the way pod and container cgroups are made: `"cgroupfs"` (directories written directly) or
    /// `"systemd"` (slices and scopes through systemd's D-Bus API). Empty picks systemd when it
    /// runs as the init system and accepts D-Bus connections, else cgroupfs. The kubelet must be started
    /// with the same `--cgroup-driver`; RuntimeConfig reports this one to it.
    pub cgroup_driver: String,
    /// Parent of the pods whose request names no cgroup parent: a cgroups path such as `/berth`
    /// for cgroupfs, a slice such as `berth.slice` for systemd. Empty means those two defaults.
    pub cgroup_parent: String,
    /// Size of each pod's `/dev/shm`, in bytes.
    pub shm_size_bytes: u64,
    /// Largest stdout and stderr, each, that ExecSync returns, in bytes; the rest is dropped.
    pub exec_sync_max_output_bytes: usize,
    /// Seconds a container may take to start before StartContainer fails.
    pub start_timeout_seconds: u64,
    /// Most processes one pod may run (`pids.max` of its cgroup); 0 means no limit. The CRI has
    /// no per-container process limit, so this is the only one Berth sets.
    pub pod_pids_limit: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            default_runtime: String::new(),
            runtimes: BTreeMap::new(),
            cgroup_driver: String::new(),
            cgroup_parent: String::new(),
            shm_size_bytes: 64 << 20,
            exec_sync_max_output_bytes: 16 << 20,
            start_timeout_seconds: 60,
            pod_pids_limit: 0,
        }
    }
}

impl RuntimeConfig {
    /// Checks the values that have no sensible meaning, naming the field and a valid example.
    pub fn validate(&self) -> Result<(), String> {
        if !self.cgroup_driver.is_empty() {
            let driver: DriverKind = self
                .cgroup_driver
                .parse()
                .map_err(|err| format!("runtime.cgroup_driver: {err}"))?;
            if !self.cgroup_parent.is_empty() {
                check_cgroup_parent(driver, &self.cgroup_parent)?;
            }
        }
        if self.shm_size_bytes < 4096 {
            return Err(
                "runtime.shm_size_bytes must be at least 4096, for example 67108864".into(),
            );
        }
        if self.start_timeout_seconds == 0 {
            return Err("runtime.start_timeout_seconds must be positive, for example 60".into());
        }
        Ok(())
    }
}

/// Checks that a configured pod parent has the form `driver` expects.
pub fn check_cgroup_parent(driver: DriverKind, parent: &str) -> Result<(), String> {
    driver.check_parent(parent).map_err(|err| {
        let example = driver.default_parent();
        let other = match driver {
            DriverKind::Cgroupfs => DriverKind::Systemd,
            DriverKind::Systemd => DriverKind::Cgroupfs,
        };
        let keep = if other.check_parent(parent).is_ok() {
            format!(", or set runtime.cgroup_driver = \"{other}\" to keep this parent")
        } else {
            String::new()
        };
        format!(
            "runtime.cgroup_parent {parent:?} does not suit the {driver} cgroup driver ({err}); \
             use a value like {example:?}{keep}"
        )
    })
}
