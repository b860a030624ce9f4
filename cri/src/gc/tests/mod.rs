//! Unit tests of the selection function, the dead-container rules and the cron schedule.

mod containers;
mod plan;
mod run;
mod schedule;
