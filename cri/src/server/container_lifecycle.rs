//! CreateContainer, StartContainer, StopContainer and RemoveContainer.

use berth_proto::cri::{
    CreateContainerRequest, CreateContainerResponse, RemoveContainerRequest,
    RemoveContainerResponse, StartContainerRequest, StartContainerResponse, StopContainerRequest,
    StopContainerResponse,
};
use tonic::Status;

use super::CriRuntimeService;

impl CriRuntimeService {
    pub(super) async fn create_container(
        &self,
        request: CreateContainerRequest,
    ) -> Result<CreateContainerResponse, Status> {
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("CreateContainer needs config"))?;
        let id = self
            .runtime()?
            .create_container(&request.pod_sandbox_id, config)
            .await?;
        Ok(CreateContainerResponse { container_id: id })
    }

    pub(super) async fn start_container(
        &self,
        request: StartContainerRequest,
    ) -> Result<StartContainerResponse, Status> {
        self.runtime()?
            .start_container(&request.container_id)
            .await?;
        Ok(StartContainerResponse {})
    }

    pub(super) async fn stop_container(
        &self,
        request: StopContainerRequest,
    ) -> Result<StopContainerResponse, Status> {
        self.runtime()?
            .stop_container(&request.container_id, request.timeout)
            .await?;
        Ok(StopContainerResponse {})
    }

    pub(super) async fn remove_container(
        &self,
        request: RemoveContainerRequest,
    ) -> Result<RemoveContainerResponse, Status> {
        self.runtime()?
            .remove_container(&request.container_id)
            .await?;
        Ok(RemoveContainerResponse {})
    }
}
