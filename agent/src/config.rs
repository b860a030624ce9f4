//! The daemon's TOML config file and the command-line flags that override it.

use std::path::{Path, PathBuf};

use berth_cri::config::{ImageConfig, RegistryHosts, RuntimeConfig};
use berth_cri::gc::GcPolicy;
use berth_cri::network::NetworkConfig;
use berth_cri::stream::StreamConfig;
use serde::Deserialize;

/// Default path of the config file; a missing file at this path means all defaults.
pub const DEFAULT_CONFIG: &str = "/etc/berth/config.toml";

/// The config file. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Persistent state: blobs, layers, metadata database.
    pub root: PathBuf,
    /// Runtime state that does not survive a reboot.
    pub state_dir: PathBuf,
    /// CRI socket path. Defaults to `<state_dir>/berth.sock`.
    pub socket: Option<PathBuf>,
    /// Log filter in `tracing` syntax, such as `info` or `berth_cri=debug`.
    pub log_level: String,
    pub image: ImageConfig,
    pub runtime: RuntimeConfig,
    pub network: NetworkConfig,
    /// Per-registry settings keyed by host, as `[registries."docker.io"]` tables.
    pub registries: RegistryHosts,
    /// The exec, attach and port-forward streaming server, as a `[stream]` table.
    pub stream: StreamConfig,
    /// The image collector's policy, used by `serve` and by `berth gc`.
    pub gc: GcPolicy,
    /// The Prometheus endpoint of `serve`, as a `[metrics]` table.
    pub metrics: MetricsConfig,
}

/// The `[metrics]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// IP address and port on which `serve` serves `GET /metrics`, or "" to turn the endpoint
    /// off. Any address is accepted, so a non-loopback one exposes the counters to the network.
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:9108".to_string(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/var/lib/berth"),
            state_dir: PathBuf::from("/run/berth"),
            socket: None,
            log_level: "info".to_string(),
            image: ImageConfig::default(),
            runtime: RuntimeConfig::default(),
            network: NetworkConfig::default(),
            registries: RegistryHosts::new(),
            stream: StreamConfig::default(),
            gc: GcPolicy::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// Error of loading the config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl AgentConfig {
    /// Loads the config file. A missing file at the default path gives the defaults, so a fresh
    /// host needs no config. A missing file named explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        config.image.validate().map_err(ConfigError::Invalid)?;
        config.runtime.validate().map_err(ConfigError::Invalid)?;
        config
            .network
            .validate()
            .map_err(|reason| ConfigError::Invalid(format!("network: {reason}")))?;
        config.stream.validate().map_err(ConfigError::Invalid)?;
        config.gc.validate().map_err(ConfigError::Invalid)?;
        crate::metrics::parse_address(&config.metrics.address)
            .map_err(|reason| ConfigError::Invalid(format!("metrics.address: {reason}")))?;
        Ok(config)
    }

    /// Returns the CRI socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.state_dir.join("berth.sock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_default_file_gives_defaults() {
        let config = AgentConfig::load(Path::new("/nonexistent/berth.toml"), false).unwrap();
        assert_eq!(config.root, PathBuf::from("/var/lib/berth"));
        assert_eq!(config.socket_path(), PathBuf::from("/run/berth/berth.sock"));
        assert_eq!(config.image.max_concurrent_downloads, 3);
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        assert!(AgentConfig::load(Path::new("/nonexistent/berth.toml"), true).is_err());
    }

    #[test]
    fn registries_and_image_settings_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            r#"
root = "/tmp/berth-root"
[image]
max_concurrent_downloads = 5
[registries."docker.io"]
mirrors = ["127.0.0.1:5000"]
[registries."127.0.0.1:5000"]
plain_http = true
"#,
        )
        .unwrap();

        let config = AgentConfig::load(&path, true).unwrap();

        assert_eq!(config.image.max_concurrent_downloads, 5);
        assert_eq!(
            config.registries["docker.io"].mirrors,
            vec!["127.0.0.1:5000"]
        );
        assert!(config.registries["127.0.0.1:5000"].plain_http);
    }

    #[test]
    fn unknown_field_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[image]\nmax_downloads = 5\n").unwrap();

        let err = AgentConfig::load(&path, true).unwrap_err();

        assert!(err.to_string().contains("max_downloads"), "{err}");
    }

    #[test]
    fn zero_downloads_is_rejected_with_example() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[image]\nmax_concurrent_downloads = 0\n").unwrap();

        let err = AgentConfig::load(&path, true).unwrap_err();

        assert!(
            err.to_string().contains("image.max_concurrent_downloads"),
            "{err}"
        );
    }

    #[test]
    fn gc_table_parses_and_defaults_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[gc]\nschedule = \"30 2 * * SUN\"\ntime_zone = \"Europe/Berlin\"\nkeep = [\"registry.k8s.io/pause:*\"]\n",
        )
        .unwrap();

        let config = AgentConfig::load(&path, true).unwrap();

        assert_eq!(config.gc.schedule, "30 2 * * SUN");
        assert_eq!(config.gc.time_zone, "Europe/Berlin");
        assert_eq!(config.gc.keep, vec!["registry.k8s.io/pause:*"]);
        assert_eq!(config.gc.high_threshold_percent, 85);
        assert_eq!(config.gc.min_age_seconds, 120);
    }

    #[test]
    fn gc_unknown_field_and_bad_value_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[gc]\nhigh_threshold = 90\n").unwrap();
        let err = AgentConfig::load(&path, true).unwrap_err();
        assert!(err.to_string().contains("high_threshold"), "{err}");

        std::fs::write(&path, "[gc]\nlow_threshold_percent = 90\n").unwrap();
        let err = AgentConfig::load(&path, true).unwrap_err();
        assert!(
            err.to_string().contains("gc.low_threshold_percent"),
            "{err}"
        );
    }

    #[test]
    fn stream_table_parses_and_defaults_to_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[stream]\nmax_sessions = 8\n").unwrap();

        let config = AgentConfig::load(&path, true).unwrap();

        assert_eq!(config.stream.max_sessions, 8);
        assert_eq!(config.stream.address.to_string(), "127.0.0.1:0");
        assert_eq!(config.stream.idle_timeout_seconds, 4 * 60 * 60);
        assert_eq!(config.stream.token_ttl_seconds, 60);
    }

    #[test]
    fn stream_zero_sessions_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[stream]\nmax_sessions = 0\n").unwrap();

        let err = AgentConfig::load(&path, true).unwrap_err();

        assert!(err.to_string().contains("stream.max_sessions"), "{err}");
    }

    #[test]
    fn metrics_address_defaults_to_loopback() {
        let config = AgentConfig::load(Path::new("/nonexistent/berth.toml"), false).unwrap();

        assert_eq!(config.metrics.address, "127.0.0.1:9108");
    }

    #[test]
    fn metrics_address_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[metrics]\naddress = \"\"\n").unwrap();
        let config = AgentConfig::load(&path, true).unwrap();
        assert_eq!(config.metrics.address, "");

        std::fs::write(&path, "[metrics]\naddress = \"9108\"\n").unwrap();
        let err = AgentConfig::load(&path, true).unwrap_err();
        assert!(err.to_string().contains("metrics.address"), "{err}");
    }
}
