//! ContainerStatus, ListContainers and StreamContainers.

use std::collections::HashMap;

use berth_proto::cri::{
    Container, ContainerStatus, ContainerStatusRequest, ContainerStatusResponse, ContainerUser,
    ImageSpec, LinuxContainerUser, ListContainersRequest, ListContainersResponse,
    StreamContainersRequest, StreamContainersResponse,
};
use tonic::Status;

use super::{CriRuntimeService, ResponseStream};
use crate::runtime::container::{self as runtime_container, cri_state};

/// Containers per StreamContainers message.
const STREAM_BATCH: usize = 256;

impl CriRuntimeService {
    pub(super) async fn container_status(
        &self,
        request: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse, Status> {
        let container = self.runtime()?.container(&request.container_id)?;
        let mut info = HashMap::new();
        if request.verbose {
            let details = serde_json::json!({
                "sandboxID": container.record.sandbox_id,
                "pid": container.record.pid,
                "monitorPid": container.record.monitor_pid,
                "cgroupsPath": container.record.cgroups_path,
                "runtimeHandler": container.record.runtime_handler,
            });
            info.insert("info".to_string(), details.to_string());
        }
        Ok(ContainerStatusResponse {
            status: Some(to_cri_status(&container)),
            info,
        })
    }

    pub(super) async fn list_containers(
        &self,
        request: ListContainersRequest,
    ) -> Result<ListContainersResponse, Status> {
        let containers = self.runtime()?.list_containers(request.filter.as_ref())?;
        Ok(ListContainersResponse {
            containers: containers.iter().map(to_cri_container).collect(),
        })
    }

    pub(super) async fn stream_containers(
        &self,
        request: StreamContainersRequest,
    ) -> Result<ResponseStream<StreamContainersResponse>, Status> {
        let containers: Vec<Container> = self
            .runtime()?
            .list_containers(request.filter.as_ref())?
            .iter()
            .map(to_cri_container)
            .collect();
        let batches: Vec<Result<StreamContainersResponse, Status>> = containers
            .chunks(STREAM_BATCH)
            .map(|chunk| {
                Ok(StreamContainersResponse {
                    containers: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(batches)))
    }
}

fn image_spec(container: &runtime_container::Container) -> ImageSpec {
    container.config.image.clone().unwrap_or_else(|| ImageSpec {
        image: container.record.image_ref.clone(),
        ..ImageSpec::default()
    })
}

fn to_cri_container(container: &runtime_container::Container) -> Container {
    Container {
        id: container.record.id.clone(),
        pod_sandbox_id: container.record.sandbox_id.clone(),
        metadata: container.config.metadata.clone(),
        image: Some(image_spec(container)),
        image_ref: container.record.image_id.clone(),
        state: cri_state(container.state) as i32,
        created_at: container.record.created_at_ns,
        labels: container.config.labels.clone(),
        annotations: container.config.annotations.clone(),
        image_id: container.record.image_id.clone(),
    }
}

fn to_cri_status(container: &runtime_container::Container) -> ContainerStatus {
    ContainerStatus {
        id: container.record.id.clone(),
        metadata: container.config.metadata.clone(),
        state: cri_state(container.state) as i32,
        created_at: container.record.created_at_ns,
        started_at: container.record.started_at_ns,
        finished_at: container.record.finished_at_ns,
        exit_code: container.record.exit_code,
        image: Some(image_spec(container)),
        image_ref: container.record.image_id.clone(),
        reason: container.record.reason.clone(),
        message: container.record.message.clone(),
        labels: container.config.labels.clone(),
        annotations: container.config.annotations.clone(),
        mounts: container.config.mounts.clone(),
        log_path: container.record.log_path.clone(),
        resources: None,
        image_id: container.record.image_id.clone(),
        user: Some(ContainerUser {
            linux: Some(LinuxContainerUser {
                uid: i64::from(container.record.uid),
                gid: i64::from(container.record.gid),
                supplemental_groups: container
                    .record
                    .supplemental_groups
                    .iter()
                    .map(|gid| i64::from(*gid))
                    .collect(),
            }),
        }),
        stop_signal: 0,
    }
}
