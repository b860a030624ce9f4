//! Registry credentials: a docker-registry with htpasswd (basic) auth, serving the same storage
//! as the plain test registry, so every test image is there behind a password.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use berth_proto::cri::{AuthConfig, PullImageRequest};
use berth_tests::{Daemon, env, spec};
use tonic::Code;

const USER: &str = "berth";
const PASSWORD: &str = "s3cret-pass";

/// A docker-registry requiring basic auth, stopped by PID when dropped.
struct AuthRegistry {
    address: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl AuthRegistry {
    fn start() -> AuthRegistry {
        let dir = tempfile::Builder::new()
            .prefix("berth-auth-registry-")
            .tempdir()
            .unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let status = Command::new("htpasswd")
            .args(["-Bbc"])
            .arg(&htpasswd)
            .args([USER, PASSWORD])
            .stderr(Stdio::null())
            .status()
            .expect("run htpasswd (Debian package apache2-utils)");
        assert!(status.success(), "htpasswd failed");

        let address = berth_tests::net::closed_address();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {address}\nauth:\n  htpasswd:\n    realm: berth-test\n    path: {htpasswd}\n",
                data = env("BERTH_TEST_REGISTRY_DATA"),
                htpasswd = htpasswd.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = AuthRegistry {
            address,
            child,
            _dir: dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&self.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "auth registry did not listen on {}",
                self.address
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn image(&self, name: &str) -> String {
        format!("{}/berth-test/{name}:latest", self.address)
    }

    fn config(&self) -> String {
        format!("[registries.\"{}\"]\nplain_http = true\n", self.address)
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn pull_with(
    daemon: &Daemon,
    reference: &str,
    auth: Option<AuthConfig>,
) -> Result<String, tonic::Status> {
    let response = daemon
        .images()
        .await
        .pull_image(PullImageRequest {
            image: Some(spec(reference)),
            auth,
            sandbox_config: None,
        })
        .await?;
    Ok(response.into_inner().image_ref)
}

#[tokio::test]
async fn pull_without_credentials_is_unauthenticated() {
    let registry = AuthRegistry::start();
    let daemon = Daemon::start(&registry.config()).await;

    let err = pull_with(&daemon, &registry.image("busybox"), None)
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains(&registry.address),
        "message should name the registry: {}",
        err.message()
    );
}

#[tokio::test]
async fn wrong_password_is_unauthenticated() {
    let registry = AuthRegistry::start();
    let daemon = Daemon::start(&registry.config()).await;
    let auth = AuthConfig {
        username: USER.into(),
        password: "wrong".into(),
        ..Default::default()
    };

    let err = pull_with(&daemon, &registry.image("busybox"), Some(auth))
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(
        !err.message().contains("wrong"),
        "the password leaked into the error: {}",
        err.message()
    );
    assert!(
        !daemon.log().contains(PASSWORD),
        "a password leaked into the log"
    );
}

#[tokio::test]
async fn username_and_password_pull() {
    let registry = AuthRegistry::start();
    let daemon = Daemon::start(&registry.config()).await;
    let auth = AuthConfig {
        username: USER.into(),
        password: PASSWORD.into(),
        server_address: registry.address.clone(),
        ..Default::default()
    };

    let id = pull_with(&daemon, &registry.image("busybox"), Some(auth))
        .await
        .expect("pull with credentials");

    assert!(id.starts_with("sha256:"));
    assert!(
        !daemon.log().contains(PASSWORD),
        "the password leaked into the log"
    );
}

#[tokio::test]
async fn auth_field_pull() {
    let registry = AuthRegistry::start();
    let daemon = Daemon::start(&registry.config()).await;
    let auth = AuthConfig {
        auth: basic_auth_field(),
        ..Default::default()
    };

    pull_with(&daemon, &registry.image("busybox"), Some(auth))
        .await
        .expect("pull with the auth field");
}

#[tokio::test]
async fn docker_config_credentials_pull() {
    let registry = AuthRegistry::start();
    let config_dir = tempfile::tempdir().unwrap();
    let docker_config = config_dir.path().join("config.json");
    std::fs::write(
        &docker_config,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            registry.address,
            basic_auth_field()
        ),
    )
    .unwrap();
    let extra = format!(
        "{}\n[image]\ndocker_config = \"{}\"\n",
        registry.config(),
        docker_config.display()
    );
    let daemon = Daemon::start(&extra).await;

    pull_with(&daemon, &registry.image("busybox"), None)
        .await
        .expect("pull with Docker config credentials");
}

fn basic_auth_field() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
}
