//! A gRPC client not written in Rust: Python's grpcio calls Version and ListImages over the CRI
//! socket, once with the socket path as the HTTP/2 `:authority` and once with grpcio's default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::cri::VersionRequest;
use berth_tests::{Daemon, image};

/// Debian's interpreter, which has the python3-grpcio package that hack/install-deps.sh installs.
const PYTHON: &str = "/usr/bin/python3";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/cri_client.py")
}

/// Runs `cri_client.py` against the daemon's socket and returns its JSON output.
async fn run_client(daemon: &Daemon, extra_args: &[&str]) -> serde_json::Value {
    let run = tokio::process::Command::new(PYTHON)
        .arg(script())
        .arg(daemon.socket())
        .args(extra_args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("cri_client.py did not finish within 60 s")
        .unwrap_or_else(|err| panic!("run {PYTHON}: {err}; install python3 and python3-grpcio"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cri_client.py {extra_args:?} exited with {}: {stderr}\ndaemon log:\n{}",
        output.status,
        daemon.log()
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "cri_client.py printed no JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Asserts that the Version and ListImages responses grpcio decoded equal the ones the Rust
/// client receives.
async fn assert_matches_rust_client(daemon: &Daemon, output: &serde_json::Value) {
    let version = daemon
        .runtime()
        .await
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("Version")
        .into_inner();
    let python_version = &output["version"];
    assert_eq!(python_version["runtime_name"], "berth", "{output}");
    assert_eq!(python_version["version"], version.version, "{output}");
    assert_eq!(
        python_version["runtime_version"], version.runtime_version,
        "{output}"
    );
    assert_eq!(
        python_version["runtime_api_version"], version.runtime_api_version,
        "{output}"
    );

    let listed = daemon.list().await;
    let python_images = output["images"].as_array().expect("images is a list");
    assert_eq!(python_images.len(), listed.len(), "{output}");
    for (python_image, image) in python_images.iter().zip(&listed) {
        assert_eq!(python_image["id"], image.id, "{output}");
        assert_eq!(
            python_image["repo_tags"],
            serde_json::json!(image.repo_tags),
            "{output}"
        );
        assert_eq!(
            python_image["repo_digests"],
            serde_json::json!(image.repo_digests),
            "{output}"
        );
        assert_eq!(python_image["size"], image.size, "{output}");
    }
}

#[tokio::test]
async fn grpcio_with_socket_path_authority() {
    let daemon = Daemon::start("").await;
    daemon.pull(&image("busybox")).await.expect("pull busybox");

    let output = run_client(&daemon, &[]).await;

    let socket = daemon.socket().display().to_string();
    assert_eq!(
        output["authority"], socket,
        "the client must send the socket path as :authority"
    );
    assert_eq!(
        output["images"].as_array().map(Vec::len),
        Some(1),
        "ListImages must return busybox: {output}"
    );
    assert_matches_rust_client(&daemon, &output).await;
}

#[tokio::test]
async fn grpcio_with_default_authority() {
    let daemon = Daemon::start("").await;
    daemon.pull(&image("busybox")).await.expect("pull busybox");

    let output = run_client(&daemon, &["--keep-default-authority"]).await;

    assert_eq!(
        output["authority"],
        serde_json::Value::Null,
        "the client must keep grpcio's default :authority"
    );
    assert_eq!(
        output["images"].as_array().map(Vec::len),
        Some(1),
        "ListImages must return busybox: {output}"
    );
    assert_matches_rust_client(&daemon, &output).await;
}
