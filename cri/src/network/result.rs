//! The result a CNI plugin prints on a successful ADD, in the formats of spec versions 0.3.0 to
//! 1.1.0, and the error object it prints on failure.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use super::cidr::IpCidr;

/// Parsed ADD result of a network list: the last plugin's output.
#[derive(Debug, Clone)]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<CniInterface>,
    pub ips: Vec<CniIpConfig>,
    /// The result as the plugin printed it, passed on as `prevResult`.
    pub raw: Value,
}

/// An interface the plugins created or configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniInterface {
    pub name: String,
    pub mac: String,
    /// Path of the network namespace holding the interface, empty for interfaces on the host.
    pub sandbox: String,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniIpConfig {
    pub address: IpCidr,
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`] of the interface holding the address.
    pub interface: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResult {
    cni_version: String,
    #[serde(default)]
    interfaces: Vec<RawInterface>,
    #[serde(default)]
    ips: Vec<RawIpConfig>,
}

#[derive(Deserialize)]
struct RawInterface {
    name: String,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    sandbox: String,
}

#[derive(Deserialize)]
struct RawIpConfig {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    interface: Option<usize>,
}

impl CniResult {
    /// Parses a plugin's ADD output.
    ///
    /// # Errors
    ///
    /// A message naming what is missing or malformed.
    pub fn parse(output: &[u8]) -> Result<Self, String> {
        let raw: Value =
            serde_json::from_slice(output).map_err(|err| format!("output is not JSON: {err}"))?;
        let parsed: RawResult = serde_json::from_value(raw.clone())
            .map_err(|err| format!("output is not a CNI result: {err}"))?;

        let interfaces = parsed
            .interfaces
            .into_iter()
            .map(|interface| CniInterface {
                name: interface.name,
                mac: interface.mac,
                sandbox: interface.sandbox,
            })
            .collect::<Vec<_>>();
        let mut ips = Vec::with_capacity(parsed.ips.len());
        for ip in parsed.ips {
            let address = ip
                .address
                .parse::<IpCidr>()
                .map_err(|reason| format!("invalid ips[].address: {reason}"))?;
            let gateway = match ip.gateway.as_deref() {
                None | Some("") => None,
                Some(gateway) => Some(
                    gateway
                        .parse::<IpAddr>()
                        .map_err(|_| format!("invalid ips[].gateway {gateway:?}"))?,
                ),
            };
            if let Some(index) = ip.interface
                && index >= interfaces.len()
            {
                return Err(format!(
                    "ips[].interface {index} points past the {} interfaces",
                    interfaces.len()
                ));
            }
            ips.push(CniIpConfig {
                address,
                gateway,
                interface: ip.interface,
            });
        }

        Ok(CniResult {
            cni_version: parsed.cni_version,
            interfaces,
            ips,
            raw,
        })
    }

    /// Returns the pod's addresses: those on interfaces inside a network namespace, or with
    /// no interface named, IPv4 before IPv6 and otherwise in result order. The CRI's
    /// `PodSandboxNetworkStatus` takes the first as the pod's primary IP.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let in_sandbox = |ip: &&CniIpConfig| match ip.interface {
            None => true,
            Some(index) => !self.interfaces[index].sandbox.is_empty(),
        };
        let addresses = self
            .ips
            .iter()
            .filter(in_sandbox)
            .map(|ip| ip.address.address);
        let mut ips: Vec<IpAddr> = Vec::new();
        for address in addresses {
            if !ips.contains(&address) {
                ips.push(address);
            }
        }
        // A stable sort keeps the result order within each family.
        ips.sort_by_key(|address| address.is_ipv6());
        ips
    }
}

/// The error object a plugin prints on stdout when it fails.
#[derive(Debug, Clone, Deserialize)]
pub struct CniErrorOutput {
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl CniErrorOutput {
    /// Parses a plugin's failure output, or returns `None` when it is not a CNI error object.
    pub fn parse(output: &[u8]) -> Option<Self> {
        serde_json::from_slice(output).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE_RESULT_1_0: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [
            { "name": "berth0", "mac": "aa:aa:aa:aa:aa:aa" },
            { "name": "veth1234", "mac": "bb:bb:bb:bb:bb:bb" },
            { "name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/berth/ns/net" }
        ],
        "ips": [
            { "interface": 2, "address": "fd00:88::5/64", "gateway": "fd00:88::1" },
            { "interface": 2, "address": "10.88.0.5/16", "gateway": "10.88.0.1" },
            { "interface": 0, "address": "10.88.0.1/16" }
        ],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dns": {}
    }"#;

    #[test]
    fn bridge_result_gives_pod_ips() {
        let result = CniResult::parse(BRIDGE_RESULT_1_0.as_bytes()).unwrap();

        assert_eq!(result.interfaces.len(), 3);
        assert_eq!(result.interfaces[2].sandbox, "/run/berth/ns/net");
        assert_eq!(
            result.ips[1].gateway,
            Some("10.88.0.1".parse::<IpAddr>().unwrap())
        );
        let ips = result.pod_ips();
        assert_eq!(
            ips,
            [
                "10.88.0.5".parse::<IpAddr>().unwrap(),
                "fd00:88::5".parse().unwrap()
            ],
            "IPv4 first, host-side addresses left out"
        );
    }

    #[test]
    fn version_0_4_result_parses() {
        let output = br#"{
            "cniVersion": "0.4.0",
            "ips": [{ "version": "4", "address": "10.1.2.3/24", "gateway": "10.1.2.1" }]
        }"#;

        let result = CniResult::parse(output).unwrap();

        assert_eq!(result.cni_version, "0.4.0");
        assert_eq!(result.pod_ips(), ["10.1.2.3".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn malformed_results_rejected() {
        let cases: [(&str, &[u8]); 4] = [
            ("not JSON", b"plugin crashed"),
            ("no version", br#"{ "ips": [] }"#),
            ("bad address", br#"{ "cniVersion": "1.0.0", "ips": [{ "address": "10.1.2.3" }] }"#),
            (
                "interface out of range",
                br#"{ "cniVersion": "1.0.0", "ips": [{ "address": "10.1.2.3/24", "interface": 0 }] }"#,
            ),
        ];
        for (case, output) in cases {
            assert!(CniResult::parse(output).is_err(), "{case} must be rejected");
        }
    }

    #[test]
    fn error_output_parses() {
        let output = br#"{ "cniVersion": "1.0.0", "code": 7, "msg": "invalid config", "details": "no bridge" }"#;

        let error = CniErrorOutput::parse(output).unwrap();

        assert_eq!(error.code, 7);
        assert_eq!(error.msg, "invalid config");
        assert_eq!(error.details, "no bridge");
        assert!(CniErrorOutput::parse(b"panic: oops").is_none());
    }
}
