//! The cron trigger: a five-field cron expression evaluated in local time or a named zone.

use std::str::FromStr;
use std::time::SystemTime;

use chrono::{DateTime, Local, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The time zone a schedule's wall-clock times are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The host's zone: the `TZ` variable, else `/etc/localtime`.
    Local,
    /// A zone of the IANA database compiled into Berth, such as `Europe/Berlin`.
    Named(Tz),
}

impl Zone {
    /// Parses `local` (any case) or an IANA zone name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        Tz::from_str(text)
            .map(Zone::Named)
            .map_err(|_| "not a zone name of the IANA time zone database".to_string())
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Zone::Local => f.write_str("local"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// A parsed cron expression with its zone.
///
/// Across a daylight saving change, croner 4 follows Vixie cron: a fixed time that falls into
/// the skipped hour fires right after the gap, and a fixed time in the repeated hour fires once,
/// at its first occurrence.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Zone,
    expression: String,
}

impl Schedule {
    /// Parses a five-field expression: minute, hour, day of month, month, day of week. Fields
    /// take numbers, `*`, ranges (`1-5`), steps (`*/15`), lists (`1,15`) and English month and
    /// day names (`JAN`, `MON`). Six- and seven-field forms with seconds or years are rejected.
    pub fn parse(expression: &str, zone: Zone) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        if fields != 5 && !expression.trim_start().starts_with('@') {
            return Err(format!("it has {fields} fields, not 5"));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|err| err.to_string().trim_end_matches('.').to_string())?;
        let schedule = Self {
            cron,
            zone,
            expression: expression.trim().to_string(),
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err("it names no date that exists, such as 30 February".to_string());
        }
        Ok(schedule)
    }

    /// Returns the first time strictly after `after` at which the schedule fires, or `None`
    /// when it never fires again (an expression such as `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.zone {
            Zone::Local => self
                .cron
                .find_next_occurrence(&after.with_timezone(&Local), false)
                .ok()
                .map(|next| next.with_timezone(&Utc)),
            Zone::Named(tz) => self
                .cron
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|next| next.with_timezone(&Utc)),
        }
    }

    /// Returns the first fire time strictly after `after`, like [`Schedule::next_after`], for
    /// callers that keep time as [`SystemTime`].
    pub fn next_after_time(&self, after: SystemTime) -> Option<SystemTime> {
        self.next_after(DateTime::<Utc>::from(after))
            .map(SystemTime::from)
    }

    pub fn zone(&self) -> Zone {
        self.zone
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.expression, self.zone)
    }
}

/// Formats a time as RFC 3339 in UTC with second precision, such as `2025-03-30T01:00:00Z`.
pub fn format_utc(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
