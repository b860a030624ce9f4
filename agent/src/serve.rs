//! `berth serve`: load the config, open the stores and serve the CRI socket until a signal.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use berth_cri::gc::LocalTarget;
use berth_cri::image::ImageService;
use berth_cri::runtime::RuntimeService;
use berth_cri::server::{Cri, CriImageService, CriRuntimeService, bind_socket, serve};
use berth_cri::store::Store;
use berth_cri::stream::{StreamError, StreamServer};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::ServeArgs;
use crate::config::{AgentConfig, DEFAULT_CONFIG};
use crate::metrics::Metrics;

/// How long in-flight requests may run after SIGTERM before the daemon exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs the daemon and returns its exit status.
pub fn run(args: ServeArgs) -> ExitCode {
    let explicit = args.config.is_some();
    let path = args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
    let mut config = match AgentConfig::load(&path, explicit) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("berth: {err}");
            return ExitCode::from(2);
        }
    };
    apply_flags(&mut config, args);
    init_logging(&config.log_level);
    berth_cri::install_crypto_provider();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_until_signal(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "berth serve failed");
            ExitCode::FAILURE
        }
    }
}

fn apply_flags(config: &mut AgentConfig, args: ServeArgs) {
    if let Some(root) = args.root {
        config.root = root;
    }
    if let Some(state_dir) = args.state_dir {
        config.state_dir = state_dir;
    }
    if let Some(socket) = args.socket {
        config.socket = Some(socket);
    }
    if let Some(level) = args.log_level {
        config.log_level = level;
    }
}

pub(crate) fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| EnvFilter::try_new(value).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Colour codes only help a terminal; in a log file or journal they are noise.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

async fn serve_until_signal(config: AgentConfig) -> Result<(), Box<dyn std::error::Error>> {
    for dir in [&config.root, &config.state_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|err| format!("cannot create directory {}: {err}", dir.display()))?;
    }
    let store = Arc::new(Store::open(&config.root.join("meta.db"))?);
    let images = ImageService::open(
        &config.root,
        store.clone(),
        config.image.clone(),
        config.registries.clone(),
    )?;
    let runtime = RuntimeService::open(
        &config.state_dir,
        config.runtime.clone(),
        config.network.clone(),
        store,
        images.clone(),
    )
    .await?;
    let metrics = Arc::new(Metrics::default());
    spawn_image_gc(&config, &images, &runtime, metrics.clone());
    start_metrics_server(&config, metrics).await;
    let streams = start_stream_server(&config, &runtime).await?;
    let cri = Arc::new(Cri {
        images,
        runtime,
        streams,
    });

    let socket = config.socket_path();
    let listener = bind_socket(&socket)
        .map_err(|err| format!("cannot listen on {}: {err}", socket.display()))?;
    tracing::info!(
        socket = %socket.display(),
        root = %config.root.display(),
        version = env!("CARGO_PKG_VERSION"),
        "serving CRI"
    );

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("received SIGTERM, shutting down"),
            _ = interrupt.recv() => tracing::info!("received SIGINT, shutting down"),
        }
        let _ = stopping_tx.send(true);
    };
    let server = serve(
        listener,
        CriImageService(cri.clone()),
        CriRuntimeService(cri),
        shutdown,
    );
    // At the signal the server stops accepting and waits for open connections. A client that
    // never acknowledges the HTTP/2 GOAWAY must not keep the daemon alive, so the wait is bounded.
    let grace = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        result = server => result,
        () = grace => {
            tracing::warn!(grace_seconds = SHUTDOWN_GRACE.as_secs(), "closing connections still open after the shutdown grace period");
            Ok(())
        }
    };
    let _ = std::fs::remove_file(&socket);
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the image collector's scheduler on the daemon's own services. It runs until the
/// daemon's async runtime shuts down.
fn spawn_image_gc(
    config: &AgentConfig,
    images: &Arc<ImageService>,
    runtime: &Arc<RuntimeService>,
    metrics: Arc<Metrics>,
) {
    let target = LocalTarget::new(images.clone(), runtime.clone());
    tokio::spawn(crate::gc::scheduler::run_scheduled(
        target,
        config.gc.clone(),
        metrics,
    ));
}

/// Serves `GET /metrics` on `[metrics] address` unless it is "". A port that cannot be bound
/// is logged and leaves the CRI running without metrics, because the CRI matters more to the
/// node than its counters.
async fn start_metrics_server(config: &AgentConfig, metrics: Arc<Metrics>) {
    // `AgentConfig::load` has validated the address.
    let Ok(Some(address)) = crate::metrics::parse_address(&config.metrics.address) else {
        return;
    };
    if let Err(err) = crate::metrics::start(address, metrics).await {
        tracing::error!(address = %address, error = %err, "cannot serve metrics; continuing without them");
    }
}

/// Binds the exec, attach and port-forward streaming server (`[stream]` in the config) and
/// serves it until the daemon's async runtime shuts down.
async fn start_stream_server(
    config: &AgentConfig,
    runtime: &Arc<RuntimeService>,
) -> Result<Arc<StreamServer>, StreamError> {
    let streams = StreamServer::bind(config.stream.clone(), runtime.clone()).await?;
    tokio::spawn(streams.clone().serve());
    Ok(streams)
}
