//! The CNI execution protocol against shell-script plugins that record what they receive. These
//! tests need no root: the plugins touch no namespace.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

const RESULT_A: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/fake/netns"}],"ips":[{"address":"10.1.2.3/24","interface":0}]}"#;
const RESULT_B: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/fake/netns"}],"ips":[{"address":"fd00::3/64","interface":0},{"address":"10.1.2.3/24","interface":0}]}"#;

/// A conf dir, a plugin dir and a log dir where the fake plugins write their environment,
/// their stdin and the order of their calls.
struct FakeSetup {
    root: tempfile::TempDir,
}

impl FakeSetup {
    fn new() -> Self {
        let setup = FakeSetup {
            root: tempfile::tempdir().expect("temporary directory"),
        };
        for dir in [setup.bin_dir(), setup.log_dir(), setup.conf_dir()] {
            fs::create_dir_all(dir).unwrap();
        }
        setup
    }

    fn bin_dir(&self) -> PathBuf {
        self.root.path().join("bin")
    }

    fn log_dir(&self) -> PathBuf {
        self.root.path().join("log")
    }

    fn conf_dir(&self) -> PathBuf {
        self.root.path().join("net.d")
    }

    /// Writes a plugin script that logs its call and then runs `body`.
    fn plugin(&self, name: &str, body: &str) {
        let log = self.log_dir();
        let script = format!(
            "#!/bin/sh\n\
             log='{log}'\n\
             echo \"{name} $CNI_COMMAND\" >> \"$log/order\"\n\
             env > \"$log/{name}-$CNI_COMMAND.env\"\n\
             cat > \"$log/{name}-$CNI_COMMAND.json\"\n\
             {body}\n",
            log = log.display()
        );
        let path = self.bin_dir().join(name);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Writes a plugin that prints `result` on ADD and nothing on DEL.
    fn succeeding_plugin(&self, name: &str, result: &str) {
        self.plugin(
            name,
            &format!("if [ \"$CNI_COMMAND\" = ADD ]; then printf '%s' '{result}'; fi"),
        );
    }

    fn conflist(&self, file: &str, list: Value) {
        fs::write(self.conf_dir().join(file), list.to_string()).unwrap();
    }

    fn cni(&self, timeout_seconds: u64) -> Cni {
        let config = NetworkConfig {
            conf_dir: self.conf_dir(),
            bin_dirs: vec![self.bin_dir()],
            plugin_timeout_seconds: timeout_seconds,
            ..NetworkConfig::default()
        };
        Cni::new(config, &self.root.path().join("state")).unwrap()
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.log_dir().join("order"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn stdin_of(&self, name: &str, command: &str) -> Value {
        let path = self.log_dir().join(format!("{name}-{command}.json"));
        serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
    }

    fn env_of(&self, name: &str, command: &str) -> Vec<(String, String)> {
        let path = self.log_dir().join(format!("{name}-{command}.env"));
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }
}

fn sandbox() -> SandboxNetwork {
    SandboxNetwork {
        sandbox_id: "fakesandbox01".to_string(),
        netns: Some(PathBuf::from("/fake/netns")),
        ifname: DEFAULT_INTERFACE.to_string(),
        pod_name: "web-0".to_string(),
        pod_namespace: "shop".to_string(),
        pod_uid: "8d3c-uid".to_string(),
        port_mappings: vec![PortMapping {
            host_port: 8443,
            container_port: 443,
            protocol: Protocol::Tcp,
            host_ip: "127.0.0.1".to_string(),
        }],
    }
}

fn two_plugin_list(name: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            { "type": "fake-a", "setting": 1 },
            { "type": "fake-b", "capabilities": { "portMappings": true } },
        ],
    })
}

#[tokio::test]
async fn add_and_del_follow_protocol() {
    let setup = FakeSetup::new();
    setup.succeeding_plugin("fake-a", RESULT_A);
    setup.succeeding_plugin("fake-b", RESULT_B);
    setup.conflist("10-fake.conflist", two_plugin_list("fakenet"));
    let cni = setup.cni(10);

    let status = cni.status();
    let network = cni.setup(&sandbox()).await.unwrap();

    assert!(status.ready, "{status:?}");
    assert_eq!(
        status.source,
        Some(ConfigSource::File(
            setup.conf_dir().join("10-fake.conflist")
        ))
    );
    assert!(status.message.contains("\"fakenet\""), "{}", status.message);
    assert_eq!(network.network_name, "fakenet");
    assert_eq!(
        network.ips,
        [
            "10.1.2.3".parse::<IpAddr>().unwrap(),
            "fd00::3".parse().unwrap()
        ],
        "the last plugin's addresses, IPv4 first"
    );
    let env = setup.env_of("fake-a", "ADD");
    let value_of = |key: &str| {
        env.iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(value_of("CNI_COMMAND").as_deref(), Some("ADD"));
    assert_eq!(
        value_of("CNI_CONTAINERID").as_deref(),
        Some("fakesandbox01")
    );
    assert_eq!(value_of("CNI_NETNS").as_deref(), Some("/fake/netns"));
    assert_eq!(value_of("CNI_IFNAME").as_deref(), Some("eth0"));
    assert_eq!(
        value_of("CNI_ARGS").as_deref(),
        Some(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=fakesandbox01;K8S_POD_UID=8d3c-uid"
        )
    );
    assert_eq!(
        value_of("CNI_PATH"),
        Some(setup.bin_dir().display().to_string())
    );
    assert!(value_of("PATH").is_some());
    let leaked: Vec<&String> = env
        .iter()
        .map(|(name, _)| name)
        .filter(|name| {
            name.starts_with("CARGO") || name.as_str() == "HOME" || name.starts_with("RUST")
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "the daemon's environment leaked: {leaked:?}"
    );

    let stdin_a = setup.stdin_of("fake-a", "ADD");
    let stdin_b = setup.stdin_of("fake-b", "ADD");
    assert_eq!(stdin_a["name"], "fakenet");
    assert_eq!(stdin_a["cniVersion"], "1.0.0");
    assert_eq!(stdin_a["setting"], 1);
    assert!(stdin_a.get("prevResult").is_none());
    assert!(stdin_a.get("runtimeConfig").is_none());
    assert_eq!(
        stdin_b["prevResult"],
        serde_json::from_str::<Value>(RESULT_A).unwrap()
    );
    assert_eq!(
        stdin_b["runtimeConfig"],
        json!({ "portMappings": [{ "hostPort": 8443, "containerPort": 443, "protocol": "tcp", "hostIP": "127.0.0.1" }] })
    );

    cni.teardown(&sandbox()).await.unwrap();

    assert_eq!(
        setup.calls(),
        ["fake-a ADD", "fake-b ADD", "fake-b DEL", "fake-a DEL"]
    );
    let del_a = setup.stdin_of("fake-a", "DEL");
    assert_eq!(
        del_a["prevResult"],
        serde_json::from_str::<Value>(RESULT_B).unwrap()
    );
    let del_env = setup.env_of("fake-a", "DEL");
    assert!(
        del_env.contains(&("CNI_NETNS".to_string(), String::new())),
        "a DEL whose netns is not a namespace passes CNI_NETNS empty: {del_env:?}"
    );
}

#[tokio::test]
async fn del_uses_cached_list() {
    let setup = FakeSetup::new();
    setup.succeeding_plugin("fake-a", RESULT_A);
    setup.succeeding_plugin("fake-b", RESULT_B);
    setup.succeeding_plugin("fake-c", RESULT_A);
    setup.conflist("10-fake.conflist", two_plugin_list("fakenet"));
    let cni = setup.cni(10);
    cni.setup(&sandbox()).await.unwrap();
    fs::remove_file(setup.conf_dir().join("10-fake.conflist")).unwrap();
    setup.conflist(
        "05-other.conf",
        json!({ "cniVersion": "1.0.0", "name": "other", "type": "fake-c" }),
    );

    cni.teardown(&sandbox()).await.unwrap();
    cni.teardown(&sandbox()).await.unwrap();

    assert_eq!(
        setup.calls(),
        [
            "fake-a ADD",
            "fake-b ADD",
            "fake-b DEL",
            "fake-a DEL",
            "fake-c DEL"
        ],
        "the first DEL runs the list of the ADD; the second, with no cache left, the current one"
    );
    assert!(setup.stdin_of("fake-c", "DEL").get("prevResult").is_none());
}

#[tokio::test]
async fn error_object_fields_surfaced() {
    let setup = FakeSetup::new();
    setup.succeeding_plugin("fake-a", RESULT_A);
    setup.plugin(
        "fake-b",
        r#"if [ "$CNI_COMMAND" = ADD ]; then
  printf '%s' '{"cniVersion":"1.0.0","code":117,"msg":"no addresses left","details":"range 10.1.2.0/24 is full"}'
  exit 1
fi"#,
    );
    setup.conflist("10-fake.conflist", two_plugin_list("fakenet"));
    let cni = setup.cni(10);

    let err = cni.setup(&sandbox()).await.unwrap_err();

    let NetworkError::PluginFailed {
        plugin,
        command,
        code,
        msg,
        details,
    } = &err
    else {
        panic!("expected a CNI error object, got {err:?}");
    };
    assert_eq!(plugin, "fake-b");
    assert_eq!(*command, CniCommand::Add);
    assert_eq!(*code, 117);
    assert_eq!(msg, "no addresses left");
    assert_eq!(details, "range 10.1.2.0/24 is full");
    let text = err.to_string();
    for part in [
        "fake-b",
        "117",
        "no addresses left",
        "range 10.1.2.0/24 is full",
    ] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    assert_eq!(
        setup.calls(),
        ["fake-a ADD", "fake-b ADD", "fake-b DEL", "fake-a DEL"],
        "a failed ADD is undone with DEL"
    );
    assert_eq!(
        setup.stdin_of("fake-a", "DEL")["prevResult"],
        serde_json::from_str::<Value>(RESULT_A).unwrap(),
        "the undo passes the last successful result"
    );
}

#[tokio::test]
async fn failure_without_error_object() {
    let setup = FakeSetup::new();
    setup.plugin(
        "fake-a",
        r#"if [ "$CNI_COMMAND" = ADD ]; then echo 'panic: boom' >&2; exit 2; fi"#,
    );
    setup.conflist(
        "10-fake.conf",
        json!({ "cniVersion": "0.4.0", "name": "fakenet", "type": "fake-a" }),
    );
    let cni = setup.cni(10);

    let err = cni.setup(&sandbox()).await.unwrap_err();

    assert!(
        matches!(&err, NetworkError::PluginExited { plugin, stderr, .. } if plugin == "fake-a" && stderr == "panic: boom"),
        "{err:?}"
    );
    assert!(err.to_string().contains("exit status: 2"), "{err}");
}

#[tokio::test]
async fn invalid_result_rejected() {
    let setup = FakeSetup::new();
    setup.plugin(
        "fake-a",
        r#"[ "$CNI_COMMAND" = ADD ] && echo 'all done'; exit 0"#,
    );
    setup.conflist(
        "10-fake.conf",
        json!({ "cniVersion": "1.0.0", "name": "fakenet", "type": "fake-a" }),
    );
    let cni = setup.cni(10);

    let err = cni.setup(&sandbox()).await.unwrap_err();

    assert!(
        matches!(&err, NetworkError::InvalidResult { plugin, .. } if plugin == "fake-a"),
        "{err:?}"
    );
}

#[tokio::test]
async fn timeout_kills_plugin_group() {
    let setup = FakeSetup::new();
    let pid_file = setup.log_dir().join("sleep.pid");
    setup.plugin(
        "fake-a",
        &format!(
            "if [ \"$CNI_COMMAND\" = ADD ]; then sleep 300 & echo $! > '{}'; wait; fi",
            pid_file.display()
        ),
    );
    setup.conflist(
        "10-fake.conf",
        json!({ "cniVersion": "1.0.0", "name": "fakenet", "type": "fake-a" }),
    );
    let cni = setup.cni(1);

    let started = std::time::Instant::now();
    let err = cni.setup(&sandbox()).await.unwrap_err();
    let elapsed = started.elapsed();

    assert!(
        matches!(&err, NetworkError::PluginTimeout { plugin, seconds: 1, .. } if plugin == "fake-a"),
        "{err:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // A killed child of the plugin disappears, or stays a zombie until its new parent
        // reaps it.
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let alive = state.is_some_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        });
        if !alive {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the plugin's child {pid} survived the timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
