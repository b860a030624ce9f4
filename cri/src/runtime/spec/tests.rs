//! Unit tests of spec generation, one or more per rule, against a temporary rootfs and a
//! hand-built [`HostFeatures`], and one test that runs a generated spec with runc as root.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_proto::cri::{
    Capability as CriCapability, ContainerConfig, ContainerMetadata, Device, HugepageLimit,
    Int64Value, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    Mount as CriMount, MountPropagation, NamespaceMode, NamespaceOption, PodSandboxConfig,
    SecurityProfile, SupplementalGroupsPolicy, UserNamespace, security_profile::ProfileType,
};
use oci_spec::runtime::{
    Capability, LinuxDeviceType, LinuxNamespaceType, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompOperator, Mount, Spec,
};
use serde_json::json;
use tempfile::TempDir;

use super::host::{parse_kernel_version, parse_mountinfo};
use super::security::{DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
use super::*;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment line
malformed line
app:x:1000:1000:App:/home/app:/bin/sh
web:x:1001:1002::/home/web:/bin/sh
";

const GROUP: &str = "\
root:x:0:
wheel:x:10:root
audio:x:29:app
staff:x:50:app,web
app:x:1000:
webgrp:x:1002:
";

/// Returns a host with cgroup v1, swap accounting and hugetlb, no AppArmor, every capability
/// except CAP_SYS_RESOURCE, and a private root mount.
fn test_host() -> HostFeatures {
    let mut capabilities = super::security::capabilities_from_mask(u64::MAX);
    capabilities.remove(&Capability::SysResource);
    HostFeatures {
        cgroup_v2: false,
        swap_accounting: true,
        hugetlb: true,
        apparmor: false,
        recursive_read_only: true,
        capabilities,
        hostname: "node-1".to_string(),
        kernel_version: (6, 18),
        mounts: vec![MountInfo {
            mount_point: PathBuf::from("/"),
            optional_fields: Vec::new(),
        }],
    }
}

/// A pod with its own network, IPC and UTS namespaces and one container running `/bin/app`.
struct Fixture {
    dir: TempDir,
    rootfs: PathBuf,
    host: HostFeatures,
    pod: PodSandboxConfig,
    container: ContainerConfig,
    image: serde_json::Value,
    netns: Option<PathBuf>,
    ipcns: Option<PathBuf>,
    utsns: Option<PathBuf>,
    pidns: Option<PathBuf>,
    shm_dir: Option<PathBuf>,
    cgroup_parent: String,
    cgroups_path: String,
    min_oom_score_adj: i32,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("create temp dir");
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).expect("create rootfs/etc");
        fs::write(rootfs.join("etc/passwd"), PASSWD).expect("write passwd");
        fs::write(rootfs.join("etc/group"), GROUP).expect("write group");
        for file in ["hostname", "hosts", "resolv.conf"] {
            fs::write(dir.path().join(file), "").expect("write pod file");
        }
        fs::create_dir(dir.path().join("shm")).expect("create shm dir");

        Fixture {
            rootfs,
            host: test_host(),
            pod: PodSandboxConfig {
                hostname: "web-0".to_string(),
                ..Default::default()
            },
            container: ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "app".to_string(),
                    attempt: 0,
                }),
                command: vec!["/bin/app".to_string()],
                ..Default::default()
            },
            image: json!({"architecture": "amd64", "os": "linux", "config": {}}),
            netns: Some(PathBuf::from("/var/run/netns/pod")),
            ipcns: Some(PathBuf::from("/proc/4242/ns/ipc")),
            utsns: Some(PathBuf::from("/proc/4242/ns/uts")),
            pidns: None,
            shm_dir: Some(dir.path().join("shm")),
            cgroup_parent: "/kubepods/pod1".to_string(),
            cgroups_path: "/kubepods/pod1/c1".to_string(),
            min_oom_score_adj: -999,
            dir,
        }
    }

    fn pod_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn sandbox(&self) -> SandboxContext<'_> {
        SandboxContext {
            config: &self.pod,
            netns: self.netns.clone(),
            ipcns: self.ipcns.clone(),
            utsns: self.utsns.clone(),
            pidns: self.pidns.clone(),
            hostname_file: self.pod_file("hostname"),
            hosts_file: self.pod_file("hosts"),
            resolv_conf: self.pod_file("resolv.conf"),
            shm_dir: self.shm_dir.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
        }
    }

    fn context(&self) -> ContainerContext<'_> {
        ContainerContext {
            id: "c1",
            config: &self.container,
            image_config: &self.image,
            rootfs: self.rootfs.clone(),
            cgroups_path: self.cgroups_path.clone(),
            min_oom_score_adj: self.min_oom_score_adj,
        }
    }

    fn generate(&self) -> Result<Spec, SpecError> {
        generate_spec_for_host(&self.host, &self.sandbox(), &self.context())
    }

    fn spec(&self) -> Spec {
        self.generate().expect("spec generation failed")
    }

    fn error(&self) -> SpecError {
        self.generate().expect_err("spec generation succeeded")
    }

    fn linux(&mut self) -> &mut LinuxContainerConfig {
        self.container.linux.get_or_insert_with(Default::default)
    }

    fn security(&mut self) -> &mut LinuxContainerSecurityContext {
        self.linux()
            .security_context
            .get_or_insert_with(Default::default)
    }

    fn resources(&mut self) -> &mut LinuxContainerResources {
        self.linux().resources.get_or_insert_with(Default::default)
    }

    fn pod_linux(&mut self) -> &mut LinuxPodSandboxConfig {
        self.pod.linux.get_or_insert_with(Default::default)
    }

    fn pod_security(&mut self) -> &mut LinuxSandboxSecurityContext {
        self.pod_linux()
            .security_context
            .get_or_insert_with(Default::default)
    }

    fn image_config(&mut self, config: serde_json::Value) {
        self.image["config"] = config;
    }
}

fn args(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().args().clone().unwrap()
}

fn env(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().env().clone().unwrap()
}

fn user(spec: &Spec) -> (u32, u32, Vec<u32>) {
    let user = spec.process().as_ref().unwrap().user();
    (
        user.uid(),
        user.gid(),
        user.additional_gids().clone().unwrap_or_default(),
    )
}

fn mounts(spec: &Spec) -> &[Mount] {
    spec.mounts().as_deref().unwrap()
}

fn mount<'a>(spec: &'a Spec, destination: &str) -> &'a Mount {
    let found: Vec<&Mount> = mounts(spec)
        .iter()
        .filter(|m| m.destination() == Path::new(destination))
        .collect();
    assert_eq!(found.len(), 1, "mounts at {destination}: {found:?}");
    found[0]
}

fn options(mount: &Mount) -> Vec<String> {
    mount.options().clone().unwrap_or_default()
}

fn namespace_paths(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|ns| (ns.typ(), ns.path().clone()))
        .collect()
}

fn capability_sets(spec: &Spec) -> oci_spec::runtime::LinuxCapabilities {
    spec.process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap()
}

fn seccomp(spec: &Spec) -> Option<LinuxSeccomp> {
    spec.linux().as_ref().unwrap().seccomp().clone()
}

fn allowed_syscalls(profile: &LinuxSeccomp) -> Vec<String> {
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
        .flat_map(|s| s.names().clone())
        .collect()
}

fn key_value(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: value.as_bytes().to_vec(),
    }
}

fn cri_mount(container_path: &str, host_path: &Path) -> CriMount {
    CriMount {
        container_path: container_path.to_string(),
        host_path: host_path.display().to_string(),
        ..Default::default()
    }
}

fn profile(profile_type: ProfileType, localhost_ref: &str) -> SecurityProfile {
    SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref: localhost_ref.to_string(),
    }
}

// ---- process args ----

#[test]
fn args_cri_command_replaces_image_entrypoint_and_cmd() {
    let mut f = Fixture::new();
    f.image_config(json!({"Entrypoint": ["/entry"], "Cmd": ["default"]}));
    f.container.command = vec!["/bin/app".into(), "--flag".into()];

    assert_eq!(args(&f.spec()), ["/bin/app", "--flag"]);
}

#[test]
fn args_cri_command_and_args() {
    let mut f = Fixture::new();
    f.image_config(json!({"Entrypoint": ["/entry"], "Cmd": ["default"]}));
    f.container.command = vec!["/bin/app".into()];
    f.container.args = vec!["serve".into()];

    assert_eq!(args(&f.spec()), ["/bin/app", "serve"]);
}

#[test]
fn args_cri_args_follow_image_entrypoint() {
    let mut f = Fixture::new();
    f.image_config(json!({"Entrypoint": ["/entry", "-v"], "Cmd": ["default"]}));
    f.container.command.clear();
    f.container.args = vec!["serve".into()];

    assert_eq!(args(&f.spec()), ["/entry", "-v", "serve"]);
}

#[test]
fn args_default_to_image() {
    let mut f = Fixture::new();
    f.image_config(json!({"Entrypoint": ["/entry"], "Cmd": ["default"]}));
    f.container.command.clear();

    assert_eq!(args(&f.spec()), ["/entry", "default"]);
}

#[test]
fn args_reset_entrypoint_ignored() {
    let mut f = Fixture::new();
    f.image_config(json!({"Entrypoint": [""], "Cmd": ["sh"]}));
    f.container.command.clear();

    assert_eq!(args(&f.spec()), ["sh"]);
}

#[test]
fn args_missing_everywhere_rejected() {
    let mut f = Fixture::new();
    f.image_config(json!({"Entrypoint": null, "Cmd": null}));
    f.container.command.clear();

    let err = f.error();
    assert!(matches!(err, SpecError::NoCommand { ref container } if container == "app"));
}

#[test]
fn image_config_invalid_rejected() {
    let mut f = Fixture::new();
    f.image_config(json!({"Cmd": "not a list"}));

    assert!(matches!(f.error(), SpecError::InvalidImageConfig { .. }));
}

// ---- env ----

#[test]
fn env_image_then_cri_by_key() {
    let mut f = Fixture::new();
    f.image_config(json!({"Env": ["PATH=/img/bin", "FOO=image", "KEEP=1"]}));
    f.container.envs = vec![key_value("FOO", "cri"), key_value("NEW", "a=b")];

    assert_eq!(
        env(&f.spec()),
        [
            "PATH=/img/bin",
            "HOSTNAME=web-0",
            "FOO=cri",
            "KEEP=1",
            "NEW=a=b"
        ]
    );
}

#[test]
fn env_default_path() {
    let f = Fixture::new();

    assert_eq!(env(&f.spec())[0], super::process::DEFAULT_PATH_ENV);
}

#[test]
fn env_entry_without_value_unsets() {
    let mut f = Fixture::new();
    f.image_config(json!({"Env": ["FOO=1", "FOO"]}));

    assert!(!env(&f.spec()).iter().any(|e| e.starts_with("FOO")));
}

#[test]
fn env_hostname_falls_back_to_host() {
    let mut f = Fixture::new();
    f.pod.hostname.clear();

    assert!(env(&f.spec()).contains(&"HOSTNAME=node-1".to_string()));
}

#[test]
fn env_tty_sets_term() {
    let mut f = Fixture::new();
    f.container.tty = true;

    assert!(env(&f.spec()).contains(&"TERM=xterm".to_string()));
}

#[test]
fn env_non_utf8_value_rejected() {
    let mut f = Fixture::new();
    f.container.envs = vec![KeyValue {
        key: "BAD".into(),
        value: vec![0xff, 0xfe],
    }];

    assert!(matches!(f.error(), SpecError::InvalidEnv { ref key } if key == "BAD"));
}

// ---- working dir, terminal, stdin ----

#[test]
fn cwd_precedence() {
    let mut f = Fixture::new();
    let cwd = |f: &Fixture| f.spec().process().as_ref().unwrap().cwd().clone();
    assert_eq!(cwd(&f), Path::new("/"));

    f.image_config(json!({"WorkingDir": "/srv"}));
    assert_eq!(cwd(&f), Path::new("/srv"));

    f.container.working_dir = "/data".into();
    assert_eq!(cwd(&f), Path::new("/data"));
}

#[test]
fn terminal_follows_tty() {
    let mut f = Fixture::new();
    assert_eq!(f.spec().process().as_ref().unwrap().terminal(), Some(false));

    f.container.tty = true;
    assert_eq!(f.spec().process().as_ref().unwrap().terminal(), Some(true));
}

#[test]
fn stdin_leaves_spec_unchanged() {
    let mut f = Fixture::new();
    let without = f.spec();

    f.container.stdin = true;
    f.container.stdin_once = true;
    assert_eq!(f.spec(), without);
}

// ---- user ----

#[test]
fn user_defaults_to_root() {
    let f = Fixture::new();

    // root is a member of wheel (10) in the rootfs's /etc/group.
    assert_eq!(user(&f.spec()), (0, 0, vec![0, 10]));
}

#[test]
fn user_run_as_user_gid_from_passwd() {
    let mut f = Fixture::new();
    f.security().run_as_user = Some(Int64Value { value: 1000 });

    assert_eq!(user(&f.spec()), (1000, 1000, vec![1000, 29, 50]));
}

#[test]
fn user_unknown_uid_gets_gid_zero() {
    let mut f = Fixture::new();
    f.security().run_as_user = Some(Int64Value { value: 4242 });

    assert_eq!(user(&f.spec()), (4242, 0, vec![0]));
}

#[test]
fn user_run_as_username() {
    let mut f = Fixture::new();
    f.security().run_as_username = "web".into();

    assert_eq!(user(&f.spec()), (1001, 1002, vec![1002, 50]));
}

#[test]
fn user_run_as_group() {
    let mut f = Fixture::new();
    f.security().run_as_user = Some(Int64Value { value: 1000 });
    f.security().run_as_group = Some(Int64Value { value: 3000 });

    assert_eq!(user(&f.spec()), (1000, 3000, vec![3000, 29, 50]));
}

#[test]
fn user_cri_overrides_image_user() {
    let mut f = Fixture::new();
    f.image_config(json!({"User": "app"}));
    f.security().run_as_user = Some(Int64Value { value: 1001 });

    assert_eq!(user(&f.spec()).0, 1001);
}

#[test]
fn user_group_without_user_rejected() {
    let mut f = Fixture::new();
    f.security().run_as_group = Some(Int64Value { value: 3000 });

    assert!(matches!(
        f.error(),
        SpecError::GroupWithoutUser { gid: 3000 }
    ));
}

#[test]
fn user_image_user_forms() {
    let cases = [
        ("app", (1000, 1000)),
        ("1001", (1001, 1002)),
        ("1000:50", (1000, 50)),
        ("app:staff", (1000, 50)),
        ("web:29", (1001, 29)),
        ("1000:staff", (1000, 50)),
        ("5000:5000", (5000, 5000)),
    ];
    for (image_user, (uid, gid)) in cases {
        let mut f = Fixture::new();
        f.image_config(json!({ "User": image_user }));

        let (got_uid, got_gid, additional) = user(&f.spec());
        assert_eq!((got_uid, got_gid), (uid, gid), "image USER {image_user:?}");
        assert_eq!(additional[0], gid, "primary gid first for {image_user:?}");
    }
}

#[test]
fn user_missing_name_names_user_and_file() {
    let mut f = Fixture::new();
    f.security().run_as_username = "ghost".into();

    let err = f.error();
    assert!(matches!(err, SpecError::UserNotFound { .. }));
    let message = err.to_string();
    assert!(message.contains("\"ghost\""), "{message}");
    assert!(message.contains("etc/passwd"), "{message}");
}

#[test]
fn user_missing_group_names_group_and_file() {
    let mut f = Fixture::new();
    f.image_config(json!({"User": "app:nogroup"}));

    let message = f.error().to_string();
    assert!(message.contains("\"nogroup\""), "{message}");
    assert!(message.contains("etc/group"), "{message}");
}

#[test]
fn user_invalid_strings_rejected() {
    for image_user in ["a:b:c", ":50", "app:", "99999999999"] {
        let mut f = Fixture::new();
        f.image_config(json!({ "User": image_user }));

        assert!(
            matches!(f.error(), SpecError::InvalidUser { .. }),
            "image USER {image_user:?}"
        );
    }
}

#[test]
fn user_negative_uid_rejected() {
    let mut f = Fixture::new();
    f.security().run_as_user = Some(Int64Value { value: -1 });

    assert!(matches!(
        f.error(),
        SpecError::InvalidUser {
            field: "run_as_user",
            ..
        }
    ));
}

#[test]
fn user_supplemental_groups_merge() {
    let mut f = Fixture::new();
    f.security().run_as_user = Some(Int64Value { value: 1000 });
    f.security().supplemental_groups = vec![3000, 50];

    assert_eq!(user(&f.spec()).2, [1000, 29, 50, 3000]);
}

#[test]
fn user_supplemental_groups_strict() {
    let mut f = Fixture::new();
    f.security().run_as_user = Some(Int64Value { value: 1000 });
    f.security().supplemental_groups = vec![3000];
    f.security().supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;

    assert_eq!(user(&f.spec()).2, [1000, 3000]);
}

#[test]
fn user_passwd_symlink_stays_in_rootfs() {
    let f = Fixture::new();
    // An absolute link must resolve inside the rootfs, not to the host's /etc/passwd.
    fs::write(
        f.rootfs.join("etc/passwd-real"),
        "inside:x:777:778::/:/bin/sh\n",
    )
    .unwrap();
    fs::remove_file(f.rootfs.join("etc/passwd")).unwrap();
    symlink("/etc/passwd-real", f.rootfs.join("etc/passwd")).unwrap();
    let mut f = f;
    f.security().run_as_username = "inside".into();

    assert_eq!(user(&f.spec()).0, 777);
}

#[test]
fn user_without_passwd_file() {
    let mut f = Fixture::new();
    fs::remove_file(f.rootfs.join("etc/passwd")).unwrap();
    f.security().run_as_user = Some(Int64Value { value: 1000 });
    assert_eq!(user(&f.spec()), (1000, 0, vec![0]));

    f.security().run_as_username = "app".into();
    assert!(matches!(f.error(), SpecError::UserNotFound { .. }));
}

// ---- hostname ----

#[test]
fn hostname_from_pod() {
    let f = Fixture::new();

    assert_eq!(f.spec().hostname().as_deref(), Some("web-0"));
}

#[test]
fn hostname_unset_with_host_network() {
    let mut f = Fixture::new();
    f.netns = None;
    f.utsns = None;

    assert_eq!(f.spec().hostname(), &None);
}

// ---- mounts ----

#[test]
fn mounts_system_defaults() {
    let f = Fixture::new();
    let spec = f.spec();

    let destinations: Vec<_> = mounts(&spec)
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect();
    assert_eq!(
        destinations,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/dev/shm",
        ]
    );
    assert_eq!(mount(&spec, "/proc").typ().as_deref(), Some("proc"));
    assert_eq!(mount(&spec, "/dev").typ().as_deref(), Some("tmpfs"));
    assert_eq!(mount(&spec, "/dev/pts").typ().as_deref(), Some("devpts"));
    assert_eq!(mount(&spec, "/dev/mqueue").typ().as_deref(), Some("mqueue"));
    assert_eq!(mount(&spec, "/sys").typ().as_deref(), Some("sysfs"));
    assert!(options(mount(&spec, "/sys")).contains(&"ro".to_string()));
    assert_eq!(
        mount(&spec, "/sys/fs/cgroup").typ().as_deref(),
        Some("cgroup")
    );
    assert!(options(mount(&spec, "/sys/fs/cgroup")).contains(&"ro".to_string()));
}

#[test]
fn mounts_privileged_sys_writable() {
    let mut f = Fixture::new();
    f.pod_security().privileged = true;
    f.security().privileged = true;
    let spec = f.spec();

    for destination in ["/sys", "/sys/fs/cgroup"] {
        let options = options(mount(&spec, destination));
        assert!(
            options.contains(&"rw".to_string()),
            "{destination}: {options:?}"
        );
        assert!(
            !options.contains(&"ro".to_string()),
            "{destination}: {options:?}"
        );
    }
}

#[test]
fn mounts_pod_files_bound() {
    let f = Fixture::new();
    let spec = f.spec();

    for (destination, file) in [
        ("/etc/hostname", "hostname"),
        ("/etc/hosts", "hosts"),
        ("/etc/resolv.conf", "resolv.conf"),
        ("/dev/shm", "shm"),
    ] {
        let mount = mount(&spec, destination);
        assert_eq!(mount.typ().as_deref(), Some("bind"));
        assert_eq!(
            mount.source().as_deref(),
            Some(fs::canonicalize(f.pod_file(file)).unwrap().as_path())
        );
        assert_eq!(options(mount), ["rbind", "rprivate", "rw"], "{destination}");
    }
}

#[test]
fn mounts_pod_files_readonly_with_readonly_rootfs() {
    let mut f = Fixture::new();
    f.security().readonly_rootfs = true;
    let spec = f.spec();

    assert_eq!(
        options(mount(&spec, "/etc/hosts")),
        ["rbind", "rprivate", "ro"]
    );
    // /dev/shm stays writable: it is shared memory, not configuration.
    assert_eq!(
        options(mount(&spec, "/dev/shm")),
        ["rbind", "rprivate", "rw"]
    );
}

#[test]
fn mounts_host_shm_with_host_ipc() {
    let mut f = Fixture::new();
    f.ipcns = None;
    f.shm_dir = None;

    assert_eq!(
        mount(&f.spec(), "/dev/shm").source().as_deref(),
        Some(Path::new("/dev/shm"))
    );
}

#[test]
fn mounts_cri_mount_covers_pod_file() {
    let mut f = Fixture::new();
    let custom = f.pod_file("custom-hosts");
    fs::write(&custom, "").unwrap();
    f.container.mounts = vec![cri_mount("/etc/hosts/", &custom)];
    let spec = f.spec();

    let hosts: Vec<&Mount> = mounts(&spec)
        .iter()
        .filter(|m| m.destination().starts_with("/etc/hosts"))
        .collect();
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        hosts[0].source().as_deref(),
        Some(fs::canonicalize(&custom).unwrap().as_path())
    );
}

#[test]
fn mounts_cri_dev_replaces_dev_mounts() {
    let mut f = Fixture::new();
    let dev = f.pod_file("dev");
    fs::create_dir(&dev).unwrap();
    f.container.mounts = vec![cri_mount("/dev", &dev)];
    let spec = f.spec();

    for replaced in ["/dev/pts", "/dev/mqueue"] {
        assert!(
            !mounts(&spec)
                .iter()
                .any(|m| m.destination() == Path::new(replaced)),
            "{replaced} still mounted"
        );
    }
    assert_eq!(mount(&spec, "/dev").typ().as_deref(), Some("bind"));
}

#[test]
fn mounts_cri_options() {
    let mut f = Fixture::new();
    let data = f.pod_file("data");
    fs::create_dir(&data).unwrap();
    f.container.mounts = vec![
        CriMount {
            readonly: true,
            selinux_relabel: true,
            ..cri_mount("/ro", &data)
        },
        cri_mount("/rw", &data),
    ];
    let spec = f.spec();

    assert_eq!(options(mount(&spec, "/ro")), ["rbind", "rprivate", "ro"]);
    assert_eq!(options(mount(&spec, "/rw")), ["rbind", "rprivate", "rw"]);
}

#[test]
fn mounts_sorted_by_depth() {
    let mut f = Fixture::new();
    let data = f.pod_file("data");
    fs::create_dir(&data).unwrap();
    f.container.mounts = vec![cri_mount("/a/b/c", &data), cri_mount("/a", &data)];
    let spec = f.spec();

    let position = |dest: &str| {
        mounts(&spec)
            .iter()
            .position(|m| m.destination() == Path::new(dest))
            .unwrap()
    };
    assert!(position("/a") < position("/a/b/c"));
}

#[test]
fn mounts_host_path_symlink_resolved() {
    let mut f = Fixture::new();
    let target = f.pod_file("target");
    fs::create_dir(&target).unwrap();
    let link = f.pod_file("link");
    symlink(&target, &link).unwrap();
    f.container.mounts = vec![cri_mount("/data", &link)];

    assert_eq!(
        mount(&f.spec(), "/data").source().as_deref(),
        Some(fs::canonicalize(&target).unwrap().as_path())
    );
}

#[test]
fn mounts_recursive_read_only() {
    let mut f = Fixture::new();
    let data = f.pod_file("data");
    fs::create_dir(&data).unwrap();
    let rro = CriMount {
        readonly: true,
        recursive_read_only: true,
        ..cri_mount("/data", &data)
    };
    f.container.mounts = vec![rro.clone()];
    assert_eq!(
        options(mount(&f.spec(), "/data")),
        ["rbind", "rprivate", "rro"]
    );

    f.host.recursive_read_only = false;
    assert!(matches!(f.error(), SpecError::InvalidMount { .. }));
}

#[test]
fn mounts_recursive_read_only_needs_readonly() {
    let mut f = Fixture::new();
    let data = f.pod_file("data");
    fs::create_dir(&data).unwrap();
    f.container.mounts = vec![CriMount {
        recursive_read_only: true,
        ..cri_mount("/data", &data)
    }];

    let message = f.error().to_string();
    assert!(message.contains("requires readonly"), "{message}");
}

#[test]
fn mounts_recursive_read_only_needs_private() {
    let mut f = Fixture::new();
    let data = f.pod_file("data");
    fs::create_dir(&data).unwrap();
    f.container.mounts = vec![CriMount {
        readonly: true,
        recursive_read_only: true,
        propagation: MountPropagation::PropagationHostToContainer as i32,
        ..cri_mount("/data", &data)
    }];

    let message = f.error().to_string();
    assert!(message.contains("PROPAGATION_PRIVATE"), "{message}");
}

#[test]
fn mounts_propagation_options() {
    let mut f = Fixture::new();
    let data = f.pod_file("data");
    fs::create_dir(&data).unwrap();
    f.host.mounts = vec![MountInfo {
        mount_point: PathBuf::from("/"),
        optional_fields: vec!["shared:1".into()],
    }];

    f.container.mounts = vec![CriMount {
        propagation: MountPropagation::PropagationHostToContainer as i32,
        ..cri_mount("/data", &data)
    }];
    let spec = f.spec();
    assert_eq!(options(mount(&spec, "/data")), ["rbind", "rslave", "rw"]);
    let propagation = spec.linux().as_ref().unwrap().rootfs_propagation().clone();
    assert_eq!(propagation.as_deref(), Some("rslave"));

    f.container.mounts[0].propagation = MountPropagation::PropagationBidirectional as i32;
    let spec = f.spec();
    assert_eq!(options(mount(&spec, "/data")), ["rbind", "rshared", "rw"]);
    let propagation = spec.linux().as_ref().unwrap().rootfs_propagation().clone();
    assert_eq!(propagation.as_deref(), Some("rshared"));
}

#[test]
fn mounts_propagation_needs_shared_host_mount() {
    let mut f = Fixture::new();
    let data = f.pod_file("data");
    fs::create_dir(&data).unwrap();
    f.host.mounts = vec![
        MountInfo {
            mount_point: PathBuf::from("/"),
            optional_fields: vec!["shared:1".into()],
        },
        MountInfo {
            mount_point: f.dir.path().to_path_buf(),
            optional_fields: vec!["master:1".into()],
        },
    ];
    f.container.mounts = vec![CriMount {
        propagation: MountPropagation::PropagationHostToContainer as i32,
        ..cri_mount("/data", &data)
    }];
    // A slave mount is enough for HOST_TO_CONTAINER ...
    assert!(f.generate().is_ok());

    // ... but not for BIDIRECTIONAL, and the error names the mount point.
    f.container.mounts[0].propagation = MountPropagation::PropagationBidirectional as i32;
    let err = f.error();
    assert!(matches!(err, SpecError::MountPropagation { .. }));
    assert!(
        err.to_string()
            .contains(&f.dir.path().display().to_string())
    );

    f.host.mounts[1].optional_fields.clear();
    f.container.mounts[0].propagation = MountPropagation::PropagationHostToContainer as i32;
    assert!(matches!(f.error(), SpecError::MountPropagation { .. }));
}

#[test]
fn mounts_invalid_rejected() {
    let data = PathBuf::from("/tmp");
    let cases = [
        cri_mount("relative", &data),
        cri_mount("/data", Path::new("")),
        CriMount {
            image: Some(berth_proto::cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..cri_mount("/data", &data)
        },
        CriMount {
            uid_mappings: vec![berth_proto::cri::IdMapping {
                host_id: 1000,
                container_id: 0,
                length: 1,
            }],
            ..cri_mount("/data", &data)
        },
    ];
    for case in cases {
        let mut f = Fixture::new();
        f.container.mounts = vec![case.clone()];

        assert!(
            matches!(f.error(), SpecError::InvalidMount { .. }),
            "mount {case:?}"
        );
    }
}

// ---- devices ----

#[test]
fn devices_from_cri() {
    let mut f = Fixture::new();
    f.container.devices = vec![Device {
        container_path: "/dev/mynull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let spec = f.spec();
    let linux = spec.linux().as_ref().unwrap();

    let devices = linux.devices().as_ref().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].path(), Path::new("/dev/mynull"));
    assert_eq!(devices[0].typ(), LinuxDeviceType::C);
    assert_eq!((devices[0].major(), devices[0].minor()), (1, 3));
    assert_eq!(devices[0].file_mode(), Some(0o666));

    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert_eq!(rules.len(), 2);
    assert!(!rules[0].allow(), "first rule denies all: {rules:?}");
    assert_eq!(rules[0].access().as_deref(), Some("rwm"));
    assert!(rules[1].allow());
    assert_eq!(rules[1].typ(), Some(LinuxDeviceType::C));
    assert_eq!((rules[1].major(), rules[1].minor()), (Some(1), Some(3)));
    assert_eq!(rules[1].access().as_deref(), Some("rw"));
}

#[test]
fn devices_defaults_for_empty_fields() {
    let mut f = Fixture::new();
    f.container.devices = vec![Device {
        host_path: "/dev/zero".into(),
        ..Default::default()
    }];
    let spec = f.spec();
    let linux = spec.linux().as_ref().unwrap();

    assert_eq!(
        linux.devices().as_ref().unwrap()[0].path(),
        Path::new("/dev/zero")
    );
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert_eq!(rules[1].access().as_deref(), Some("rwm"));
}

#[test]
fn devices_directory_expanded() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: creating device nodes needs root");
        return;
    }
    let mut f = Fixture::new();
    let dir = f.pod_file("snd");
    fs::create_dir_all(dir.join("sub")).unwrap();
    for (name, minor) in [("a", 3), ("sub/b", 5)] {
        nix::sys::stat::mknod(
            &dir.join(name),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o660),
            nix::sys::stat::makedev(1, minor),
        )
        .unwrap();
    }
    fs::write(dir.join("not-a-device"), "").unwrap();
    f.container.devices = vec![Device {
        container_path: "/dev/snd".into(),
        host_path: dir.display().to_string(),
        permissions: "r".into(),
    }];
    let spec = f.spec();

    let mut paths: Vec<_> = spec
        .linux()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .map(|d| d.path().display().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/dev/snd/a", "/dev/snd/sub/b"]);
}

#[test]
fn devices_not_a_device_rejected() {
    let mut f = Fixture::new();
    f.container.devices = vec![Device {
        container_path: "/dev/x".into(),
        host_path: f.pod_file("hosts").display().to_string(),
        permissions: "rwm".into(),
    }];

    let message = f.error().to_string();
    assert!(message.contains("not a device node"), "{message}");
}

#[test]
fn devices_missing_rejected() {
    let mut f = Fixture::new();
    f.container.devices = vec![Device {
        host_path: "/dev/does-not-exist".into(),
        ..Default::default()
    }];

    assert!(matches!(f.error(), SpecError::InvalidDevice { .. }));
}

#[test]
fn devices_bad_permissions_rejected() {
    let mut f = Fixture::new();
    f.container.devices = vec![Device {
        host_path: "/dev/null".into(),
        permissions: "rwx".into(),
        ..Default::default()
    }];

    let message = f.error().to_string();
    assert!(message.contains("\"rwx\""), "{message}");
}

#[test]
fn devices_cdi_rejected() {
    let mut f = Fixture::new();
    f.container.cdi_devices = vec![berth_proto::cri::CdiDevice {
        name: "vendor.com/gpu=0".into(),
    }];

    let message = f.error().to_string();
    assert!(message.contains("vendor.com/gpu=0"), "{message}");
}

#[test]
fn devices_privileged_get_host_devices() {
    let mut f = Fixture::new();
    f.pod_security().privileged = true;
    f.security().privileged = true;
    let spec = f.spec();
    let linux = spec.linux().as_ref().unwrap();

    let devices = linux.devices().as_ref().unwrap();
    assert!(devices.iter().any(|d| d.path() == Path::new("/dev/null")));
    assert!(!devices.iter().any(|d| d.path().starts_with("/dev/pts")));
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow());
    assert_eq!(rules[0].typ(), None);
    assert_eq!(rules[0].access().as_deref(), Some("rwm"));
}

// ---- namespaces ----

#[test]
fn namespaces_joined_from_pod() {
    let f = Fixture::new();

    assert_eq!(
        namespace_paths(&f.spec()),
        [
            (
                LinuxNamespaceType::Network,
                Some(PathBuf::from("/var/run/netns/pod"))
            ),
            (
                LinuxNamespaceType::Ipc,
                Some(PathBuf::from("/proc/4242/ns/ipc"))
            ),
            (
                LinuxNamespaceType::Uts,
                Some(PathBuf::from("/proc/4242/ns/uts"))
            ),
            (LinuxNamespaceType::Pid, None),
            (LinuxNamespaceType::Mount, None),
        ]
    );
}

#[test]
fn namespaces_host_network_and_ipc() {
    let mut f = Fixture::new();
    f.netns = None;
    f.ipcns = None;
    f.utsns = None;

    assert_eq!(
        namespace_paths(&f.spec()),
        [
            (LinuxNamespaceType::Pid, None),
            (LinuxNamespaceType::Mount, None),
        ]
    );
}

#[test]
fn namespaces_pid_modes() {
    let pod_pid = PathBuf::from("/proc/4242/ns/pid");
    let cases = [
        (
            NamespaceMode::Pod,
            Some(pod_pid.clone()),
            Some(Some(pod_pid.clone())),
        ),
        (NamespaceMode::Pod, None, Some(None)),
        (NamespaceMode::Container, Some(pod_pid.clone()), Some(None)),
        (NamespaceMode::Node, Some(pod_pid.clone()), None),
    ];
    for (mode, pidns, expected) in cases {
        let mut f = Fixture::new();
        f.pidns = pidns;
        f.security().namespace_options = Some(NamespaceOption {
            pid: mode as i32,
            ..Default::default()
        });

        let pid = namespace_paths(&f.spec())
            .into_iter()
            .find(|(typ, _)| *typ == LinuxNamespaceType::Pid)
            .map(|(_, path)| path);
        assert_eq!(pid, expected, "pid mode {mode:?}");
    }
}

#[test]
fn namespaces_pid_target_rejected() {
    let mut f = Fixture::new();
    f.security().namespace_options = Some(NamespaceOption {
        pid: NamespaceMode::Target as i32,
        target_id: "other".into(),
        ..Default::default()
    });

    assert!(matches!(
        f.error(),
        SpecError::NamespaceModeUnsupported {
            namespace: "pid",
            ..
        }
    ));
}

#[test]
fn namespaces_user_namespace_rejected() {
    let mut f = Fixture::new();
    f.security().namespace_options = Some(NamespaceOption {
        userns_options: Some(UserNamespace {
            mode: NamespaceMode::Node as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(
        f.generate().is_ok(),
        "mode NODE is the host's user namespace"
    );

    f.security().namespace_options = Some(NamespaceOption {
        userns_options: Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let message = f.error().to_string();
    assert!(message.contains("POD"), "{message}");

    let mut f = Fixture::new();
    f.pod_security().namespace_options = Some(NamespaceOption {
        userns_options: Some(UserNamespace::default()),
        ..Default::default()
    });
    assert!(matches!(
        f.error(),
        SpecError::UserNamespaceUnsupported { .. }
    ));
}

#[test]
fn namespaces_cgroup_on_cgroup_v2() {
    let mut f = Fixture::new();
    f.host.cgroup_v2 = true;
    assert!(namespace_paths(&f.spec()).contains(&(LinuxNamespaceType::Cgroup, None)));

    f.pod_security().privileged = true;
    f.security().privileged = true;
    assert!(!namespace_paths(&f.spec()).contains(&(LinuxNamespaceType::Cgroup, None)));
}

// ---- cgroups and resources ----

#[test]
fn resources_cpu_and_memory() {
    let mut f = Fixture::new();
    *f.resources() = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        cpuset_cpus: "0-1".into(),
        cpuset_mems: "0".into(),
        ..Default::default()
    };
    let spec = f.spec();
    let resources = spec.linux().as_ref().unwrap().resources().clone().unwrap();

    let cpu = resources.cpu().clone().unwrap();
    assert_eq!(cpu.period(), Some(100_000));
    assert_eq!(cpu.quota(), Some(50_000));
    assert_eq!(cpu.shares(), Some(512));
    assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
    assert_eq!(cpu.mems().as_deref(), Some("0"));
    let memory = resources.memory().unwrap();
    assert_eq!(memory.limit(), Some(64 << 20));
    assert_eq!(
        memory.swap(),
        Some(64 << 20),
        "swap defaults to the memory limit"
    );
    assert!(resources.pids().is_none());
}

#[test]
fn resources_zero_values_unset() {
    let mut f = Fixture::new();
    *f.resources() = LinuxContainerResources::default();
    let spec = f.spec();
    let resources = spec.linux().as_ref().unwrap().resources().clone().unwrap();

    let cpu = resources.cpu().clone().unwrap();
    assert_eq!(
        (cpu.period(), cpu.quota(), cpu.shares()),
        (None, None, None)
    );
    assert_eq!(cpu.cpus(), &None);
    let memory = resources.memory().unwrap();
    assert_eq!((memory.limit(), memory.swap()), (None, None));
}

#[test]
fn resources_swap_limit() {
    let mut f = Fixture::new();
    f.resources().memory_limit_in_bytes = 64 << 20;
    f.resources().memory_swap_limit_in_bytes = 128 << 20;
    let memory = |f: &Fixture| {
        f.spec()
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .clone()
            .unwrap()
            .memory()
            .unwrap()
    };
    assert_eq!(memory(&f).swap(), Some(128 << 20));

    f.host.swap_accounting = false;
    assert_eq!(memory(&f).swap(), None);
    assert_eq!(memory(&f).limit(), Some(64 << 20));
}

#[test]
fn resources_hugepages_and_unified() {
    let mut f = Fixture::new();
    f.resources().hugepage_limits = vec![HugepageLimit {
        page_size: "2MB".into(),
        limit: 4 << 20,
    }];
    f.resources().unified = HashMap::from([("memory.high".to_string(), "1000000".to_string())]);
    let resources = |f: &Fixture| {
        f.spec()
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .clone()
            .unwrap()
    };

    let limits = resources(&f).hugepage_limits().clone().unwrap();
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0].page_size(), "2MB");
    assert_eq!(limits[0].limit(), 4 << 20);
    assert_eq!(
        resources(&f).unified().clone().unwrap()["memory.high"],
        "1000000"
    );

    f.host.hugetlb = false;
    assert_eq!(resources(&f).hugepage_limits(), &None);
}

#[test]
fn resources_negative_shares_rejected() {
    let mut f = Fixture::new();
    f.resources().cpu_shares = -2;

    let message = f.error().to_string();
    assert!(message.contains("cpu_shares"), "{message}");
    assert!(message.contains("-2"), "{message}");
}

#[test]
fn cgroups_path_from_container_or_pod() {
    let mut f = Fixture::new();
    let path = |f: &Fixture| f.spec().linux().as_ref().unwrap().cgroups_path().clone();
    assert_eq!(path(&f), Some(PathBuf::from("/kubepods/pod1/c1")));

    f.cgroups_path.clear();
    f.cgroup_parent = "/kubepods/pod2".into();
    assert_eq!(path(&f), Some(PathBuf::from("/kubepods/pod2/c1")));

    f.cgroup_parent.clear();
    assert_eq!(path(&f), None);
}

#[test]
fn oom_score_adj_clamped() {
    let mut f = Fixture::new();
    let score = |f: &Fixture| f.spec().process().as_ref().unwrap().oom_score_adj();
    assert_eq!(score(&f), None, "no resources, no score");

    f.min_oom_score_adj = -500;
    f.resources().oom_score_adj = -998;
    assert_eq!(score(&f), Some(-500));

    f.resources().oom_score_adj = 100;
    assert_eq!(score(&f), Some(100));

    f.resources().oom_score_adj = 5000;
    assert_eq!(score(&f), Some(1000));
}

// ---- sysctls ----

#[test]
fn sysctls_namespaced_passed() {
    let mut f = Fixture::new();
    let requested = HashMap::from([
        ("net.ipv4.ip_forward".to_string(), "1".to_string()),
        ("net/ipv4/ping_group_range".to_string(), "0 1".to_string()),
        ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
        ("kernel.msgmax".to_string(), "8192".to_string()),
        ("kernel.sem".to_string(), "250 32000 32 128".to_string()),
        ("fs.mqueue.msg_max".to_string(), "10".to_string()),
    ]);
    f.pod_linux().sysctls = requested.clone();

    assert_eq!(
        f.spec().linux().as_ref().unwrap().sysctl().clone(),
        Some(requested)
    );
}

#[test]
fn sysctls_not_namespaced_rejected() {
    for name in [
        "kernel.panic",
        "vm.swappiness",
        "kernel.hostname",
        "fs.file-max",
    ] {
        let mut f = Fixture::new();
        f.pod_linux().sysctls = HashMap::from([(name.to_string(), "1".to_string())]);

        let err = f.error();
        assert!(
            matches!(err, SpecError::SysctlNotNamespaced { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name));
    }
}

#[test]
fn sysctls_host_namespace_rejected() {
    let mut f = Fixture::new();
    f.netns = None;
    f.utsns = None;
    f.pod_linux().sysctls = HashMap::from([("net.core.somaxconn".to_string(), "1024".into())]);
    assert!(matches!(
        f.error(),
        SpecError::SysctlInHostNamespace {
            namespace: "network",
            ..
        }
    ));

    let mut f = Fixture::new();
    f.ipcns = None;
    f.pod_linux().sysctls = HashMap::from([("kernel.shmmax".to_string(), "1024".into())]);
    assert!(matches!(
        f.error(),
        SpecError::SysctlInHostNamespace {
            namespace: "IPC",
            ..
        }
    ));
}

// ---- capabilities ----

#[test]
fn capabilities_default_set() {
    let f = Fixture::new();
    let caps = capability_sets(&f.spec());
    let expected: oci_spec::runtime::Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();

    assert_eq!(caps.bounding().as_ref(), Some(&expected));
    assert_eq!(caps.effective().as_ref(), Some(&expected));
    assert_eq!(caps.permitted().as_ref(), Some(&expected));
    assert_eq!(caps.inheritable(), &None);
    assert_eq!(caps.ambient(), &None);
}

#[test]
fn capabilities_add_and_drop() {
    let mut f = Fixture::new();
    f.security().capabilities = Some(CriCapability {
        add_capabilities: vec!["NET_ADMIN".into(), "cap_sys_ptrace".into()],
        drop_capabilities: vec!["CAP_CHOWN".into(), "kill".into()],
        add_ambient_capabilities: vec!["NET_ADMIN".into()],
    });
    let caps = capability_sets(&f.spec());
    let bounding = caps.bounding().clone().unwrap();

    assert!(bounding.contains(&Capability::NetAdmin));
    assert!(bounding.contains(&Capability::SysPtrace));
    assert!(!bounding.contains(&Capability::Chown));
    assert!(!bounding.contains(&Capability::Kill));
    assert_eq!(bounding.len(), DEFAULT_CAPABILITIES.len());
    assert_eq!(caps.ambient(), &None, "ambient capabilities are ignored");
}

#[test]
fn capabilities_all() {
    let mut f = Fixture::new();
    f.security().capabilities = Some(CriCapability {
        add_capabilities: vec!["ALL".into()],
        drop_capabilities: vec!["NET_RAW".into()],
        ..Default::default()
    });
    let bounding = capability_sets(&f.spec()).bounding().clone().unwrap();
    assert_eq!(bounding.len(), f.host.capabilities.len() - 1);
    assert!(!bounding.contains(&Capability::NetRaw));
    assert!(bounding.contains(&Capability::SysAdmin));

    f.security().capabilities = Some(CriCapability {
        add_capabilities: vec!["CHOWN".into()],
        drop_capabilities: vec!["all".into()],
        ..Default::default()
    });
    let bounding = capability_sets(&f.spec()).bounding().clone().unwrap();
    assert_eq!(bounding, [Capability::Chown].into_iter().collect());
}

#[test]
fn capabilities_unknown_rejected() {
    let mut f = Fixture::new();
    f.security().capabilities = Some(CriCapability {
        add_capabilities: vec!["FLY".into()],
        ..Default::default()
    });

    let message = f.error().to_string();
    assert!(message.contains("\"FLY\""), "{message}");
}

#[test]
fn capabilities_beyond_daemon_rejected() {
    let mut f = Fixture::new();
    f.security().capabilities = Some(CriCapability {
        add_capabilities: vec!["SYS_RESOURCE".into()],
        ..Default::default()
    });

    let message = f.error().to_string();
    assert!(message.contains("CAP_SYS_RESOURCE"), "{message}");
}

#[test]
fn capabilities_privileged_get_daemon_set() {
    let mut f = Fixture::new();
    f.pod_security().privileged = true;
    f.security().privileged = true;

    let bounding = capability_sets(&f.spec()).bounding().clone().unwrap();
    assert_eq!(bounding, f.host.capabilities);
}

#[test]
fn capability_names_match_oci() {
    for (_, cap) in super::security::CAPABILITIES {
        let serialized = serde_json::to_value(cap).unwrap();
        assert_eq!(serialized, json!(format!("CAP_{cap}")));
        assert_eq!(
            super::security::parse_capability("test", &cap.to_string()).unwrap(),
            cap
        );
    }
}

// ---- privileged, no_new_privs, readonly rootfs, masked paths ----

#[test]
fn privileged_needs_privileged_pod() {
    let mut f = Fixture::new();
    f.security().privileged = true;

    assert!(matches!(f.error(), SpecError::PrivilegedInUnprivilegedPod));
}

#[test]
fn privileged_clears_confinement() {
    let mut f = Fixture::new();
    f.pod_security().privileged = true;
    f.security().privileged = true;
    f.security().seccomp = Some(profile(ProfileType::RuntimeDefault, ""));
    f.security().masked_paths = vec!["/proc/x".into()];
    let spec = f.spec();
    let linux = spec.linux().as_ref().unwrap();

    assert_eq!(linux.masked_paths().as_deref(), Some(&[][..]));
    assert_eq!(linux.readonly_paths().as_deref(), Some(&[][..]));
    assert!(linux.seccomp().is_none());
}

#[test]
fn no_new_privileges_follows_cri() {
    let mut f = Fixture::new();
    let nnp = |f: &Fixture| f.spec().process().as_ref().unwrap().no_new_privileges();
    assert_eq!(nnp(&f), Some(false));

    f.security().no_new_privs = true;
    assert_eq!(nnp(&f), Some(true));
}

#[test]
fn readonly_rootfs_sets_root() {
    let mut f = Fixture::new();
    let root = |f: &Fixture| f.spec().root().clone().unwrap();
    assert_eq!(root(&f).readonly(), Some(false));
    assert_eq!(root(&f).path(), &f.rootfs);

    f.security().readonly_rootfs = true;
    assert_eq!(root(&f).readonly(), Some(true));
}

#[test]
fn masked_and_readonly_paths() {
    let mut f = Fixture::new();
    let paths = |f: &Fixture| {
        let linux = f.spec().linux().clone().unwrap();
        (
            linux.masked_paths().clone().unwrap(),
            linux.readonly_paths().clone().unwrap(),
        )
    };
    let (masked, readonly) = paths(&f);
    assert_eq!(masked, DEFAULT_MASKED_PATHS);
    assert_eq!(readonly, DEFAULT_READONLY_PATHS);

    f.security().masked_paths = vec!["/proc/one".into()];
    f.security().readonly_paths = vec!["/proc/two".into()];
    let (masked, readonly) = paths(&f);
    assert_eq!(masked, ["/proc/one"]);
    assert_eq!(readonly, ["/proc/two"]);
}

// ---- seccomp ----

#[test]
fn seccomp_unconfined_when_unset() {
    let mut f = Fixture::new();
    assert!(seccomp(&f.spec()).is_none());

    f.security().seccomp = Some(profile(ProfileType::Unconfined, ""));
    assert!(seccomp(&f.spec()).is_none());
}

#[test]
fn seccomp_runtime_default() {
    let mut f = Fixture::new();
    f.security().seccomp = Some(profile(ProfileType::RuntimeDefault, ""));
    let profile = seccomp(&f.spec()).expect("a seccomp profile");

    assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
    let allowed = allowed_syscalls(&profile);
    for syscall in [
        "read", "write", "execve", "futex", "socket", "chown", "chroot", "pipe", "pipe2",
    ] {
        assert!(allowed.contains(&syscall.to_string()), "{syscall} denied");
    }
    for syscall in [
        "reboot",
        "kexec_load",
        "kexec_file_load",
        "mount",
        "umount2",
        "unshare",
        "setns",
        "swapon",
        "keyctl",
        "add_key",
        "init_module",
        "ptrace",
        "bpf",
        "open_by_handle_at",
        "settimeofday",
        "clone",
        "clone3",
        "personality",
        "io_uring_setup",
        "pivot_root",
    ] {
        assert!(!allowed.contains(&syscall.to_string()), "{syscall} allowed");
    }

    let rules = profile.syscalls().clone().unwrap();
    let clone = rules
        .iter()
        .find(|r| r.names() == &["clone".to_string()])
        .expect("a clone rule");
    let arg = &clone.args().as_ref().unwrap()[0];
    assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
    assert_eq!((arg.value(), arg.value_two()), (0x7E02_0000, Some(0)));
    let clone3 = rules
        .iter()
        .find(|r| r.names() == &["clone3".to_string()])
        .expect("a clone3 rule");
    assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(clone3.errno_ret(), Some(38));
    let personalities = rules
        .iter()
        .filter(|r| r.names() == &["personality".to_string()])
        .count();
    assert_eq!(personalities, 5);
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            profile.architectures().clone().unwrap(),
            [
                oci_spec::runtime::Arch::ScmpArchX86_64,
                oci_spec::runtime::Arch::ScmpArchX86,
                oci_spec::runtime::Arch::ScmpArchX32
            ]
        );
    }
}

#[test]
fn seccomp_runtime_default_follows_capabilities() {
    let mut f = Fixture::new();
    f.security().seccomp = Some(profile(ProfileType::RuntimeDefault, ""));
    f.security().capabilities = Some(CriCapability {
        add_capabilities: vec!["SYS_ADMIN".into(), "SYS_BOOT".into()],
        drop_capabilities: vec!["SYS_CHROOT".into()],
        ..Default::default()
    });
    let profile = seccomp(&f.spec()).unwrap();
    let allowed = allowed_syscalls(&profile);

    for syscall in ["mount", "unshare", "setns", "clone", "clone3", "reboot"] {
        assert!(allowed.contains(&syscall.to_string()), "{syscall} denied");
    }
    assert!(!allowed.contains(&"chroot".to_string()));
    assert!(!allowed.contains(&"kexec_load".to_string()));
    let rules = profile.syscalls().clone().unwrap();
    assert!(
        !rules
            .iter()
            .any(|r| r.args().is_some() && r.names()[0] == "clone")
    );
}

#[test]
fn seccomp_localhost_oci_profile() {
    let mut f = Fixture::new();
    let path = f.pod_file("profile.json");
    fs::write(
        &path,
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
        })
        .to_string(),
    )
    .unwrap();
    f.security().seccomp = Some(profile(ProfileType::Localhost, &path.display().to_string()));
    let loaded = seccomp(&f.spec()).unwrap();

    assert_eq!(loaded.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(allowed_syscalls(&loaded), ["read", "write"]);
}

#[test]
fn seccomp_localhost_docker_profile() {
    let mut f = Fixture::new();
    let path = f.pod_file("docker.json");
    fs::write(
        &path,
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": "", "includes": {}, "excludes": {}},
                {"name": "write", "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_KILL"]}},
                {"names": ["chown"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_CHOWN"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
                {"names": ["arch_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "arm64"]}},
                {"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    f.security().seccomp = Some(profile(ProfileType::Localhost, &path.display().to_string()));
    let loaded = seccomp(&f.spec()).unwrap();

    let allowed = allowed_syscalls(&loaded);
    assert_eq!(allowed, ["read", "write", "chown", "ptrace", "arch_only"]);
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            loaded.architectures().clone().unwrap(),
            [
                oci_spec::runtime::Arch::ScmpArchX86_64,
                oci_spec::runtime::Arch::ScmpArchX86
            ]
        );
    }
}

#[test]
fn seccomp_localhost_errors() {
    let mut f = Fixture::new();
    let garbage = f.pod_file("garbage.json");
    fs::write(&garbage, "{not json").unwrap();
    let wrong_shape = f.pod_file("wrong.json");
    fs::write(&wrong_shape, r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#).unwrap();
    let missing = f.pod_file("missing.json");

    for reference in [
        "relative/profile.json".to_string(),
        missing.display().to_string(),
        garbage.display().to_string(),
        wrong_shape.display().to_string(),
    ] {
        f.security().seccomp = Some(profile(ProfileType::Localhost, &reference));

        let err = f.error();
        assert!(
            matches!(err, SpecError::InvalidSeccompProfile { .. }),
            "{reference}: {err}"
        );
        assert!(err.to_string().contains(&reference), "{err}");
    }
}

#[test]
#[allow(deprecated)]
fn seccomp_deprecated_profile_path() {
    let mut f = Fixture::new();
    let path = f.pod_file("profile.json");
    fs::write(&path, r#"{"defaultAction": "SCMP_ACT_LOG"}"#).unwrap();

    f.security().seccomp_profile_path = "runtime/default".into();
    assert_eq!(
        seccomp(&f.spec()).unwrap().default_action(),
        LinuxSeccompAction::ScmpActErrno
    );

    f.security().seccomp_profile_path = format!("localhost/{}", path.display());
    assert_eq!(
        seccomp(&f.spec()).unwrap().default_action(),
        LinuxSeccompAction::ScmpActLog
    );

    f.security().seccomp_profile_path = "unconfined".into();
    assert!(seccomp(&f.spec()).is_none());

    f.security().seccomp_profile_path = "strict".into();
    assert!(matches!(f.error(), SpecError::InvalidSeccompProfile { .. }));
}

// ---- AppArmor ----

#[test]
fn apparmor_ignored_without_host_support() {
    let mut f = Fixture::new();
    f.security().apparmor = Some(profile(ProfileType::Localhost, "my-profile"));

    assert_eq!(
        f.spec().process().as_ref().unwrap().apparmor_profile(),
        &None
    );
}

#[test]
fn apparmor_profiles_with_host_support() {
    let mut f = Fixture::new();
    f.host.apparmor = true;
    let applied = |f: &Fixture| {
        f.spec()
            .process()
            .as_ref()
            .unwrap()
            .apparmor_profile()
            .clone()
    };

    f.security().apparmor = Some(profile(ProfileType::Localhost, "my-profile"));
    assert_eq!(applied(&f).as_deref(), Some("my-profile"));

    f.security().apparmor = Some(profile(ProfileType::Unconfined, ""));
    assert_eq!(applied(&f), None);

    f.security().apparmor = Some(profile(ProfileType::Localhost, ""));
    assert!(matches!(
        f.error(),
        SpecError::InvalidAppArmorProfile { .. }
    ));
}

// ---- whole spec ----

#[test]
fn annotations_passed_through() {
    let mut f = Fixture::new();
    f.container.annotations = HashMap::from([("io.example/key".to_string(), "v".to_string())]);

    assert_eq!(
        f.spec().annotations().clone().unwrap()["io.example/key"],
        "v"
    );
}

#[test]
fn spec_has_no_extra_settings() {
    let f = Fixture::new();
    let spec = f.spec();
    let process = spec.process().as_ref().unwrap();

    assert_eq!(process.rlimits(), &None);
    assert_eq!(process.selinux_label(), &None);
    assert_eq!(spec.hooks(), &None);
    assert_eq!(spec.domainname(), &None);
    assert_eq!(spec.version(), oci_spec::runtime::VERSION);
}

#[test]
fn spec_round_trips_through_config_json() {
    let mut f = Fixture::new();
    f.security().seccomp = Some(profile(ProfileType::RuntimeDefault, ""));
    f.resources().memory_limit_in_bytes = 1 << 30;
    f.container.devices = vec![Device {
        host_path: "/dev/null".into(),
        ..Default::default()
    }];
    let spec = f.spec();
    let path = f.dir.path().join("config.json");
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();

    let text = fs::read_to_string(&path).unwrap();
    let parsed: Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed, spec);
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(raw["ociVersion"], oci_spec::runtime::VERSION);
    assert_eq!(raw["process"]["args"], json!(["/bin/app"]));
    assert_eq!(raw["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(raw["process"]["user"]["additionalGids"], json!([0, 10]));
}

// ---- host probing ----

#[test]
fn mountinfo_parsed() {
    let text = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
30 27 0:40 / /mnt/with\\040space rw shared:5 master:2 - tmpfs tmpfs rw
31 27 0:41 / /short
";
    let mounts = parse_mountinfo(text);

    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0].mount_point, Path::new("/proc"));
    assert!(mounts[0].optional_fields.is_empty());
    assert_eq!(mounts[1].mount_point, Path::new("/mnt/with space"));
    assert!(mounts[1].is_shared());
    assert!(mounts[1].is_slave());
}

#[test]
fn mount_of_picks_longest_prefix() {
    let mut host = test_host();
    host.mounts = parse_mountinfo(
        "1 0 0:1 / / rw - ext4 root rw\n2 1 0:2 / /var rw - ext4 var rw\n\
         3 1 0:3 / /var/lib rw shared:1 - ext4 lib rw\n",
    );

    let mount = host.mount_of(Path::new("/var/lib/kubelet")).unwrap();
    assert_eq!(mount.mount_point, Path::new("/var/lib"));
    let mount = host.mount_of(Path::new("/variable")).unwrap();
    assert_eq!(mount.mount_point, Path::new("/"));
}

#[test]
fn kernel_version_parsed() {
    assert_eq!(parse_kernel_version("6.18.44-fc-v1252\n"), (6, 18));
    assert_eq!(parse_kernel_version("5.4"), (5, 4));
    assert_eq!(parse_kernel_version("garbage"), (0, 0));
}

#[test]
fn capabilities_from_mask_bits() {
    let caps = super::security::capabilities_from_mask((1 << 0) | (1 << 21) | (1 << 40));

    assert_eq!(
        caps,
        [
            Capability::Chown,
            Capability::SysAdmin,
            Capability::CheckpointRestore
        ]
        .into_iter()
        .collect()
    );
}

#[test]
fn probe_and_generate_on_this_host() {
    let host = HostFeatures::probe().expect("probe this host");
    assert!(host.kernel_version.0 > 0);
    assert!(!host.mounts.is_empty());

    let f = Fixture::new();
    let spec = generate_spec(&f.sandbox(), &f.context()).expect("generate spec");
    assert_eq!(args(&spec), ["/bin/app"]);
}

// ---- runc ----

/// Removes what the runc test created, even when it fails halfway.
struct RuncCleanup {
    runc: PathBuf,
    state: PathBuf,
    id: String,
}

impl Drop for RuncCleanup {
    fn drop(&mut self) {
        let _ = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();

        // runc removes its cgroups on delete; remove any left behind by a failed start. Only
        // directories named after this test's unique id are touched.
        let mut cgroups = vec![Path::new("/sys/fs/cgroup").join(&self.id)];
        if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
            cgroups.extend(hierarchies.flatten().map(|h| h.path().join(&self.id)));
        }
        for cgroup in cgroups {
            if cgroup.is_dir() {
                let _ = fs::remove_dir(&cgroup);
            }
        }
    }
}

#[test]
fn runc_runs_generated_spec() {
    let runc = Path::new("/usr/sbin/runc");
    let busybox = Path::new("/bin/busybox");
    if !nix::unistd::geteuid().is_root() || !runc.exists() || !busybox.exists() {
        eprintln!("skipped: needs root, /usr/sbin/runc and a static /bin/busybox");
        return;
    }

    let id = format!("berth-spec-test-{:016x}", rand::random::<u64>());
    let dir = tempfile::tempdir().expect("create temp dir");
    let bundle = dir.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    let state = dir.path().join("state");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::create_dir_all(&state).unwrap();
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "id", "cat"] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    for file in ["hostname", "hosts", "resolv.conf"] {
        fs::write(dir.path().join(file), "").unwrap();
    }

    let pod = PodSandboxConfig {
        hostname: "runc-test".into(),
        ..Default::default()
    };
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "runc-test".into(),
            attempt: 0,
        }),
        // The pipe checks that the default seccomp profile allows pipe(2) and fork.
        command: vec!["/bin/sh".into(), "-c".into(), "id -u | cat; echo ok".into()],
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_shares: 512,
                memory_limit_in_bytes: 64 << 20,
                // Below the daemon's own score, which needs CAP_SYS_RESOURCE unless clamped.
                oom_score_adj: -997,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                seccomp: Some(profile(ProfileType::RuntimeDefault, "")),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let image = json!({"config": {}});
    let own_score = fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    let sandbox = SandboxContext {
        config: &pod,
        netns: None,
        ipcns: None,
        utsns: None,
        pidns: None,
        hostname_file: dir.path().join("hostname"),
        hosts_file: dir.path().join("hosts"),
        resolv_conf: dir.path().join("resolv.conf"),
        shm_dir: None,
        cgroup_parent: String::new(),
    };
    let context = ContainerContext {
        id: &id,
        config: &container,
        image_config: &image,
        rootfs: rootfs.clone(),
        cgroups_path: format!("/{id}"),
        min_oom_score_adj: own_score.trim().parse().unwrap(),
    };
    let spec = generate_spec(&sandbox, &context).expect("generate spec");
    spec.save(bundle.join("config.json"))
        .expect("write config.json");

    let _cleanup = RuncCleanup {
        runc: runc.to_path_buf(),
        state: state.clone(),
        id: id.clone(),
    };
    let output = Command::new(runc)
        .arg("--root")
        .arg(&state)
        .arg("run")
        .arg("--bundle")
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .expect("start runc");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "runc run failed with {}: stdout {stdout:?}, stderr {stderr:?}",
        output.status
    );
    assert_eq!(stdout, "0\nok\n", "stderr {stderr:?}");
}

#[test]
fn image_config_docker_nulls_accepted() {
    let mut f = Fixture::new();
    f.image_config(json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "Tty": false,
        "ExposedPorts": null, "Volumes": null, "OnBuild": null, "Labels": null,
        "Env": ["PATH=/bin"], "Cmd": ["sh"], "Entrypoint": null, "WorkingDir": "",
        "StopSignal": "SIGTERM", "Image": "sha256:abc", "ArgsEscaped": true
    }));
    f.container.command.clear();

    assert_eq!(args(&f.spec()), ["sh"]);
}
