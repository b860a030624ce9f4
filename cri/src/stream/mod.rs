//! The streaming server behind the CRI Exec, Attach and PortForward RPCs.
//!
//! As the CRI prescribes, the RPCs only validate the request and return a URL on this server,
//! `http://ADDRESS/{exec|attach|portforward}/TOKEN`. The client (the kubelet, crictl) then
//! opens the URL and upgrades the connection to WebSocket (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`) or SPDY/3.1 (`v4.channel.k8s.io`, `portforward.k8s.io`). Each token is
//! random, valid once, and for `token_ttl_seconds`.
//!
//! ```text
//! http.rs        routes, tokens, the session cap, protocol negotiation and the upgrade
//! sessions.rs    each kind of session over either protocol
//! websocket.rs   RFC 6455 framing and the channel subprotocols
//! spdy/          SPDY/3.1 framing, header compression and streams
//! session.rs     the protocol-neutral channels that exec, attach and port-forward use
//! exec.rs, attach.rs, port_forward.rs   the three operations
//! attach_socket.rs   the monitor's attach socket, which attach reaches the container through
//! ```

mod attach;
pub mod attach_socket;
mod config;
mod error;
mod exec;
mod http;
mod port_forward;
mod session;
mod sessions;
mod spdy;
mod status;
mod tokens;
mod websocket;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use berth_proto::cri::{AttachRequest, ExecRequest, PortForwardRequest};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::runtime::RuntimeService;
pub use config::StreamConfig;
pub use error::StreamError;
use tokens::{PendingRequest, TokenCache};

/// The streaming HTTP server and the tokens of the requests it will serve.
pub struct StreamServer {
    config: StreamConfig,
    runtime: Arc<RuntimeService>,
    tokens: TokenCache,
    sessions: Arc<Semaphore>,
    local_addr: SocketAddr,
    /// The bound listener, taken by [`StreamServer::serve`].
    listener: Mutex<Option<TcpListener>>,
}

impl StreamServer {
    /// Binds the configured address. The server accepts connections once
    /// [`StreamServer::serve`] runs.
    ///
    /// # Errors
    ///
    /// [`StreamError::Bind`] when the address cannot be bound.
    pub async fn bind(
        config: StreamConfig,
        runtime: Arc<RuntimeService>,
    ) -> Result<Arc<Self>, StreamError> {
        let listener =
            TcpListener::bind(config.address)
                .await
                .map_err(|source| StreamError::Bind {
                    address: config.address,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StreamError::Bind {
            address: config.address,
            source,
        })?;
        Ok(Arc::new(Self {
            tokens: TokenCache::new(config.token_ttl()),
            sessions: Arc::new(Semaphore::new(config.max_sessions)),
            config,
            runtime,
            local_addr,
            listener: Mutex::new(Some(listener)),
        }))
    }

    /// Returns the address the server listens on, with the port chosen for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts and serves connections until the listener fails. Call once.
    pub async fn serve(self: Arc<Self>) {
        let Some(listener) = self.listener.lock().expect("listener lock poisoned").take() else {
            tracing::warn!("the streaming server is already serving");
            return;
        };
        http::accept_loop(self, listener).await;
    }

    /// Validates an Exec request and returns the URL that runs it. Exec.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for an empty command, for `tty` with `stderr` (a terminal has one
    /// output stream), or when no stream is requested. The runtime's `NotFound` or
    /// `FailedPrecondition` when the container does not exist or is not running.
    pub fn exec_url(&self, mut request: ExecRequest) -> Result<String, StreamError> {
        if request.cmd.is_empty() {
            return Err(StreamError::InvalidArgument {
                field: "cmd",
                reason: "the command to run must not be empty".to_string(),
            });
        }
        validate_streams(request.tty, request.stdin, request.stdout, request.stderr)?;
        let target = self.runtime.stream_target(&request.container_id, "exec")?;
        request.container_id = target.container_id;
        Ok(self.url(PendingRequest::Exec(request)))
    }

    /// Validates an Attach request and returns the URL that serves it. Attach.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for `tty` with `stderr`, or when no stream is requested. The runtime's
    /// `NotFound` or `FailedPrecondition` when the container does not exist or is not running.
    pub fn attach_url(&self, mut request: AttachRequest) -> Result<String, StreamError> {
        validate_streams(request.tty, request.stdin, request.stdout, request.stderr)?;
        let target = self
            .runtime
            .stream_target(&request.container_id, "attach")?;
        request.container_id = target.container_id;
        Ok(self.url(PendingRequest::Attach(request)))
    }

    /// Validates a PortForward request and returns the URL that serves it. PortForward.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a port outside 1 to 65535; `NotFound` for an unknown sandbox;
    /// `FailedPrecondition` for a sandbox that is not ready.
    pub fn port_forward_url(&self, mut request: PortForwardRequest) -> Result<String, StreamError> {
        if let Some(port) = request
            .port
            .iter()
            .find(|port| !(1..=65535).contains(*port))
        {
            return Err(StreamError::InvalidArgument {
                field: "port",
                reason: format!("{port} is not a port number from 1 to 65535"),
            });
        }
        let target = sessions::forward_target(&self.runtime, &request.pod_sandbox_id)?;
        request.pod_sandbox_id = target.sandbox_id;
        Ok(self.url(PendingRequest::PortForward(request)))
    }

    fn url(&self, request: PendingRequest) -> String {
        let route = request.route();
        let token = self.tokens.insert(request);
        format!("http://{}/{route}/{token}", self.advertised_addr())
    }

    /// Returns the address that URLs name: the bound one, with loopback in place of an
    /// unspecified IP, which no client can connect to.
    fn advertised_addr(&self) -> SocketAddr {
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.local_addr.port())
    }
}

/// Checks the stream flags of Exec and Attach as the kubelet's streaming server does.
fn validate_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), StreamError> {
    if tty && stderr {
        return Err(StreamError::InvalidArgument {
            field: "stderr",
            reason: "tty and stderr cannot both be true: a terminal has a single output stream"
                .to_string(),
        });
    }
    if !stdin && !stdout && !stderr {
        return Err(StreamError::InvalidArgument {
            field: "stdin, stdout, stderr",
            reason: "at least one of stdin, stdout and stderr must be true".to_string(),
        });
    }
    Ok(())
}
