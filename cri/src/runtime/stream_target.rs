//! The runtime side of exec and attach: the bundle, OCI runtime and config of a running
//! container, for the streaming server.

use std::path::PathBuf;

use berth_proto::cri::ContainerConfig;

use super::container::ContainerState;
use super::oci::OciRuntime;
use super::{RuntimeError, RuntimeService};

/// A running container, as `runc exec` and the monitor's attach socket reach it.
#[derive(Debug, Clone)]
pub struct StreamTarget {
    /// The full container ID, also when the request named a unique prefix.
    pub container_id: String,
    /// The OCI bundle: `config.json`, and the monitor's attach socket.
    pub bundle: PathBuf,
    pub runtime: OciRuntime,
    pub config: ContainerConfig,
}

impl RuntimeService {
    /// Returns the bundle, OCI runtime and CRI config of a running container. `purpose` names
    /// the operation in the error message, such as `"exec"`.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown ID, `FailedPrecondition` when the container is not running.
    pub fn stream_target(&self, id: &str, purpose: &str) -> Result<StreamTarget, RuntimeError> {
        let container = self.container(id)?;
        let id = container.record.id.clone();
        if container.state != ContainerState::Running {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id} is {}, not running: {purpose} needs a running container",
                format!("{:?}", container.state).to_lowercase()
            )));
        }
        let runtime = self.runtime(&container.record.runtime_handler)?.clone();
        Ok(StreamTarget {
            bundle: self.bundle_dir(&id),
            container_id: id,
            runtime,
            config: container.config,
        })
    }
}
