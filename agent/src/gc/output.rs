//! The output of `berth gc --once`: a table for people, or the report as JSON for scripts.

use std::collections::HashSet;
use std::fmt::Write as _;

use berth_cri::gc::{GcReport, Trigger, format_bytes};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Renders a report as the JSON document `--output json` prints.
pub fn json(report: &GcReport) -> String {
    serde_json::to_string_pretty(report).expect("a GC report serializes to JSON")
}

/// Renders a report as text: the disk usage, one row per container and image with the action
/// taken or planned, then the totals. `now_ns` is the time the ages are counted from.
pub fn table(report: &GcReport, now_ns: u64) -> String {
    let plan = &report.plan;
    let mut out = String::new();

    let state = if plan.fired { "fired" } else { "did not fire" };
    let _ = writeln!(out, "Trigger: {} ({state})", plan.trigger);
    if let Some(disk) = &plan.disk {
        let _ = writeln!(
            out,
            "Image filesystem {}: {} of {} used ({:.1} %)",
            disk.path,
            format_bytes(disk.used_bytes),
            format_bytes(disk.capacity_bytes),
            disk.used_percent()
        );
    }
    if plan.fired && plan.trigger == Trigger::Disk {
        let _ = writeln!(
            out,
            "To free: {} (down to the low mark)",
            format_bytes(plan.bytes_to_free)
        );
    }
    if report.dry_run {
        let _ = writeln!(out, "Dry run: nothing was removed.");
    }

    if plan.fired && !plan.containers.is_empty() {
        let removed: HashSet<&str> = report
            .containers_removed
            .iter()
            .map(String::as_str)
            .collect();
        let mut rows = vec![row(["ACTION", "CONTAINER", "POD", "REASON"])];
        for container in &plan.containers {
            let action = action(
                report,
                removed.contains(container.id.as_str()),
                "container",
                &container.id,
            );
            rows.push(row([
                action,
                short_id(&container.id),
                short_id(&container.sandbox_id),
                &container.reason.to_string(),
            ]));
        }
        out.push('\n');
        out.push_str(&format_rows(&rows));
    }

    let removed: HashSet<&str> = report
        .images_removed
        .iter()
        .map(|image| image.id.as_str())
        .collect();
    let planned: HashSet<&str> = plan.remove.iter().map(|image| image.id.as_str()).collect();
    let mut rows = vec![row(["ACTION", "IMAGE", "SIZE", "UNUSED", "REASON"])];
    for image in &plan.remove {
        let action = action(
            report,
            removed.contains(image.id.as_str()),
            "image",
            &image.id,
        );
        let reason = if action == "skipped" {
            "not needed: the low mark was reached first".to_string()
        } else {
            image.reason.to_string()
        };
        rows.push(row([
            action,
            &image.name,
            &format_bytes(image.bytes),
            &age(now_ns, image.last_used_ns),
            &reason,
        ]));
    }
    // A disk run that planned again removed images the first plan kept as not needed.
    for image in report
        .images_removed
        .iter()
        .filter(|image| !planned.contains(image.id.as_str()))
    {
        rows.push(row([
            "removed",
            &image.name,
            &format_bytes(image.bytes),
            &age(now_ns, image.last_used_ns),
            &image.reason.to_string(),
        ]));
    }
    for kept in plan
        .keep
        .iter()
        .filter(|kept| !removed.contains(kept.id.as_str()))
    {
        rows.push(row([
            "keep",
            &kept.name,
            &format_bytes(kept.bytes),
            "",
            &kept.why.to_string(),
        ]));
    }
    out.push('\n');
    out.push_str(&format_rows(&rows));
    out.push('\n');

    if plan.fired {
        let _ = writeln!(out, "{}.", report.summary());
    }
    match report.low_mark_reached {
        Some(true) => out.push_str("Usage is at or below the low mark.\n"),
        Some(false) => out.push_str("Usage is still above the low mark.\n"),
        None => {}
    }
    if let Some(shortfall) = &plan.shortfall {
        let _ = writeln!(out, "Low mark out of reach: {shortfall}.");
    }
    for failure in &report.failures {
        let _ = writeln!(
            out,
            "Failed to remove {} {}: {}",
            failure.kind, failure.id, failure.error
        );
    }
    out
}

/// Returns what happened to a planned item: `remove` in a dry run, else `removed`, `failed`,
/// or `skipped` when the run stopped before it (a disk run that reached the low mark).
fn action<'a>(report: &GcReport, removed: bool, kind: &str, id: &str) -> &'a str {
    if report.dry_run {
        "remove"
    } else if removed {
        "removed"
    } else if report
        .failures
        .iter()
        .any(|failure| failure.kind == kind && failure.id == id)
    {
        "failed"
    } else {
        "skipped"
    }
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|cell| cell.to_string()).collect()
}

/// Aligns columns with two spaces between them; the last column is not padded.
fn format_rows(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[column]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Returns the first 13 characters of an ID, as crictl shows them.
fn short_id(id: &str) -> &str {
    let end = id
        .char_indices()
        .nth(13)
        .map_or(id.len(), |(index, _)| index);
    &id[..end]
}

/// Formats the time since `then_ns` as `45s`, `12m`, `3h5m` or `2d4h`.
fn age(now_ns: u64, then_ns: u64) -> String {
    let seconds = now_ns.saturating_sub(then_ns) / NANOS_PER_SECOND;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86_400 => format!("{}h{}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_use_largest_units() {
        let now = 10_000_000 * NANOS_PER_SECOND;
        assert_eq!(age(now, now - 45 * NANOS_PER_SECOND), "45s");
        assert_eq!(age(now, now - 720 * NANOS_PER_SECOND), "12m");
        assert_eq!(age(now, now - 11_100 * NANOS_PER_SECOND), "3h5m");
        assert_eq!(age(now, now - 187_200 * NANOS_PER_SECOND), "2d4h");
    }

    #[test]
    fn rows_align_to_widest_cell() {
        let rows = vec![
            row(["A", "LONG HEADER", "X"]),
            row(["wide cell", "b", "last"]),
        ];

        assert_eq!(
            format_rows(&rows),
            "A          LONG HEADER  X\nwide cell  b            last\n"
        );
    }
}
