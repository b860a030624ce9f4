//! Mapping of subsystem errors to gRPC status codes, done only here at the server edge.

use tonic::{Code, Status};

use crate::image::ImageError;
use crate::image::unpack::UnpackError;
use crate::runtime::RuntimeError;

impl From<ImageError> for Status {
    fn from(err: ImageError) -> Self {
        Status::new(image_error_code(&err), err.to_string())
    }
}

/// Returns the gRPC code for an image error, used for the image service's own errors and for
/// image errors met by the runtime service.
fn image_error_code(err: &ImageError) -> Code {
    if err.is_disk_full() {
        return Code::ResourceExhausted;
    }
    match err {
        ImageError::InvalidReference { .. } | ImageError::UnsupportedDigest { .. } => {
            Code::InvalidArgument
        }
        ImageError::NotFound { .. } | ImageError::NoMatchingPlatform { .. } => Code::NotFound,
        ImageError::Unauthorized { .. } => Code::Unauthenticated,
        ImageError::RegistryUnavailable { .. }
        | ImageError::Registry { .. }
        | ImageError::ProgressTimeout { .. } => Code::Unavailable,
        ImageError::DigestMismatch { .. } | ImageError::SizeMismatch { .. } => Code::DataLoss,
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
}

impl From<RuntimeError> for Status {
    fn from(err: RuntimeError) -> Self {
        let code = match &err {
            RuntimeError::NotFound { .. } => Code::NotFound,
            RuntimeError::NameTaken { .. } => Code::AlreadyExists,
            RuntimeError::InvalidArgument { .. } | RuntimeError::Spec(_) => Code::InvalidArgument,
            RuntimeError::FailedPrecondition(_)
            | RuntimeError::Config(_)
            | RuntimeError::ImageNotPresent { .. }
            | RuntimeError::UnknownHandler { .. } => Code::FailedPrecondition,
            RuntimeError::ExecTimedOut { .. } => Code::DeadlineExceeded,
            RuntimeError::Image(image) => image_error_code(image),
            RuntimeError::Cgroup(cgroup) if cgroup.is_invalid_argument() => Code::InvalidArgument,
            RuntimeError::Cgroup(_) => Code::Internal,
            RuntimeError::StartFailed { .. }
            | RuntimeError::Io { .. }
            | RuntimeError::Network(_)
            | RuntimeError::Oci(_)
            | RuntimeError::Store(_) => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}
