//! `cri-bench`: a minimal CRI client for benchmarks, which talks to any CRI runtime (Berth,
//! containerd) over its unix socket.
//!
//! ```text
//! cri-bench pull --socket PATH IMAGE   pull IMAGE once; prints "SECONDS IMAGE_REF"
//! cri-bench version --socket PATH      prints the runtime's name and version
//! ```
//!
//! The time printed by `pull` covers the PullImage RPC alone, not connecting to the socket.
//! `hack/bench-pull.sh` parses its output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::{PullImageRequest, VersionRequest};
use berth_tests::{connect, spec};

const USAGE: &str =
    "usage: cri-bench pull --socket PATH IMAGE\n       cri-bench version --socket PATH";

enum Command {
    Pull { socket: PathBuf, image: String },
    Version { socket: PathBuf },
}

/// Parses `SUBCOMMAND --socket PATH [IMAGE]`, with `--socket` anywhere after the subcommand.
fn parse_args(args: &[String]) -> Result<Command, String> {
    let Some((subcommand, rest)) = args.split_first() else {
        return Err("missing subcommand".into());
    };
    let mut socket = None;
    let mut positional = Vec::new();
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--socket" => {
                let path = rest.next().ok_or("--socket needs a PATH")?;
                socket = Some(PathBuf::from(path));
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option '{flag}'")),
            _ => positional.push(arg.clone()),
        }
    }
    let socket = socket.ok_or("missing --socket PATH")?;
    match (subcommand.as_str(), positional.as_slice()) {
        ("pull", [image]) => Ok(Command::Pull {
            socket,
            image: image.clone(),
        }),
        ("pull", _) => Err("pull needs exactly one IMAGE".into()),
        ("version", []) => Ok(Command::Version { socket }),
        ("version", _) => Err("version takes no arguments besides --socket".into()),
        (other, _) => Err(format!("unknown subcommand '{other}'")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("cri-bench: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cri-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Sends the command's RPC and prints its result, or returns the failed RPC's status as a message.
async fn run(command: Command) -> Result<(), String> {
    let failed = |rpc: &str, status: tonic::Status| {
        format!("{rpc} failed: {:?}: {}", status.code(), status.message())
    };
    match command {
        Command::Pull { socket, image } => {
            let mut client = ImageServiceClient::new(connect(&socket).await);
            let request = PullImageRequest {
                image: Some(spec(&image)),
                ..Default::default()
            };
            let started = Instant::now();
            let response = client
                .pull_image(request)
                .await
                .map_err(|status| failed("PullImage", status))?
                .into_inner();
            let seconds = started.elapsed().as_secs_f64();
            println!("{seconds:.3} {}", response.image_ref);
        }
        Command::Version { socket } => {
            let mut client = RuntimeServiceClient::new(connect(&socket).await);
            let response = client
                .version(VersionRequest::default())
                .await
                .map_err(|status| failed("Version", status))?
                .into_inner();
            println!(
                "{} {} (CRI {})",
                response.runtime_name, response.runtime_version, response.runtime_api_version
            );
        }
    }
    Ok(())
}
