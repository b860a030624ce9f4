//! `berth gc --endpoint` against Debian's containerd 1.6 and its CRI plugin. The test starts
//! containerd with its own root on a small tmpfs, its own state directory and socket. The disk
//! trigger frees images least recently used first down to the low mark and spares a kept image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::{ListImagesRequest, PullImageRequest, VersionRequest};
use berth_tests::pods::unmount_below;
use berth_tests::{berth_binary, connect, image, registry, spec};
use serde_json::{Value, json};

const SECOND_NS: u64 = 1_000_000_000;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A containerd whose root is a tmpfs under a temp dir, stopped by PID and unmounted on drop.
struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Containerd {
    async fn start(tmpfs_size: &str) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("berth-gc-containerd-")
            .tempdir()
            .expect("create temp dir");
        let mut containerd = Containerd { dir, child: None };
        let root = containerd.root();
        std::fs::create_dir_all(&root).expect("create containerd root");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={tmpfs_size}"))
            .arg("berth-gc-containerd")
            .arg(&root)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs on {} failed",
            root.display()
        );

        let config = containerd.path("containerd.toml");
        std::fs::write(&config, containerd.config()).expect("write containerd config");
        let log = std::fs::File::create(containerd.path("containerd.log")).expect("create log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start containerd: install the Debian package containerd");
        containerd.child = Some(child);
        containerd.wait_ready().await;
        containerd
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn root(&self) -> PathBuf {
        self.path("root")
    }

    fn socket(&self) -> PathBuf {
        self.path("containerd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("containerd.log")).unwrap_or_default()
    }

    /// Returns the config of hack/bench-pull.sh: everything under the temp dir, no snapshotters
    /// that cannot work here, and the test registry as a plain-HTTP mirror of itself.
    /// `restrict_oom_score_adj` is set because processes here may lack CAP_SYS_RESOURCE.
    fn config(&self) -> String {
        let dir = self.dir.path().display();
        let registry = registry();
        format!(
            r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{dir}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  disable_apparmor = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{dir}/cni/bin"
    conf_dir = "{dir}/cni/conf"

  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]
"#
        )
    }

    /// Waits until the CRI Version call succeeds: containerd creates its socket before the CRI
    /// plugin is ready.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!(
                    "containerd exited with {status} before serving; log:\n{}",
                    self.log()
                );
            }
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                let mut client = RuntimeServiceClient::new(connect(&self.socket()).await);
                if client.version(VersionRequest::default()).await.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer Version within {READY_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn images(&self) -> ImageServiceClient<tonic::transport::Channel> {
        ImageServiceClient::new(connect(&self.socket()).await)
    }

    async fn pull(&self, reference: &str) -> String {
        self.images()
            .await
            .pull_image(PullImageRequest {
                image: Some(spec(reference)),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("pull {reference}: {status:?}\nlog:\n{}", self.log()))
            .into_inner()
            .image_ref
    }

    async fn list(&self) -> Vec<berth_proto::cri::Image> {
        self.images()
            .await
            .list_images(ListImagesRequest::default())
            .await
            .expect("ListImages")
            .into_inner()
            .images
    }
}

impl Drop for Containerd {
    /// Stops containerd by its PID (SIGTERM, then SIGKILL after 15 s), then unmounts what it
    /// and the test mounted under the temp dir, which the TempDir then removes.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on the PID of a child this test started and has not reaped.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        unmount_below(self.dir.path());
    }
}

/// Returns the used bytes and the capacity (used plus available) of the filesystem at `path`,
/// as df(1) reports them.
fn disk_usage(path: &Path) -> (u64, u64) {
    let output = Command::new("df")
        .args(["-B1", "--output=used,avail"])
        .arg(path)
        .output()
        .expect("run df");
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u64> = text
        .lines()
        .nth(1)
        .expect("df prints a data line")
        .split_whitespace()
        .map(|field| field.parse().expect("df prints numbers"))
        .collect();
    (numbers[0], numbers[0] + numbers[1])
}

#[tokio::test]
async fn disk_trigger_on_containerd() {
    let containerd = Containerd::start("64m").await;
    let mut id = HashMap::new();
    for name in ["busybox", "layered", "corruptible", "medium"] {
        id.insert(name, containerd.pull(&image(name)).await);
    }
    let sizes: HashMap<String, u64> = containerd
        .list()
        .await
        .into_iter()
        .map(|image| (image.id, image.size))
        .collect();

    // busybox is the least recently used but matches the keep pattern; then corruptible,
    // medium and layered.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let state_file = containerd.path("gc-state.json");
    let images: serde_json::Map<String, Value> = [
        (&id["busybox"], 4000),
        (&id["corruptible"], 3000),
        (&id["medium"], 2000),
        (&id["layered"], 1000),
    ]
    .into_iter()
    .map(|(id, unused)| {
        let times = json!({
            "first_seen_ns": now - 10_000 * SECOND_NS,
            "last_used_ns": now - unused * SECOND_NS,
        });
        (id.clone(), times)
    })
    .collect();
    std::fs::write(
        &state_file,
        json!({"version": 1, "images": images}).to_string(),
    )
    .expect("write the state file");

    // About 3.3 MB must go: corruptible frees about 0.5 MB, as its base layer stays for
    // busybox, and medium frees about 8.4 MB.
    let root = containerd.root();
    let (used, capacity) = disk_usage(&root);
    let low = (used - 3_250_000) * 100 / capacity;
    let config = containerd.path("gc.toml");
    std::fs::write(&config, "").expect("write the gc config");
    let output = tokio::process::Command::new(berth_binary())
        .arg("gc")
        .arg("--config")
        .arg(&config)
        .arg("--endpoint")
        .arg(format!("unix://{}", containerd.socket().display()))
        .arg("--state-file")
        .arg(&state_file)
        .args([
            "--once",
            "--output",
            "json",
            "--keep",
            "*/berth-test/busybox:*",
        ])
        .arg("--high-threshold-percent")
        .arg((low + 1).to_string())
        .arg("--low-threshold-percent")
        .arg(low.to_string())
        .output()
        .await
        .expect("run berth gc");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "berth gc exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}\ncontainerd log:\n{}",
        output.status,
        containerd.log()
    );
    let report: Value = serde_json::from_str(&stdout).expect("berth gc prints a JSON report");
    let (used_after, _) = disk_usage(&root);

    let removed: Vec<&str> = report["images_removed"]
        .as_array()
        .expect("images_removed")
        .iter()
        .map(|image| image["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        removed,
        [id["corruptible"].as_str(), id["medium"].as_str()],
        "{report:#}"
    );
    assert_eq!(report["low_mark_reached"], true, "{report:#}");
    let mut remaining: Vec<String> = containerd
        .list()
        .await
        .into_iter()
        .map(|image| image.id)
        .collect();
    remaining.sort();
    let mut expected = vec![id["busybox"].clone(), id["layered"].clone()];
    expected.sort();
    assert_eq!(remaining, expected);
    assert!(
        used_after * 100 <= low * capacity,
        "usage {used_after} of {capacity} is above the low mark {low} %"
    );
    assert_eq!(
        report["bytes_estimated"].as_u64(),
        Some(sizes[&id["corruptible"]] + sizes[&id["medium"]])
    );
    let freed = report["bytes_freed"]
        .as_u64()
        .expect("bytes_freed is measured");
    let measured = used - used_after;
    // containerd's metadata database may change by a few pages between the measurements.
    assert!(
        freed.abs_diff(measured) <= 256 * 1024,
        "report says {freed} bytes freed, df says {measured}"
    );
}
