//! `berth gc`: the image collector as a CRI client of any runtime, once or on the schedule, and
//! the scheduler that `berth serve` runs on its own services.

mod client;
mod output;
pub mod scheduler;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use berth_cri::gc::{GcPolicy, Trigger};
use berth_cri::image::now_ns;
use clap::ValueEnum;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{AgentConfig, DEFAULT_CONFIG};
use crate::metrics::Metrics;
use client::CriTarget;

/// Default state file of `berth gc --endpoint`.
const DEFAULT_STATE_FILE: &str = "/var/lib/berth/gc-state.json";

/// Flags of `berth gc`. The policy flags override the `[gc]` table of the config file.
#[derive(clap::Args)]
pub struct GcArgs {
    /// Config file (TOML) whose `[gc]` table sets the policy and whose `socket` is the default
    /// endpoint. A missing file at the default path means all defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// CRI endpoint to collect on, such as unix:///run/containerd/containerd.sock
    /// [default: unix://<socket of the config file>, /run/berth/berth.sock].
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Run one trigger now, print the result and exit, instead of running on the schedule.
    #[arg(long)]
    once: bool,
    /// The trigger `--once` runs: `disk` frees space down to the low mark when usage is at or
    /// above the high mark, `schedule` removes every eligible image, `max-unused-age` removes
    /// the images unused longer than `--max-unused-age-seconds`.
    #[arg(long, value_enum, default_value_t = TriggerArg::Disk, requires = "once")]
    trigger: TriggerArg,
    /// Output of `--once`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    /// File with the first-seen and last-used time of each image, which the CRI does not
    /// report.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_STATE_FILE)]
    state_file: PathBuf,
    /// IP address and port on which the scheduler serves `GET /metrics` with the Prometheus
    /// counters, such as 127.0.0.1:9109 [default: no endpoint].
    #[arg(long, value_name = "ADDRESS", conflicts_with = "once")]
    metrics_address: Option<String>,
    /// Log filter, such as `info` or `berth=debug` [default: info, or RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(flatten)]
    policy: PolicyFlags,
}

/// Flags that override one field of the `[gc]` table each.
#[derive(clap::Args)]
struct PolicyFlags {
    /// Five-field cron expression of the scheduled run, such as "0 3 * * *"; "" turns it off.
    #[arg(long, value_name = "CRON")]
    schedule: Option<String>,
    /// Time zone of the schedule: "local" or an IANA name such as Europe/Berlin.
    #[arg(long, value_name = "ZONE")]
    time_zone: Option<String>,
    /// Image filesystem usage, in percent, at or above which the disk trigger fires.
    #[arg(long, value_name = "PERCENT")]
    high_threshold_percent: Option<u8>,
    /// Image filesystem usage, in percent, that the disk trigger frees space down to.
    #[arg(long, value_name = "PERCENT")]
    low_threshold_percent: Option<u8>,
    /// Seconds between two disk checks.
    #[arg(long, value_name = "SECONDS")]
    disk_check_interval_seconds: Option<u64>,
    /// Images first seen less than this many seconds ago are never removed.
    #[arg(long, value_name = "SECONDS")]
    min_age_seconds: Option<u64>,
    /// Remove images unused for longer than this many seconds; 0 turns this off.
    #[arg(long, value_name = "SECONDS")]
    max_unused_age_seconds: Option<u64>,
    /// Glob on image names whose images are never removed, such as "registry.k8s.io/pause:*".
    /// Repeat for more; replaces the config file's list.
    #[arg(long, value_name = "PATTERN")]
    keep: Vec<String>,
    /// Exited containers kept per pod; older ones are removed first.
    #[arg(long, value_name = "COUNT")]
    max_dead_containers_per_pod: Option<u32>,
    /// Plan and report, but remove nothing.
    #[arg(long)]
    dry_run: bool,
}

impl PolicyFlags {
    fn apply(self, policy: &mut GcPolicy) {
        if let Some(schedule) = self.schedule {
            policy.schedule = schedule;
        }
        if let Some(zone) = self.time_zone {
            policy.time_zone = zone;
        }
        if let Some(percent) = self.high_threshold_percent {
            policy.high_threshold_percent = percent;
        }
        if let Some(percent) = self.low_threshold_percent {
            policy.low_threshold_percent = percent;
        }
        if let Some(seconds) = self.disk_check_interval_seconds {
            policy.disk_check_interval_seconds = seconds;
        }
        if let Some(seconds) = self.min_age_seconds {
            policy.min_age_seconds = seconds;
        }
        if let Some(seconds) = self.max_unused_age_seconds {
            policy.max_unused_age_seconds = seconds;
        }
        if !self.keep.is_empty() {
            policy.keep = self.keep;
        }
        if let Some(count) = self.max_dead_containers_per_pod {
            policy.max_dead_containers_per_pod = count;
        }
        if self.dry_run {
            policy.dry_run = true;
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum TriggerArg {
    Disk,
    Schedule,
    MaxUnusedAge,
}

impl From<TriggerArg> for Trigger {
    fn from(trigger: TriggerArg) -> Self {
        match trigger {
            TriggerArg::Disk => Trigger::Disk,
            TriggerArg::Schedule => Trigger::Schedule,
            TriggerArg::MaxUnusedAge => Trigger::MaxUnusedAge,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

/// Runs `berth gc` and returns its exit status: 0 on success, 1 when the run failed or a
/// removal failed, 2 for an invalid config or flag.
pub fn run(args: GcArgs) -> ExitCode {
    let explicit = args.config.is_some();
    let path = args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
    let config = match AgentConfig::load(&path, explicit) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("berth gc: {err}");
            return ExitCode::from(2);
        }
    };
    let mut policy = config.gc.clone();
    let endpoint = args
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("unix://{}", config.socket_path().display()));
    let log_level = args
        .log_level
        .clone()
        .unwrap_or_else(|| config.log_level.clone());
    let GcArgs {
        once,
        trigger,
        output,
        state_file,
        metrics_address,
        policy: flags,
        ..
    } = args;
    flags.apply(&mut policy);
    if let Err(err) = policy.validate() {
        eprintln!("berth gc: invalid flag or config: {err}");
        return ExitCode::from(2);
    }
    let metrics_address = match metrics_address
        .as_deref()
        .map(crate::metrics::parse_address)
    {
        None => None,
        Some(Ok(address)) => address,
        Some(Err(err)) => {
            eprintln!("berth gc: --metrics-address: {err}");
            return ExitCode::from(2);
        }
    };
    crate::serve::init_logging(&log_level);

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("berth gc: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let target = match CriTarget::connect(&endpoint, &state_file).await {
            Ok(target) => target,
            Err(err) => {
                eprintln!("berth gc: {err}");
                return ExitCode::FAILURE;
            }
        };
        if once {
            run_once(&target, &policy, trigger.into(), output).await
        } else {
            run_until_signal(target, policy, metrics_address).await
        }
    })
}

async fn run_once(
    target: &CriTarget,
    policy: &GcPolicy,
    trigger: Trigger,
    output: OutputFormat,
) -> ExitCode {
    let now = now_ns();
    let report = match berth_cri::gc::run(target, policy, trigger, now).await {
        Ok(report) => report,
        Err(err) => {
            eprintln!("berth gc: {err}");
            return ExitCode::FAILURE;
        }
    };
    if report.plan.fired {
        report.log();
    }
    match output {
        OutputFormat::Json => println!("{}", output::json(&report)),
        OutputFormat::Table => print!("{}", output::table(&report, now)),
    }
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_until_signal(
    target: CriTarget,
    policy: GcPolicy,
    metrics_address: Option<SocketAddr>,
) -> ExitCode {
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("berth gc: cannot install the SIGTERM and SIGINT handlers");
        return ExitCode::FAILURE;
    };
    let metrics = Arc::new(Metrics::default());
    if let Some(address) = metrics_address
        && let Err(err) = crate::metrics::start(address, metrics.clone()).await
    {
        eprintln!("berth gc: cannot serve metrics on {address}: {err}");
        return ExitCode::FAILURE;
    }
    tokio::select! {
        () = scheduler::run_scheduled(target, policy, metrics) => {}
        _ = terminate.recv() => tracing::info!("received SIGTERM, stopping"),
        _ = interrupt.recv() => tracing::info!("received SIGINT, stopping"),
    }
    ExitCode::SUCCESS
}
