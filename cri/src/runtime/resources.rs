//! UpdateContainerResources and UpdatePodSandboxResources: new limits for running cgroups.

use berth_proto::cri::LinuxContainerResources;

use super::container::ContainerState;
use super::{RuntimeError, RuntimeService};
use crate::cgroups::{CgroupPath, Resources};

impl RuntimeService {
    /// Applies new limits to a container's cgroup. Values the request leaves at zero keep their
    /// current setting. Invalid values are rejected before anything is written.
    pub async fn update_container_resources(&self, id: &str, resources: &LinuxContainerResources) -> Result<(), RuntimeError> {
        let container = self.container(id)?;
        if container.state == ContainerState::Exited {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {} has exited: only a created or running container can be updated",
                container.record.id
            )));
        }
        let resources = Resources::from_cri(resources)?;
        let path = CgroupPath::new(&container.record.cgroups_path)?;
        if container.state == ContainerState::Created {
            // The OCI runtime creates the cgroup at start, from the spec written at creation.
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {} is not started yet: its cgroup does not exist",
                container.record.id
            )));
        }
        self.with_cgroups(move |driver| driver.update(&path, &resources)).await?;
        tracing::info!(container = %container.record.id, "container resources updated");
        Ok(())
    }

    /// Applies new pod-level limits, with the pod overhead added, to a sandbox's cgroup.
    pub async fn update_sandbox_resources(
        &self,
        id: &str,
        resources: Option<&LinuxContainerResources>,
        overhead: Option<&LinuxContainerResources>,
    ) -> Result<(), RuntimeError> {
        let sandbox = self.sandbox(id)?;
        let mut total = match resources {
            Some(resources) => Resources::from_cri(resources)?,
            None => Resources::default(),
        };
        if let Some(overhead) = overhead {
            total.add_overhead(&Resources::from_cri(overhead)?);
        }
        let path = CgroupPath::new(&sandbox.record.cgroup_parent)?;
        self.with_cgroups(move |driver| driver.update(&path, &total)).await?;
        tracing::info!(sandbox = %sandbox.record.id, "sandbox resources updated");
        Ok(())
    }
}
