//! Errors of OCI runtime spec generation.

use std::io;
use std::path::PathBuf;

/// Error of [`generate_spec`](super::generate_spec): a CRI field, image config field or host file
/// that cannot be turned into an OCI runtime spec. Each message names the field and its value.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "container {container:?} has no command: the CRI config sets neither command nor args, \
         and the image sets neither Entrypoint nor Cmd"
    )]
    NoCommand { container: String },

    #[error("invalid image config field {field}: {reason}")]
    InvalidImageConfig { field: &'static str, reason: String },

    #[error("invalid environment variable {key:?}: the value is not valid UTF-8")]
    InvalidEnv { key: String },

    #[error("invalid {field} {value:?}: {reason}")]
    InvalidUser {
        field: &'static str,
        value: String,
        reason: String,
    },

    #[error("user {user:?} not found in {}", file.display())]
    UserNotFound { user: String, file: PathBuf },

    #[error("group {group:?} not found in {}", file.display())]
    GroupNotFound { group: String, file: PathBuf },

    #[error(
        "run_as_group {gid} is set without run_as_user or run_as_username; the CRI requires a \
         user whenever a group is given"
    )]
    GroupWithoutUser { gid: i64 },

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid {field} value {value}: not a known enum value")]
    UnknownEnumValue { field: &'static str, value: i32 },

    #[error("invalid capability {name:?} in {field}")]
    InvalidCapability { field: &'static str, name: String },

    #[error(
        "capability {name} in {field} is not in Berth's own effective capability set, so the OCI \
         runtime cannot grant it"
    )]
    CapabilityUnavailable { field: &'static str, name: String },

    #[error("privileged container requested in a pod whose sandbox is not privileged")]
    PrivilegedInUnprivilegedPod,

    #[error(
        "user namespaces are not supported: {field}.userns_options requests mode {mode}; use \
         mode NODE or leave it unset"
    )]
    UserNamespaceUnsupported { field: &'static str, mode: String },

    #[error("namespace_options.{namespace} mode {mode} is not supported")]
    NamespaceModeUnsupported {
        namespace: &'static str,
        mode: &'static str,
    },

    #[error("invalid mount {container_path:?} (host path {host_path:?}): {reason}")]
    InvalidMount {
        container_path: String,
        host_path: String,
        reason: String,
    },

    #[error(
        "mount {container_path:?} requests {propagation}, but its host path {host_path:?} is on \
         mount point {mount_point:?}, which is not a {required} mount"
    )]
    MountPropagation {
        container_path: String,
        host_path: String,
        propagation: &'static str,
        mount_point: String,
        required: &'static str,
    },

    #[error("device {host_path:?} (container path {container_path:?}): {reason}")]
    InvalidDevice {
        host_path: String,
        container_path: String,
        reason: String,
    },

    #[error("CDI devices are not supported: {names}; use devices with host paths instead")]
    CdiUnsupported { names: String },

    #[error("invalid resources.{field} value {value}: {reason}")]
    InvalidResource {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error(
        "sysctl {name:?} is not namespaced; only net.*, kernel.shm*, kernel.msg*, kernel.sem and \
         fs.mqueue.* may be set for a pod"
    )]
    SysctlNotNamespaced { name: String },

    #[error("sysctl {name:?} cannot be set in a pod that uses the host {namespace} namespace")]
    SysctlInHostNamespace {
        name: String,
        namespace: &'static str,
    },

    #[error("invalid seccomp profile {value:?}: {reason}")]
    InvalidSeccompProfile { value: String, reason: String },

    #[error("invalid AppArmor profile {value:?}: {reason}")]
    InvalidAppArmorProfile { value: String, reason: String },

    #[error("cannot build the OCI runtime spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
}

impl SpecError {
    pub(super) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SpecError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
