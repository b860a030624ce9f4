//! CNI ADD and DEL with the real plugins of containernetworking-plugins.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

use super::*;

const GREETING: &[u8] = b"hello from the pod\n";

fn single_ipv4(network: &PodNetwork) -> IpAddr {
    assert_eq!(network.ips.len(), 1, "{:?}", network.ips);
    assert!(network.ips[0].is_ipv4());
    network.ips[0]
}

/// Starts a thread that enters `netns`, listens on TCP `port` there, and sends [`GREETING`] to
/// the first client. The thread gives up after 20 s without a client.
fn serve_in_netns(netns: &Path, port: u16) -> JoinHandle<Result<(), String>> {
    let netns = netns.to_path_buf();
    let (ready_sender, ready) = mpsc::channel();
    let server = std::thread::spawn(move || {
        // setns of a network namespace changes only this thread, which ends with the test.
        let file = fs::File::open(&netns).map_err(|err| err.to_string())?;
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|err| err.to_string())?;
        let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|err| err.to_string())?;
        listener
            .set_nonblocking(true)
            .map_err(|err| err.to_string())?;
        ready_sender.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .map_err(|err| err.to_string())?;
                    return stream.write_all(GREETING).map_err(|err| err.to_string());
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("no client connected within 20 s".to_string());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => return Err(err.to_string()),
            }
        }
    });
    ready
        .recv_timeout(Duration::from_secs(5))
        .expect("the listener in the pod's netns started");
    server
}

fn read_greeting(address: SocketAddr) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .map_err(|err| format!("connecting to {address} failed: {err}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .map_err(|err| format!("reading from {address} failed: {err}"))?;
    Ok(received)
}

/// Connects to `address` on the host while a server in `netns` listens on `container_port`,
/// and returns what the client received or why it failed, with the server's own error.
fn greeting_through(
    netns: &Path,
    container_port: u16,
    address: SocketAddr,
) -> Result<Vec<u8>, String> {
    let server = serve_in_netns(netns, container_port);
    let received = read_greeting(address);
    let served = server.join().expect("the server thread ends");
    received.map_err(|err| format!("{err} (server: {served:?})"))
}

#[tokio::test]
async fn add_default_network_gives_ip() {
    let mut net = TestNetwork::new();
    let cni = net.cni();
    let sandbox = net.sandbox("web");

    let status = cni.status();
    let network = cni.setup(&sandbox).await.unwrap();

    assert!(status.ready, "{status:?}");
    assert_eq!(status.source, Some(ConfigSource::BuiltIn));
    assert_eq!(network.network_name, DEFAULT_NETWORK_NAME);
    let ip = single_ipv4(&network);
    let subnet: IpCidr = net.subnet.parse().unwrap();
    assert!(subnet.contains(ip), "{ip} is outside {}", net.subnet);
    assert_ne!(
        ip,
        IpAddr::V4(net.gateway),
        "the gateway is the bridge's address"
    );
    let addresses = run_in_netns(
        netns_of(&sandbox),
        &["ip", "-o", "addr", "show", "dev", "eth0"],
    );
    let addresses = String::from_utf8_lossy(&addresses.stdout);
    assert!(
        addresses.contains(&format!("inet {ip}/24")),
        "eth0 lacks {ip}: {addresses}"
    );
    assert!(
        Path::new("/sys/class/net").join(&net.bridge).exists(),
        "bridge {} was not created",
        net.bridge
    );
    let cache_file = net
        .state_dir()
        .join("cni-cache")
        .join(format!("{}-eth0.json", sandbox.sandbox_id));
    assert!(cache_file.is_file(), "ADD result not cached");
    assert!(net.lease_file(ip).is_file(), "host-local lease missing");
    assert!(
        !nat_rules_mentioning(&sandbox.sandbox_id).is_empty(),
        "ipMasq rules missing"
    );

    cni.teardown(&sandbox).await.unwrap();

    assert!(!net.lease_file(ip).exists(), "DEL left the lease of {ip}");
    assert!(!cache_file.exists(), "DEL left the cache entry");
    assert_eq!(
        nat_rules_mentioning(&sandbox.sandbox_id),
        Vec::<String>::new()
    );
    let addresses = run_in_netns(
        netns_of(&sandbox),
        &["ip", "-o", "addr", "show", "dev", "eth0"],
    );
    assert!(!addresses.status.success(), "eth0 still exists after DEL");
    cni.teardown(&sandbox).await.expect("a second DEL succeeds");
}

#[tokio::test]
async fn sandboxes_on_bridge_ping() {
    let mut net = TestNetwork::new();
    let cni = net.cni();
    let first = net.sandbox("first");
    let second = net.sandbox("second");

    let first_ip = single_ipv4(&cni.setup(&first).await.unwrap());
    let second_ip = single_ipv4(&cni.setup(&second).await.unwrap());
    let target = second_ip.to_string();
    let ping = run_in_netns(
        netns_of(&first),
        &["busybox", "ping", "-c1", "-W2", &target],
    );

    assert_ne!(first_ip, second_ip);
    assert!(
        ping.status.success(),
        "ping from {first_ip} to {second_ip} failed: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    cni.teardown(&first).await.unwrap();
    cni.teardown(&second).await.unwrap();
}

/// Removes the shared portmap chains on drop when they did not exist before the test and no
/// sandbox uses them any more. portmap creates them on first use and never deletes them.
struct SharedPortmapChains {
    existed_before: bool,
}

impl SharedPortmapChains {
    const DNAT: &str = "CNI-HOSTPORT-DNAT";

    fn snapshot() -> Self {
        SharedPortmapChains {
            existed_before: nat_table().contains(&format!(":{} ", Self::DNAT)),
        }
    }
}

impl Drop for SharedPortmapChains {
    fn drop(&mut self) {
        if self.existed_before {
            return;
        }
        let table = nat_table();
        if table
            .lines()
            .any(|line| line.starts_with(&format!("-A {} ", Self::DNAT)))
        {
            eprintln!(
                "cleanup: {} still has rules; leaving the shared portmap chains",
                Self::DNAT
            );
            return;
        }
        let shared = [
            "CNI-HOSTPORT-DNAT",
            "CNI-HOSTPORT-SETMARK",
            "CNI-HOSTPORT-MASQ",
        ];
        let mut script = String::from("*nat\n");
        for line in table.lines() {
            let jumps_to_shared = shared
                .iter()
                .any(|chain| line.ends_with(&format!("-j {chain}")));
            let in_builtin = ["-A PREROUTING ", "-A OUTPUT ", "-A POSTROUTING "]
                .iter()
                .any(|prefix| line.starts_with(prefix));
            if jumps_to_shared && in_builtin {
                script.push_str(&line.replacen("-A ", "-D ", 1));
                script.push('\n');
            }
        }
        for chain in shared {
            if table.contains(&format!(":{chain} ")) {
                script.push_str(&format!("-F {chain}\n"));
            }
        }
        for chain in shared {
            if table.contains(&format!(":{chain} ")) {
                script.push_str(&format!("-X {chain}\n"));
            }
        }
        script.push_str("COMMIT\n");
        restore_nat(&script);
    }
}

#[tokio::test]
async fn host_port_reaches_pod() {
    require_root();
    // Declared before the network, so that it is dropped after the network's guard has
    // removed the sandbox's rules.
    let _shared_chains = SharedPortmapChains::snapshot();
    let mut net = TestNetwork::new();
    let cni = net.cni();
    let host_port = 20_000 + rand::random::<u16>() % 20_000;
    let localhost_port = host_port + 1;
    let container_port = 8080;
    let mut sandbox = net.sandbox("hostport");
    sandbox.port_mappings = vec![
        PortMapping {
            host_port,
            container_port,
            protocol: Protocol::Tcp,
            host_ip: String::new(),
        },
        PortMapping {
            host_port: localhost_port,
            container_port,
            protocol: Protocol::Tcp,
            host_ip: "127.0.0.1".to_string(),
        },
    ];

    let network = cni.setup(&sandbox).await.unwrap();
    let pod_ip = single_ipv4(&network);
    let rules = nat_rules_mentioning(&sandbox.sandbox_id);
    // Connections to 127.0.0.1 work because portmap (1.1.1 here) sets route_localnet on the
    // bridge and masquerades the loopback source.
    let netns = netns_of(&sandbox);
    let localhost = SocketAddr::from(([127, 0, 0, 1], host_port));
    let gateway = SocketAddr::new(IpAddr::V4(net.gateway), host_port);
    let bound = SocketAddr::from(([127, 0, 0, 1], localhost_port));
    let via_localhost = greeting_through(netns, container_port, localhost);
    let via_gateway = greeting_through(netns, container_port, gateway);
    let via_bound = greeting_through(netns, container_port, bound);

    let multiport = format!("--dports {host_port},{localhost_port} ");
    assert!(
        rules.iter().any(|rule| rule.contains(&multiport)),
        "no rule for hostPorts {host_port} and {localhost_port} names the sandbox: {rules:?}"
    );
    for port in [host_port, localhost_port] {
        let dnat = format!("--dport {port} -j DNAT --to-destination {pod_ip}:{container_port}");
        assert!(nat_table().contains(&dnat), "no DNAT rule {dnat:?}");
    }
    assert!(
        nat_table().contains(&format!(
            "-d 127.0.0.1/32 -p tcp -m tcp --dport {localhost_port} "
        )),
        "the mapping with hostIP 127.0.0.1 is not restricted to that address"
    );
    assert_eq!(via_localhost, Ok(GREETING.to_vec()), "through {localhost}");
    assert_eq!(via_gateway, Ok(GREETING.to_vec()), "through {gateway}");
    assert_eq!(via_bound, Ok(GREETING.to_vec()), "through {bound}");

    cni.teardown(&sandbox).await.unwrap();

    assert_eq!(
        nat_rules_mentioning(&sandbox.sandbox_id),
        Vec::<String>::new(),
        "DEL left iptables rules of the sandbox"
    );
    for port in [host_port, localhost_port] {
        assert!(
            !nat_table().contains(&format!("--dport {port} ")),
            "DEL left a rule for hostPort {port}"
        );
    }
}

#[tokio::test]
async fn del_after_netns_gone() {
    let mut net = TestNetwork::new();
    let cni = net.cni();
    let sandbox = net.sandbox("gone");
    let ip = single_ipv4(&cni.setup(&sandbox).await.unwrap());
    unpin(&net.namespace_dir(&sandbox.sandbox_id)).unwrap();

    cni.teardown(&sandbox)
        .await
        .expect("DEL without the netns succeeds");

    assert!(!net.lease_file(ip).exists(), "DEL left the lease of {ip}");
    cni.teardown(&sandbox).await.expect("a second DEL succeeds");
    let unnamed = SandboxNetwork {
        netns: None,
        ..sandbox.clone()
    };
    cni.teardown(&unnamed)
        .await
        .expect("DEL without any netns path succeeds");
    // NOTE: the bridge plugin of containernetworking-plugins 1.1.1 removes its ipMasq rules
    // only when it can enter the netns. They stay here, and the guard removes them.
}

#[tokio::test]
async fn missing_plugin_named() {
    let mut net = TestNetwork::new();
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "missing",
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "ipam": { "type": "host-local", "subnet": net.subnet, "dataDir": net.ipam_dir() },
            },
            { "type": "berth-no-such-plugin" },
        ],
    });
    fs::create_dir_all(net.conf_dir()).unwrap();
    fs::write(
        net.conf_dir().join("10-missing.conflist"),
        conflist.to_string(),
    )
    .unwrap();
    let cni = net.cni();
    let sandbox = net.sandbox("missing");

    let status = cni.status();
    let added = cni.setup(&sandbox).await;

    assert!(!status.ready);
    assert_eq!(status.reason, NETWORK_PLUGIN_NOT_READY);
    assert!(
        status.message.contains("\"berth-no-such-plugin\""),
        "{}",
        status.message
    );
    assert!(
        status.message.contains("containernetworking-plugins"),
        "{}",
        status.message
    );
    let err = added.expect_err("ADD with a missing plugin must fail");
    assert!(
        matches!(&err, NetworkError::PluginNotFound { plugin, .. } if plugin == "berth-no-such-plugin"),
        "{err}"
    );
    assert!(err.to_string().contains("berth-no-such-plugin"), "{err}");
    assert!(
        !Path::new("/sys/class/net").join(&net.bridge).exists(),
        "no plugin may run before all are found"
    );
}

#[tokio::test]
async fn plugin_error_json_surfaced() {
    let mut net = TestNetwork::new();
    // The bridge plugin rejects hairpinMode together with promiscMode before it changes
    // anything on the host.
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "rejected",
        "plugins": [{
            "type": "bridge",
            "bridge": net.bridge,
            "hairpinMode": true,
            "promiscMode": true,
            "ipam": { "type": "host-local", "subnet": net.subnet, "dataDir": net.ipam_dir() },
        }],
    });
    fs::create_dir_all(net.conf_dir()).unwrap();
    fs::write(
        net.conf_dir().join("10-rejected.conflist"),
        conflist.to_string(),
    )
    .unwrap();
    let cni = net.cni();
    let sandbox = net.sandbox("rejected");

    let err = cni
        .setup(&sandbox)
        .await
        .expect_err("bridge must reject the config");

    let NetworkError::PluginFailed {
        plugin,
        command,
        code,
        msg,
        ..
    } = &err
    else {
        panic!("expected a CNI error object, got {err:?}");
    };
    assert_eq!(plugin, "bridge");
    assert_eq!(*command, CniCommand::Add);
    assert_ne!(*code, 0);
    assert!(msg.contains("hairpin"), "{msg}");
    assert!(err.to_string().contains("\"bridge\""), "{err}");
    let cache_file = net
        .state_dir()
        .join("cni-cache")
        .join(format!("{}-eth0.json", sandbox.sandbox_id));
    assert!(!cache_file.exists(), "a failed ADD must not be cached");
}
