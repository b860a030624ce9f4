//! Errors of the runtime service.

use std::io;

use super::oci::OciError;
use crate::image::ImageError;
use crate::network::NetworkError;
use crate::store::StoreError;

/// Error of a sandbox or container operation. The server maps each variant to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },

    #[error(
        "{kind} name {name:?} is already reserved by {kind} {owner}; remove it first or use another attempt number"
    )]
    NameTaken {
        kind: &'static str,
        name: String,
        owner: String,
    },

    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error("{0}")]
    FailedPrecondition(String),

    /// A setting of the daemon's config cannot work on this host.
    #[error("{0}")]
    Config(String),

    #[error("image {reference:?} is not present: pull it before creating the container")]
    ImageNotPresent { reference: String },

    #[error("runtime handler {handler:?} is not configured; configured handlers: {known}")]
    UnknownHandler { handler: String, known: String },

    #[error("container {id} failed to start: {message}")]
    StartFailed { id: String, message: String },

    #[error("command in container {id} timed out after {seconds} s")]
    ExecTimedOut { id: String, seconds: i64 },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Image(#[from] ImageError),

    #[error(transparent)]
    Network(#[from] NetworkError),

    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),

    #[error(transparent)]
    Oci(#[from] OciError),

    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),

    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RuntimeError {
    /// Wraps an I/O error with the action and path it concerns.
    pub fn io(action: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        RuntimeError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}
