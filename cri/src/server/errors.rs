//! Mapping of subsystem errors to gRPC status codes, done only here at the server edge.

use tonic::{Code, Status};

use crate::image::ImageError;
use crate::image::unpack::UnpackError;

impl From<ImageError> for Status {
    fn from(err: ImageError) -> Self {
        let code = if err.is_disk_full() {
            Code::ResourceExhausted
        } else {
            match &err {
                ImageError::InvalidReference { .. } | ImageError::UnsupportedDigest { .. } => {
                    Code::InvalidArgument
                }
                ImageError::NotFound { .. } | ImageError::NoMatchingPlatform { .. } => {
                    Code::NotFound
                }
                ImageError::Unauthorized { .. } => Code::Unauthenticated,
                ImageError::RegistryUnavailable { .. }
                | ImageError::Registry { .. }
                | ImageError::ProgressTimeout { .. } => Code::Unavailable,
                ImageError::DigestMismatch { .. } | ImageError::SizeMismatch { .. } => {
                    Code::DataLoss
                }
                ImageError::Unpack {
                    source: UnpackError::Cancelled,
                    ..
                } => Code::Cancelled,
                ImageError::UnsupportedMediaType { .. }
                | ImageError::InvalidManifest { .. }
                | ImageError::InvalidConfig { .. }
                | ImageError::Unpack { .. }
                | ImageError::DiffIdMismatch { .. } => Code::FailedPrecondition,
                ImageError::Io { .. } | ImageError::Store(_) => Code::Internal,
            }
        };
        Status::new(code, err.to_string())
    }
}
