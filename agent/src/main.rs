//! `berth`: a Kubernetes node agent that serves the CRI v1 API.

mod config;
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
    }
}
