//! Which exited containers go before images are considered.

use crate::gc::{
    ContainerReason, GcContainer, GcContainerState, GcSandbox, Inventory, dead_containers,
};

fn container(id: &str, sandbox: &str, state: GcContainerState, finished_at_ns: u64) -> GcContainer {
    GcContainer {
        id: id.to_string(),
        sandbox_id: sandbox.to_string(),
        image: "sha256:image".to_string(),
        state,
        finished_at_ns,
    }
}

fn exited(id: &str, sandbox: &str, finished_at_ns: u64) -> GcContainer {
    container(id, sandbox, GcContainerState::Exited, finished_at_ns)
}

fn ids(removals: &[crate::gc::ContainerRemoval]) -> Vec<&str> {
    removals.iter().map(|removal| removal.id.as_str()).collect()
}

#[test]
fn keeps_newest_per_pod_and_removes_oldest_first() {
    let inventory = Inventory {
        sandboxes: vec![GcSandbox {
            id: "pod".into(),
            ready: true,
        }],
        containers: vec![
            exited("b", "pod", 200),
            exited("newest", "pod", 400),
            exited("a", "pod", 100),
            exited("c", "pod", 300),
        ],
        ..Inventory::default()
    };

    let removals = dead_containers(&inventory, 1);

    assert_eq!(ids(&removals), ["a", "b", "c"]);
    assert_eq!(
        removals[0].reason,
        ContainerReason::BeyondMaxPerPod { kept: 1 }
    );
}

#[test]
fn limit_applies_to_each_pod_separately() {
    let inventory = Inventory {
        sandboxes: vec![
            GcSandbox {
                id: "one".into(),
                ready: true,
            },
            GcSandbox {
                id: "two".into(),
                ready: true,
            },
        ],
        containers: vec![
            exited("one-old", "one", 100),
            exited("one-new", "one", 300),
            exited("two-only", "two", 50),
        ],
        ..Inventory::default()
    };

    assert_eq!(ids(&dead_containers(&inventory, 1)), ["one-old"]);
    assert!(dead_containers(&inventory, 2).is_empty());
}

#[test]
fn zero_limit_removes_every_exited_container() {
    let inventory = Inventory {
        sandboxes: vec![GcSandbox {
            id: "pod".into(),
            ready: true,
        }],
        containers: vec![exited("a", "pod", 100), exited("b", "pod", 200)],
        ..Inventory::default()
    };

    assert_eq!(ids(&dead_containers(&inventory, 0)), ["a", "b"]);
}

#[test]
fn containers_of_gone_or_stopped_sandboxes_go() {
    let inventory = Inventory {
        sandboxes: vec![GcSandbox {
            id: "stopped".into(),
            ready: false,
        }],
        containers: vec![
            exited("orphan", "removed", 200),
            exited("stopped-pod", "stopped", 100),
        ],
        ..Inventory::default()
    };

    let removals = dead_containers(&inventory, 5);

    assert_eq!(ids(&removals), ["stopped-pod", "orphan"]);
    assert_eq!(removals[0].reason, ContainerReason::SandboxNotReady);
    assert_eq!(removals[1].reason, ContainerReason::SandboxRemoved);
}

#[test]
fn live_containers_are_never_selected() {
    let inventory = Inventory {
        sandboxes: vec![],
        containers: vec![
            container("running", "removed", GcContainerState::Running, 0),
            container("created", "removed", GcContainerState::Created, 0),
            container("unknown", "removed", GcContainerState::Unknown, 0),
        ],
        ..Inventory::default()
    };

    assert!(dead_containers(&inventory, 0).is_empty());
}
