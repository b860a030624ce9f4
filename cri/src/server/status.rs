//! Status.

use std::collections::HashMap;

use berth_proto::cri::{RuntimeCondition, RuntimeStatus, StatusRequest, StatusResponse};

use super::CriRuntimeService;

impl CriRuntimeService {
    /// Reports the RuntimeReady and NetworkReady conditions. Both are false in this build,
    /// because it cannot run pod sandboxes or set up pod networks yet. A kubelet therefore
    /// keeps the node NotReady instead of scheduling pods that would fail.
    pub(super) fn status(&self, request: StatusRequest) -> StatusResponse {
        let conditions = vec![
            RuntimeCondition {
                r#type: "RuntimeReady".to_string(),
                status: false,
                reason: "PodSandboxesNotSupported".to_string(),
                message: "this build of berth serves images only and cannot run pod sandboxes"
                    .to_string(),
            },
            RuntimeCondition {
                r#type: "NetworkReady".to_string(),
                status: false,
                reason: "NetworkPluginNotReady".to_string(),
                message: "this build of berth does not set up pod networks".to_string(),
            },
        ];
        let mut info = HashMap::new();
        if request.verbose {
            let images = self.0.images.clone();
            info.insert(
                "config".to_string(),
                serde_json::json!({ "imageRoot": images.root().display().to_string() }).to_string(),
            );
        }
        StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info,
            runtime_handlers: Vec::new(),
            features: None,
        }
    }
}
