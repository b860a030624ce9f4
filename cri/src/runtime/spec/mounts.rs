//! The container's mounts: the system mounts every container gets, the pod's `/etc/hostname`,
//! `/etc/hosts`, `/etc/resolv.conf` and `/dev/shm`, then the CRI mounts, as containerd orders
//! them.

use std::path::{Component, Path, PathBuf};

use berth_proto::cri::{ContainerConfig, Mount as CriMount, MountPropagation};
use oci_spec::runtime::{Mount, MountBuilder};

use super::host::{HostFeatures, resolve_host_path};
use super::{SandboxContext, SpecError};

/// The mounts of one container and the rootfs propagation they need.
#[derive(Debug)]
pub(super) struct MountPlan {
    pub mounts: Vec<Mount>,
    /// `linux.rootfsPropagation`: `rshared` or `rslave` when a bind mount needs events from the
    /// host to reach it, else `None` (the OCI runtime's default, `rprivate`).
    pub rootfs_propagation: Option<String>,
}

/// How one bind mount is made, after validation.
#[derive(Debug)]
struct BindMount {
    container_path: String,
    host_path: PathBuf,
    access: Access,
    propagation: MountPropagation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
    /// Read-only including every mount below the source (`rro`, `mount_setattr(2)`).
    RecursiveReadOnly,
}

/// Builds the container's mounts.
///
/// System mounts (`/proc`, `/dev`, `/dev/pts`, `/dev/mqueue`, `/sys`, `/sys/fs/cgroup`) come
/// first, except those a requested mount replaces. A requested `/dev` also replaces every system
/// mount below it. The requested mounts follow, ordered by path depth so that a mount at `/a`
/// does not hide one at `/a/b`.
///
/// Host paths that do not exist are passed through unchanged. containerd creates them as
/// directories, so a caller that wants the same must create them before calling.
pub(super) fn container_mounts(
    host: &HostFeatures,
    sandbox: &SandboxContext,
    config: &ContainerConfig,
    privileged: bool,
    readonly_rootfs: bool,
) -> Result<MountPlan, SpecError> {
    let mut binds = config
        .mounts
        .iter()
        .map(|m| validate_cri_mount(host, m))
        .collect::<Result<Vec<_>, _>>()?;
    binds.extend(pod_mounts(sandbox, config, readonly_rootfs));
    binds.sort_by_key(|b| clean(&b.container_path).components().count());

    let requested: Vec<PathBuf> = binds.iter().map(|b| clean(&b.container_path)).collect();
    let dev_requested = requested.iter().any(|p| p == Path::new("/dev"));
    let mut mounts: Vec<Mount> = system_mounts(privileged)?
        .into_iter()
        .filter(|m| {
            let destination = clean(&m.destination().to_string_lossy());
            let replaced = requested.contains(&destination);
            let below_dev = dev_requested && destination.starts_with("/dev");
            !replaced && !below_dev
        })
        .collect();

    let mut rootfs_propagation = None;
    for bind in binds {
        let source = resolve_host_path(&bind.host_path)?;
        let propagation = propagation_option(host, &bind, &source)?;
        match propagation {
            "rshared" => rootfs_propagation = Some("rshared".to_string()),
            "rslave" if rootfs_propagation.is_none() => {
                rootfs_propagation = Some("rslave".to_string());
            }
            _ => {}
        }
        let access = match bind.access {
            Access::ReadWrite => "rw",
            Access::ReadOnly => "ro",
            Access::RecursiveReadOnly => "rro",
        };
        mounts.push(
            MountBuilder::default()
                .destination(bind.container_path)
                .typ("bind")
                .source(source)
                .options(vec![
                    "rbind".to_string(),
                    propagation.to_string(),
                    access.to_string(),
                ])
                .build()?,
        );
    }

    Ok(MountPlan {
        mounts,
        rootfs_propagation,
    })
}

/// Mounts every container gets, with containerd's options. `/dev/shm` is missing because the
/// pod's `/dev/shm` bind mount always replaces it. A privileged container gets `/sys` and the
/// cgroup filesystem writable.
fn system_mounts(privileged: bool) -> Result<Vec<Mount>, SpecError> {
    let sys_access = if privileged { "rw" } else { "ro" };
    let table: [(&str, &str, &str, &[&str]); 6] = [
        ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        ("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev"]),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime"],
        ),
    ];

    table
        .into_iter()
        .map(|(destination, typ, source, options)| {
            let mut options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
            if destination.starts_with("/sys") {
                options.push(sys_access.to_string());
            }
            Ok(MountBuilder::default()
                .destination(destination)
                .typ(typ)
                .source(source)
                .options(options)
                .build()?)
        })
        .collect()
}

/// Returns bind mounts of the pod's files and `/dev/shm`, except where a CRI mount already
/// covers the path.
fn pod_mounts(
    sandbox: &SandboxContext,
    config: &ContainerConfig,
    readonly_rootfs: bool,
) -> Vec<BindMount> {
    let file_access = if readonly_rootfs {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let shm = sandbox
        .shm_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    let candidates = [
        ("/etc/hostname", sandbox.hostname_file.clone(), file_access),
        ("/etc/hosts", sandbox.hosts_file.clone(), file_access),
        ("/etc/resolv.conf", sandbox.resolv_conf.clone(), file_access),
        ("/dev/shm", shm, Access::ReadWrite),
    ];

    candidates
        .into_iter()
        .filter(|(path, _, _)| {
            !config
                .mounts
                .iter()
                .any(|m| clean(&m.container_path) == Path::new(path))
        })
        .map(|(path, host_path, access)| BindMount {
            container_path: path.to_string(),
            host_path,
            access,
            propagation: MountPropagation::PropagationPrivate,
        })
        .collect()
}

fn validate_cri_mount(host: &HostFeatures, mount: &CriMount) -> Result<BindMount, SpecError> {
    let invalid = |reason: &str| SpecError::InvalidMount {
        container_path: mount.container_path.clone(),
        host_path: mount.host_path.clone(),
        reason: reason.to_string(),
    };

    if !mount.container_path.starts_with('/') {
        return Err(invalid("container_path must be an absolute path"));
    }
    if mount.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
        return Err(invalid("image volumes are not supported"));
    }
    if mount.host_path.is_empty() {
        return Err(invalid("host_path is empty"));
    }
    if !mount.uid_mappings.is_empty() || !mount.gid_mappings.is_empty() {
        return Err(invalid(
            "ID-mapped mounts need a user namespace, which Berth does not support",
        ));
    }
    // selinux_relabel is ignored: Berth does not set SELinux labels.

    let propagation =
        MountPropagation::try_from(mount.propagation).map_err(|_| SpecError::UnknownEnumValue {
            field: "mounts.propagation",
            value: mount.propagation,
        })?;

    let access = match (mount.readonly, mount.recursive_read_only) {
        (false, false) => Access::ReadWrite,
        (true, false) => Access::ReadOnly,
        (false, true) => return Err(invalid("recursive_read_only requires readonly")),
        (true, true) => {
            if propagation != MountPropagation::PropagationPrivate {
                return Err(invalid(
                    "recursive_read_only requires PROPAGATION_PRIVATE, because a propagated \
                     mount could appear without the read-only flag",
                ));
            }
            if !host.recursive_read_only {
                return Err(invalid(
                    "recursive_read_only needs mount_setattr(2), which this kernel lacks \
                     (Linux 5.12 or later)",
                ));
            }
            Access::RecursiveReadOnly
        }
    };

    Ok(BindMount {
        container_path: mount.container_path.clone(),
        host_path: PathBuf::from(&mount.host_path),
        access,
        propagation,
    })
}

/// Returns the propagation option for `bind`, checking that the host mount under `source`
/// can deliver it: `rslave` needs a shared or slave mount, `rshared` a shared one. A private
/// host mount would make the option silently do nothing.
fn propagation_option(
    host: &HostFeatures,
    bind: &BindMount,
    source: &Path,
) -> Result<&'static str, SpecError> {
    let (option, required): (&'static str, &'static str) = match bind.propagation {
        MountPropagation::PropagationPrivate => return Ok("rprivate"),
        MountPropagation::PropagationHostToContainer => ("rslave", "shared or slave"),
        MountPropagation::PropagationBidirectional => ("rshared", "shared"),
    };

    let mount = host.mount_of(source);
    let satisfied = match bind.propagation {
        MountPropagation::PropagationBidirectional => mount.is_some_and(|m| m.is_shared()),
        _ => mount.is_some_and(|m| m.is_shared() || m.is_slave()),
    };
    if satisfied {
        return Ok(option);
    }
    Err(SpecError::MountPropagation {
        container_path: bind.container_path.clone(),
        host_path: source.display().to_string(),
        propagation: bind.propagation.as_str_name(),
        mount_point: mount
            .map(|m| m.mount_point.display().to_string())
            .unwrap_or_default(),
        required,
    })
}

/// Normalizes a container path for comparison: drops `.` components and trailing slashes.
fn clean(path: &str) -> PathBuf {
    Path::new(path)
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}
