//! The `[gc]` table of the config file: when the collector runs and what it may remove.

use serde::{Deserialize, Serialize};

use super::pattern::KeepPattern;
use super::schedule::{Schedule, Zone};

/// The image and container collection policy. Every field has a default, so an empty `[gc]`
/// table, or none, gives a nightly run at 03:00 local time and a disk check every 5 minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcPolicy {
    /// Five-field cron expression (minute, hour, day of month, month, day of week) of the
    /// scheduled run, which removes every eligible image. Empty turns the scheduled run off.
    pub schedule: String,
    /// Time zone of `schedule`: `local` (the host's zone) or an IANA name such as
    /// `Europe/Berlin`.
    pub time_zone: String,
    /// Usage of the image filesystem in percent, as df(1) shows it, at or above which the disk
    /// check removes images. 100 turns the disk trigger off.
    pub high_threshold_percent: u8,
    /// Usage, in percent, that the disk trigger frees space down to. Less than the high mark.
    pub low_threshold_percent: u8,
    /// Seconds between two disk checks, which also apply `max_unused_age_seconds`.
    pub disk_check_interval_seconds: u64,
    /// Images pulled (or first seen) less than this many seconds ago are never removed.
    pub min_age_seconds: u64,
    /// When positive, images unused for longer than this many seconds are removed at each
    /// disk check, whatever the disk usage. 0 turns this trigger off.
    pub max_unused_age_seconds: u64,
    /// Glob patterns on image names (`registry/repository:tag` or `registry/repository@digest`,
    /// normalized as ListImages reports them) whose images are never removed, such as
    /// `registry.k8s.io/pause:*`. `*` matches any run of characters, `/` included, and `?`
    /// matches one character.
    pub keep: Vec<String>,
    /// Exited containers kept per pod sandbox; older exited containers of the pod are removed
    /// at each run, oldest first, before images are considered.
    pub max_dead_containers_per_pod: u32,
    /// Plan and report, but remove nothing.
    pub dry_run: bool,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self {
            schedule: "0 3 * * *".to_string(),
            time_zone: "local".to_string(),
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            disk_check_interval_seconds: 300,
            min_age_seconds: 120,
            max_unused_age_seconds: 0,
            keep: Vec::new(),
            max_dead_containers_per_pod: 1,
            dry_run: false,
        }
    }
}

impl GcPolicy {
    /// Checks every field. The error names the field as it is written in the config file
    /// (`gc.schedule`) and gives a valid example.
    pub fn validate(&self) -> Result<(), String> {
        self.schedule()?;
        if self.high_threshold_percent > 100 {
            return Err(format!(
                "gc.high_threshold_percent {} is above 100: give a percentage of the image \
                 filesystem, for example 85, or 100 to turn the disk trigger off",
                self.high_threshold_percent
            ));
        }
        if self.low_threshold_percent >= self.high_threshold_percent {
            return Err(format!(
                "gc.low_threshold_percent {} must be less than gc.high_threshold_percent {}, \
                 for example 80 with a high mark of 85",
                self.low_threshold_percent, self.high_threshold_percent
            ));
        }
        if self.disk_check_interval_seconds == 0 {
            return Err(
                "gc.disk_check_interval_seconds must be at least 1, for example 300".to_string(),
            );
        }
        for pattern in &self.keep {
            KeepPattern::parse(pattern).map_err(|reason| {
                format!(
                    "gc.keep pattern {pattern:?} is invalid: {reason}; for example \
                     \"registry.k8s.io/pause:*\""
                )
            })?;
        }
        Ok(())
    }

    /// Parses `schedule` and `time_zone`. `None` means the scheduled run is off.
    pub fn schedule(&self) -> Result<Option<Schedule>, String> {
        let zone = Zone::parse(&self.time_zone).map_err(|reason| {
            format!(
                "gc.time_zone {:?} is invalid: {reason}; give \"local\" or an IANA zone name, \
                 for example \"Europe/Berlin\"",
                self.time_zone
            )
        })?;
        if self.schedule.trim().is_empty() {
            return Ok(None);
        }
        Schedule::parse(&self.schedule, zone)
            .map(Some)
            .map_err(|reason| {
                format!(
                    "gc.schedule {:?} is invalid: {reason}; give five cron fields (minute hour \
                 day-of-month month day-of-week), for example \"0 3 * * *\", or \"\" to turn \
                 the scheduled run off",
                    self.schedule
                )
            })
    }

    /// Returns the compiled keep patterns. Call after [`GcPolicy::validate`]; an invalid
    /// pattern is skipped here.
    pub fn keep_patterns(&self) -> Vec<KeepPattern> {
        self.keep
            .iter()
            .filter_map(|pattern| KeepPattern::parse(pattern).ok())
            .collect()
    }

    /// Returns whether the disk trigger can fire.
    pub fn disk_trigger_enabled(&self) -> bool {
        self.high_threshold_percent < 100
    }
}
