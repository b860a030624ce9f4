//! The container's Linux namespaces, joined from the pod or created, and the pod's sysctls,
//! which only namespaced kernel settings may use.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_proto::cri::{NamespaceMode, NamespaceOption};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType};

use super::{SandboxContext, SpecError};

/// Builds `linux.namespaces`.
///
/// Network, IPC and UTS are joined from the pod unless it uses the host's, in which case the
/// container stays in the host's too. PID follows the container's `namespace_options.pid`:
/// NODE keeps the host's, POD joins the pod's shared namespace when the pod has one, and
/// CONTAINER (or POD without a shared one) creates a new namespace. The mount namespace is always
/// new. A cgroup namespace is created on cgroup v2 for unprivileged containers, as containerd does.
///
/// # Errors
///
/// [`SpecError::UserNamespaceUnsupported`] when the pod or container requests a user namespace,
/// [`SpecError::NamespaceModeUnsupported`] for PID mode TARGET.
pub(super) fn namespaces(
    sandbox: &SandboxContext,
    container: Option<&NamespaceOption>,
    cgroup_namespace: bool,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let sandbox_options = sandbox
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    reject_user_namespace("pod namespace_options", sandbox_options)?;
    reject_user_namespace("container namespace_options", container)?;

    let mut namespaces = Vec::new();
    let joined = [
        (LinuxNamespaceType::Network, &sandbox.netns),
        (LinuxNamespaceType::Ipc, &sandbox.ipcns),
        (LinuxNamespaceType::Uts, &sandbox.utsns),
    ];
    for (typ, path) in joined {
        if let Some(path) = path {
            namespaces.push(namespace(typ, Some(path.clone()))?);
        }
    }

    let pid_mode = mode("namespace_options.pid", container.map_or(0, |o| o.pid))?;
    match (pid_mode, &sandbox.pidns) {
        (NamespaceMode::Node, _) => {}
        (NamespaceMode::Pod, Some(path)) => {
            namespaces.push(namespace(LinuxNamespaceType::Pid, Some(path.clone()))?);
        }
        (NamespaceMode::Pod | NamespaceMode::Container, _) => {
            namespaces.push(namespace(LinuxNamespaceType::Pid, None)?);
        }
        (NamespaceMode::Target, _) => {
            return Err(SpecError::NamespaceModeUnsupported {
                namespace: "pid",
                mode: "TARGET",
            });
        }
    }

    namespaces.push(namespace(LinuxNamespaceType::Mount, None)?);
    if cgroup_namespace {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None)?);
    }
    Ok(namespaces)
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> Result<LinuxNamespace, SpecError> {
    let builder = LinuxNamespaceBuilder::default().typ(typ);
    Ok(match path {
        Some(path) => builder.path(path).build()?,
        None => builder.build()?,
    })
}

fn mode(field: &'static str, value: i32) -> Result<NamespaceMode, SpecError> {
    NamespaceMode::try_from(value).map_err(|_| SpecError::UnknownEnumValue { field, value })
}

/// Rejects a user namespace request: `userns_options` with any mode but NODE. prost reads an
/// unset mode as POD, so an empty `userns_options` is a request too.
fn reject_user_namespace(
    field: &'static str,
    options: Option<&NamespaceOption>,
) -> Result<(), SpecError> {
    let Some(userns) = options.and_then(|o| o.userns_options.as_ref()) else {
        return Ok(());
    };
    let mode = mode("namespace_options.userns_options.mode", userns.mode)?;
    if mode == NamespaceMode::Node {
        return Ok(());
    }
    Err(SpecError::UserNamespaceUnsupported {
        field,
        mode: mode.as_str_name().to_string(),
    })
}

/// Validates the pod's sysctls and returns them for `linux.sysctl`.
///
/// Kubernetes allows only namespaced sysctls in a pod: `net.*` (network namespace),
/// `kernel.shm*`, `kernel.msg*`, `kernel.sem` and `fs.mqueue.*` (IPC namespace). Both its "safe"
/// and "unsafe" sysctls arrive here; kubelet has already applied its allowlist. A sysctl of a
/// namespace the pod shares with the host is rejected, because it would change the host.
pub(super) fn sysctls(sandbox: &SandboxContext) -> Result<HashMap<String, String>, SpecError> {
    let requested = sandbox.config.linux.as_ref().map(|l| &l.sysctls);
    let mut accepted = HashMap::new();
    for (name, value) in requested.into_iter().flatten() {
        let dotted = dotted_sysctl_name(name);
        let (namespace, joined) = if dotted.starts_with("net.") {
            ("network", sandbox.netns.is_some())
        } else if is_ipc_sysctl(&dotted) {
            ("IPC", sandbox.ipcns.is_some())
        } else {
            return Err(SpecError::SysctlNotNamespaced { name: name.clone() });
        };
        if !joined {
            return Err(SpecError::SysctlInHostNamespace {
                name: name.clone(),
                namespace,
            });
        }
        accepted.insert(name.clone(), value.clone());
    }
    Ok(accepted)
}

fn is_ipc_sysctl(name: &str) -> bool {
    name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name == "kernel.sem"
        || name.starts_with("fs.mqueue.")
}

/// Converts a sysctl name written with `/` separators ("net/ipv4/conf/eth0.1/forwarding") to the
/// dotted form, swapping `.` and `/` as sysctl(8) and runc do. Dotted names are returned as is.
fn dotted_sysctl_name(name: &str) -> String {
    let first_separator = name.find(['.', '/']);
    if first_separator.is_none_or(|i| name.as_bytes()[i] == b'.') {
        return name.to_string();
    }
    name.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            other => other,
        })
        .collect()
}
