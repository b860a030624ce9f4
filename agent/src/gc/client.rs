//! Any CRI runtime as a collection target: ListImages, ListContainers, ContainerStatus,
//! ListPodSandbox and ImageFsInfo to read, RemoveContainer and RemoveImage to act, over the
//! runtime's unix socket.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use berth_cri::gc::{
    DiskUsage, GcContainer, GcContainerState, GcError, GcImage, GcSandbox, GcTarget, ImageRemoval,
    Inventory,
};
use berth_cri::image::now_ns;
use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::{
    Container, ContainerState, ContainerStatusRequest, ImageFsInfoRequest, ImageSpec,
    ListContainersRequest, ListImagesRequest, ListPodSandboxRequest, PodSandboxState,
    RemoveContainerRequest, RemoveImageRequest, VersionRequest,
};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use super::state::GcState;

/// Deadline of each CRI call. RemoveImage on a large image with many layers is the slowest.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest CRI response accepted: a node with thousands of images lists tens of megabytes.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Error of connecting to a CRI endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "invalid endpoint {endpoint:?}: give a unix socket as unix:///path/to.sock or /path/to.sock"
    )]
    InvalidEndpoint { endpoint: String },

    #[error(
        "cannot connect to {endpoint}: {reason}; check that the runtime runs and that the path is its CRI socket"
    )]
    Connect { endpoint: String, reason: String },

    #[error("{endpoint} does not answer the CRI Version call: {} ({:?})", status.message(), status.code())]
    Version {
        endpoint: String,
        status: tonic::Status,
    },
}

/// Returns the socket path of `unix:///path` or `/path`.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ConnectError> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(ConnectError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
        })
    }
}

/// A CRI runtime reached over its socket, with the state file that records the image times
/// the CRI does not report.
pub struct CriTarget {
    endpoint: String,
    channel: Channel,
    state: Mutex<GcState>,
    state_path: PathBuf,
}

impl CriTarget {
    /// Connects to `endpoint`, checks that it serves the CRI with a Version call, and loads
    /// the state file.
    pub async fn connect(endpoint: &str, state_path: &Path) -> Result<Self, ConnectError> {
        let socket = socket_path(endpoint)?;
        // The URI is a placeholder: the connector below ignores it and dials the socket, and
        // `localhost` is the authority every CRI server accepts.
        let channel = Endpoint::from_static("http://localhost")
            .timeout(CALL_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_| {
                let socket = socket.clone();
                async move {
                    tokio::net::UnixStream::connect(socket)
                        .await
                        .map(TokioIo::new)
                }
            }))
            .await
            .map_err(|err| ConnectError::Connect {
                endpoint: endpoint.to_string(),
                reason: error_chain(&err),
            })?;

        let version = RuntimeServiceClient::new(channel.clone())
            .version(VersionRequest::default())
            .await
            .map_err(|status| ConnectError::Version {
                endpoint: endpoint.to_string(),
                status,
            })?
            .into_inner();
        tracing::info!(
            endpoint,
            runtime = %version.runtime_name,
            runtime_version = %version.runtime_version,
            state_file = %state_path.display(),
            "connected to the CRI runtime"
        );
        Ok(Self {
            endpoint: endpoint.to_string(),
            channel,
            state: Mutex::new(GcState::load(state_path)),
            state_path: state_path.to_path_buf(),
        })
    }

    fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn rpc_error(&self, call: &'static str) -> impl FnOnce(tonic::Status) -> GcError + '_ {
        move |status| GcError::Rpc {
            call,
            endpoint: self.endpoint.clone(),
            status,
        }
    }

    async fn list_containers(&self) -> Result<Vec<Container>, GcError> {
        Ok(self
            .runtime()
            .list_containers(ListContainersRequest::default())
            .await
            .map_err(self.rpc_error("ListContainers"))?
            .into_inner()
            .containers)
    }

    /// Returns when an exited container finished, from ContainerStatus, because ListContainers
    /// does not report it. A container removed in between counts as finished at 0.
    async fn finished_at(&self, id: &str) -> Result<u64, GcError> {
        let response = self
            .runtime()
            .container_status(ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await;
        match response {
            Ok(response) => Ok(response
                .into_inner()
                .status
                .map_or(0, |status| status.finished_at.max(0) as u64)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(0),
            Err(status) => Err(self.rpc_error("ContainerStatus")(status)),
        }
    }

    /// Reads ImageFsInfo's first image filesystem and measures it with statvfs(3). The path
    /// must be visible here: in a pod, mount the runtime's image directory at the same path.
    async fn measure(&self) -> Result<DiskUsage, GcError> {
        let info = self
            .images()
            .image_fs_info(ImageFsInfoRequest::default())
            .await
            .map_err(self.rpc_error("ImageFsInfo"))?
            .into_inner();
        let mountpoint = info
            .image_filesystems
            .first()
            .and_then(|filesystem| filesystem.fs_id.as_ref())
            .map(|id| PathBuf::from(&id.mountpoint))
            .filter(|path| !path.as_os_str().is_empty())
            .ok_or_else(|| GcError::NoImageFilesystem {
                endpoint: self.endpoint.clone(),
            })?;
        tokio::task::spawn_blocking(move || {
            DiskUsage::of_path(&mountpoint).map_err(|source| GcError::Disk {
                path: mountpoint,
                source,
            })
        })
        .await?
    }

    /// Records the image times of this inventory in the state file. A failed write is logged,
    /// not returned: the run can go on with the times in memory.
    fn record_times(&self, images: &mut [GcImage], in_use: &HashSet<String>) {
        let mut state = self.state.lock().expect("GC state poisoned");
        state.observe(images, in_use, now_ns());
        if let Err(err) = state.save(&self.state_path) {
            tracing::warn!(error = %err, "image times are not saved; first-seen times restart at the next start");
        }
    }
}

/// Joins an error and its sources, because tonic's transport error alone reads only
/// "transport error".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    let mut last = String::new();
    while let Some(cause) = source {
        // hyper and tonic wrap an io::Error and repeat its text; print it once.
        let cause_text = cause.to_string();
        if cause_text != last {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        last = cause_text;
        source = cause.source();
    }
    text
}

/// Returns the image a container uses, as precisely as the runtime reports it: the image ID
/// when given, else the image reference.
fn container_image(container: &Container) -> String {
    [
        container.image_id.as_str(),
        container.image_ref.as_str(),
        container
            .image
            .as_ref()
            .map_or("", |spec| spec.image.as_str()),
    ]
    .into_iter()
    .find(|value| !value.is_empty())
    .unwrap_or_default()
    .to_string()
}

fn container_state(state: i32) -> GcContainerState {
    match ContainerState::try_from(state) {
        Ok(ContainerState::ContainerCreated) => GcContainerState::Created,
        Ok(ContainerState::ContainerRunning) => GcContainerState::Running,
        Ok(ContainerState::ContainerExited) => GcContainerState::Exited,
        _ => GcContainerState::Unknown,
    }
}

impl GcTarget for CriTarget {
    async fn inventory(&self) -> Result<Inventory, GcError> {
        let mut images: Vec<GcImage> = self
            .images()
            .list_images(ListImagesRequest::default())
            .await
            .map_err(self.rpc_error("ListImages"))?
            .into_inner()
            .images
            .into_iter()
            .map(|image| GcImage {
                names: image
                    .repo_tags
                    .into_iter()
                    .chain(image.repo_digests)
                    .collect(),
                id: image.id,
                size_bytes: image.size,
                first_seen_ns: 0,
                last_used_ns: 0,
                pinned: image.pinned,
            })
            .collect();

        let mut containers = Vec::new();
        for container in self.list_containers().await? {
            let state = container_state(container.state);
            let finished_at_ns = if state == GcContainerState::Exited {
                self.finished_at(&container.id).await?
            } else {
                0
            };
            containers.push(GcContainer {
                image: container_image(&container),
                id: container.id,
                sandbox_id: container.pod_sandbox_id,
                state,
                finished_at_ns,
            });
        }

        let sandboxes = self
            .runtime()
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .map_err(self.rpc_error("ListPodSandbox"))?
            .into_inner()
            .items
            .into_iter()
            .map(|sandbox| GcSandbox {
                ready: sandbox.state == PodSandboxState::SandboxReady as i32,
                id: sandbox.id,
            })
            .collect();

        let in_use = images_in_use(&images, &containers);
        self.record_times(&mut images, &in_use);
        Ok(Inventory {
            images,
            containers,
            sandboxes,
            disk: Some(self.measure().await?),
        })
    }

    async fn disk_usage(&self) -> Result<Option<DiskUsage>, GcError> {
        Ok(Some(self.measure().await?))
    }

    async fn remove_container(&self, id: &str) -> Result<(), GcError> {
        self.runtime()
            .remove_container(RemoveContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .map_err(self.rpc_error("RemoveContainer"))?;
        Ok(())
    }

    async fn remove_image(&self, image: &ImageRemoval) -> Result<(), GcError> {
        // Check again right before the removal: a container may have been created from the
        // image since the inventory. Some runtimes (containerd 1.6) remove an image in use.
        let user = self.list_containers().await?.into_iter().find(|container| {
            let used = container_image(container);
            used == image.id || used == image.name
        });
        if let Some(container) = user {
            return Err(GcError::Skipped {
                image: image.id.clone(),
                reason: format!("container {} uses it", container.id),
            });
        }
        self.images()
            .remove_image(RemoveImageRequest {
                image: Some(ImageSpec {
                    image: image.id.clone(),
                    ..ImageSpec::default()
                }),
            })
            .await
            .map_err(self.rpc_error("RemoveImage"))?;
        Ok(())
    }
}

/// Returns the IDs of the images that some container uses, by ID or by name.
fn images_in_use(images: &[GcImage], containers: &[GcContainer]) -> HashSet<String> {
    let used: HashSet<&str> = containers
        .iter()
        .map(|container| container.image.as_str())
        .collect();
    images
        .iter()
        .filter(|image| {
            used.contains(image.id.as_str())
                || image.names.iter().any(|name| used.contains(name.as_str()))
        })
        .map(|image| image.id.clone())
        .collect()
}
