//! The built-in CNI network used when the conf dir contains no config: a Linux bridge with
//! `host-local` IPAM, masquerading for traffic leaving the node, and `portmap` for hostPorts.
//! The sandbox's `lo` is brought up when its network namespace is pinned, so the list has no
//! `loopback` plugin.

use serde_json::{Value, json};

use super::cidr::IpCidr;
use super::config::NetworkConfig;

/// Name of the built-in network, as plugins see it in `name` and write it into iptables comments
/// and `host-local` lease directories.
pub const DEFAULT_NETWORK_NAME: &str = "berth";

/// CNI spec version of the built-in list, which containernetworking-plugins 1.0.0 and later accept.
pub const DEFAULT_CNI_VERSION: &str = "1.0.0";

/// Builds the built-in conflist from the `default_*` settings. The settings must have passed
/// [`NetworkConfig::validate`].
pub fn default_network_list(config: &NetworkConfig) -> Value {
    let default_route = match config.default_subnet.parse::<IpCidr>() {
        Ok(subnet) if subnet.address.is_ipv6() => "::/0",
        _ => "0.0.0.0/0",
    };
    let mut ipam = json!({
        "type": "host-local",
        "ranges": [[{ "subnet": config.default_subnet }]],
        "routes": [{ "dst": default_route }],
    });
    if let Some(data_dir) = &config.default_ipam_data_dir {
        ipam["dataDir"] = json!(data_dir);
    }

    json!({
        "cniVersion": DEFAULT_CNI_VERSION,
        "name": DEFAULT_NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.default_bridge,
                "isGateway": true,
                "ipMasq": true,
                // Lets a pod reach itself through a Service IP. The bridge plugin rejects
                // hairpinMode together with promiscMode, so promiscMode stays unset.
                "hairpinMode": true,
                "ipam": ipam,
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn default_list_uses_settings() {
        let config = NetworkConfig {
            default_bridge: "brtest".to_string(),
            default_subnet: "10.250.7.0/24".to_string(),
            default_ipam_data_dir: Some(PathBuf::from("/tmp/leases")),
            ..NetworkConfig::default()
        };

        let list = default_network_list(&config);

        assert_eq!(list["cniVersion"], "1.0.0");
        assert_eq!(list["plugins"][0]["type"], "bridge");
        assert_eq!(list["plugins"][0]["bridge"], "brtest");
        assert_eq!(list["plugins"][0]["hairpinMode"], true);
        assert!(list["plugins"][0].get("promiscMode").is_none());
        let ipam = &list["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"][0][0]["subnet"], "10.250.7.0/24");
        assert_eq!(ipam["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(ipam["dataDir"], "/tmp/leases");
        assert_eq!(list["plugins"][1]["type"], "portmap");
        assert_eq!(list["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn ipv6_subnet_gets_ipv6_route() {
        let config = NetworkConfig {
            default_subnet: "fd00:88::/64".to_string(),
            ..NetworkConfig::default()
        };

        let list = default_network_list(&config);

        assert_eq!(list["plugins"][0]["ipam"]["routes"][0]["dst"], "::/0");
        assert!(list["plugins"][0]["ipam"].get("dataDir").is_none());
    }
}
