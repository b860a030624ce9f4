//! PodSandboxStatus, ListPodSandbox and StreamPodSandboxes.

use std::collections::HashMap;

use berth_proto::cri::{
    LinuxPodSandboxStatus, ListPodSandboxRequest, ListPodSandboxResponse, Namespace, PodIp,
    PodSandbox, PodSandboxNetworkStatus, PodSandboxStatus, PodSandboxStatusRequest,
    PodSandboxStatusResponse, StreamPodSandboxesRequest, StreamPodSandboxesResponse,
};
use tonic::Status;

use super::{CriRuntimeService, ResponseStream};
use crate::runtime::sandbox::Sandbox;

/// Sandboxes per StreamPodSandboxes message.
const STREAM_BATCH: usize = 256;

impl CriRuntimeService {
    pub(super) async fn pod_sandbox_status(
        &self,
        request: PodSandboxStatusRequest,
    ) -> Result<PodSandboxStatusResponse, Status> {
        let sandbox = self.runtime()?.sandbox(&request.pod_sandbox_id)?;
        let mut info = HashMap::new();
        if request.verbose {
            let details = serde_json::json!({
                "dir": sandbox.record.dir,
                "cgroupParent": sandbox.record.cgroup_parent,
                "infraPid": sandbox.record.infra_pid,
                "runtimeHandler": sandbox.record.runtime_handler,
                "hostNetwork": sandbox.host_network(),
            });
            info.insert("info".to_string(), details.to_string());
        }
        Ok(PodSandboxStatusResponse {
            status: Some(to_cri_status(&sandbox)),
            info,
            containers_statuses: Vec::new(),
            timestamp: crate::runtime::monitor::now_ns(),
        })
    }

    pub(super) async fn list_pod_sandbox(
        &self,
        request: ListPodSandboxRequest,
    ) -> Result<ListPodSandboxResponse, Status> {
        let sandboxes = self.runtime()?.list_sandboxes(request.filter.as_ref())?;
        Ok(ListPodSandboxResponse {
            items: sandboxes.iter().map(to_cri_sandbox).collect(),
        })
    }

    pub(super) async fn stream_pod_sandboxes(
        &self,
        request: StreamPodSandboxesRequest,
    ) -> Result<ResponseStream<StreamPodSandboxesResponse>, Status> {
        let sandboxes: Vec<PodSandbox> = self
            .runtime()?
            .list_sandboxes(request.filter.as_ref())?
            .iter()
            .map(to_cri_sandbox)
            .collect();
        let batches: Vec<Result<StreamPodSandboxesResponse, Status>> = sandboxes
            .chunks(STREAM_BATCH)
            .map(|chunk| {
                Ok(StreamPodSandboxesResponse {
                    pod_sandboxes: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(batches)))
    }
}

fn to_cri_sandbox(sandbox: &Sandbox) -> PodSandbox {
    PodSandbox {
        id: sandbox.record.id.clone(),
        metadata: sandbox.config.metadata.clone(),
        state: sandbox.state() as i32,
        created_at: sandbox.record.created_at_ns,
        labels: sandbox.config.labels.clone(),
        annotations: sandbox.config.annotations.clone(),
        runtime_handler: sandbox.record.runtime_handler.clone(),
    }
}

fn to_cri_status(sandbox: &Sandbox) -> PodSandboxStatus {
    let mut ips = sandbox.record.ips.iter();
    let network = PodSandboxNetworkStatus {
        ip: ips.next().cloned().unwrap_or_default(),
        additional_ips: ips.map(|ip| PodIp { ip: ip.clone() }).collect(),
    };
    let namespace_options = sandbox
        .config
        .linux
        .as_ref()
        .and_then(|linux| linux.security_context.as_ref())
        .and_then(|context| context.namespace_options.clone());
    PodSandboxStatus {
        id: sandbox.record.id.clone(),
        metadata: sandbox.config.metadata.clone(),
        state: sandbox.state() as i32,
        created_at: sandbox.record.created_at_ns,
        network: Some(network),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: namespace_options,
            }),
        }),
        labels: sandbox.config.labels.clone(),
        annotations: sandbox.config.annotations.clone(),
        runtime_handler: sandbox.record.runtime_handler.clone(),
    }
}
