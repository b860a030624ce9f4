//! Generation of the OCI runtime spec (`config.json`) for one CRI container, following the rules
//! of containerd's CRI plugin.
//!
//! [`generate_spec`] only reads: the rootfs's `/etc/passwd` and `/etc/group`, host paths of
//! mounts and devices, a Localhost seccomp profile, and the host facts in [`HostFeatures`]. It
//! creates nothing, so it runs in unit tests without root. Each submodule builds one part of the
//! spec: `process` the command line and environment, `user` the uid and groups, `mounts`,
//! `devices`, `namespaces` (with sysctls), `resources`, `security` (capabilities, masked paths,
//! AppArmor) and `seccomp`.

mod devices;
mod error;
mod host;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod seccomp;
mod security;
mod user;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use berth_proto::cri::{ContainerConfig, LinuxContainerSecurityContext, PodSandboxConfig};
use oci_spec::runtime::{Capabilities, Linux, Process, RootBuilder, Spec};

pub use error::SpecError;
pub use host::{HostFeatures, MountInfo};

/// What the pod sandbox provides to each of its containers.
#[derive(Debug, Clone)]
pub struct SandboxContext<'a> {
    pub config: &'a PodSandboxConfig,
    /// Network namespace to join, or `None` when the pod uses the host network.
    pub netns: Option<PathBuf>,
    /// IPC namespace to join, or `None` when the pod uses the host IPC namespace.
    pub ipcns: Option<PathBuf>,
    /// UTS namespace to join, or `None` when the pod uses the host network, which UTS follows.
    pub utsns: Option<PathBuf>,
    /// The pod's shared PID namespace (the infra process's `/proc/PID/ns/pid`), when its
    /// containers share one.
    pub pidns: Option<PathBuf>,
    /// Host files bind-mounted at `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.
    pub hostname_file: PathBuf,
    pub hosts_file: PathBuf,
    pub resolv_conf: PathBuf,
    /// The pod's `/dev/shm` directory, or `None` when the pod uses the host IPC namespace. The
    /// host's `/dev/shm` is mounted then.
    pub shm_dir: Option<PathBuf>,
    /// Cgroups path of the pod.
    pub cgroup_parent: String,
}

/// One container to create in the sandbox.
#[derive(Debug, Clone)]
pub struct ContainerContext<'a> {
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    /// The OCI image config JSON, whose `config` object contains `User`, `Env`, `Entrypoint`,
    /// `Cmd` and `WorkingDir`.
    pub image_config: &'a serde_json::Value,
    /// The mounted rootfs, whose `/etc/passwd` and `/etc/group` resolve user and group names.
    pub rootfs: PathBuf,
    /// `linux.cgroupsPath`. When empty, `cgroup_parent/id` of the sandbox is used (the cgroupfs
    /// layout); callers of the systemd cgroup driver must set it.
    pub cgroups_path: String,
    /// The daemon's own `oom_score_adj`. Requested scores are raised to it, because without
    /// CAP_SYS_RESOURCE no process may lower its score below its parent's.
    pub min_oom_score_adj: i32,
}

/// Generates the OCI runtime spec for one container of a pod, probing the host first.
///
/// # Errors
///
/// A [`SpecError`] naming the CRI field, image config field or file that could not be turned
/// into a spec; see [`generate_spec_for_host`].
pub fn generate_spec(
    sandbox: &SandboxContext,
    container: &ContainerContext,
) -> Result<Spec, SpecError> {
    let host = HostFeatures::probe()?;
    generate_spec_for_host(&host, sandbox, container)
}

/// Generates the OCI runtime spec for one container on a host described by `host`.
///
/// The spec carries the process (args, env, cwd, user, capabilities, TTY, OOM score), the
/// rootfs, the hostname, the mounts, and the Linux section (namespaces, devices, cgroup
/// resources and path, sysctls, masked and read-only paths, seccomp). It sets no rlimits, hooks
/// or SELinux labels. CRI `stdin` and `stdin_once` have no OCI field, so the I/O layer handles
/// them.
///
/// # Errors
///
/// [`SpecError`] for, among others:
/// - no command in either the CRI config or the image,
/// - a user or group name missing from the rootfs,
/// - a privileged container in an unprivileged pod,
/// - a user namespace request or CDI devices, which Berth does not support,
/// - an invalid mount, device, capability, sysctl or seccomp profile.
pub fn generate_spec_for_host(
    host: &HostFeatures,
    sandbox: &SandboxContext,
    container: &ContainerContext,
) -> Result<Spec, SpecError> {
    let config = container.config;
    let linux_config = config.linux.as_ref();
    let security = linux_config.and_then(|l| l.security_context.as_ref());
    let privileged = security.is_some_and(|s| s.privileged);
    let readonly_rootfs = security.is_some_and(|s| s.readonly_rootfs);

    let sandbox_privileged = sandbox
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if privileged && !sandbox_privileged {
        return Err(SpecError::PrivilegedInUnprivilegedPod);
    }

    if !config.cdi_devices.is_empty() {
        let names: Vec<&str> = config.cdi_devices.iter().map(|d| d.name.as_str()).collect();
        return Err(SpecError::CdiUnsupported {
            names: names.join(", "),
        });
    }

    let capabilities = security::capability_set(security, host)?;
    let process = container_process(host, sandbox, container, security, &capabilities)?;
    let mount_plan = mounts::container_mounts(host, sandbox, config, privileged, readonly_rootfs)?;
    let device_plan = devices::container_devices(&config.devices, privileged)?;
    let resources = linux_config.and_then(|l| l.resources.as_ref());

    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces::namespaces(
        sandbox,
        security.and_then(|s| s.namespace_options.as_ref()),
        host.cgroup_v2 && !privileged,
    )?));
    linux.set_devices(Some(device_plan.devices));
    linux.set_resources(Some(resources::linux_resources(
        resources,
        device_plan.cgroup_rules,
        host,
    )?));
    linux.set_cgroups_path(cgroups_path(sandbox, container));
    let sysctls = namespaces::sysctls(sandbox)?;
    linux.set_sysctl((!sysctls.is_empty()).then_some(sysctls));
    linux.set_masked_paths(Some(security::masked_paths(security)));
    linux.set_readonly_paths(Some(security::readonly_paths(security)));
    linux.set_seccomp(seccomp::seccomp(security, &capabilities, host)?);
    linux.set_rootfs_propagation(mount_plan.rootfs_propagation);

    let root = RootBuilder::default()
        .path(&container.rootfs)
        .readonly(readonly_rootfs)
        .build()?;

    // oci-spec's default spec has a hostname, mounts and a Linux section of its own, so each of
    // them is replaced below.
    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    spec.set_hostname(container_hostname(sandbox));
    spec.set_mounts(Some(mount_plan.mounts));
    spec.set_annotations(Some(config.annotations.clone()));
    spec.set_linux(Some(linux));
    Ok(spec)
}

fn container_process(
    host: &HostFeatures,
    sandbox: &SandboxContext,
    container: &ContainerContext,
    security: Option<&LinuxContainerSecurityContext>,
    capabilities: &Capabilities,
) -> Result<Process, SpecError> {
    let config = container.config;
    let image = process::image_config(container.image_config)?;
    let hostname = match sandbox.config.hostname.as_str() {
        "" => host.hostname.as_str(),
        name => name,
    };
    let image_user = image.user().clone().unwrap_or_default();
    let resources = config.linux.as_ref().and_then(|l| l.resources.as_ref());

    // Start from the default and set every field: oci-spec's default process carries an
    // rlimit, capabilities and NoNewPrivileges that containerd's CRI plugin does not set.
    let mut process = Process::default();
    process.set_terminal(Some(config.tty));
    process.set_console_size(None);
    process.set_args(Some(process::process_args(config, &image)?));
    process.set_env(Some(process::process_env(config, &image, hostname)?));
    process.set_cwd(PathBuf::from(process::working_dir(config, &image)));
    process.set_user(user::process_user(
        &container.rootfs,
        security,
        &image_user,
    )?);
    process.set_capabilities(Some(security::linux_capabilities(capabilities)));
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(security.is_some_and(|s| s.no_new_privs)));
    process.set_apparmor_profile(security::apparmor_profile(security, host)?);
    process.set_oom_score_adj(resources::oom_score_adj(
        resources,
        container.min_oom_score_adj,
    ));
    process.set_selinux_label(None);
    Ok(process)
}

/// Returns the pod's hostname when the container joins the pod's own UTS namespace. In the
/// host's UTS namespace the OCI runtime may not set a hostname.
fn container_hostname(sandbox: &SandboxContext) -> Option<String> {
    let hostname = &sandbox.config.hostname;
    (sandbox.utsns.is_some() && !hostname.is_empty()).then(|| hostname.clone())
}

fn cgroups_path(sandbox: &SandboxContext, container: &ContainerContext) -> Option<PathBuf> {
    if !container.cgroups_path.is_empty() {
        return Some(PathBuf::from(&container.cgroups_path));
    }
    if sandbox.cgroup_parent.is_empty() {
        return None;
    }
    Some(Path::new(&sandbox.cgroup_parent).join(container.id))
}
