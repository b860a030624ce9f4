//! One collection run against a target: read the inventory, plan, remove the planned exited
//! containers, then the planned images, and report what happened.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::time::Instant;

use serde::Serialize;

use super::error::GcError;
use super::inventory::{DiskUsage, Inventory};
use super::plan::{
    GcPlan, ImageRemoval, Trigger, count_noun, format_bytes, plan, plan_with_disk_mark,
    reason_counts,
};
use super::policy::GcPolicy;

/// A runtime the collector acts on: Berth's own services in the daemon, or any CRI runtime
/// over its socket for `berth gc --endpoint`.
pub trait GcTarget: Send + Sync {
    /// Reads images, containers, sandboxes and the usage of the image filesystem.
    fn inventory(&self) -> impl Future<Output = Result<Inventory, GcError>> + Send;

    /// Measures the image filesystem again, between removals of a disk-triggered run.
    fn disk_usage(&self) -> impl Future<Output = Result<Option<DiskUsage>, GcError>> + Send;

    /// Removes an exited container.
    fn remove_container(&self, id: &str) -> impl Future<Output = Result<(), GcError>> + Send;

    /// Removes an image the plan selected. A target may reject it with [`GcError::Skipped`] when
    /// the image was used after the inventory was read.
    fn remove_image(
        &self,
        image: &ImageRemoval,
    ) -> impl Future<Output = Result<(), GcError>> + Send;
}

/// A removal that failed; the run goes on with the next item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// `container`, `image`, or `disk` for a failed measurement of the image filesystem, which
    /// ends a disk run.
    pub kind: &'static str,
    pub id: String,
    pub error: String,
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GcReport {
    pub plan: GcPlan,
    pub dry_run: bool,
    pub containers_removed: Vec<String>,
    /// Images removed, in the order of removal.
    pub images_removed: Vec<ImageRemoval>,
    pub failures: Vec<Failure>,
    /// Sum of the reported sizes of the removed images.
    pub bytes_estimated: u64,
    /// Drop of the image filesystem's usage over the run, when the target can measure it.
    /// Includes the writable layers of removed containers where they share that filesystem.
    pub bytes_freed: Option<u64>,
    pub disk_before: Option<DiskUsage>,
    pub disk_after: Option<DiskUsage>,
    /// Disk trigger: whether usage ended at or below the low mark.
    pub low_mark_reached: Option<bool>,
    pub duration_ms: u64,
}

impl GcReport {
    /// Returns the bytes freed: measured when possible, else estimated from image sizes.
    pub fn bytes_freed_or_estimated(&self) -> u64 {
        self.bytes_freed.unwrap_or(self.bytes_estimated)
    }

    /// Returns the kept images' reasons counted, such as "in use by containers (2), pinned (1)".
    pub fn kept_summary(&self) -> String {
        reason_counts(self.plan.keep.iter().map(|kept| &kept.why))
    }

    /// Logs the run as one line: at info level, or at warn level when a removal failed or the
    /// disk run could not reach the low mark.
    pub fn log(&self) {
        let summary = self.summary();
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|failure| format!("{} {}: {}", failure.kind, failure.id, failure.error))
            .collect();
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(
                    trigger = %self.plan.trigger,
                    dry_run = self.dry_run,
                    images_removed = self.images_removed.len(),
                    bytes_freed = self.bytes_freed_or_estimated(),
                    containers_removed = self.containers_removed.len(),
                    images_kept = self.plan.keep.len(),
                    kept = %self.kept_summary(),
                    duration_ms = self.duration_ms,
                    shortfall = self.plan.shortfall.as_deref().unwrap_or(""),
                    failures = ?failures,
                    "{summary}"
                )
            };
        }
        if self.failures.is_empty() && self.low_mark_reached != Some(false) {
            emit!(info);
        } else {
            emit!(warn);
        }
    }

    /// Returns the one-line summary of the run, such as "image GC run (disk): removed 2 images
    /// (8.4 MB freed) and 1 container, kept 3 images".
    pub fn summary(&self) -> String {
        let kept = count_noun(self.plan.keep.len(), "image", "images");
        if self.dry_run {
            return format!(
                "image GC dry run ({}): would remove {} ({} by reported sizes) and {}, keep {kept}",
                self.plan.trigger,
                count_noun(self.plan.remove.len(), "image", "images"),
                format_bytes(self.plan.bytes_planned()),
                count_noun(self.plan.containers.len(), "container", "containers"),
            );
        }
        let freed = match self.bytes_freed {
            Some(bytes) => format!("{} freed", format_bytes(bytes)),
            None => format!("{} by reported sizes", format_bytes(self.bytes_estimated)),
        };
        format!(
            "image GC run ({}): removed {} ({freed}) and {}, kept {kept}",
            self.plan.trigger,
            count_noun(self.images_removed.len(), "image", "images"),
            count_noun(self.containers_removed.len(), "container", "containers"),
        )
    }
}

/// Runs `trigger` once against `target` at `now_ns` (nanoseconds since the Unix epoch).
///
/// A trigger whose condition does not hold (disk below the high mark, no image unused long
/// enough) returns its plan with `fired == false` and removes nothing. With
/// `policy.dry_run`, the report contains the plan and nothing is removed.
///
/// The disk trigger measures the filesystem before each image removal and stops as soon as
/// usage is at or below the low mark, because reported sizes count shared layers once per
/// image. When the plan runs out while usage is still above the low mark, it plans again from
/// the remaining images and the measured usage.
///
/// # Errors
///
/// Only a failed inventory is an error; failed removals are listed in the report.
pub async fn run<T: GcTarget>(
    target: &T,
    policy: &GcPolicy,
    trigger: Trigger,
    now_ns: u64,
) -> Result<GcReport, GcError> {
    let started = Instant::now();
    let mut inventory = target.inventory().await?;
    let first_plan = plan(policy, trigger, &inventory, now_ns);
    let mut report = GcReport {
        disk_before: inventory.disk.clone(),
        plan: first_plan,
        dry_run: policy.dry_run,
        containers_removed: Vec::new(),
        images_removed: Vec::new(),
        failures: Vec::new(),
        bytes_estimated: 0,
        bytes_freed: None,
        disk_after: None,
        low_mark_reached: None,
        duration_ms: 0,
    };
    if policy.dry_run || !report.plan.fired {
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    remove_containers(target, &mut inventory, &mut report).await;
    if let Err(err) = remove_images(target, policy, now_ns, &mut inventory, &mut report).await {
        report.failures.push(Failure {
            kind: "disk",
            id: report
                .disk_before
                .as_ref()
                .map_or(String::new(), |disk| disk.path.clone()),
            error: err.to_string(),
        });
    }

    match target.disk_usage().await {
        Ok(after) => report.disk_after = after,
        Err(err) => {
            tracing::warn!(error = %err, "cannot measure the image filesystem after the image GC run")
        }
    }
    if let (Some(before), Some(after)) = (&report.disk_before, &report.disk_after) {
        report.bytes_freed = Some(before.used_bytes.saturating_sub(after.used_bytes));
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Removes the plan's exited containers and drops them from the inventory.
async fn remove_containers<T: GcTarget>(
    target: &T,
    inventory: &mut Inventory,
    report: &mut GcReport,
) {
    for container in report.plan.containers.clone() {
        match target.remove_container(&container.id).await {
            Ok(()) => report.containers_removed.push(container.id),
            Err(err) => report.failures.push(Failure {
                kind: "container",
                id: container.id,
                error: err.to_string(),
            }),
        }
    }
    let removed: HashSet<&String> = report.containers_removed.iter().collect();
    inventory
        .containers
        .retain(|container| !removed.contains(&container.id));
}

/// Removes the plan's images in order. A disk run measures before each removal, stops at the
/// low mark, and plans again when the plan runs out above it.
///
/// # Errors
///
/// A failed measurement of the image filesystem; the removals so far stay in the report.
async fn remove_images<T: GcTarget>(
    target: &T,
    policy: &GcPolicy,
    now_ns: u64,
    inventory: &mut Inventory,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let trigger = report.plan.trigger;
    let mut attempted: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<ImageRemoval> = report.plan.remove.iter().cloned().collect();
    loop {
        while let Some(image) = queue.pop_front() {
            if trigger == Trigger::Disk && low_mark_reached(target, policy).await? {
                report.low_mark_reached = Some(true);
                return Ok(());
            }
            attempted.insert(image.id.clone());
            match target.remove_image(&image).await {
                Ok(()) => {
                    report.bytes_estimated += image.bytes;
                    report.images_removed.push(image);
                }
                Err(err) => report.failures.push(Failure {
                    kind: "image",
                    id: image.id.clone(),
                    error: err.to_string(),
                }),
            }
        }
        if trigger != Trigger::Disk {
            return Ok(());
        }
        if low_mark_reached(target, policy).await? {
            report.low_mark_reached = Some(true);
            return Ok(());
        }

        // Shared layers made the estimates too high: plan again from what is left.
        inventory
            .images
            .retain(|image| !attempted.contains(&image.id));
        inventory.disk = target.disk_usage().await?;
        let again = plan_with_disk_mark(
            policy,
            trigger,
            inventory,
            now_ns,
            policy.low_threshold_percent,
        );
        queue = again
            .remove
            .into_iter()
            .filter(|image| !attempted.contains(&image.id))
            .collect();
        if queue.is_empty() {
            report.low_mark_reached = Some(false);
            report.plan.reachable = false;
            report.plan.shortfall = again.shortfall.or(report.plan.shortfall.take());
            return Ok(());
        }
    }
}

async fn low_mark_reached<T: GcTarget>(target: &T, policy: &GcPolicy) -> Result<bool, GcError> {
    Ok(target
        .disk_usage()
        .await?
        .is_some_and(|disk| disk.bytes_above(policy.low_threshold_percent) == 0))
}
