//! Selection of exited containers to remove before images are considered, so that the images
//! only they used become eligible in the same run.

use std::collections::HashMap;

use serde::Serialize;

use super::inventory::{GcContainerState, Inventory};

/// The reason an exited container is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ContainerReason {
    /// Its sandbox no longer exists.
    SandboxRemoved,
    /// Its sandbox is stopped (not ready), so it cannot be restarted.
    SandboxNotReady,
    /// Its ready sandbox has `kept` more recently exited containers.
    BeyondMaxPerPod { kept: u32 },
}

impl std::fmt::Display for ContainerReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContainerReason::SandboxRemoved => f.write_str("sandbox removed"),
            ContainerReason::SandboxNotReady => f.write_str("sandbox not ready"),
            ContainerReason::BeyondMaxPerPod { kept } => {
                write!(f, "beyond max_dead_containers_per_pod ({kept} newer kept)")
            }
        }
    }
}

/// An exited container the plan removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRemoval {
    pub id: String,
    pub sandbox_id: String,
    pub image: String,
    pub finished_at_ns: u64,
    pub reason: ContainerReason,
}

/// Selects the exited containers to remove, oldest finished first:
///
/// - every exited container whose sandbox is gone or not ready;
/// - in each ready sandbox, the exited containers beyond the `max_per_pod` most recently
///   finished ones.
///
/// Created, running and unknown containers are never selected.
pub fn dead_containers(inventory: &Inventory, max_per_pod: u32) -> Vec<ContainerRemoval> {
    let ready: HashMap<&str, bool> = inventory
        .sandboxes
        .iter()
        .map(|sandbox| (sandbox.id.as_str(), sandbox.ready))
        .collect();

    let mut removals = Vec::new();
    let mut exited_by_pod: HashMap<&str, Vec<_>> = HashMap::new();
    for container in &inventory.containers {
        if container.state != GcContainerState::Exited {
            continue;
        }
        let reason = match ready.get(container.sandbox_id.as_str()) {
            None => ContainerReason::SandboxRemoved,
            Some(false) => ContainerReason::SandboxNotReady,
            Some(true) => {
                exited_by_pod
                    .entry(container.sandbox_id.as_str())
                    .or_default()
                    .push(container);
                continue;
            }
        };
        removals.push(ContainerRemoval {
            id: container.id.clone(),
            sandbox_id: container.sandbox_id.clone(),
            image: container.image.clone(),
            finished_at_ns: container.finished_at_ns,
            reason,
        });
    }

    for exited in exited_by_pod.values_mut() {
        // Newest first, so that the first `max_per_pod` are the ones kept.
        exited.sort_by(|a, b| {
            b.finished_at_ns
                .cmp(&a.finished_at_ns)
                .then_with(|| a.id.cmp(&b.id))
        });
        for container in exited.iter().skip(max_per_pod as usize) {
            removals.push(ContainerRemoval {
                id: container.id.clone(),
                sandbox_id: container.sandbox_id.clone(),
                image: container.image.clone(),
                finished_at_ns: container.finished_at_ns,
                reason: ContainerReason::BeyondMaxPerPod { kept: max_per_pod },
            });
        }
    }

    removals.sort_by(|a, b| {
        a.finished_at_ns
            .cmp(&b.finished_at_ns)
            .then_with(|| a.id.cmp(&b.id))
    });
    removals
}
