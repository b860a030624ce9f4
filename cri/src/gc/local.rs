//! The daemon's own image and runtime services as a collection target.

use std::sync::Arc;

use super::error::GcError;
use super::inventory::{DiskUsage, GcContainer, GcContainerState, GcImage, GcSandbox, Inventory};
use super::plan::ImageRemoval;
use super::run::GcTarget;
use crate::image::ImageService;
use crate::runtime::{ContainerState, RuntimeService};

/// Berth's image and runtime services, read and changed in-process.
#[derive(Clone)]
pub struct LocalTarget {
    images: Arc<ImageService>,
    runtime: Arc<RuntimeService>,
}

impl LocalTarget {
    pub fn new(images: Arc<ImageService>, runtime: Arc<RuntimeService>) -> Self {
        Self { images, runtime }
    }

    fn read_inventory(&self) -> Result<Inventory, GcError> {
        let images = self
            .images
            .list()?
            .into_iter()
            .map(|record| GcImage {
                names: record
                    .repo_tags
                    .iter()
                    .chain(&record.repo_digests)
                    .cloned()
                    .collect(),
                id: record.id,
                size_bytes: record.size,
                first_seen_ns: record.pulled_at_ns,
                last_used_ns: record.last_used_ns,
                pinned: record.pinned,
            })
            .collect();
        let containers = self
            .runtime
            .list_containers(None)?
            .into_iter()
            .map(|container| GcContainer {
                state: match container.state {
                    ContainerState::Created => GcContainerState::Created,
                    ContainerState::Running => GcContainerState::Running,
                    ContainerState::Exited => GcContainerState::Exited,
                },
                id: container.record.id,
                sandbox_id: container.record.sandbox_id,
                image: container.record.image_id,
                finished_at_ns: container.record.finished_at_ns.max(0) as u64,
            })
            .collect();
        let sandboxes = self
            .runtime
            .list_sandboxes(None)?
            .into_iter()
            .map(|sandbox| GcSandbox {
                id: sandbox.record.id,
                ready: sandbox.record.ready,
            })
            .collect();
        Ok(Inventory {
            images,
            containers,
            sandboxes,
            disk: Some(self.measure()?),
        })
    }

    fn measure(&self) -> Result<DiskUsage, GcError> {
        let root = self.images.root();
        DiskUsage::of_path(root).map_err(|source| GcError::Disk {
            path: root.to_path_buf(),
            source,
        })
    }

    /// Checks, right before a removal, that no container uses the image and that no container
    /// was created from it since the inventory, which moves its last-used time.
    fn still_unused(&self, image: &ImageRemoval) -> Result<(), GcError> {
        let Some(current) = self.images.find(&image.id)? else {
            return Ok(());
        };
        if current.last_used_ns != image.last_used_ns {
            return Err(GcError::Skipped {
                image: image.id.clone(),
                reason: "it was used after the plan was made".to_string(),
            });
        }
        let user = self
            .runtime
            .list_containers(None)?
            .into_iter()
            .find(|container| container.record.image_id == image.id);
        if let Some(container) = user {
            return Err(GcError::Skipped {
                image: image.id.clone(),
                reason: format!("container {} uses it", container.record.id),
            });
        }
        Ok(())
    }
}

impl GcTarget for LocalTarget {
    async fn inventory(&self) -> Result<Inventory, GcError> {
        let target = self.clone();
        tokio::task::spawn_blocking(move || target.read_inventory()).await?
    }

    async fn disk_usage(&self) -> Result<Option<DiskUsage>, GcError> {
        let target = self.clone();
        Ok(Some(
            tokio::task::spawn_blocking(move || target.measure()).await??,
        ))
    }

    async fn remove_container(&self, id: &str) -> Result<(), GcError> {
        self.runtime.remove_container(id).await?;
        Ok(())
    }

    async fn remove_image(&self, image: &ImageRemoval) -> Result<(), GcError> {
        let target = self.clone();
        let planned = image.clone();
        tokio::task::spawn_blocking(move || target.still_unused(&planned)).await??;
        // TODO: a CreateContainer that starts between the check above and this removal can
        // still pick the image; closing that needs a lock shared with CreateContainer.
        self.images.remove(&image.id).await?;
        Ok(())
    }
}
