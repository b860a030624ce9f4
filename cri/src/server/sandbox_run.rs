//! RunPodSandbox, StopPodSandbox and RemovePodSandbox.

use berth_proto::cri::{
    RemovePodSandboxRequest, RemovePodSandboxResponse, RunPodSandboxRequest, RunPodSandboxResponse,
    StopPodSandboxRequest, StopPodSandboxResponse,
};
use tonic::Status;
use tracing::Instrument;

use super::CriRuntimeService;

impl CriRuntimeService {
    pub(super) async fn run_pod_sandbox(
        &self,
        request: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse, Status> {
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("RunPodSandbox needs config"))?;
        let pod = config
            .metadata
            .as_ref()
            .map(|metadata| format!("{}/{}", metadata.namespace, metadata.name))
            .unwrap_or_default();
        let span = tracing::info_span!("RunPodSandbox", pod = %pod);
        let id = self
            .runtime()?
            .run_sandbox(config, &request.runtime_handler)
            .instrument(span)
            .await?;
        Ok(RunPodSandboxResponse { pod_sandbox_id: id })
    }

    /// Stops the sandbox; stopping a stopped or unknown sandbox succeeds, as the kubelet
    /// retries stops after errors.
    pub(super) async fn stop_pod_sandbox(
        &self,
        request: StopPodSandboxRequest,
    ) -> Result<StopPodSandboxResponse, Status> {
        let runtime = self.runtime()?;
        match runtime.stop_sandbox(&request.pod_sandbox_id).await {
            Ok(()) | Err(crate::runtime::RuntimeError::NotFound { .. }) => {
                Ok(StopPodSandboxResponse {})
            }
            Err(err) => Err(err.into()),
        }
    }

    pub(super) async fn remove_pod_sandbox(
        &self,
        request: RemovePodSandboxRequest,
    ) -> Result<RemovePodSandboxResponse, Status> {
        self.runtime()?
            .remove_sandbox(&request.pod_sandbox_id)
            .await?;
        Ok(RemovePodSandboxResponse {})
    }
}
