//! Next fire times of cron schedules across month ends and daylight saving changes.

use chrono::{DateTime, Utc};

use crate::gc::{GcPolicy, Schedule, Zone};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid RFC 3339 time")
        .with_timezone(&Utc)
}

fn schedule(expression: &str, zone: &str) -> Schedule {
    Schedule::parse(expression, Zone::parse(zone).expect("valid zone")).expect("valid schedule")
}

/// Returns the next `count` fire times after `after`, each searched from the previous one.
fn fires(schedule: &Schedule, after: &str, count: usize) -> Vec<DateTime<Utc>> {
    let mut times = Vec::new();
    let mut from = utc(after);
    for _ in 0..count {
        from = schedule.next_after(from).expect("schedule fires again");
        times.push(from);
    }
    times
}

#[test]
fn daily_run_skips_to_next_day() {
    let nightly = schedule("0 3 * * *", "UTC");

    assert_eq!(
        fires(&nightly, "2025-06-10T03:00:00Z", 2),
        [utc("2025-06-11T03:00:00Z"), utc("2025-06-12T03:00:00Z")]
    );
}

#[test]
fn day_31_skips_short_months() {
    let monthly = schedule("0 3 31 * *", "UTC");

    assert_eq!(
        fires(&monthly, "2025-01-31T03:00:00Z", 3),
        [
            utc("2025-03-31T03:00:00Z"),
            utc("2025-05-31T03:00:00Z"),
            utc("2025-07-31T03:00:00Z"),
        ]
    );
}

#[test]
fn first_of_month_crosses_year_end() {
    let monthly = schedule("0 0 1 * *", "UTC");

    assert_eq!(
        fires(&monthly, "2025-12-31T23:59:00Z", 2),
        [utc("2026-01-01T00:00:00Z"), utc("2026-02-01T00:00:00Z")]
    );
}

#[test]
fn leap_day_waits_for_leap_year() {
    let leap = schedule("0 12 29 2 *", "UTC");

    assert_eq!(
        fires(&leap, "2025-03-01T00:00:00Z", 1),
        [utc("2028-02-29T12:00:00Z")]
    );
}

#[test]
fn names_ranges_and_steps_parse() {
    let weekdays = schedule("15-45/15 9 * JAN-MAR MON-FRI", "UTC");

    // 2025-03-28 is a Friday, so the next weekday is Monday the 31st. April to December are
    // outside the month range, so the run after that is on Thursday 2026-01-01.
    assert_eq!(
        fires(&weekdays, "2025-03-28T09:45:00Z", 4),
        [
            utc("2025-03-31T09:15:00Z"),
            utc("2025-03-31T09:30:00Z"),
            utc("2025-03-31T09:45:00Z"),
            utc("2026-01-01T09:15:00Z"),
        ]
    );
}

#[test]
fn berlin_spring_forward_keeps_three_oclock() {
    // On 2025-03-30, Berlin's clocks jump from 02:00 CET to 03:00 CEST.
    let nightly = schedule("0 3 * * *", "Europe/Berlin");

    assert_eq!(
        fires(&nightly, "2025-03-29T12:00:00Z", 2),
        [utc("2025-03-30T01:00:00Z"), utc("2025-03-31T01:00:00Z")]
    );
}

#[test]
fn berlin_spring_forward_runs_skipped_time_after_gap() {
    // 02:30 does not exist on 2025-03-30 in Berlin. The run happens when the gap ends, at
    // 03:00 CEST (01:00 UTC), and at 02:30 CEST (00:30 UTC) the day after.
    let nightly = schedule("30 2 * * *", "Europe/Berlin");

    assert_eq!(
        fires(&nightly, "2025-03-29T12:00:00Z", 2),
        [utc("2025-03-30T01:00:00Z"), utc("2025-03-31T00:30:00Z")]
    );
}

#[test]
fn berlin_fall_back_runs_repeated_time_once() {
    // On 2025-10-26, Berlin's clocks go back from 03:00 CEST to 02:00 CET, so 02:30 happens
    // twice: at 00:30 UTC and at 01:30 UTC. A fixed-time run fires at the first only.
    let nightly = schedule("30 2 * * *", "Europe/Berlin");

    assert_eq!(
        fires(&nightly, "2025-10-25T12:00:00Z", 2),
        [utc("2025-10-26T00:30:00Z"), utc("2025-10-27T01:30:00Z")]
    );
}

#[test]
fn berlin_fall_back_interval_runs_in_both_passes() {
    // A step schedule fires in both passes of the repeated hour, in real time order.
    let half_hourly = schedule("*/30 * * * *", "Europe/Berlin");

    assert_eq!(
        fires(&half_hourly, "2025-10-25T23:45:00Z", 5),
        [
            utc("2025-10-26T00:00:00Z"),
            utc("2025-10-26T00:30:00Z"),
            utc("2025-10-26T01:00:00Z"),
            utc("2025-10-26T01:30:00Z"),
            utc("2025-10-26T02:00:00Z"),
        ]
    );
}

#[test]
fn berlin_offset_changes_utc_time_of_nightly_run() {
    let nightly = schedule("0 3 * * *", "Europe/Berlin");

    assert_eq!(
        fires(&nightly, "2025-10-25T12:00:00Z", 2),
        [utc("2025-10-26T02:00:00Z"), utc("2025-10-27T02:00:00Z")]
    );
}

#[test]
fn wrong_field_counts_are_rejected() {
    for expression in ["0 3 * *", "0 0 3 * * *", "0 0 3 * * * 2030"] {
        let err = Schedule::parse(expression, Zone::Local).unwrap_err();
        assert!(err.contains("not 5"), "{expression}: {err}");
    }
}

#[test]
fn out_of_range_values_are_rejected() {
    assert!(Schedule::parse("61 * * * *", Zone::Local).is_err());
    assert!(Schedule::parse("0 24 * * *", Zone::Local).is_err());
}

#[test]
fn impossible_date_is_rejected() {
    let err = Schedule::parse("0 0 30 2 *", Zone::Local).unwrap_err();

    assert!(err.contains("no date"), "{err}");
}

#[test]
fn unknown_zone_is_rejected() {
    assert!(Zone::parse("Mars/Olympus_Mons").is_err());
    assert_eq!(Zone::parse("LOCAL"), Ok(Zone::Local));
}

#[test]
fn policy_errors_name_field_and_example() {
    let cases = [
        (
            GcPolicy {
                schedule: "0 3 * *".into(),
                ..GcPolicy::default()
            },
            "gc.schedule",
            "\"0 3 * * *\"",
        ),
        (
            GcPolicy {
                time_zone: "Berlin".into(),
                ..GcPolicy::default()
            },
            "gc.time_zone",
            "Europe/Berlin",
        ),
        (
            GcPolicy {
                high_threshold_percent: 101,
                ..GcPolicy::default()
            },
            "gc.high_threshold_percent",
            "85",
        ),
        (
            GcPolicy {
                low_threshold_percent: 85,
                ..GcPolicy::default()
            },
            "gc.low_threshold_percent",
            "80",
        ),
        (
            GcPolicy {
                disk_check_interval_seconds: 0,
                ..GcPolicy::default()
            },
            "gc.disk_check_interval_seconds",
            "300",
        ),
        (
            GcPolicy {
                keep: vec![String::new()],
                ..GcPolicy::default()
            },
            "gc.keep",
            "registry.k8s.io/pause:*",
        ),
    ];
    for (policy, field, example) in cases {
        let err = policy.validate().unwrap_err();
        assert!(err.contains(field), "{field}: {err}");
        assert!(err.contains(example), "{field}: {err}");
    }
}

#[test]
fn default_policy_is_valid() {
    let policy = GcPolicy::default();

    assert_eq!(policy.validate(), Ok(()));
    assert_eq!(policy.schedule, "0 3 * * *");
    assert_eq!(
        (policy.high_threshold_percent, policy.low_threshold_percent),
        (85, 80)
    );
}

#[test]
fn empty_schedule_turns_scheduled_run_off() {
    let policy = GcPolicy {
        schedule: String::new(),
        ..GcPolicy::default()
    };

    assert!(policy.schedule().unwrap().is_none());
}
