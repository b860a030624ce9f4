//! The pod network: namespaces pinned for each sandbox, CNI plugin calls that connect them to
//! the pod network, and the DNS and hosts files of each sandbox.
//!
//! A sandbox's network comes up in this order: [`pin_namespaces`] creates its network, IPC and
//! UTS namespaces; [`Cni::setup`] runs CNI ADD against the network namespace and returns the
//! pod IPs; [`write_resolv_conf`], [`write_hosts`] and [`write_hostname`] write the files its
//! containers mount. Teardown runs [`Cni::teardown`] (CNI DEL) before [`unpin`], because some
//! plugins clean up less when the namespace is gone. The bridge plugin of
//! containernetworking-plugins 1.1.1, for example, then leaves its `ipMasq` iptables rules.
//!
//! CNI state on disk, under the daemon's state directory unless configured otherwise:
//!
//! ```text
//! cni-cache/<sandbox ID>-<interface>.json   the list and result of each ADD, for its DEL
//! ```

mod cache;
mod cidr;
mod cni;
mod config;
mod conflist;
mod default_config;
mod dns;
mod error;
mod netns;
mod plugin;
mod result;

#[cfg(test)]
mod tests;

pub use cidr::IpCidr;
pub use cni::{
    Cni, DEFAULT_INTERFACE, NETWORK_PLUGIN_NOT_READY, NETWORK_READY, NetworkStatus, PodNetwork,
    PortMapping, Protocol, SandboxNetwork,
};
pub use config::NetworkConfig;
pub use conflist::{ConfigSource, NetworkList, PluginConfig, SUPPORTED_CNI_VERSIONS};
pub use default_config::{DEFAULT_CNI_VERSION, DEFAULT_NETWORK_NAME, default_network_list};
pub use dns::{write_hostname, write_hosts, write_resolv_conf};
pub use error::{CniCommand, NetworkError};
pub use netns::{NamespaceKind, PinnedNamespaces, pin_namespaces, unpin};
pub use result::{CniInterface, CniIpConfig, CniResult};
