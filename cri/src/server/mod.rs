//! The CRI gRPC services: thin adapters from requests to subsystem calls, and from subsystem
//! errors to gRPC status codes.

mod authority;
mod container_events;
mod container_exec_sync;
mod container_lifecycle;
mod container_status;
mod container_stream;
mod errors;
mod image_fs_info;
mod image_list;
mod image_pull;
mod image_remove;
mod image_service;
mod image_status;
mod listen;
mod resources_update;
mod runtime_config;
mod runtime_service;
mod sandbox_run;
mod sandbox_status;
mod stats;
mod status;
mod version;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;

use crate::image::ImageService;
use crate::runtime::RuntimeService;
use crate::stream::StreamServer;
pub use authority::repair_authority;
pub use listen::{bind_socket, serve};

/// A boxed server stream, the response type of the CRI's streaming list RPCs.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

/// Name reported as `runtime_name` by Version.
pub const RUNTIME_NAME: &str = "berth";
/// CRI API version served.
pub const CRI_API_VERSION: &str = "v1";

/// State shared by both CRI services.
pub struct Cri {
    pub images: Arc<ImageService>,
    pub runtime: Arc<RuntimeService>,
    /// The server behind the URLs that Exec, Attach and PortForward return.
    pub streams: Arc<StreamServer>,
}

/// The `runtime.v1.ImageService` implementation.
#[derive(Clone)]
pub struct CriImageService(pub Arc<Cri>);

/// The `runtime.v1.RuntimeService` implementation.
#[derive(Clone)]
pub struct CriRuntimeService(pub Arc<Cri>);

impl CriRuntimeService {
    fn runtime(&self) -> Result<&Arc<RuntimeService>, tonic::Status> {
        Ok(&self.0.runtime)
    }
}
