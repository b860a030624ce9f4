//! Addresses with a prefix length, as CNI results and IPAM configs write them ("10.88.0.5/16").

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP address with a prefix length. The address may have host bits set, as in the
/// interface address "10.88.0.5/16".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl IpCidr {
    /// Returns true when `other` lies in this network.
    pub fn contains(&self, other: IpAddr) -> bool {
        match (self.address, other) {
            (IpAddr::V4(network), IpAddr::V4(other)) => {
                let mask = prefix_mask_v4(self.prefix_len);
                u32::from(network) & mask == u32::from(other) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(other)) => {
                let mask = prefix_mask_v6(self.prefix_len);
                u128::from(network) & mask == u128::from(other) & mask
            }
            _ => false,
        }
    }

    fn max_prefix_len(address: IpAddr) -> u8 {
        if address.is_ipv4() { 32 } else { 128 }
    }
}

fn prefix_mask_v4(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn prefix_mask_v6(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for IpCidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix_len) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} has no prefix length, for example 10.88.0.0/16"))?;
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} does not start with an IP address"))?;
        let prefix_len: u8 = prefix_len
            .parse()
            .map_err(|_| format!("{text:?} has an invalid prefix length"))?;
        if prefix_len > Self::max_prefix_len(address) {
            return Err(format!(
                "{text:?} has a prefix length past the address size"
            ));
        }
        Ok(IpCidr {
            address,
            prefix_len,
        })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.address, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_matches() {
        let network: IpCidr = "10.88.0.0/16".parse().unwrap();

        assert!(network.contains("10.88.200.7".parse().unwrap()));
        assert!(!network.contains("10.89.0.1".parse().unwrap()));
        assert!(!network.contains("fd00::1".parse().unwrap()));
        assert_eq!(network.to_string(), "10.88.0.0/16");
    }

    #[test]
    fn cidr_edge_prefixes() {
        let everything: IpCidr = "0.0.0.0/0".parse().unwrap();
        let host: IpCidr = "fd00::1/128".parse().unwrap();

        assert!(everything.contains("192.0.2.1".parse().unwrap()));
        assert!(host.contains("fd00::1".parse().unwrap()));
        assert!(!host.contains("fd00::2".parse().unwrap()));
    }

    #[test]
    fn cidr_rejects_malformed_text() {
        for text in [
            "10.88.0.0",
            "10.88.0.0/33",
            "fd00::/129",
            "host/8",
            "10.0.0.0/x",
        ] {
            assert!(text.parse::<IpCidr>().is_err(), "{text} must be rejected");
        }
    }
}
