//! Harness for Berth's end-to-end tests: starts a real `berth serve` in a temporary root and
//! connects a CRI client to its socket.
//!
//! The tests need the registries that `hack/test.sh` starts; their addresses come from the
//! `BERTH_TEST_*` variables of `hack/start-registry.sh`. A missing variable fails the test with
//! a message saying how to run it, so the suite never passes without a registry.

pub mod net;
pub mod pods;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::{
    ImageSpec, ImageStatusRequest, ImageStatusResponse, ListImagesRequest, PullImageRequest,
    RemoveImageRequest,
};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// Reads a variable set by `hack/start-registry.sh`, failing with instructions when missing.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through hack/test.sh, which starts the test registries")
    })
}

/// Returns the plain-HTTP test registry, as `127.0.0.1:PORT`.
pub fn registry() -> String {
    env("BERTH_TEST_REGISTRY")
}

/// Returns a reference to a test image in the plain-HTTP registry, such as `image("busybox")`.
pub fn image(name: &str) -> String {
    format!("{}/berth-test/{name}:latest", registry())
}

/// Path of the `berth` binary: `BERTH_BIN`, else the one built next to this test binary.
pub fn berth_binary() -> PathBuf {
    if let Ok(path) = std::env::var("BERTH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/berth
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("berth"))
        .expect("target directory");
    assert!(
        path.exists(),
        "{} not found: build it with `cargo build -p berth-agent` or set BERTH_BIN",
        path.display()
    );
    path
}

/// A running `berth serve` with its own root, state dir and socket, stopped and removed on drop.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config_extra: String,
    /// Whether the generated config has the table that trusts the TLS registry's CA.
    trust_tls_ca: bool,
    child: Option<Child>,
    /// Mounts made under `dir` by the test, unmounted on drop before `dir` is removed.
    mounts: Vec<PathBuf>,
}

impl Daemon {
    /// Starts a daemon whose config trusts the test registries, plus `config_extra` (TOML
    /// appended to the generated config; use it for `[image]` settings and more registries).
    pub async fn start(config_extra: &str) -> Daemon {
        Daemon::start_configured(config_extra, true).await
    }

    /// Starts a daemon like [`Daemon::start`], but without the `[registries."TLS registry"]`
    /// table that sets its CA file, so `config_extra` may configure that host itself.
    pub async fn start_without_tls_ca(config_extra: &str) -> Daemon {
        Daemon::start_configured(config_extra, false).await
    }

    async fn start_configured(config_extra: &str, trust_tls_ca: bool) -> Daemon {
        let mut daemon = Daemon::prepare_configured(config_extra, trust_tls_ca);
        daemon.spawn().await;
        daemon
    }

    /// Creates the daemon's directory and config like [`Daemon::start`] without starting it;
    /// call [`Daemon::restart`] to start it after preparing its root.
    pub fn prepare(config_extra: &str) -> Daemon {
        Daemon::prepare_configured(config_extra, true)
    }

    fn prepare_configured(config_extra: &str, trust_tls_ca: bool) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("create temp dir");
        let daemon = Daemon {
            dir,
            config_extra: config_extra.to_string(),
            trust_tls_ca,
            child: None,
            mounts: Vec::new(),
        };
        daemon.write_config();
        daemon
    }

    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, such as `4m`) on the daemon's
    /// root, so the test controls how much space the daemon has.
    pub fn mount_root_tmpfs(&mut self, size: &str) {
        let root = self.root();
        std::fs::create_dir_all(&root).expect("create root");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("berth-test")
            .arg(&root)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs on {} failed",
            root.display()
        );
        self.mounts.push(root);
    }

    /// Changes the size of the tmpfs mounted by [`Daemon::mount_root_tmpfs`].
    pub fn resize_root_tmpfs(&self, size: &str) {
        let status = Command::new("mount")
            .arg("-o")
            .arg(format!("remount,size={size}"))
            .arg(self.root())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "resizing the tmpfs on {} failed",
            self.root().display()
        );
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("berth.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("berth.log")
    }

    /// Returns the daemon's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon is running").id()
    }

    fn write_config(&self) {
        let mut config = format!(
            "[registries.\"{plain}\"]\nplain_http = true\n\n",
            plain = registry()
        );
        if self.trust_tls_ca {
            config.push_str(&format!(
                "[registries.\"{tls}\"]\nca_file = \"{ca}\"\n\n",
                tls = env("BERTH_TEST_TLS_REGISTRY"),
                ca = env("BERTH_TEST_CA"),
            ));
        }
        // The image collector's nightly schedule and disk threshold would make test results
        // depend on the time of day and the disk, so tests that do not configure it turn it off.
        // Parallel daemons would contend for the default metrics port.
        if !self.config_extra.contains("[metrics]") {
            config.push_str("[metrics]\naddress = \"\"\n\n");
        }
        if !self.config_extra.contains("[gc]") {
            config.push_str("[gc]\nschedule = \"\"\nhigh_threshold_percent = 100\n\n");
        }
        config.push_str(&self.config_extra);
        std::fs::write(self.dir.path().join("config.toml"), config).expect("write config");
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open daemon log");
        let child = Command::new(berth_binary())
            .arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .arg("--root")
            .arg(self.root())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--log-level")
            .arg("berth_cri=debug,info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start berth");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!(
                    "berth exited with {status} before serving; log:\n{}",
                    self.log()
                );
            }
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "berth did not serve within 30 s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon with SIGTERM and waits for it to exit, failing the test when it does not
    /// exit within the daemon's shutdown grace period plus a margin.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: plain kill(2) on the PID of a child this harness started and has not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(
                    status.success(),
                    "berth exited with {status} after SIGTERM; log:\n{}",
                    self.log()
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "berth did not exit within 15 s of SIGTERM; log:\n{}",
            self.log()
        );
    }

    /// Starts the daemon again on the same root, socket and config.
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop or kill the daemon before restarting it"
        );
        self.spawn().await;
    }

    /// Rewrites the config with new extra settings; they apply at the next restart.
    pub fn set_config_extra(&mut self, extra: &str) {
        self.config_extra = extra.to_string();
        self.write_config();
    }

    pub async fn channel(&self) -> Channel {
        connect(&self.socket()).await
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    /// Pulls an image and returns its ID, or the gRPC status of the failure.
    pub async fn pull(&self, reference: &str) -> Result<String, tonic::Status> {
        let response = self
            .images()
            .await
            .pull_image(PullImageRequest {
                image: Some(spec(reference)),
                ..Default::default()
            })
            .await?;
        Ok(response.into_inner().image_ref)
    }

    pub async fn status(&self, name: &str, verbose: bool) -> ImageStatusResponse {
        self.images()
            .await
            .image_status(ImageStatusRequest {
                image: Some(spec(name)),
                verbose,
            })
            .await
            .expect("ImageStatus")
            .into_inner()
    }

    pub async fn list(&self) -> Vec<berth_proto::cri::Image> {
        self.images()
            .await
            .list_images(ListImagesRequest::default())
            .await
            .expect("ListImages")
            .into_inner()
            .images
    }

    pub async fn remove(&self, name: &str) -> Result<(), tonic::Status> {
        self.images()
            .await
            .remove_image(RemoveImageRequest {
                image: Some(spec(name)),
            })
            .await
            .map(|_| ())
    }

    /// Returns the names of the entries in a directory under the daemon's root.
    pub fn entries(&self, relative: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root().join(relative))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Asserts that the image store contains nothing beyond what the listed images need: no
    /// ingest files, no `layers/.tmp-*` directories, and no blob or layer directory that no
    /// listed image names. `context` names the step before the check, for the failure message.
    pub async fn assert_no_leftovers(&self, context: &str) {
        let ingest = self.entries("ingest");
        assert!(
            ingest.is_empty(),
            "{context}: ingest files remain: {ingest:?}"
        );

        let layers = self.entries("layers");
        let scratch: Vec<&String> = layers
            .iter()
            .filter(|name| name.starts_with(".tmp-"))
            .collect();
        assert!(
            scratch.is_empty(),
            "{context}: partly unpacked layers remain: {scratch:?}"
        );

        let (needed_blobs, needed_layers) = self.needed_content().await;
        let extra_blobs: Vec<String> = self
            .entries("blobs/sha256")
            .into_iter()
            .filter(|hex| !needed_blobs.contains(hex))
            .collect();
        assert!(
            extra_blobs.is_empty(),
            "{context}: blobs that no listed image needs remain: {extra_blobs:?}"
        );
        let extra_layers: Vec<&String> = layers
            .iter()
            .filter(|hex| !hex.starts_with(".tmp-") && !needed_layers.contains(*hex))
            .collect();
        assert!(
            extra_layers.is_empty(),
            "{context}: layer directories that no listed image needs remain: {extra_layers:?}"
        );
    }

    /// Returns the hex digests of the blobs (configs, manifests, indexes, layers) and of the
    /// unpacked layers (diff IDs) that the listed images need.
    async fn needed_content(&self) -> (HashSet<String>, HashSet<String>) {
        let hex = |digest: &str| digest.trim_start_matches("sha256:").to_string();
        let mut blobs = HashSet::new();
        let mut layers = HashSet::new();
        for image in self.list().await {
            blobs.insert(hex(&image.id));
            for repo_digest in &image.repo_digests {
                if let Some((_, digest)) = repo_digest.split_once('@') {
                    blobs.insert(hex(digest));
                }
            }
            let status = self.status(&image.id, true).await;
            let info: serde_json::Value =
                serde_json::from_str(&status.info["info"]).expect("verbose info is JSON");
            blobs.insert(hex(info["manifestDigest"].as_str().unwrap_or_default()));
            for layer in info["layers"].as_array().into_iter().flatten() {
                blobs.insert(hex(layer["digest"].as_str().unwrap_or_default()));
                layers.insert(hex(layer["diff_id"].as_str().unwrap_or_default()));
            }
        }
        (blobs, layers)
    }
}

/// Polls `condition` every 50 ms until it returns true or `timeout` passes, and returns its last
/// result.
pub async fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Daemon {
    /// Kills a daemon the test did not stop itself. SIGKILL, because a graceful stop would wait
    /// for clients whose runtime is blocked in this drop.
    fn drop(&mut self) {
        self.kill();
        for mount in self.mounts.drain(..).rev() {
            let _ = Command::new("umount").arg(&mount).status();
        }
    }
}

/// Connects a CRI client to a unix socket.
pub async fn connect(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .expect("connect to the CRI socket")
}

/// Builds an `ImageSpec` naming an image.
pub fn spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
