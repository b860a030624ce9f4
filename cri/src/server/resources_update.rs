//! UpdateContainerResources and UpdatePodSandboxResources.

use berth_proto::cri::{
    UpdateContainerResourcesRequest, UpdateContainerResourcesResponse, UpdatePodSandboxResourcesRequest,
    UpdatePodSandboxResourcesResponse,
};
use tonic::Status;

use super::CriRuntimeService;

impl CriRuntimeService {
    pub(super) async fn update_container_resources(
        &self,
        request: UpdateContainerResourcesRequest,
    ) -> Result<UpdateContainerResourcesResponse, Status> {
        let linux = request
            .linux
            .ok_or_else(|| Status::invalid_argument("UpdateContainerResources needs linux resources"))?;
        self.runtime()?
            .update_container_resources(&request.container_id, &linux)
            .await?;
        Ok(UpdateContainerResourcesResponse {})
    }

    pub(super) async fn update_pod_sandbox_resources(
        &self,
        request: UpdatePodSandboxResourcesRequest,
    ) -> Result<UpdatePodSandboxResourcesResponse, Status> {
        self.runtime()?
            .update_sandbox_resources(&request.pod_sandbox_id, request.resources.as_ref(), request.overhead.as_ref())
            .await?;
        Ok(UpdatePodSandboxResourcesResponse {})
    }
}
