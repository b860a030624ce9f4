//! The image and container collection policy, shared by the daemon's scheduler and `berth gc`.
//!
//! A run reads an [`Inventory`] from a [`GcTarget`] (Berth's own services, or any CRI runtime
//! over its socket), plans with the pure function [`plan()`], removes exited containers beyond
//! the policy first and then images, and returns a [`GcReport`]. The triggers:
//!
//! - [`Trigger::Schedule`]: a cron expression; removes every eligible image.
//! - [`Trigger::Disk`]: usage of the image filesystem at or above `high_threshold_percent`;
//!   removes images until usage is at or below `low_threshold_percent`.
//! - [`Trigger::MaxUnusedAge`]: removes the eligible images unused for longer than
//!   `max_unused_age_seconds`.
//!
//! An image is never removed while any container uses it (created, running or exited), while
//! it is pinned or matches a `keep` pattern, or while it is younger than `min_age_seconds`.
//! Eligible images go least recently used first, largest first among equals.

mod containers;
mod error;
mod inventory;
mod local;
mod metrics;
mod pattern;
mod plan;
mod policy;
mod run;
mod schedule;
#[cfg(test)]
mod tests;

pub use containers::{ContainerReason, ContainerRemoval, dead_containers};
pub use error::GcError;
pub use inventory::{DiskUsage, GcContainer, GcContainerState, GcImage, GcSandbox, Inventory};
pub use local::LocalTarget;
pub use metrics::GcMetrics;
pub use pattern::KeepPattern;
pub use plan::{
    GcPlan, ImageKept, ImageRemoval, KeepReason, RemoveReason, Trigger, format_bytes, plan,
    reason_counts,
};
pub use policy::GcPolicy;
pub use run::{Failure, GcReport, GcTarget, run};
pub use schedule::{Schedule, Zone, format_utc};
