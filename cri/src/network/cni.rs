//! The CNI invoker: runs the chosen network list's plugins to add a sandbox to the pod network
//! (ADD) and to remove it (DEL), and reports whether the network is ready.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::cri::RuntimeCondition;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tracing::Instrument;

use super::cache::{CacheEntry, ResultCache};
use super::config::{NetworkConfig, validate_interface_name};
use super::conflist::{ConfigSource, NetworkList, PluginConfig, find_config_file, find_plugin};
use super::default_config::default_network_list;
use super::error::{CniCommand, NetworkError};
use super::netns::holds_namespace;
use super::plugin::{PluginEnv, run_plugin};
use super::result::CniResult;

/// Interface name inside the sandbox, as the kubelet and other CRI runtimes use it.
pub const DEFAULT_INTERFACE: &str = "eth0";

/// Condition type of network readiness in the CRI `Status` response.
pub const NETWORK_READY: &str = "NetworkReady";

/// Reason the kubelet expects when the network is not ready.
pub const NETWORK_PLUGIN_NOT_READY: &str = "NetworkPluginNotReady";

/// Transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// A hostPort mapping, passed to plugins that declare the `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    pub protocol: Protocol,
    /// Host address to listen on; empty for every address.
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// A sandbox as the CNI calls identify it.
#[derive(Debug, Clone)]
pub struct SandboxNetwork {
    /// Sandbox ID, passed as `CNI_CONTAINERID` and `K8S_POD_INFRA_CONTAINER_ID`.
    pub sandbox_id: String,
    /// Path of the pinned network namespace. ADD requires it; DEL passes an empty `CNI_NETNS`
    /// when it is `None` or no longer a namespace.
    pub netns: Option<PathBuf>,
    /// Interface to create in the namespace, normally [`DEFAULT_INTERFACE`].
    pub ifname: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    /// hostPort mappings; those with `host_port` 0 are not passed on, as in other CRI runtimes.
    pub port_mappings: Vec<PortMapping>,
}

/// Pod network of a sandbox, as ADD set it up.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    /// The pod's addresses, IPv4 first.
    pub ips: Vec<IpAddr>,
    pub network_name: String,
    /// The last plugin's result.
    pub result: CniResult,
}

/// Readiness of the pod network, for the `NetworkReady` condition of the CRI `Status` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    pub ready: bool,
    /// [`NETWORK_PLUGIN_NOT_READY`] when not ready, else empty.
    pub reason: String,
    pub message: String,
    /// The network list in use, if one could be loaded.
    pub source: Option<ConfigSource>,
}

impl NetworkStatus {
    /// Returns the CRI `NetworkReady` condition.
    pub fn condition(&self) -> RuntimeCondition {
        RuntimeCondition {
            r#type: NETWORK_READY.to_string(),
            status: self.ready,
            reason: self.reason.clone(),
            message: self.message.clone(),
        }
    }
}

/// The CNI invoker. It keeps no per-sandbox state in memory because the ADD results live in the
/// result cache, so a restarted daemon can still run DEL. Calls for the same sandbox must not
/// overlap, but calls for different sandboxes may.
#[derive(Debug, Clone)]
pub struct Cni {
    config: NetworkConfig,
    cache: ResultCache,
}

impl Cni {
    /// Creates the invoker. The result cache lives in `config.cache_dir`, or in `cni-cache`
    /// under `state_dir`.
    ///
    /// # Errors
    ///
    /// [`NetworkError::InvalidSetting`] when `config` fails [`NetworkConfig::validate`].
    pub fn new(config: NetworkConfig, state_dir: &Path) -> Result<Self, NetworkError> {
        config
            .validate()
            .map_err(|reason| NetworkError::InvalidSetting { reason })?;
        let cache = ResultCache::new(config.cache_dir_under(state_dir));
        Ok(Cni { config, cache })
    }

    /// Returns the network settings.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Loads the network list in use: the lexically first config in the conf dir, else the
    /// built-in default. The conf dir is read on every call, so a config installed after the
    /// daemon started (as network add-ons do) takes effect for the next sandbox.
    ///
    /// # Errors
    ///
    /// [`NetworkError::Io`] when the conf dir or the file cannot be read, and
    /// [`NetworkError::InvalidConfig`] when the file is not a valid CNI config.
    pub fn network(&self) -> Result<NetworkList, NetworkError> {
        match find_config_file(&self.config.conf_dir)? {
            Some(path) => NetworkList::from_file(&path),
            None => {
                let list = default_network_list(&self.config);
                NetworkList::parse(list, ConfigSource::BuiltIn).map_err(|reason| {
                    NetworkError::InvalidSetting {
                        reason: format!("the built-in network list is invalid: {reason}"),
                    }
                })
            }
        }
    }

    /// Adds the sandbox to the pod network: runs CNI ADD for each plugin of the list in order,
    /// each getting the previous plugin's result as `prevResult`, and caches the last result
    /// for DEL. When a step fails, DEL runs for the whole list before the error is returned,
    /// so that no address lease or iptables rule is left behind.
    ///
    /// # Errors
    ///
    /// [`NetworkError::InvalidArgument`] for a missing namespace or malformed ids,
    /// [`NetworkError::PluginNotFound`] before any plugin runs when one is missing, the
    /// errors of [`Cni::network`], and the plugin errors ([`NetworkError::PluginFailed`],
    /// [`NetworkError::PluginExited`], [`NetworkError::PluginTimeout`],
    /// [`NetworkError::InvalidResult`]).
    pub async fn setup(&self, sandbox: &SandboxNetwork) -> Result<PodNetwork, NetworkError> {
        let span = tracing::info_span!("cni_add", sandbox = %sandbox.sandbox_id);
        self.add(sandbox).instrument(span).await
    }

    /// Removes the sandbox from the pod network: runs CNI DEL for each plugin in reverse order,
    /// with the list and the result cached by ADD when there are any, then drops the cache
    /// entry. DEL succeeds again after a success, and also when the namespace is already gone,
    /// in which case plugins get an empty `CNI_NETNS` and clean up only what lives on the host.
    ///
    /// # Errors
    ///
    /// [`NetworkError::PluginNotFound`], the plugin errors, and [`NetworkError::Io`] when the
    /// cache entry cannot be removed. The cache entry stays after a failure, so a retry passes
    /// the same `prevResult`.
    pub async fn teardown(&self, sandbox: &SandboxNetwork) -> Result<(), NetworkError> {
        let span = tracing::info_span!("cni_del", sandbox = %sandbox.sandbox_id);
        self.del(sandbox).instrument(span).await
    }

    async fn add(&self, sandbox: &SandboxNetwork) -> Result<PodNetwork, NetworkError> {
        validate_sandbox(sandbox)?;
        let netns = sandbox
            .netns
            .as_ref()
            .ok_or_else(|| NetworkError::InvalidArgument {
                field: "netns",
                value: String::new(),
                reason: "ADD needs the sandbox's network namespace",
            })?;
        let list = self.network()?;
        let binaries = self.resolve_plugins(&list)?;

        let env = self.plugin_env(CniCommand::Add, sandbox, netns.display().to_string());
        let capability_args = capability_args(sandbox);
        tracing::debug!(network = %list.name, source = %list.source, "adding the sandbox to the pod network");

        match self.add_all(&list, &binaries, &env, &capability_args).await {
            Ok(result) => {
                let entry = CacheEntry::new(
                    &sandbox.sandbox_id,
                    &sandbox.ifname,
                    &list.name,
                    list.raw.clone(),
                    &env.args,
                    capability_args.clone(),
                    result.raw.clone(),
                );
                if let Err(err) = self.cache.store(&entry) {
                    self.roll_back(&list, sandbox, Some(&result.raw), &capability_args)
                        .await;
                    return Err(err);
                }
                let ips = result.pod_ips();
                tracing::info!(network = %list.name, ips = ?ips, "sandbox added to the pod network");
                Ok(PodNetwork {
                    ips,
                    network_name: list.name.clone(),
                    result,
                })
            }
            Err((err, last_result)) => {
                tracing::warn!(err = %err, "CNI ADD failed; running DEL to undo it");
                self.roll_back(&list, sandbox, last_result.as_ref(), &capability_args)
                    .await;
                Err(err)
            }
        }
    }

    async fn del(&self, sandbox: &SandboxNetwork) -> Result<(), NetworkError> {
        validate_sandbox(sandbox)?;
        let cached = self.load_cached(sandbox);
        let (list, prev_result, capability_args) = match cached {
            Some((list, entry)) => (list, Some(entry.result), entry.capability_args),
            None => (self.network()?, None, capability_args(sandbox)),
        };

        let netns = match &sandbox.netns {
            Some(path) if holds_namespace(path) => path.display().to_string(),
            Some(path) => {
                tracing::debug!(netns = %path.display(), "network namespace is gone; DEL cleans up the host side only");
                String::new()
            }
            None => String::new(),
        };
        self.del_all(
            &list,
            sandbox,
            netns,
            prev_result.as_ref(),
            &capability_args,
        )
        .await?;
        self.cache.remove(&sandbox.sandbox_id, &sandbox.ifname)?;
        tracing::info!(network = %list.name, "sandbox removed from the pod network");
        Ok(())
    }

    /// Reports whether a sandbox could be added now: whether a config file was found or the
    /// built-in default applies, and whether every plugin it names is installed.
    pub fn status(&self) -> NetworkStatus {
        let list = match self.network() {
            Ok(list) => list,
            Err(err) => {
                return NetworkStatus {
                    ready: false,
                    reason: NETWORK_PLUGIN_NOT_READY.to_string(),
                    message: err.to_string(),
                    source: None,
                };
            }
        };
        if let Err(err) = self.resolve_plugins(&list) {
            return NetworkStatus {
                ready: false,
                reason: NETWORK_PLUGIN_NOT_READY.to_string(),
                message: err.to_string(),
                source: Some(list.source),
            };
        }
        let message = match &list.source {
            ConfigSource::BuiltIn => format!(
                "no CNI config in {}; using the built-in network {:?} on bridge {} with subnet {}",
                self.config.conf_dir.display(),
                list.name,
                self.config.default_bridge,
                self.config.default_subnet
            ),
            source => format!("using CNI network {:?} from {source}", list.name),
        };
        NetworkStatus {
            ready: true,
            reason: String::new(),
            message,
            source: Some(list.source),
        }
    }

    /// Finds the executable of every plugin, and of every IPAM plugin, that `list` names.
    fn resolve_plugins(&self, list: &NetworkList) -> Result<Vec<PathBuf>, NetworkError> {
        let mut binaries = Vec::with_capacity(list.plugins.len());
        for plugin in &list.plugins {
            for (index, name) in plugin.executables().into_iter().enumerate() {
                let binary = find_plugin(&self.config.bin_dirs, name).ok_or_else(|| {
                    NetworkError::PluginNotFound {
                        plugin: name.to_string(),
                        network: list.name.clone(),
                        dirs: self.bin_dirs_text(),
                    }
                })?;
                if index == 0 {
                    binaries.push(binary);
                }
            }
        }
        Ok(binaries)
    }

    fn bin_dirs_text(&self) -> String {
        let dirs: Vec<String> = self
            .config
            .bin_dirs
            .iter()
            .map(|dir| dir.display().to_string())
            .collect();
        dirs.join(", ")
    }

    fn plugin_env(
        &self,
        command: CniCommand,
        sandbox: &SandboxNetwork,
        netns: String,
    ) -> PluginEnv {
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            sandbox.pod_namespace, sandbox.pod_name, sandbox.sandbox_id, sandbox.pod_uid
        );
        // NetworkConfig::validate rejects directories with ':', the only case join_paths fails on.
        let cni_path = std::env::join_paths(&self.config.bin_dirs).unwrap_or_default();
        PluginEnv {
            command,
            container_id: sandbox.sandbox_id.clone(),
            netns,
            ifname: sandbox.ifname.clone(),
            args,
            cni_path,
        }
    }

    fn timeout(&self) -> Duration {
        self.config.plugin_timeout()
    }

    /// Runs ADD for each plugin. On failure it also returns the last successful result, which
    /// the rollback's DEL gets as `prevResult`.
    async fn add_all(
        &self,
        list: &NetworkList,
        binaries: &[PathBuf],
        env: &PluginEnv,
        capability_args: &Value,
    ) -> Result<CniResult, (NetworkError, Option<Value>)> {
        let mut prev_result: Option<CniResult> = None;
        for (plugin, binary) in list.plugins.iter().zip(binaries) {
            let prev_raw = prev_result.as_ref().map(|result| &result.raw);
            let stdin = plugin_stdin(list, plugin, prev_raw, capability_args);
            let output = run_plugin(&plugin.plugin_type, binary, env, stdin, self.timeout())
                .await
                .map_err(|err| (err, prev_raw.cloned()))?;
            let result = CniResult::parse(&output).map_err(|reason| {
                let err = NetworkError::InvalidResult {
                    plugin: plugin.plugin_type.clone(),
                    command: CniCommand::Add,
                    reason,
                };
                (err, prev_raw.cloned())
            })?;
            tracing::debug!(plugin = %plugin.plugin_type, "CNI ADD succeeded");
            prev_result = Some(result);
        }
        Ok(prev_result.expect("a parsed network list has at least one plugin"))
    }

    /// Runs DEL for each plugin in reverse order, stopping at the first failure as libcni does.
    async fn del_all(
        &self,
        list: &NetworkList,
        sandbox: &SandboxNetwork,
        netns: String,
        prev_result: Option<&Value>,
        capability_args: &Value,
    ) -> Result<(), NetworkError> {
        let binaries = self.resolve_plugins(list)?;
        let env = self.plugin_env(CniCommand::Del, sandbox, netns);
        let prev_result = prev_result.filter(|_| list.passes_result_on_del());
        for (plugin, binary) in list.plugins.iter().zip(&binaries).rev() {
            let stdin = plugin_stdin(list, plugin, prev_result, capability_args);
            run_plugin(&plugin.plugin_type, binary, &env, stdin, self.timeout()).await?;
            tracing::debug!(plugin = %plugin.plugin_type, "CNI DEL succeeded");
        }
        Ok(())
    }

    /// Undoes a failed ADD by running DEL. Its errors are logged, because the caller returns
    /// the ADD error, and a later teardown of the sandbox runs DEL again.
    async fn roll_back(
        &self,
        list: &NetworkList,
        sandbox: &SandboxNetwork,
        prev_result: Option<&Value>,
        capability_args: &Value,
    ) {
        let netns = sandbox
            .netns
            .as_ref()
            .filter(|path| holds_namespace(path))
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        if let Err(err) = self
            .del_all(list, sandbox, netns, prev_result, capability_args)
            .await
        {
            tracing::warn!(err = %err, "CNI DEL after the failed ADD failed; the sandbox's teardown retries it");
            return;
        }
        if let Err(err) = self.cache.remove(&sandbox.sandbox_id, &sandbox.ifname) {
            tracing::warn!(err = %err, "removing the CNI result cache entry failed");
        }
    }

    /// Returns the cached list and entry of the sandbox's ADD. A missing, unreadable or invalid
    /// entry gives `None`, so that DEL falls back to the current list instead of failing for
    /// good.
    fn load_cached(&self, sandbox: &SandboxNetwork) -> Option<(NetworkList, CacheEntry)> {
        let entry = match self.cache.load(&sandbox.sandbox_id, &sandbox.ifname) {
            Ok(entry) => entry?,
            Err(err) => {
                tracing::warn!(sandbox = %sandbox.sandbox_id, err = %err, "ignoring the CNI result cache entry");
                return None;
            }
        };
        let path = self.cache.path(&sandbox.sandbox_id, &sandbox.ifname);
        match NetworkList::parse(entry.config.clone(), ConfigSource::Cached(path)) {
            Ok(list) => Some((list, entry)),
            Err(reason) => {
                tracing::warn!(sandbox = %sandbox.sandbox_id, reason, "ignoring the cached network list");
                None
            }
        }
    }
}

/// Builds a plugin's stdin: its own config plus the list's `name` and `cniVersion`, the
/// `prevResult`, and a `runtimeConfig` with the capabilities it declares.
fn plugin_stdin(
    list: &NetworkList,
    plugin: &PluginConfig,
    prev_result: Option<&Value>,
    capability_args: &Value,
) -> Vec<u8> {
    let mut config = plugin.raw.clone();
    config.insert("name".to_string(), json!(list.name));
    config.insert("cniVersion".to_string(), json!(list.cni_version));
    if let Some(prev_result) = prev_result {
        config.insert("prevResult".to_string(), prev_result.clone());
    }
    let mut runtime_config = Map::new();
    for capability in &plugin.capabilities {
        if let Some(value) = capability_args.get(capability) {
            runtime_config.insert(capability.clone(), value.clone());
        }
    }
    if !runtime_config.is_empty() {
        config.insert("runtimeConfig".to_string(), Value::Object(runtime_config));
    }
    serde_json::to_vec(&config).expect("a JSON object serializes")
}

/// Returns the `runtimeConfig` values Berth offers, by capability name.
fn capability_args(sandbox: &SandboxNetwork) -> Value {
    let port_mappings: Vec<&PortMapping> = sandbox
        .port_mappings
        .iter()
        .filter(|mapping| mapping.host_port != 0)
        .collect();
    if port_mappings.is_empty() {
        return json!({});
    }
    json!({ "portMappings": port_mappings })
}

/// Checks the ids that end up in file names, `CNI_ARGS` and iptables comments.
fn validate_sandbox(sandbox: &SandboxNetwork) -> Result<(), NetworkError> {
    // The CNI spec restricts container IDs to these characters.
    let id = &sandbox.sandbox_id;
    let valid_id = !id.is_empty()
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_id {
        return Err(NetworkError::InvalidArgument {
            field: "sandbox ID",
            value: id.clone(),
            reason: "it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'",
        });
    }
    if validate_interface_name(&sandbox.ifname).is_err() {
        return Err(NetworkError::InvalidArgument {
            field: "interface name",
            value: sandbox.ifname.clone(),
            reason: "it must be 1 to 15 bytes without '/', ':' or whitespace",
        });
    }
    let cni_args = [
        ("pod name", &sandbox.pod_name),
        ("pod namespace", &sandbox.pod_namespace),
        ("pod UID", &sandbox.pod_uid),
    ];
    for (field, value) in cni_args {
        if value.contains([';', '=']) {
            return Err(NetworkError::InvalidArgument {
                field,
                value: value.clone(),
                reason: "CNI_ARGS cannot carry ';' or '='",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> SandboxNetwork {
        SandboxNetwork {
            sandbox_id: "0123abcd".to_string(),
            netns: None,
            ifname: DEFAULT_INTERFACE.to_string(),
            pod_name: "web".to_string(),
            pod_namespace: "default".to_string(),
            pod_uid: "uid-1".to_string(),
            port_mappings: vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: String::new(),
                },
                PortMapping {
                    host_port: 0,
                    container_port: 443,
                    protocol: Protocol::Tcp,
                    host_ip: String::new(),
                },
            ],
        }
    }

    #[test]
    fn stdin_carries_list_fields_and_capabilities() {
        let config = NetworkConfig::default();
        let list =
            NetworkList::parse(default_network_list(&config), ConfigSource::BuiltIn).unwrap();
        let args = capability_args(&sandbox());
        let prev = json!({ "cniVersion": "1.0.0", "ips": [] });

        let bridge: Value =
            serde_json::from_slice(&plugin_stdin(&list, &list.plugins[0], None, &args)).unwrap();
        let portmap: Value =
            serde_json::from_slice(&plugin_stdin(&list, &list.plugins[1], Some(&prev), &args))
                .unwrap();

        assert_eq!(bridge["name"], "berth");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(
            bridge.get("runtimeConfig").is_none(),
            "bridge declares no capability"
        );
        assert!(bridge.get("prevResult").is_none());
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"],
            json!([{ "hostPort": 8080, "containerPort": 80, "protocol": "tcp" }]),
            "a mapping without hostPort is left out"
        );
    }

    #[test]
    fn sandbox_fields_validated() {
        type Change = fn(&mut SandboxNetwork);
        let cases: [(&str, Change); 4] = [
            ("path in id", |s| s.sandbox_id = "../x".into()),
            ("empty id", |s| s.sandbox_id = String::new()),
            ("long interface", |s| s.ifname = "interface-name-16".into()),
            ("separator in pod name", |s| s.pod_name = "a;b".into()),
        ];
        assert!(validate_sandbox(&sandbox()).is_ok());
        for (case, change) in cases {
            let mut sandbox = sandbox();
            change(&mut sandbox);
            assert!(
                validate_sandbox(&sandbox).is_err(),
                "{case} must be rejected"
            );
        }
    }

    #[test]
    fn status_names_missing_plugin() {
        let bin_dir = tempfile::tempdir().unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let config = NetworkConfig {
            conf_dir: state_dir.path().join("no-conf"),
            bin_dirs: vec![bin_dir.path().to_path_buf()],
            ..NetworkConfig::default()
        };
        let cni = Cni::new(config, state_dir.path()).unwrap();

        let status = cni.status();

        assert!(!status.ready);
        assert_eq!(status.reason, NETWORK_PLUGIN_NOT_READY);
        assert!(status.message.contains("\"bridge\""), "{}", status.message);
        assert!(
            status.message.contains("containernetworking-plugins"),
            "{}",
            status.message
        );
        assert_eq!(status.source, Some(ConfigSource::BuiltIn));
        assert_eq!(status.condition().r#type, NETWORK_READY);
        assert!(!status.condition().status);
    }
}
