//! Temporary: holds a daemon with pods open for manual crictl checks.
use berth_tests::image;
use berth_tests::pods::{PodDaemon, container_config};

#[tokio::test]
#[ignore]
async fn hold_daemon_for_crictl() {
    let pods = PodDaemon::start("").await;
    let script = "mkdir -p /www; echo page from pod > /www/index.html; httpd -p 127.0.0.1:8080 -h /www; i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done";
    let (sandbox, container) = pods.run_busybox("scratch", &["sh", "-c", script]).await;
    let mut config = container_config("shell", &image("busybox"), &["sh"]);
    config.tty = true;
    config.stdin = true;
    let tty = pods.create_and_start(&sandbox, pods.pod_config("scratch"), config).await;
    println!("SOCKET={}\nSANDBOX={sandbox}\nCONTAINER={container}\nTTY={tty}\nLOG={}", pods.daemon.socket().display(), pods.daemon.log_path().display());
    std::fs::write("/tmp/berth-scratch.env", format!("SOCKET={}\nSANDBOX={sandbox}\nCONTAINER={container}\nTTY={tty}\nLOG={}\n", pods.daemon.socket().display(), pods.daemon.log_path().display())).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(900)).await;
}
