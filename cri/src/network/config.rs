//! Settings of the pod network, read from the `[network]` table of the daemon's config file.
//! Every field has a default, so an empty table is a valid config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::cidr::IpCidr;

/// Longest Linux interface name (`IFNAMSIZ` minus the trailing NUL).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// Settings of the CNI invoker and of the built-in default network.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Directory searched for `*.conflist`, `*.conf` and `*.json` CNI configs. The lexically first
    /// file is used. When the directory contains none, the built-in bridge network is used.
    pub conf_dir: PathBuf,
    /// Directories searched in order for CNI plugin executables. They are also passed to plugins
    /// as `CNI_PATH`, so that a plugin can find the IPAM plugin it delegates to.
    pub bin_dirs: Vec<PathBuf>,
    /// Linux bridge of the built-in network, at most 15 bytes.
    pub default_bridge: String,
    /// Subnet from which the built-in network's `host-local` IPAM hands out pod addresses.
    pub default_subnet: String,
    /// Directory where the built-in network's `host-local` IPAM stores its leases. Unset means
    /// the plugin's own default, `/var/lib/cni/networks`.
    pub default_ipam_data_dir: Option<PathBuf>,
    /// Seconds one plugin run may take before it is killed and the call fails.
    pub plugin_timeout_seconds: u64,
    /// Directory where ADD results are cached for the matching DEL. Unset means `cni-cache`
    /// under the state directory the invoker is created with.
    pub cache_dir: Option<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            default_bridge: "berth0".to_string(),
            default_subnet: "10.88.0.0/16".to_string(),
            default_ipam_data_dir: None,
            // A hung plugin then fails RunPodSandbox well within the kubelet's default
            // runtime request timeout of 2 minutes.
            plugin_timeout_seconds: 30,
            cache_dir: None,
        }
    }
}

impl NetworkConfig {
    /// Returns the plugin timeout as a duration.
    pub fn plugin_timeout(&self) -> Duration {
        Duration::from_secs(self.plugin_timeout_seconds)
    }

    /// Returns the result cache directory: `cache_dir` if set, else `cni-cache` under
    /// `state_dir`.
    pub fn cache_dir_under(&self, state_dir: &Path) -> PathBuf {
        match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => state_dir.join("cni-cache"),
        }
    }

    /// Checks the values that have no sensible meaning, naming the field and a valid example.
    pub fn validate(&self) -> Result<(), String> {
        if self.bin_dirs.is_empty() {
            return Err(
                "network.bin_dirs must name at least one directory, for example \
                        [\"/usr/lib/cni\"]"
                    .into(),
            );
        }
        if let Some(dir) = self
            .bin_dirs
            .iter()
            .find(|dir| dir.as_os_str().as_encoded_bytes().contains(&b':'))
        {
            return Err(format!(
                "network.bin_dirs entry {} contains ':', which CNI_PATH cannot carry; use a \
                 path without ':'",
                dir.display()
            ));
        }
        if self.plugin_timeout_seconds == 0 {
            return Err("network.plugin_timeout_seconds must be positive, for example 30".into());
        }
        validate_interface_name(&self.default_bridge)
            .map_err(|reason| format!("network.default_bridge {reason}, for example \"berth0\""))?;
        let subnet: IpCidr = self
            .default_subnet
            .parse()
            .map_err(|reason| format!("network.default_subnet: {reason}"))?;
        // host-local reserves the network address and the gateway, and with IPv4 the
        // broadcast address: a smaller subnet leaves no address for a pod.
        let max_prefix_len = if subnet.address.is_ipv4() { 30 } else { 126 };
        if subnet.prefix_len > max_prefix_len {
            return Err(format!(
                "network.default_subnet {} leaves no address for pods; use a prefix length of at \
                 most {max_prefix_len}, for example 10.88.0.0/16",
                self.default_subnet
            ));
        }
        Ok(())
    }
}

/// Checks that `name` is a valid Linux interface name.
pub(super) fn validate_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME_LEN {
        return Err(format!(
            "{name:?} must be 1 to {MAX_INTERFACE_NAME_LEN} bytes long"
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(format!(
            "{name:?} must not be \".\" or \"..\" or contain '/', ':' or whitespace"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_gives_defaults() {
        let config: NetworkConfig = serde_json::from_str("{}").unwrap();

        assert_eq!(config.conf_dir, Path::new("/etc/cni/net.d"));
        assert_eq!(config.default_bridge, "berth0");
        assert_eq!(config.default_subnet, "10.88.0.0/16");
        assert_eq!(config.plugin_timeout(), Duration::from_secs(30));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn unknown_field_rejected() {
        let parsed = serde_json::from_str::<NetworkConfig>(r#"{"conf_dirs": "/x"}"#);

        assert!(parsed.is_err());
    }

    #[test]
    fn cache_dir_defaults_under_state() {
        let config = NetworkConfig::default();

        assert_eq!(
            config.cache_dir_under(Path::new("/var/lib/berth")),
            Path::new("/var/lib/berth/cni-cache")
        );
    }

    #[test]
    fn invalid_values_rejected() {
        type Change = fn(&mut NetworkConfig);
        let cases: [(&str, Change); 6] = [
            ("colon in bin dir", |c| {
                c.bin_dirs = vec!["/opt/cni:x".into()]
            }),
            ("long bridge", |c| {
                c.default_bridge = "a-very-long-bridge".into()
            }),
            ("slash in bridge", |c| c.default_bridge = "br/0".into()),
            ("bad subnet", |c| c.default_subnet = "10.88.0.0".into()),
            ("tiny subnet", |c| c.default_subnet = "10.88.0.0/31".into()),
            ("zero timeout", |c| c.plugin_timeout_seconds = 0),
        ];
        for (case, change) in cases {
            let mut config = NetworkConfig::default();
            change(&mut config);
            assert!(config.validate().is_err(), "{case} must be rejected");
        }
    }
}
