//! The pod network: containers of one pod share network and IPC namespaces and reach each other
//! on 127.0.0.1, and hostPort mappings forward a host port to the pod.

use std::time::{Duration, Instant};

use berth_proto::cri::{PodSandboxConfig, PortMapping, RemovePodSandboxRequest};
use berth_tests::image;
use berth_tests::pods::{PodDaemon, container_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Shell command that serves `page` as /index.html with busybox httpd on `port`, in the
/// foreground.
fn httpd_command(port: u16, page: &str) -> String {
    format!("mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p {port} -h /www")
}

/// Returns a TCP port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Sends `GET /` to `address` and returns the whole response, or the error of the attempt.
async fn http_get(address: &str) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .map_err(|_| std::io::Error::other("connect timed out"))??;
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: berth-e2e\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::other("read timed out"))??;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Retries [`http_get`] until the response contains `page`, for up to 15 s, and returns the last
/// response or error.
async fn fetch_page(address: &str, page: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let result = http_get(address).await.map_err(|err| err.to_string());
        if result
            .as_ref()
            .is_ok_and(|response| response.contains(page))
            || Instant::now() > deadline
        {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Returns the nat table rules that mention `needle`.
fn nat_rules_mentioning(needle: &str) -> Vec<String> {
    let output = std::process::Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .expect("run iptables-save");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("-A ") && line.contains(needle))
        .map(str::to_string)
        .collect()
}

fn port_mapping(container_port: i32, host_port: u16, host_ip: &str) -> PortMapping {
    PortMapping {
        protocol: 0,
        container_port,
        host_port: i32::from(host_port),
        host_ip: host_ip.to_string(),
    }
}

/// Runs a pod with `config` and one busybox httpd container serving `page` on port 80.
async fn run_web_pod(pods: &PodDaemon, config: PodSandboxConfig, page: &str) -> (String, String) {
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let sandbox = pods.run_pod(config.clone()).await;
    let command = httpd_command(80, page);
    let container = pods
        .create_and_start(
            &sandbox,
            config,
            container_config("web", &image("busybox"), &["sh", "-c", &command]),
        )
        .await;
    (sandbox, container)
}

#[tokio::test]
async fn containers_share_net_and_ipc() {
    let pods = PodDaemon::start("").await;
    let (sandbox, first) = pods.run_busybox("shared", &["sleep", "600"]).await;
    let second = pods
        .create_and_start(
            &sandbox,
            pods.pod_config("shared"),
            container_config("second", &image("busybox"), &["sleep", "600"]),
        )
        .await;

    for namespace in ["net", "ipc", "uts"] {
        let link = format!("/proc/self/ns/{namespace}");
        let in_first = pods.exec_stdout(&first, &["readlink", &link]).await;
        let in_second = pods.exec_stdout(&second, &["readlink", &link]).await;
        assert_eq!(
            in_first, in_second,
            "both containers are in one {namespace} namespace"
        );
        let on_host = std::fs::read_link(&link).expect("read the host's namespace link");
        assert_ne!(
            in_first.trim(),
            on_host.display().to_string(),
            "the pod's {namespace} namespace is not the host's"
        );
    }
    let mount_first = pods
        .exec_stdout(&first, &["readlink", "/proc/self/ns/mnt"])
        .await;
    let mount_second = pods
        .exec_stdout(&second, &["readlink", "/proc/self/ns/mnt"])
        .await;
    assert_ne!(
        mount_first, mount_second,
        "each container has a mount namespace of its own"
    );
}

#[tokio::test]
async fn containers_talk_over_loopback() {
    let pods = PodDaemon::start("").await;
    let command = httpd_command(8081, "pod-local-page");
    let (sandbox, _server) = pods.run_busybox("loopback", &["sh", "-c", &command]).await;
    let client = pods
        .create_and_start(
            &sandbox,
            pods.pod_config("loopback"),
            container_config("client", &image("busybox"), &["sleep", "600"]),
        )
        .await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let output = loop {
        let output = pods
            .exec(
                &client,
                &["wget", "-q", "-O", "-", "http://127.0.0.1:8081/index.html"],
            )
            .await;
        if output.exit_code == 0 || Instant::now() > deadline {
            break output;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        output.exit_code,
        0,
        "wget from the client container failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "pod-local-page\n",
        "page served by the other container"
    );
}

#[tokio::test]
async fn host_port_on_loopback() {
    let pods = PodDaemon::start("").await;
    let port = free_port();
    let mut config = pods.pod_config("hostport");
    config.port_mappings = vec![port_mapping(80, port, "127.0.0.1")];
    let (sandbox, _container) = run_web_pod(&pods, config, "served-through-hostport").await;

    let address = format!("127.0.0.1:{port}");
    let response = fetch_page(&address, "served-through-hostport").await;
    let response = response.unwrap_or_else(|err| {
        panic!(
            "GET http://{address}/ failed: {err}\nnat rules of the sandbox: {:#?}",
            nat_rules_mentioning(&sandbox)
        )
    });
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "status line: {response}"
    );
    assert!(
        response.contains("served-through-hostport"),
        "page through the host port: {response}"
    );

    pods.runtime()
        .await
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .expect("RemovePodSandbox");
    let left = nat_rules_mentioning(&sandbox);
    assert!(
        left.is_empty(),
        "nat rules of the removed sandbox remain: {left:#?}"
    );
    let after = http_get(&address).await;
    assert!(
        after.is_err(),
        "the host port still answers after the pod was removed: {after:?}"
    );
}

#[tokio::test]
async fn host_port_on_every_address() {
    let pods = PodDaemon::start("").await;
    let port = free_port();
    let mut config = pods.pod_config("anyaddr");
    config.port_mappings = vec![port_mapping(80, port, "")];
    let (sandbox, _container) = run_web_pod(&pods, config, "served-on-every-address").await;

    // The bridge's gateway address is an address of this host too, reached without leaving it.
    for host in ["127.0.0.1".to_string(), format!("{}.1", pods.subnet_prefix)] {
        let address = format!("{host}:{port}");
        let response = fetch_page(&address, "served-on-every-address").await;
        let response = response.unwrap_or_else(|err| {
            panic!(
                "GET http://{address}/ failed: {err}\nnat rules of the sandbox: {:#?}",
                nat_rules_mentioning(&sandbox)
            )
        });
        assert!(
            response.contains("served-on-every-address"),
            "page through {address}: {response}"
        );
    }
}
