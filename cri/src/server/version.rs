//! Version.

use berth_proto::cri::{VersionRequest, VersionResponse};

use super::{CRI_API_VERSION, CriRuntimeService, RUNTIME_NAME};

impl CriRuntimeService {
    /// Reports the runtime's name and version and the CRI API version it serves. The request's
    /// `version` (the kubelet's API version) is informational and not checked.
    pub(super) fn version(&self, _request: VersionRequest) -> VersionResponse {
        VersionResponse {
            version: "0.1.0".to_string(),
            runtime_name: RUNTIME_NAME.to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_api_version: CRI_API_VERSION.to_string(),
        }
    }
}
