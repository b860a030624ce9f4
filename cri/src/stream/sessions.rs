//! Each kind of session over either protocol: set up the channels, run the operation, and
//! report how it ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::cri::{AttachRequest, ExecRequest};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::port_forward::{self, ForwardTarget};
use super::session::{
    EndSignal, ForwardPair, INPUT_QUEUE, OutputSink, RemoteCommand, ResizeStream,
};
use super::spdy::{self, NewStream};
use super::status::Status;
use super::tokens::PendingRequest;
use super::{StreamError, StreamServer, attach, exec, websocket};
use crate::runtime::{RuntimeError, RuntimeService};

/// How long a SPDY client may take to open the streams of a session, or both streams of a
/// port-forward pair: the default of the kubelet's streaming server (`streaming.DefaultConfig`).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// An upgraded connection.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// An upgraded connection and the protocol negotiated for it.
pub enum Transport {
    WebSocket {
        io: Box<dyn Io>,
        protocol: &'static str,
    },
    Spdy {
        io: Box<dyn Io>,
    },
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::WebSocket { protocol, .. } => protocol,
            Transport::Spdy { .. } => "SPDY/3.1",
        }
    }
}

/// The streams of a remote command session, as the request names them.
#[derive(Debug, Clone, Copy)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// Returns the pod a port-forward reaches.
///
/// # Errors
///
/// `NotFound` for an unknown sandbox, `FailedPrecondition` for one that is not ready.
pub fn forward_target(
    runtime: &RuntimeService,
    sandbox_id: &str,
) -> Result<ForwardTarget, RuntimeError> {
    let sandbox = runtime.sandbox(sandbox_id)?;
    if !sandbox.record.ready {
        return Err(RuntimeError::FailedPrecondition(format!(
            "sandbox {} is not ready: port-forward needs a running pod",
            sandbox.record.id
        )));
    }
    let netns = (!sandbox.host_network()).then(|| sandbox.dir().join("ns").join("net"));
    Ok(ForwardTarget {
        sandbox_id: sandbox.record.id,
        netns,
    })
}

/// Checks that the container or pod of a request can still be reached, before the upgrade.
pub fn check_target(server: &StreamServer, pending: &PendingRequest) -> Result<(), String> {
    let result = match pending {
        PendingRequest::Exec(request) => server
            .runtime
            .stream_target(&request.container_id, "exec")
            .map(drop),
        PendingRequest::Attach(request) => server
            .runtime
            .stream_target(&request.container_id, "attach")
            .map(drop),
        PendingRequest::PortForward(request) => {
            forward_target(&server.runtime, &request.pod_sandbox_id).map(drop)
        }
    };
    result.map_err(|err| err.to_string())
}

/// Runs one session to its end. `ports` are the ports of a WebSocket port-forward.
pub async fn run(
    server: &StreamServer,
    pending: PendingRequest,
    transport: Transport,
    ports: Vec<u16>,
) {
    let idle = server.config.idle_timeout();
    match pending {
        PendingRequest::Exec(request) => run_exec(server, request, transport, idle).await,
        PendingRequest::Attach(request) => run_attach(server, request, transport, idle).await,
        PendingRequest::PortForward(request) => {
            let target = match forward_target(&server.runtime, &request.pod_sandbox_id) {
                Ok(target) => Arc::new(target),
                Err(err) => {
                    tracing::warn!(pod = %request.pod_sandbox_id, error = %err, "port-forward session failed");
                    return;
                }
            };
            let protocol = transport.name();
            tracing::info!(pod = %target.sandbox_id, protocol, "port-forward session started");
            let reason = match transport {
                Transport::WebSocket { io, protocol } => {
                    forward_websocket(target.clone(), io, protocol, ports, idle).await
                }
                Transport::Spdy { io } => forward_spdy(target.clone(), io, idle).await,
            };
            tracing::info!(pod = %target.sandbox_id, protocol, end = ?reason, "port-forward session ended");
        }
    }
}

async fn run_exec(
    server: &StreamServer,
    request: ExecRequest,
    transport: Transport,
    idle: Duration,
) {
    let streams = Streams {
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr,
        tty: request.tty,
    };
    let container = request.container_id.clone();
    let protocol = transport.name();
    let Some(mut io) = open_remote_command(transport, streams, idle).await else {
        return;
    };
    tracing::info!(container = %container, protocol, tty = request.tty, "exec session started");

    let result = match server.runtime.stream_target(&request.container_id, "exec") {
        Ok(target) => exec::run(&target, &request, &mut io).await,
        Err(err) => Err(err.into()),
    };
    let status = match &result {
        Ok(0) => Status::success(),
        Ok(code) => Status::exit_code(&request.cmd, *code),
        Err(err) => Status::internal_error(&err.to_string()),
    };
    match &result {
        Ok(code) => tracing::info!(container = %container, exit_code = code, "exec session ended"),
        Err(err) => {
            tracing::info!(container = %container, error = %err, "exec session ended early")
        }
    }
    io.finish(&status).await;
}

async fn run_attach(
    server: &StreamServer,
    request: AttachRequest,
    transport: Transport,
    idle: Duration,
) {
    let streams = Streams {
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr,
        tty: request.tty,
    };
    let container = request.container_id.clone();
    let protocol = transport.name();
    let Some(mut io) = open_remote_command(transport, streams, idle).await else {
        return;
    };
    tracing::info!(container = %container, protocol, "attach session started");

    let result = match server
        .runtime
        .stream_target(&request.container_id, "attach")
    {
        Ok(target) => attach::run(&target, &mut io).await,
        Err(err) => Err(StreamError::from(err)),
    };
    let status = match &result {
        Ok(()) => Status::success(),
        Err(err) => Status::internal_error(&err.to_string()),
    };
    match &result {
        Ok(()) => tracing::info!(container = %container, "attach session ended"),
        Err(err) => {
            tracing::info!(container = %container, error = %err, "attach session ended early")
        }
    }
    io.finish(&status).await;
}

/// Sets up the channels of an exec or attach session.
async fn open_remote_command(
    transport: Transport,
    streams: Streams,
    idle: Duration,
) -> Option<RemoteCommand> {
    match transport {
        Transport::WebSocket { io, protocol } => {
            Some(websocket_remote_command(io, protocol, streams, idle).await)
        }
        Transport::Spdy { io } => {
            let mut connection = spdy::start(io, idle);
            match spdy_remote_command(&mut connection, streams).await {
                Ok(remote) => Some(remote),
                Err(message) => {
                    tracing::warn!(error = %message, "SPDY remote command session failed");
                    let _ = connection.output.send(super::session::Output::Finish).await;
                    None
                }
            }
        }
    }
}

/// WebSocket channel numbers of exec and attach.
const CHANNEL_STDIN: u8 = 0;
const CHANNEL_STDOUT: u8 = 1;
const CHANNEL_STDERR: u8 = 2;
const CHANNEL_ERROR: u8 = 3;
const CHANNEL_RESIZE: u8 = 4;

async fn websocket_remote_command(
    io: Box<dyn Io>,
    protocol: &'static str,
    streams: Streams,
    idle: Duration,
) -> RemoteCommand {
    let mut routes = HashMap::new();
    let stdin = streams
        .stdin
        .then(|| inbound_route(&mut routes, CHANNEL_STDIN));
    let resize = streams
        .tty
        .then(|| ResizeStream::new(inbound_route(&mut routes, CHANNEL_RESIZE)));
    let connection = websocket::start(io, protocol, routes, idle);
    let sink = |channel: u8| OutputSink::new(u32::from(channel), connection.output.clone());
    let remote = RemoteCommand {
        stdin,
        stdout: streams.stdout.then(|| sink(CHANNEL_STDOUT)),
        stderr: streams.stderr.then(|| sink(CHANNEL_STDERR)),
        resize,
        error: sink(CHANNEL_ERROR),
        end: connection.end,
    };
    // Like the kubelet, tell the client the session is open with an empty message on the
    // lowest channel it reads.
    let first = remote
        .stdout
        .as_ref()
        .or(remote.stderr.as_ref())
        .unwrap_or(&remote.error);
    let _ = first.write(Bytes::new()).await;
    remote
}

fn inbound_route(
    routes: &mut HashMap<u8, mpsc::Sender<Bytes>>,
    channel: u8,
) -> mpsc::Receiver<Bytes> {
    let (sender, receiver) = mpsc::channel(INPUT_QUEUE);
    routes.insert(channel, sender);
    receiver
}

/// Waits for the client to open the streams the request implies, by their `streamType`
/// header: always `error`, `stdin`, `stdout` and `stderr` as requested, and `resize` with a
/// TTY.
async fn spdy_remote_command(
    connection: &mut spdy::Connection,
    streams: Streams,
) -> Result<RemoteCommand, String> {
    let mut error: Option<NewStream> = None;
    let mut stdin: Option<NewStream> = None;
    let mut stdout: Option<NewStream> = None;
    let mut stderr: Option<NewStream> = None;
    let mut resize: Option<NewStream> = None;
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    loop {
        let complete = error.is_some()
            && (!streams.stdin || stdin.is_some())
            && (!streams.stdout || stdout.is_some())
            && (!streams.stderr || stderr.is_some())
            && (!streams.tty || resize.is_some());
        if complete {
            break;
        }
        let stream = tokio::select! {
            stream = connection.streams.recv() => stream.ok_or("the client closed the connection before opening its streams")?,
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("the client did not open its streams within {} s", STREAM_CREATION_TIMEOUT.as_secs()));
            }
        };
        let slot = match stream.headers.get("streamType") {
            Some("error") => Some(&mut error),
            Some("stdin") if streams.stdin => Some(&mut stdin),
            Some("stdout") if streams.stdout => Some(&mut stdout),
            Some("stderr") if streams.stderr => Some(&mut stderr),
            Some("resize") if streams.tty => Some(&mut resize),
            _ => None,
        };
        match slot {
            Some(slot) if slot.is_none() => *slot = Some(stream),
            _ => connection.reject(stream.id).await,
        }
    }
    connection.reject_later_streams();

    let sink = |stream: &NewStream| OutputSink::new(stream.id, connection.output.clone());
    let error = error.expect("checked complete");
    Ok(RemoteCommand {
        stdin: stdin.map(|stream| stream.inbound),
        stdout: stdout.as_ref().map(sink),
        stderr: stderr.as_ref().map(sink),
        resize: resize.map(|stream| ResizeStream::new(stream.inbound)),
        error: sink(&error),
        end: connection.end.clone(),
    })
}

/// Forwards one connection per requested port over a WebSocket, then closes it. Each port
/// has a data channel `2i` and an error channel `2i+1`, whose first message the server
/// starts with the port as two little-endian bytes.
async fn forward_websocket(
    target: Arc<ForwardTarget>,
    io: Box<dyn Io>,
    protocol: &'static str,
    ports: Vec<u16>,
    idle: Duration,
) -> Option<super::session::EndReason> {
    let mut routes = HashMap::new();
    let mut inbound = Vec::new();
    for index in 0..ports.len() {
        inbound.push(inbound_route(&mut routes, (index * 2) as u8));
    }
    let connection = websocket::start(io, protocol, routes, idle);
    let mut forwards = Vec::new();
    for (index, (port, inbound)) in ports.iter().zip(inbound).enumerate() {
        let data = OutputSink::new((index * 2) as u32, connection.output.clone());
        let error = OutputSink::new((index * 2 + 1) as u32, connection.output.clone());
        let prefix = Bytes::copy_from_slice(&port.to_le_bytes());
        let _ = data.write(prefix.clone()).await;
        let _ = error.write(prefix).await;
        let pair = ForwardPair {
            port: *port,
            inbound,
            data,
            error,
        };
        let target = target.clone();
        let end = connection.end.clone();
        forwards.push(tokio::spawn(async move {
            port_forward::forward(&target, pair, end).await
        }));
    }
    for forward in forwards {
        let _ = forward.await;
    }
    let reason = connection.end.reason();
    let _ = connection.output.send(super::session::Output::Finish).await;
    reason
}

/// Serves port-forward pairs over SPDY until the client closes the connection. The client
/// opens an `error` stream and a `data` stream per connection, with the same `requestID`
/// and `port` headers.
async fn forward_spdy(
    target: Arc<ForwardTarget>,
    io: Box<dyn Io>,
    idle: Duration,
) -> Option<super::session::EndReason> {
    let mut connection = spdy::start(io, idle);
    let mut halves: HashMap<String, (NewStream, tokio::time::Instant)> = HashMap::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stream = tokio::select! {
            stream = connection.streams.recv() => match stream {
                Some(stream) => stream,
                None => break,
            },
            _ = sweep.tick() => {
                expire_halves(&connection, &mut halves).await;
                continue;
            }
            _ = connection.end.ended() => break,
        };
        let kind = stream
            .headers
            .get("streamType")
            .unwrap_or_default()
            .to_string();
        let Some(request_id) = pair_id(&stream, &kind) else {
            connection.reject(stream.id).await;
            continue;
        };
        let Some((other, _)) = halves.remove(&request_id) else {
            halves.insert(request_id, (stream, tokio::time::Instant::now()));
            continue;
        };
        let (data, error) = match (kind.as_str(), other.headers.get("streamType")) {
            ("data", Some("error")) => (stream, other),
            ("error", Some("data")) => (other, stream),
            _ => {
                connection.reject(stream.id).await;
                connection.reject(other.id).await;
                continue;
            }
        };
        start_spdy_pair(&connection, target.clone(), data, error).await;
    }
    let reason = connection.end.reason();
    let _ = connection.output.send(super::session::Output::Finish).await;
    reason
}

/// Returns the key that pairs a stream with its partner: the `requestID` header. Clients too
/// old to send it open the data stream right after its error stream, so, as the kubelet does,
/// the key is then the error stream's ID, which is the data stream's ID minus 2.
fn pair_id(stream: &NewStream, kind: &str) -> Option<String> {
    if let Some(id) = stream.headers.get("requestID") {
        return Some(id.to_string());
    }
    match kind {
        "error" => Some(stream.id.to_string()),
        "data" => stream.id.checked_sub(2).map(|id| id.to_string()),
        _ => None,
    }
}

async fn start_spdy_pair(
    connection: &spdy::Connection,
    target: Arc<ForwardTarget>,
    data: NewStream,
    error: NewStream,
) {
    let port = data
        .headers
        .get("port")
        .and_then(|port| port.parse::<u16>().ok())
        .filter(|port| *port != 0);
    let error_sink = OutputSink::new(error.id, connection.output.clone());
    let data_sink = OutputSink::new(data.id, connection.output.clone());
    let Some(port) = port else {
        let message = format!(
            "invalid port header {:?}: expected a number from 1 to 65535",
            data.headers.get("port").unwrap_or_default()
        );
        let _ = error_sink.write(Bytes::from(message)).await;
        error_sink.close().await;
        data_sink.close().await;
        return;
    };
    let pair = ForwardPair {
        port,
        inbound: data.inbound,
        data: data_sink,
        error: error_sink,
    };
    let end: EndSignal = connection.end.clone();
    tokio::spawn(async move { port_forward::forward(&target, pair, end).await });
}

/// Cancels the streams whose partner did not arrive in time.
async fn expire_halves(
    connection: &spdy::Connection,
    halves: &mut HashMap<String, (NewStream, tokio::time::Instant)>,
) {
    let now = tokio::time::Instant::now();
    let expired: Vec<String> = halves
        .iter()
        .filter(|(_, (_, opened))| now.duration_since(*opened) >= STREAM_CREATION_TIMEOUT)
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        if let Some((stream, _)) = halves.remove(&id) {
            tracing::warn!(request = %id, stream = stream.id, "port-forward stream pair incomplete: cancelling it");
            connection.cancel(stream.id).await;
        }
    }
}
