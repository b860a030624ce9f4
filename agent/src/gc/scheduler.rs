//! The long-running collector: the cron trigger at its fire times and the disk and
//! max-unused-age triggers at every disk check. `berth serve` runs it on its own services,
//! `berth gc` without `--once` on a CRI endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use berth_cri::gc::{self, GcPolicy, GcTarget, Trigger, format_utc};
use berth_cri::image::now_ns;

use crate::metrics::Metrics;

/// Maximum sleep between two readings of the wall clock, so that the cron trigger follows a
/// clock that was set forward or back.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Runs the triggers of `policy` against `target` until the task is dropped. Runs one at a
/// time. The first disk check happens right away.
///
/// The caller must have validated `policy`; an invalid schedule turns the cron trigger off
/// with an error log.
pub async fn run_scheduled<T: GcTarget>(target: T, policy: GcPolicy, metrics: Arc<Metrics>) {
    let schedule = match policy.schedule() {
        Ok(schedule) => schedule,
        Err(err) => {
            tracing::error!(error = %err, "image GC schedule is invalid; the scheduled run is off");
            None
        }
    };
    let check_interval = Duration::from_secs(policy.disk_check_interval_seconds.max(1));
    let mut next_fire = schedule
        .as_ref()
        .and_then(|schedule| schedule.next_after_time(SystemTime::now()));
    let mut next_check = Instant::now();
    tracing::info!(
        schedule = %schedule.as_ref().map_or("off".to_string(), ToString::to_string),
        next_scheduled_run = ?next_fire.map(format_utc),
        disk_check_interval_seconds = policy.disk_check_interval_seconds,
        high_threshold_percent = policy.high_threshold_percent,
        low_threshold_percent = policy.low_threshold_percent,
        max_unused_age_seconds = policy.max_unused_age_seconds,
        dry_run = policy.dry_run,
        "image GC scheduler started"
    );

    loop {
        let until_check = next_check.saturating_duration_since(Instant::now());
        let until_fire = next_fire.map_or(MAX_SLEEP, |fire| {
            fire.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        });
        tokio::time::sleep(until_check.min(until_fire).min(MAX_SLEEP)).await;

        if let Some(fire) = next_fire
            && SystemTime::now() >= fire
        {
            run_trigger(&target, &policy, Trigger::Schedule, &metrics).await;
            next_fire = schedule
                .as_ref()
                .and_then(|schedule| schedule.next_after_time(SystemTime::now()));
            tracing::debug!(next_scheduled_run = ?next_fire.map(format_utc), "next scheduled image GC run");
        }

        if Instant::now() >= next_check {
            if policy.disk_trigger_enabled() {
                run_trigger(&target, &policy, Trigger::Disk, &metrics).await;
            }
            if policy.max_unused_age_seconds > 0 {
                run_trigger(&target, &policy, Trigger::MaxUnusedAge, &metrics).await;
            }
            next_check = Instant::now() + check_interval;
        }
    }
}

/// Runs one trigger, logs its summary when it fired and counts it.
async fn run_trigger<T: GcTarget>(
    target: &T,
    policy: &GcPolicy,
    trigger: Trigger,
    metrics: &Metrics,
) {
    match gc::run(target, policy, trigger, now_ns()).await {
        Ok(report) if report.plan.fired => {
            report.log();
            metrics.record(&report);
        }
        Ok(report) => {
            tracing::debug!(
                trigger = %trigger,
                disk_used_percent = report.plan.disk.as_ref().map(|disk| disk.used_percent()),
                "image GC trigger did not fire"
            );
        }
        Err(err) => {
            tracing::warn!(trigger = %trigger, error = %err, "image GC run failed; retrying at the next trigger");
        }
    }
}
