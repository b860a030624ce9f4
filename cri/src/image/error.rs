//! Errors of the image service.

use std::io;

use super::unpack::UnpackError;
use crate::store::StoreError;

/// Error of an image operation. The server maps each variant to a gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    #[error("image {reference:?} not found: {detail}")]
    NotFound { reference: String, detail: String },

    #[error("registry {registry} rejected the credentials for {reference:?}: {detail}")]
    Unauthorized {
        registry: String,
        reference: String,
        detail: String,
    },

    #[error("registry {registry} is unavailable: {detail}")]
    RegistryUnavailable { registry: String, detail: String },

    #[error("registry {registry} failed: {detail}")]
    Registry { registry: String, detail: String },

    #[error("registry sent {digest} with content of digest {actual}; the blob was discarded")]
    DigestMismatch { digest: String, actual: String },

    #[error("registry sent {actual} bytes for {digest}, but its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },

    #[error("registry sent no data for {digest} for {seconds} s (image.progress_timeout_seconds)")]
    ProgressTimeout { digest: String, seconds: u64 },

    #[error("unsupported media type {media_type:?} for {digest}")]
    UnsupportedMediaType { media_type: String, digest: String },

    #[error("unsupported digest {digest:?}: only sha256 digests are supported")]
    UnsupportedDigest { digest: String },

    #[error("image {reference:?} has no manifest for platform {platform}")]
    NoMatchingPlatform { reference: String, platform: String },

    #[error("invalid manifest {digest}: {reason}")]
    InvalidManifest { digest: String, reason: String },

    #[error("invalid image config {digest}: {reason}")]
    InvalidConfig { digest: String, reason: String },

    #[error("unpacking layer {digest} failed: {source}")]
    Unpack {
        digest: String,
        #[source]
        source: UnpackError,
    },

    #[error("layer {digest} unpacks to diff ID {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        digest: String,
        expected: String,
        actual: String,
    },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImageError {
    /// Wraps an I/O error with the action and path it concerns.
    pub fn io(action: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        ImageError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }

    /// Returns true for ENOSPC or EDQUOT: the disk or the quota is full.
    pub fn is_disk_full(&self) -> bool {
        let source = match self {
            ImageError::Io { source, .. } => source,
            ImageError::Unpack {
                source: UnpackError::Io { source, .. },
                ..
            } => source,
            _ => return false,
        };
        source.raw_os_error() == Some(libc::ENOSPC) || source.raw_os_error() == Some(libc::EDQUOT)
    }
}
