//! The executor against a fake target whose disk usage follows the images it holds.

use std::sync::Mutex;

use crate::gc::{
    DiskUsage, GcContainer, GcContainerState, GcError, GcImage, GcPolicy, GcSandbox, GcTarget,
    ImageRemoval, Inventory, Trigger, run,
};

const SECOND: u64 = 1_000_000_000;
const NOW: u64 = 1_750_000_000 * SECOND;
const MB: u64 = 1_000_000;

/// A runtime in memory. Each image frees `freed` bytes when removed, which may be less than
/// its reported size, as with layers shared between images.
struct FakeTarget {
    state: Mutex<FakeState>,
}

struct FakeState {
    images: Vec<(GcImage, u64)>,
    containers: Vec<GcContainer>,
    sandboxes: Vec<GcSandbox>,
    /// Bytes used by everything but the images.
    base_used: u64,
    fail_image: Option<String>,
    removed_images: Vec<String>,
    removed_containers: Vec<String>,
}

impl FakeTarget {
    fn new(images: Vec<(GcImage, u64)>, base_used: u64) -> Self {
        Self {
            state: Mutex::new(FakeState {
                images,
                containers: Vec::new(),
                sandboxes: Vec::new(),
                base_used,
                fail_image: None,
                removed_images: Vec::new(),
                removed_containers: Vec::new(),
            }),
        }
    }

    fn disk(state: &FakeState) -> DiskUsage {
        DiskUsage {
            path: "/fake".to_string(),
            capacity_bytes: 100 * MB,
            used_bytes: state.base_used + state.images.iter().map(|(_, freed)| freed).sum::<u64>(),
        }
    }

    fn removed_images(&self) -> Vec<String> {
        self.state.lock().unwrap().removed_images.clone()
    }
}

impl GcTarget for FakeTarget {
    async fn inventory(&self) -> Result<Inventory, GcError> {
        let state = self.state.lock().unwrap();
        Ok(Inventory {
            images: state
                .images
                .iter()
                .map(|(image, _)| image.clone())
                .collect(),
            containers: state.containers.clone(),
            sandboxes: state.sandboxes.clone(),
            disk: Some(Self::disk(&state)),
        })
    }

    async fn disk_usage(&self) -> Result<Option<DiskUsage>, GcError> {
        Ok(Some(Self::disk(&self.state.lock().unwrap())))
    }

    async fn remove_container(&self, id: &str) -> Result<(), GcError> {
        let mut state = self.state.lock().unwrap();
        state.containers.retain(|container| container.id != id);
        state.removed_containers.push(id.to_string());
        Ok(())
    }

    async fn remove_image(&self, image: &ImageRemoval) -> Result<(), GcError> {
        let mut state = self.state.lock().unwrap();
        if state.fail_image.as_deref() == Some(image.id.as_str()) {
            return Err(GcError::Skipped {
                image: image.id.clone(),
                reason: "the test refuses it".to_string(),
            });
        }
        state
            .images
            .retain(|(candidate, _)| candidate.id != image.id);
        state
            .removed_images
            .push(image.id.trim_start_matches("sha256:").to_string());
        Ok(())
    }
}

fn image(name: &str, size: u64, unused: u64) -> GcImage {
    GcImage {
        id: format!("sha256:{name}"),
        names: vec![format!("example.com/{name}:1")],
        size_bytes: size,
        first_seen_ns: NOW - 90_000 * SECOND,
        last_used_ns: NOW - unused * SECOND,
        pinned: false,
    }
}

#[tokio::test]
async fn disk_run_stops_once_low_mark_is_measured() {
    // 90 MB used: 10 MB to free. Each image reports 4 MB but frees 6 MB, so two suffice
    // although the plan, by reported sizes, lists three.
    let target = FakeTarget::new(
        vec![
            (image("a", 4 * MB, 300), 6 * MB),
            (image("b", 4 * MB, 200), 6 * MB),
            (image("c", 4 * MB, 100), 6 * MB),
        ],
        72 * MB,
    );

    let report = run(&target, &GcPolicy::default(), Trigger::Disk, NOW)
        .await
        .unwrap();

    assert_eq!(report.plan.remove.len(), 3);
    assert_eq!(target.removed_images(), ["a", "b"]);
    assert_eq!(report.low_mark_reached, Some(true));
    assert_eq!(report.bytes_freed, Some(12 * MB));
    assert_eq!(report.bytes_estimated, 8 * MB);
}

#[tokio::test]
async fn disk_run_plans_again_when_estimates_fall_short() {
    // Each image reports 6 MB but frees only 2 MB (shared layers): the first plan of two
    // images frees 4 MB of the 10 MB needed, so the run goes on with the rest.
    let target = FakeTarget::new(
        (0..6)
            .map(|n| (image(&format!("i{n}"), 6 * MB, 1000 - n * 10), 2 * MB))
            .collect(),
        78 * MB,
    );

    let report = run(&target, &GcPolicy::default(), Trigger::Disk, NOW)
        .await
        .unwrap();

    assert_eq!(report.plan.remove.len(), 2);
    assert_eq!(target.removed_images(), ["i0", "i1", "i2", "i3", "i4"]);
    assert_eq!(report.low_mark_reached, Some(true));
    assert_eq!(report.bytes_freed, Some(10 * MB));
}

#[tokio::test]
async fn disk_run_reports_unreachable_low_mark() {
    let target = FakeTarget::new(vec![(image("only", 2 * MB, 500), 2 * MB)], 88 * MB);

    let report = run(&target, &GcPolicy::default(), Trigger::Disk, NOW)
        .await
        .unwrap();

    assert_eq!(target.removed_images(), ["only"]);
    assert_eq!(report.low_mark_reached, Some(false));
    assert!(!report.plan.reachable);
    assert!(
        report
            .plan
            .shortfall
            .as_deref()
            .is_some_and(|text| text.starts_with("needs 8.0 MB freed")),
        "{:?}",
        report.plan.shortfall
    );
}

#[tokio::test]
async fn dry_run_removes_nothing() {
    let target = FakeTarget::new(vec![(image("a", MB, 500), MB)], 0);
    let policy = GcPolicy {
        dry_run: true,
        ..GcPolicy::default()
    };

    let report = run(&target, &policy, Trigger::Schedule, NOW).await.unwrap();

    assert_eq!(report.plan.remove.len(), 1);
    assert!(report.images_removed.is_empty());
    assert!(target.removed_images().is_empty());
}

#[tokio::test]
async fn failed_removal_is_reported_and_run_goes_on() {
    let target = FakeTarget::new(
        vec![(image("stuck", MB, 500), MB), (image("next", MB, 400), MB)],
        0,
    );
    target.state.lock().unwrap().fail_image = Some("sha256:stuck".to_string());

    let report = run(&target, &GcPolicy::default(), Trigger::Schedule, NOW)
        .await
        .unwrap();

    assert_eq!(target.removed_images(), ["next"]);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].id, "sha256:stuck");
    assert!(report.failures[0].error.contains("the test refuses it"));
}

#[tokio::test]
async fn dead_containers_go_before_their_images() {
    let target = FakeTarget::new(vec![(image("job", MB, 500), MB)], 0);
    {
        let mut state = target.state.lock().unwrap();
        state.sandboxes = vec![GcSandbox {
            id: "gone-soon".into(),
            ready: false,
        }];
        state.containers = vec![GcContainer {
            id: "done".into(),
            sandbox_id: "gone-soon".into(),
            image: "sha256:job".into(),
            state: GcContainerState::Exited,
            finished_at_ns: NOW - 60 * SECOND,
        }];
    }

    let report = run(&target, &GcPolicy::default(), Trigger::Schedule, NOW)
        .await
        .unwrap();

    assert_eq!(report.containers_removed, ["done"]);
    assert_eq!(target.removed_images(), ["job"]);
    assert_eq!(target.state.lock().unwrap().removed_containers, ["done"]);
}

#[tokio::test]
async fn unfired_trigger_removes_no_containers() {
    let target = FakeTarget::new(vec![], 10 * MB);
    {
        let mut state = target.state.lock().unwrap();
        state.containers = vec![GcContainer {
            id: "orphan".into(),
            sandbox_id: "removed".into(),
            image: "sha256:x".into(),
            state: GcContainerState::Exited,
            finished_at_ns: NOW - 60 * SECOND,
        }];
    }

    let report = run(&target, &GcPolicy::default(), Trigger::Disk, NOW)
        .await
        .unwrap();

    assert!(!report.plan.fired);
    assert!(report.containers_removed.is_empty());
}
