//! `cri-bench`: a minimal CRI client for benchmarks, which talks to any CRI runtime (Berth,
//! containerd) over its unix socket.
//!
//! ```text
//! cri-bench pull --socket PATH IMAGE   pull IMAGE once; prints "SECONDS IMAGE_REF"
//! cri-bench version --socket PATH      prints the runtime's name and version
//! cri-bench pods --socket PATH --image REF --count N --cgroup-parent DIR --log-dir DIR
//!                                      starts N pods one after another; prints each one's latencies
//! cri-bench remove-pods --socket PATH  stops and removes the pods in namespace cri-bench
//! ```
//!
//! The time printed by `pull` covers the PullImage RPC alone, not connecting to the socket.
//! `hack/bench-pull.sh` parses its output, and `hack/bench-pods.sh` that of `pods`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, LinuxContainerConfig,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PullImageRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
    VersionRequest,
};
use berth_tests::{connect, spec};
use tonic::transport::Channel;

const USAGE: &str = "usage: cri-bench pull --socket PATH IMAGE
       cri-bench version --socket PATH
       cri-bench pods --socket PATH --image REF --count N --cgroup-parent DIR --log-dir DIR [--namespace NAME]
       cri-bench remove-pods --socket PATH [--namespace NAME]";

/// Kubernetes namespace of the pods that `pods` starts and `remove-pods` removes, unless
/// `--namespace` names another.
const DEFAULT_POD_NAMESPACE: &str = "cri-bench";

enum Command {
    Pull { socket: PathBuf, image: String },
    Version { socket: PathBuf },
    Pods(PodsOptions),
    RemovePods { socket: PathBuf, namespace: String },
}

/// Arguments of `cri-bench pods`.
struct PodsOptions {
    socket: PathBuf,
    image: String,
    count: usize,
    /// Parent of the pods' cgroups: pod I gets `DIR/podI` as its `cgroup_parent`, as the kubelet
    /// passes `/kubepods/.../pod<UID>`.
    cgroup_parent: String,
    /// Directory under which pod I gets its log directory `DIR/podI`.
    log_dir: PathBuf,
    namespace: String,
}

/// Parses `SUBCOMMAND --socket PATH [IMAGE]`, with `--socket` anywhere after the subcommand.
fn parse_args(args: &[String]) -> Result<Command, String> {
    let Some((subcommand, rest)) = args.split_first() else {
        return Err("missing subcommand".into());
    };
    if matches!(subcommand.as_str(), "pods" | "remove-pods") {
        return parse_pods_args(subcommand, rest);
    }
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
        Command::Pods(options) => run_pods(options).await?,
        Command::RemovePods { socket, namespace } => remove_pods(&socket, &namespace).await?,
    }
    Ok(())
}

/// Parses the arguments of `pods` and `remove-pods`, which take `--option VALUE` pairs only.
fn parse_pods_args(subcommand: &str, args: &[String]) -> Result<Command, String> {
    let mut socket = None;
    let mut image = None;
    let mut count = None;
    let mut cgroup_parent = None;
    let mut log_dir = None;
    let mut namespace = DEFAULT_POD_NAMESPACE.to_string();
    let mut rest = args.iter();
    while let Some(option) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("{option} needs a value"))?
            .clone();
        match (subcommand, option.as_str()) {
            (_, "--socket") => socket = Some(PathBuf::from(value)),
            (_, "--namespace") => namespace = value,
            ("pods", "--image") => image = Some(value),
            ("pods", "--count") => match value.parse::<usize>() {
                Ok(parsed) if parsed > 0 => count = Some(parsed),
                _ => {
                    return Err(format!(
                        "invalid --count '{value}': expected a positive number of pods"
                    ));
                }
            },
            ("pods", "--cgroup-parent") => {
                if !value.starts_with('/') {
                    return Err(format!(
                        "invalid --cgroup-parent '{value}': expected an absolute cgroup path, \
                         such as /cri-bench"
                    ));
                }
                cgroup_parent = Some(value.trim_end_matches('/').to_string());
            }
            ("pods", "--log-dir") => log_dir = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown option '{option}' for {subcommand}")),
        }
    }
    let socket = socket.ok_or("missing --socket PATH")?;
    if subcommand == "remove-pods" {
        return Ok(Command::RemovePods { socket, namespace });
    }
    Ok(Command::Pods(PodsOptions {
        socket,
        image: image.ok_or("missing --image REF")?,
        count: count.ok_or("missing --count N")?,
        cgroup_parent: cgroup_parent.ok_or("missing --cgroup-parent DIR")?,
        log_dir: log_dir.ok_or("missing --log-dir DIR")?,
        namespace,
    }))
}

fn rpc_failed(rpc: &str, status: tonic::Status) -> String {
    format!("{rpc} failed: {:?}: {}", status.code(), status.message())
}

/// Latencies of the three RPCs that start one pod.
struct PodLatency {
    run_pod_sandbox: Duration,
    create_container: Duration,
    start_container: Duration,
}

impl PodLatency {
    fn total(&self) -> Duration {
        self.run_pod_sandbox + self.create_container + self.start_container
    }

    /// Returns the total and the three steps in milliseconds, in the order of the output columns.
    fn columns(&self) -> [f64; 4] {
        [
            self.total(),
            self.run_pod_sandbox,
            self.create_container,
            self.start_container,
        ]
        .map(|duration| duration.as_secs_f64() * 1000.0)
    }
}

/// Starts `count` pods of one container each, one after another, and prints a tab-separated
/// table: a `#` header line, one row per pod with its latencies in milliseconds (the total, then
/// RunPodSandbox, CreateContainer and StartContainer), and rows `p50` and `p99` with the
/// percentiles of each column on its own. The pods keep running; `remove-pods` removes them.
async fn run_pods(options: PodsOptions) -> Result<(), String> {
    let mut client = RuntimeServiceClient::new(connect(&options.socket).await);
    println!("# pod\ttotal_ms\trun_pod_sandbox_ms\tcreate_container_ms\tstart_container_ms");
    let mut latencies = Vec::with_capacity(options.count);
    for index in 1..=options.count {
        let latency = start_pod(&mut client, &options, index)
            .await
            .map_err(|message| format!("pod {index} of {}: {message}", options.count))?;
        let [total, run, create, start] = latency.columns();
        println!("{index}\t{total:.1}\t{run:.1}\t{create:.1}\t{start:.1}");
        latencies.push(latency);
    }

    let columns: Vec<[f64; 4]> = latencies.iter().map(PodLatency::columns).collect();
    for percent in [50, 99] {
        let values: Vec<String> = (0..4)
            .map(|column| {
                let samples: Vec<f64> = columns.iter().map(|row| row[column]).collect();
                format!("{:.1}", percentile(samples, percent))
            })
            .collect();
        println!("p{percent}\t{}", values.join("\t"));
    }
    Ok(())
}

/// Returns the nearest-rank percentile: the sample at rank ceil(`percent` / 100 * n) in ascending
/// order. With 50 samples, p99 is the maximum. `samples` must not be empty.
fn percentile(mut samples: Vec<f64>, percent: usize) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = (percent * samples.len()).div_ceil(100).max(1);
    samples[rank - 1]
}

/// Runs pod `index` with one container that runs `sleep 3600`, timing each RPC.
async fn start_pod(
    client: &mut RuntimeServiceClient<Channel>,
    options: &PodsOptions,
    index: usize,
) -> Result<PodLatency, String> {
    let name = format!("pod{index}");
    let pod = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: format!("cri-bench-{}-{index}", std::process::id()),
            namespace: options.namespace.clone(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: options.log_dir.join(&name).display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/{name}", options.cgroup_parent),
            // The kubelet's defaults for a pod without shareProcessNamespace or host namespaces.
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "sleep".to_string(),
            attempt: 0,
        }),
        image: Some(spec(&options.image)),
        command: vec!["sleep".to_string(), "3600".to_string()],
        log_path: "sleep.log".to_string(),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    };

    let started = Instant::now();
    let sandbox_id = client
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(|status| rpc_failed("RunPodSandbox", status))?
        .into_inner()
        .pod_sandbox_id;
    let run_pod_sandbox = started.elapsed();

    let started = Instant::now();
    let container_id = client
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox_id,
            config: Some(container),
            sandbox_config: Some(pod),
        })
        .await
        .map_err(|status| rpc_failed("CreateContainer", status))?
        .into_inner()
        .container_id;
    let create_container = started.elapsed();

    let started = Instant::now();
    client
        .start_container(StartContainerRequest { container_id })
        .await
        .map_err(|status| rpc_failed("StartContainer", status))?;
    let start_container = started.elapsed();

    Ok(PodLatency {
        run_pod_sandbox,
        create_container,
        start_container,
    })
}

/// Stops and removes every pod in Kubernetes namespace `namespace`, as the kubelet does:
/// StopPodSandbox, which kills the pod's containers, then RemovePodSandbox. Prints
/// "removed N pods in SECONDS s".
async fn remove_pods(socket: &std::path::Path, namespace: &str) -> Result<(), String> {
    let mut client = RuntimeServiceClient::new(connect(socket).await);
    let pods = client
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .map_err(|status| rpc_failed("ListPodSandbox", status))?
        .into_inner()
        .items;
    let started = Instant::now();
    let mut removed = 0;
    for pod in pods {
        let in_namespace = pod
            .metadata
            .as_ref()
            .is_some_and(|metadata| metadata.namespace == namespace);
        if !in_namespace {
            continue;
        }
        client
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await
            .map_err(|status| rpc_failed(&format!("StopPodSandbox {}", pod.id), status))?;
        client
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await
            .map_err(|status| rpc_failed(&format!("RemovePodSandbox {}", pod.id), status))?;
        removed += 1;
    }
    println!(
        "removed {removed} pods in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
