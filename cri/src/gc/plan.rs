//! The selection function: from an inventory, a policy, a trigger and the current time, the
//! containers and images one run removes, and why every other image stays. It reads no clock
//! and does no I/O, so every trigger, the daemon, `berth gc` and `--dry-run` share it.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::containers::{ContainerRemoval, dead_containers};
use super::inventory::{DiskUsage, GcImage, Inventory};
use super::policy::GcPolicy;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The condition that starts a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The cron schedule fired: remove every eligible image.
    Schedule,
    /// The image filesystem reached the high mark: remove images until usage is at or below
    /// the low mark.
    Disk,
    /// Remove the eligible images unused for longer than `max_unused_age_seconds`.
    MaxUnusedAge,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [Trigger::Schedule, Trigger::Disk, Trigger::MaxUnusedAge];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Disk => "disk",
            Trigger::MaxUnusedAge => "max-unused-age",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reason the plan removes an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RemoveReason {
    /// The scheduled run removes every eligible image.
    Scheduled,
    /// Unused for `unused_seconds`, longer than `max_unused_age_seconds`.
    UnusedTooLong { unused_seconds: u64 },
    /// Needed to bring the image filesystem down to the low mark.
    DiskAboveHighMark,
}

impl std::fmt::Display for RemoveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoveReason::Scheduled => f.write_str("scheduled run"),
            RemoveReason::UnusedTooLong { unused_seconds } => {
                write!(f, "unused for {unused_seconds} s, over max_unused_age")
            }
            RemoveReason::DiskAboveHighMark => f.write_str("disk above high mark"),
        }
    }
}

/// The reason an image stays.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum KeepReason {
    /// A container that the run does not remove uses it, running or not.
    InUse { containers: usize },
    /// The runtime reports it pinned.
    Pinned,
    /// A name matches this `keep` pattern.
    KeepPattern { pattern: String },
    /// Pulled or first seen `age_seconds` ago, less than `min_age_seconds`.
    YoungerThanMinAge { age_seconds: u64 },
    /// Eligible, but used within `max_unused_age_seconds`.
    RecentlyUsed { unused_seconds: u64 },
    /// Eligible, but the trigger needs no more space.
    NotNeeded,
}

impl KeepReason {
    /// Returns whether the image could be removed by another trigger or a fuller disk.
    pub fn is_eligible(&self) -> bool {
        matches!(
            self,
            KeepReason::RecentlyUsed { .. } | KeepReason::NotNeeded
        )
    }

    /// Returns the reason without its numbers, for counting.
    pub fn category(&self) -> &'static str {
        match self {
            KeepReason::InUse { .. } => "in use by containers",
            KeepReason::Pinned => "pinned",
            KeepReason::KeepPattern { .. } => "keep pattern",
            KeepReason::YoungerThanMinAge { .. } => "younger than min_age",
            KeepReason::RecentlyUsed { .. } => "used within max_unused_age",
            KeepReason::NotNeeded => "not needed",
        }
    }
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::InUse { containers: 1 } => f.write_str("in use by 1 container"),
            KeepReason::InUse { containers } => write!(f, "in use by {containers} containers"),
            KeepReason::Pinned => f.write_str("pinned"),
            KeepReason::KeepPattern { pattern } => write!(f, "matches keep pattern {pattern}"),
            KeepReason::YoungerThanMinAge { age_seconds } => {
                write!(f, "younger than min_age ({age_seconds} s old)")
            }
            KeepReason::RecentlyUsed { unused_seconds } => {
                write!(f, "used {unused_seconds} s ago, within max_unused_age")
            }
            KeepReason::NotNeeded => f.write_str("not needed"),
        }
    }
}

/// An image the plan removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRemoval {
    pub id: String,
    pub name: String,
    /// The image's reported size, the plan's estimate of what removing it frees. The estimate
    /// is high for an image that shares layers with images that stay.
    pub bytes: u64,
    pub last_used_ns: u64,
    pub reason: RemoveReason,
}

/// An image the plan keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageKept {
    pub id: String,
    pub name: String,
    pub bytes: u64,
    pub why: KeepReason,
}

/// The result of the selection function.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GcPlan {
    pub trigger: Trigger,
    /// Whether the trigger's condition holds: always for the schedule, usage at or above the
    /// high mark for the disk trigger, an image unused too long for the max-unused-age trigger.
    pub fired: bool,
    /// Exited containers removed before any image, oldest finished first.
    pub containers: Vec<ContainerRemoval>,
    /// Images to remove, in order: least recently used first, largest first among equals.
    pub remove: Vec<ImageRemoval>,
    /// Every other image, with the reason it stays.
    pub keep: Vec<ImageKept>,
    pub disk: Option<DiskUsage>,
    /// Disk trigger: bytes above the low mark. Other triggers: the sum of `remove`'s sizes.
    pub bytes_to_free: u64,
    /// Whether removing `remove` frees `bytes_to_free`, by the size estimates.
    pub reachable: bool,
    /// When not reachable, the shortfall and the reasons the other images stay, for example "needs 3.1 GB
    /// freed, 1.2 GB eligible; 5 images kept: in use by containers (3), pinned (1), younger
    /// than min_age (1)".
    pub shortfall: Option<String>,
}

impl GcPlan {
    /// Returns the sum of the sizes of the images to remove.
    pub fn bytes_planned(&self) -> u64 {
        self.remove.iter().map(|removal| removal.bytes).sum()
    }
}

/// Plans one run of `trigger` at `now_ns` (nanoseconds since the Unix epoch).
///
/// Exited containers are selected first (see [`dead_containers`]) and no longer count as users
/// of their images. An image then stays when a remaining container uses it, when it is pinned,
/// when a name matches a `keep` pattern, or when it is younger than `min_age_seconds`, in that
/// order of precedence. The other images are eligible, ordered least recently used first and
/// largest first among equals, and the trigger decides how many of them go.
pub fn plan(policy: &GcPolicy, trigger: Trigger, inventory: &Inventory, now_ns: u64) -> GcPlan {
    plan_with_disk_mark(
        policy,
        trigger,
        inventory,
        now_ns,
        policy.high_threshold_percent,
    )
}

/// Plans like [`plan`], except that the disk trigger fires at `fire_percent` rather than at
/// the high mark. A disk run that has started uses the low mark here, because it goes on
/// until usage is at or below the low mark.
pub(super) fn plan_with_disk_mark(
    policy: &GcPolicy,
    trigger: Trigger,
    inventory: &Inventory,
    now_ns: u64,
    fire_percent: u8,
) -> GcPlan {
    let containers = dead_containers(inventory, policy.max_dead_containers_per_pod);
    let users = users_by_image(inventory, &containers);
    let (mut keep, eligible) = classify_images(policy, inventory, &users, now_ns);

    let mut plan = GcPlan {
        trigger,
        fired: false,
        containers,
        remove: Vec::new(),
        keep: Vec::new(),
        disk: inventory.disk.clone(),
        bytes_to_free: 0,
        reachable: true,
        shortfall: None,
    };
    match trigger {
        Trigger::Schedule => {
            plan.fired = true;
            for image in eligible {
                plan.remove.push(removal(image, RemoveReason::Scheduled));
            }
            plan.bytes_to_free = plan.bytes_planned();
        }
        Trigger::MaxUnusedAge => {
            let max_ns = policy
                .max_unused_age_seconds
                .saturating_mul(NANOS_PER_SECOND);
            for image in eligible {
                let unused_ns = now_ns.saturating_sub(image.last_used_ns);
                let unused_seconds = unused_ns / NANOS_PER_SECOND;
                if policy.max_unused_age_seconds > 0 && unused_ns > max_ns {
                    plan.remove.push(removal(
                        image,
                        RemoveReason::UnusedTooLong { unused_seconds },
                    ));
                } else {
                    keep.push(kept(image, KeepReason::RecentlyUsed { unused_seconds }));
                }
            }
            plan.fired = !plan.remove.is_empty();
            plan.bytes_to_free = plan.bytes_planned();
        }
        Trigger::Disk => plan_disk(policy, fire_percent, &mut plan, eligible, &mut keep),
    }

    keep.sort_by(|a, b| a.why.cmp(&b.why).then_with(|| a.name.cmp(&b.name)));
    plan.keep = keep;
    if !plan.reachable {
        plan.shortfall = Some(shortfall_message(&plan));
    }
    plan
}

/// Splits the images into those that stay whatever the trigger, with their reason, and the
/// eligible ones, ordered least recently used first, then largest first, then by ID.
fn classify_images<'a>(
    policy: &GcPolicy,
    inventory: &'a Inventory,
    users: &HashMap<&str, usize>,
    now_ns: u64,
) -> (Vec<ImageKept>, Vec<&'a GcImage>) {
    let patterns = policy.keep_patterns();
    let min_age_ns = policy.min_age_seconds.saturating_mul(NANOS_PER_SECOND);
    let mut keep = Vec::new();
    let mut eligible: Vec<&GcImage> = Vec::new();
    for image in &inventory.images {
        let age_ns = now_ns.saturating_sub(image.first_seen_ns);
        let blocked = if let Some(&count) = users.get(image.id.as_str()) {
            Some(KeepReason::InUse { containers: count })
        } else if image.pinned {
            Some(KeepReason::Pinned)
        } else if let Some(pattern) = patterns
            .iter()
            .find(|pattern| image.names.iter().any(|name| pattern.matches(name)))
        {
            Some(KeepReason::KeepPattern {
                pattern: pattern.as_str().to_string(),
            })
        } else if age_ns < min_age_ns {
            Some(KeepReason::YoungerThanMinAge {
                age_seconds: age_ns / NANOS_PER_SECOND,
            })
        } else {
            None
        };
        match blocked {
            Some(why) => keep.push(kept(image, why)),
            None => eligible.push(image),
        }
    }

    eligible.sort_by(|a, b| {
        a.last_used_ns
            .cmp(&b.last_used_ns)
            .then_with(|| b.size_bytes.cmp(&a.size_bytes))
            .then_with(|| a.id.cmp(&b.id))
    });
    (keep, eligible)
}

/// Fills in the disk trigger's part: nothing below `fire_percent`, else eligible images in
/// order until their sizes add up to the bytes above the low mark.
fn plan_disk(
    policy: &GcPolicy,
    fire_percent: u8,
    plan: &mut GcPlan,
    eligible: Vec<&GcImage>,
    keep: &mut Vec<ImageKept>,
) {
    let above_high = plan.disk.as_ref().is_some_and(|disk| {
        policy.disk_trigger_enabled() && disk.used_percent() >= f64::from(fire_percent)
    });
    if !above_high {
        keep.extend(
            eligible
                .into_iter()
                .map(|image| kept(image, KeepReason::NotNeeded)),
        );
        return;
    }
    let disk = plan.disk.as_ref().expect("checked above");
    plan.fired = true;
    plan.bytes_to_free = disk.bytes_above(policy.low_threshold_percent);

    let mut planned = 0u64;
    for image in eligible {
        if planned >= plan.bytes_to_free {
            keep.push(kept(image, KeepReason::NotNeeded));
        } else {
            planned = planned.saturating_add(image.size_bytes);
            plan.remove
                .push(removal(image, RemoveReason::DiskAboveHighMark));
        }
    }
    plan.reachable = planned >= plan.bytes_to_free;
}

/// Counts, per image ID, the containers that use it and that the plan does not remove.
fn users_by_image<'a>(
    inventory: &'a Inventory,
    removed: &[ContainerRemoval],
) -> HashMap<&'a str, usize> {
    let mut by_name: HashMap<&str, &str> = HashMap::new();
    for image in &inventory.images {
        by_name.insert(image.id.as_str(), image.id.as_str());
        for name in &image.names {
            by_name.insert(name.as_str(), image.id.as_str());
        }
    }
    let removed: HashSet<&str> = removed.iter().map(|removal| removal.id.as_str()).collect();
    let mut users = HashMap::new();
    for container in &inventory.containers {
        if removed.contains(container.id.as_str()) {
            continue;
        }
        if let Some(&id) = by_name.get(container.image.as_str()) {
            *users.entry(id).or_insert(0) += 1;
        }
    }
    users
}

fn removal(image: &GcImage, reason: RemoveReason) -> ImageRemoval {
    ImageRemoval {
        id: image.id.clone(),
        name: image.display_name().to_string(),
        bytes: image.size_bytes,
        last_used_ns: image.last_used_ns,
        reason,
    }
}

fn kept(image: &GcImage, why: KeepReason) -> ImageKept {
    ImageKept {
        id: image.id.clone(),
        name: image.display_name().to_string(),
        bytes: image.size_bytes,
        why,
    }
}

/// Builds the message of a disk plan that cannot reach the low mark.
fn shortfall_message(plan: &GcPlan) -> String {
    let blocked: Vec<&ImageKept> = plan
        .keep
        .iter()
        .filter(|kept| !kept.why.is_eligible())
        .collect();
    let mut message = format!(
        "needs {} freed, {} eligible",
        format_bytes(plan.bytes_to_free),
        format_bytes(plan.bytes_planned())
    );
    if blocked.is_empty() {
        message.push_str("; no image is kept");
    } else {
        message.push_str(&format!(
            "; {} kept: {}",
            count_noun(blocked.len(), "image", "images"),
            reason_counts(blocked.iter().map(|kept| &kept.why))
        ));
    }
    message
}

/// Returns "in use by containers (3), pinned (1)" for the given reasons, in the order of
/// [`KeepReason`].
pub fn reason_counts<'a>(reasons: impl Iterator<Item = &'a KeepReason>) -> String {
    let mut counts: Vec<(&'static str, usize, KeepReason)> = Vec::new();
    for reason in reasons {
        match counts
            .iter_mut()
            .find(|(name, _, _)| *name == reason.category())
        {
            Some(entry) => entry.1 += 1,
            None => counts.push((reason.category(), 1, reason.clone())),
        }
    }
    counts.sort_by(|a, b| a.2.cmp(&b.2));
    counts
        .iter()
        .map(|(name, count, _)| format!("{name} ({count})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Returns "1 image" or "3 images".
pub(super) fn count_noun(count: usize, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

/// Formats a byte count with decimal units, as disk sizes are usually given: `3.1 GB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
