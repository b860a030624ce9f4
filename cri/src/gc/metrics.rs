//! Counters of collection runs, rendered in the Prometheus text format.

use std::sync::Mutex;

use super::plan::Trigger;
use super::run::GcReport;

/// Totals since the process started, per trigger.
#[derive(Debug, Default)]
pub struct GcMetrics {
    totals: Mutex<[TriggerTotals; 3]>,
}

#[derive(Debug, Default, Clone, Copy)]
struct TriggerTotals {
    runs: u64,
    images_removed: u64,
    containers_removed: u64,
    bytes_freed: u64,
    failures: u64,
    last_duration_seconds: f64,
}

/// Name, type, help text and value of one metric family.
type MetricFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TriggerTotals) -> String,
);

fn index(trigger: Trigger) -> usize {
    Trigger::ALL
        .iter()
        .position(|candidate| *candidate == trigger)
        .expect("Trigger::ALL lists every trigger")
}

impl GcMetrics {
    /// Adds a finished run. Runs whose trigger did not fire and dry runs are not counted.
    pub fn record(&self, report: &GcReport) {
        if !report.plan.fired || report.dry_run {
            return;
        }
        let mut totals = self.totals.lock().expect("GC metrics poisoned");
        let entry = &mut totals[index(report.plan.trigger)];
        entry.runs += 1;
        entry.images_removed += report.images_removed.len() as u64;
        entry.containers_removed += report.containers_removed.len() as u64;
        entry.bytes_freed += report.bytes_freed_or_estimated();
        entry.failures += report.failures.len() as u64;
        entry.last_duration_seconds = report.duration_ms as f64 / 1000.0;
    }

    /// Renders the counters in the Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let totals = *self.totals.lock().expect("GC metrics poisoned");
        let families: [MetricFamily; 6] = [
            (
                "berth_gc_runs_total",
                "counter",
                "Image GC runs whose trigger fired.",
                |t| t.runs.to_string(),
            ),
            (
                "berth_gc_images_removed_total",
                "counter",
                "Images removed by the image GC.",
                |t| t.images_removed.to_string(),
            ),
            (
                "berth_gc_containers_removed_total",
                "counter",
                "Exited containers removed by the image GC.",
                |t| t.containers_removed.to_string(),
            ),
            (
                "berth_gc_bytes_freed_total",
                "counter",
                "Bytes freed on the image filesystem by the image GC.",
                |t| t.bytes_freed.to_string(),
            ),
            (
                "berth_gc_failures_total",
                "counter",
                "Container and image removals of the image GC that failed.",
                |t| t.failures.to_string(),
            ),
            (
                "berth_gc_last_run_duration_seconds",
                "gauge",
                "Duration of the last image GC run.",
                |t| t.last_duration_seconds.to_string(),
            ),
        ];
        let mut text = String::new();
        for (name, kind, help, value) in families {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for trigger in Trigger::ALL {
                text.push_str(&format!(
                    "{name}{{trigger=\"{trigger}\"}} {}\n",
                    value(&totals[index(trigger)])
                ));
            }
        }
        text
    }
}
