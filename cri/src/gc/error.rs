//! Errors of a collection run.

use std::path::PathBuf;

use crate::image::ImageError;
use crate::runtime::RuntimeError;

/// Error of reading a target's inventory or removing one item.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Image(#[from] ImageError),

    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    #[error("{call} failed on {endpoint}: {} ({:?})", status.message(), status.code())]
    Rpc {
        call: &'static str,
        endpoint: String,
        status: tonic::Status,
    },

    #[error(
        "cannot read the usage of the image filesystem at {path}: {source}; make that path visible to the collector"
    )]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{endpoint} reported no image filesystem in ImageFsInfo, so the disk trigger cannot run"
    )]
    NoImageFilesystem { endpoint: String },

    #[error("image {image} was skipped: {reason}")]
    Skipped { image: String, reason: String },

    #[error("the inventory task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
