//! Tests that need root and the real CNI plugins of Debian's containernetworking-plugins in
//! `/usr/lib/cni`. Each test creates its own bridge, subnet, conf dir, state dir and namespace
//! files, and a guard removes them when the test ends, even when it fails.

mod cni;
mod fake_plugin;
mod netns;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use super::*;

/// Fails the test unless it runs as root, so that a test needing root never passes by skipping.
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates namespaces, bridges and iptables rules and must run as root"
    );
}

/// Runs a host command and returns its output, failing the test when it cannot start.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("running {program} {args:?} failed: {err}"))
}

/// Runs a host command and returns its stdout, failing the test when it exits non-zero.
fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns eight random hex digits for names of links and namespaces.
fn random_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Returns a /24 in 10.250.0.0/16 that no other test of this process uses: a per-process
/// random start, stepped by a counter.
fn unique_subnet() -> (String, Ipv4Addr) {
    static START: OnceLock<u8> = OnceLock::new();
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let start = *START.get_or_init(rand::random::<u8>);
    let octet = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    (
        format!("10.250.{octet}.0/24"),
        Ipv4Addr::new(10, 250, octet, 1),
    )
}

/// Returns the nat table's rules and chains as `iptables-save` prints them.
fn nat_table() -> String {
    run_ok("iptables-save", &["-t", "nat"])
}

/// Returns the nat rules whose text contains `needle`, such as a container ID that CNI
/// plugins write into rule comments.
fn nat_rules_mentioning(needle: &str) -> Vec<String> {
    nat_table()
        .lines()
        .filter(|line| line.starts_with("-A ") && line.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Deletes the nat rules that mention `container_id`, and the per-container chains they jump
/// to, through `iptables-restore --noflush`, which parses the quoted comments itself.
fn remove_nat_rules_of(container_id: &str) {
    let table = nat_table();
    let declared: BTreeSet<&str> = table
        .lines()
        .filter_map(|line| line.strip_prefix(':'))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    let rules: Vec<&str> = table
        .lines()
        .filter(|line| line.starts_with("-A ") && line.contains(container_id))
        .collect();
    if rules.is_empty() {
        return;
    }
    let mut chains = BTreeSet::new();
    for rule in &rules {
        let mut words = rule.split_whitespace();
        while let Some(word) = words.next() {
            if word == "-j"
                && let Some(target) = words.next()
                && target.starts_with("CNI-")
                && !target.starts_with("CNI-HOSTPORT-")
                && declared.contains(target)
            {
                chains.insert(target.to_string());
            }
        }
    }
    let mut script = String::from("*nat\n");
    for rule in &rules {
        script.push_str(&rule.replacen("-A ", "-D ", 1));
        script.push('\n');
    }
    for chain in &chains {
        script.push_str(&format!("-F {chain}\n-X {chain}\n"));
    }
    script.push_str("COMMIT\n");
    restore_nat(&script);
}

fn restore_nat(script: &str) {
    let mut child = Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .spawn()
        .expect("iptables-restore starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let status = child.wait().unwrap();
    if !status.success() {
        eprintln!("cleanup: iptables-restore failed with {status} on:\n{script}");
    }
}

/// One test's network: a unique bridge and subnet, temporary conf, state, IPAM and namespace
/// directories, and the sandboxes created in it. Dropping it unpins the namespaces, deletes
/// iptables rules that name its sandboxes, deletes the bridge and removes the directories.
struct TestNetwork {
    bridge: String,
    subnet: String,
    gateway: Ipv4Addr,
    root: tempfile::TempDir,
    sandbox_ids: Vec<String>,
}

impl TestNetwork {
    fn new() -> Self {
        require_root();
        let (subnet, gateway) = unique_subnet();
        TestNetwork {
            bridge: format!("brt{}", random_suffix()),
            subnet,
            gateway,
            root: tempfile::tempdir().expect("temporary directory"),
            sandbox_ids: Vec::new(),
        }
    }

    fn conf_dir(&self) -> PathBuf {
        self.root.path().join("net.d")
    }

    fn ipam_dir(&self) -> PathBuf {
        self.root.path().join("ipam")
    }

    fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn config(&self) -> NetworkConfig {
        NetworkConfig {
            conf_dir: self.conf_dir(),
            default_bridge: self.bridge.clone(),
            default_subnet: self.subnet.clone(),
            default_ipam_data_dir: Some(self.ipam_dir()),
            ..NetworkConfig::default()
        }
    }

    fn cni(&self) -> Cni {
        Cni::new(self.config(), &self.state_dir()).expect("valid test network settings")
    }

    /// Pins a network namespace for a new sandbox and returns its CNI description.
    fn sandbox(&mut self, name: &str) -> SandboxNetwork {
        let sandbox_id = format!("berthtest{}", random_suffix());
        let dir = self.namespace_dir(&sandbox_id);
        let pinned = pin_namespaces(&dir, &[NamespaceKind::Net], None).expect("pin netns");
        self.sandbox_ids.push(sandbox_id.clone());
        SandboxNetwork {
            sandbox_id,
            netns: pinned.net,
            ifname: DEFAULT_INTERFACE.to_string(),
            pod_name: name.to_string(),
            pod_namespace: "berth-test".to_string(),
            pod_uid: format!("uid-{name}"),
            port_mappings: Vec::new(),
        }
    }

    fn namespace_dir(&self, sandbox_id: &str) -> PathBuf {
        self.root.path().join("ns").join(sandbox_id)
    }

    /// Returns the host-local lease file of `ip`, which exists while the address is allocated.
    fn lease_file(&self, ip: std::net::IpAddr) -> PathBuf {
        self.ipam_dir()
            .join(DEFAULT_NETWORK_NAME)
            .join(ip.to_string())
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for sandbox_id in &self.sandbox_ids {
            if let Err(err) = unpin(&self.namespace_dir(sandbox_id)) {
                eprintln!("cleanup: unpinning the namespaces of {sandbox_id} failed: {err}");
            }
            remove_nat_rules_of(sandbox_id);
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            let output = run("ip", &["link", "del", &self.bridge]);
            if !output.status.success() {
                eprintln!(
                    "cleanup: deleting bridge {} failed: {}",
                    self.bridge,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}

/// Returns the pinned network namespace of a sandbox.
fn netns_of(sandbox: &SandboxNetwork) -> &Path {
    sandbox
        .netns
        .as_deref()
        .expect("sandbox has a network namespace")
}

/// Runs a command inside a pinned network namespace through `nsenter`.
fn run_in_netns(netns: &Path, program: &[&str]) -> Output {
    let net = format!("--net={}", netns.display());
    let mut args = vec![net.as_str()];
    args.extend_from_slice(program);
    run("nsenter", &args)
}
