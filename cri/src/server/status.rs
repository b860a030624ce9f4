//! Status.

use std::collections::HashMap;

use berth_proto::cri::{
    RuntimeCondition, RuntimeHandler, RuntimeStatus, StatusRequest, StatusResponse,
};

use super::CriRuntimeService;

impl CriRuntimeService {
    /// Reports the RuntimeReady condition (an OCI runtime binary was found for the default
    /// handler) and NetworkReady (a CNI config and its plugins are usable).
    pub(super) fn status(&self, request: StatusRequest) -> StatusResponse {
        let runtime = &self.0.runtime;
        let handlers = runtime.handlers();
        let runtime_ready = runtime.default_handler_ready();
        let mut conditions = vec![RuntimeCondition {
            r#type: "RuntimeReady".to_string(),
            status: runtime_ready,
            reason: if runtime_ready {
                String::new()
            } else {
                "OCIRuntimeNotFound".to_string()
            },
            message: if runtime_ready {
                String::new()
            } else {
                "the default OCI runtime was not found: install the Debian package runc or set runtime.runtimes".to_string()
            },
        }];
        let network = runtime.network_status();
        conditions.push(RuntimeCondition {
            r#type: "NetworkReady".to_string(),
            status: network.is_ok(),
            reason: if network.is_ok() {
                String::new()
            } else {
                "NetworkPluginNotReady".to_string()
            },
            message: network.err().unwrap_or_default(),
        });

        let mut info = HashMap::new();
        if request.verbose {
            info.insert(
                "config".to_string(),
                serde_json::json!({
                    "imageRoot": self.0.images.root().display().to_string(),
                    "runtimeHandlers": handlers,
                })
                .to_string(),
            );
        }
        StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info,
            runtime_handlers: handlers
                .into_iter()
                .map(|name| RuntimeHandler {
                    name,
                    features: None,
                })
                .collect(),
            features: None,
        }
    }
}
