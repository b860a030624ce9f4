//! `berth`: a Kubernetes node agent that serves the CRI v1 API.

mod check;
mod config;
mod gc;
mod metrics;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Kubernetes CRI runtime and node agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the CRI RuntimeService and ImageService on a unix socket.
    Serve(ServeArgs),
    /// Check whether this host can run Berth, and name what to install or change.
    Check(check::CheckArgs),
    /// Remove unused images and exited containers of a CRI runtime by the `[gc]` policy.
    Gc(gc::GcArgs),
    /// Run one container and write its logs (started by `berth serve`, one per container).
    #[command(hide = true)]
    Monitor(MonitorArgs),
    /// Be PID 1 of a pod's shared PID namespace (started by `berth serve`).
    #[command(hide = true)]
    Infra,
}

/// Flags of the internal `berth monitor` mode.
#[derive(clap::Args)]
pub struct MonitorArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    runtime: PathBuf,
    #[arg(long)]
    runtime_root: PathBuf,
    #[arg(long)]
    log_path: PathBuf,
    #[arg(long)]
    tty: bool,
    #[arg(long)]
    cgroup_path: Option<String>,
    #[arg(long)]
    stdin: bool,
    #[arg(long)]
    stdin_once: bool,
    #[arg(long)]
    systemd_cgroup: bool,
}

/// Flags of `berth serve`; each overrides the config file's field of the same name.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Config file (TOML). A missing file at the default path means all defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for blobs, layers and the metadata database [default: /var/lib/berth].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Directory for runtime state that does not survive a reboot [default: /run/berth].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// CRI socket path [default: <state-dir>/berth.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Log filter, such as `info` or `berth_cri=debug` [default: info, or RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Check(args) => check::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Monitor(args) => {
            let options = berth_cri::runtime::monitor::MonitorOptions {
                id: args.id,
                bundle: args.bundle,
                runtime: args.runtime,
                runtime_root: args.runtime_root,
                log_path: args.log_path,
                tty: args.tty,
                cgroup_path: args.cgroup_path,
                stdin: args.stdin,
                stdin_once: args.stdin_once,
                systemd_cgroup: args.systemd_cgroup,
            };
            exit_code(berth_cri::runtime::monitor::run(options))
        }
        Command::Infra => exit_code(berth_cri::runtime::infra::run()),
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
