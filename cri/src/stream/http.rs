//! The HTTP/1.1 side of the streaming server: routes, tokens, the session cap, protocol
//! negotiation and the connection upgrade.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;

use super::sessions::{self, Transport};
use super::tokens::PendingRequest;
use super::{StreamServer, spdy, websocket};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The SPDY header that carries the offered and the chosen subprotocol.
const STREAM_PROTOCOL_VERSION: &str = "x-stream-protocol-version";
const ACCEPTED_STREAM_PROTOCOL_VERSIONS: &str = "x-accepted-stream-protocol-versions";
/// The SPDY subprotocols: remote command (exec and attach) and port-forward.
const SPDY_REMOTE_COMMAND: &str = "v4.channel.k8s.io";
const SPDY_PORT_FORWARD: &str = "portforward.k8s.io";

type Body = Full<Bytes>;

/// Accepts connections and serves each on a task of its own.
pub async fn accept_loop(server: Arc<StreamServer>, listener: TcpListener) {
    tracing::info!(address = %server.local_addr, "streaming server ready");
    loop {
        let (connection, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Running out of descriptors is passing; back off instead of spinning.
                tracing::warn!(error = %err, "streaming server accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(handle(server, request).await) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(connection), service)
                .with_upgrades()
                .await;
            if let Err(err) = result {
                tracing::debug!(peer = %peer, error = %err, "streaming HTTP connection failed");
            }
        });
    }
}

/// The protocol upgrade that a request names.
enum Upgrade {
    WebSocket { key: String, protocols: Vec<String> },
    Spdy { protocols: Vec<String> },
}

async fn handle(server: Arc<StreamServer>, request: Request<Incoming>) -> Response<Body> {
    let Some((route, token)) = split_path(request.uri().path()) else {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: expected /exec/TOKEN, /attach/TOKEN or /portforward/TOKEN",
        );
    };
    // A request beyond the cap keeps its token, so the client may try again.
    let Ok(permit) = server.sessions.clone().try_acquire_owned() else {
        tracing::warn!(
            max_sessions = server.config.max_sessions,
            "rejecting a streaming request: too many sessions"
        );
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "too many streaming sessions: at most {} run at once",
                server.config.max_sessions
            ),
        );
    };
    let Some(pending) = server.tokens.take(route, token) else {
        return plain(
            StatusCode::NOT_FOUND,
            "unknown, used or expired streaming token: request a new URL",
        );
    };
    let upgrade = match requested_upgrade(request.method(), request.headers()) {
        Ok(upgrade) => upgrade,
        Err(message) => return plain(StatusCode::BAD_REQUEST, &message),
    };
    let query = request.uri().query().unwrap_or_default().to_string();
    match prepare(&server, pending, &query, upgrade) {
        Ok((response, session)) => {
            tokio::spawn(run_upgraded(server, request, session, permit));
            response
        }
        Err(response) => *response,
    }
}

/// Returns the route and token of `/ROUTE/TOKEN`.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let (route, token) = path.strip_prefix('/')?.split_once('/')?;
    let known = matches!(route, "exec" | "attach" | "portforward");
    (known && !token.is_empty() && !token.contains('/')).then_some((route, token))
}

fn requested_upgrade(method: &Method, headers: &HeaderMap) -> Result<Upgrade, String> {
    let wants_upgrade = header_values(headers, CONNECTION.as_str())
        .iter()
        .any(|value| value.eq_ignore_ascii_case("upgrade"));
    let upgrade = headers
        .get(UPGRADE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !wants_upgrade || upgrade.is_empty() {
        return Err(
            "exec, attach and port-forward need a connection upgrade to WebSocket or SPDY/3.1"
                .to_string(),
        );
    }
    if upgrade.eq_ignore_ascii_case("websocket") {
        if method != Method::GET {
            return Err(format!("a WebSocket upgrade must use GET, not {method}"));
        }
        let version = headers
            .get(SEC_WEBSOCKET_VERSION)
            .and_then(|value| value.to_str().ok());
        if version != Some("13") {
            return Err(
                "unsupported Sec-WebSocket-Version: this server speaks version 13".to_string(),
            );
        }
        let key = headers
            .get(SEC_WEBSOCKET_KEY)
            .and_then(|value| value.to_str().ok())
            .ok_or("missing Sec-WebSocket-Key header")?;
        return Ok(Upgrade::WebSocket {
            key: key.to_string(),
            protocols: header_values(headers, SEC_WEBSOCKET_PROTOCOL.as_str()),
        });
    }
    if upgrade.eq_ignore_ascii_case(spdy::UPGRADE) {
        return Ok(Upgrade::Spdy {
            protocols: header_values(headers, STREAM_PROTOCOL_VERSION),
        });
    }
    Err(format!(
        "unsupported upgrade {upgrade:?}: use websocket or {}",
        spdy::UPGRADE
    ))
}

/// Returns the comma-separated values of every instance of a header, trimmed.
fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .collect()
}

/// The session to run on a connection once it is upgraded.
struct Session {
    pending: PendingRequest,
    transport: TransportKind,
    ports: Vec<u16>,
}

enum TransportKind {
    WebSocket { protocol: &'static str },
    Spdy,
}

/// Negotiates the subprotocol and checks what can be checked before the upgrade, so that a
/// bad request gets a plain HTTP error the client shows.
fn prepare(
    server: &StreamServer,
    pending: PendingRequest,
    query: &str,
    upgrade: Upgrade,
) -> Result<(Response<Body>, Session), Box<Response<Body>>> {
    let is_port_forward = matches!(pending, PendingRequest::PortForward(_));
    let (response, transport) = match upgrade {
        Upgrade::WebSocket { key, protocols } => {
            let offered: Vec<&str> = protocols.iter().map(String::as_str).collect();
            let protocol = if is_port_forward {
                // The kubelet also serves port-forward to WebSocket clients that name no
                // subprotocol.
                match websocket::negotiate(&offered, &[websocket::PROTOCOL_V4]) {
                    Some(protocol) => Some(protocol),
                    None if offered.is_empty() => None,
                    None => {
                        return Err(Box::new(unsupported_websocket(
                            &offered,
                            &[websocket::PROTOCOL_V4],
                        )));
                    }
                }
            } else {
                let supported = [websocket::PROTOCOL_V5, websocket::PROTOCOL_V4];
                match websocket::negotiate(&offered, &supported) {
                    Some(protocol) => Some(protocol),
                    None => return Err(Box::new(unsupported_websocket(&offered, &supported))),
                }
            };
            let mut response = switching_protocols("websocket");
            response.headers_mut().insert(
                SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&websocket::accept_key(&key))
                    .expect("base64 is a valid header value"),
            );
            if let Some(protocol) = protocol {
                response
                    .headers_mut()
                    .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
            }
            (
                response,
                TransportKind::WebSocket {
                    protocol: protocol.unwrap_or(websocket::PROTOCOL_V4),
                },
            )
        }
        Upgrade::Spdy { protocols } => {
            let expected = if is_port_forward {
                SPDY_PORT_FORWARD
            } else {
                SPDY_REMOTE_COMMAND
            };
            if !protocols.iter().any(|protocol| protocol == expected) {
                let mut response = plain(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "unable to upgrade: the client offers protocols {protocols:?}, the server accepts {expected}"
                    ),
                );
                response.headers_mut().insert(
                    ACCEPTED_STREAM_PROTOCOL_VERSIONS,
                    HeaderValue::from_static(expected),
                );
                return Err(Box::new(response));
            }
            let mut response = switching_protocols(spdy::UPGRADE);
            response
                .headers_mut()
                .insert(STREAM_PROTOCOL_VERSION, HeaderValue::from_static(expected));
            (response, TransportKind::Spdy)
        }
    };

    let mut ports = Vec::new();
    if let PendingRequest::PortForward(request) = &pending
        && matches!(transport, TransportKind::WebSocket { .. })
    {
        ports = super::port_forward::ports_from_query(query)
            .map_err(|message| Box::new(plain(StatusCode::BAD_REQUEST, &message)))?;
        if ports.is_empty() {
            ports = request.port.iter().map(|port| *port as u16).collect();
        }
        if ports.is_empty() {
            return Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                "query parameter \"port\" is required, such as ?port=8080",
            )));
        }
    }
    if let Err(message) = sessions::check_target(server, &pending) {
        return Err(Box::new(plain(StatusCode::NOT_FOUND, &message)));
    }
    Ok((
        response,
        Session {
            pending,
            transport,
            ports,
        },
    ))
}

async fn run_upgraded(
    server: Arc<StreamServer>,
    request: Request<Incoming>,
    session: Session,
    permit: OwnedSemaphorePermit,
) {
    let upgraded = match hyper::upgrade::on(request).await {
        Ok(upgraded) => TokioIo::new(upgraded),
        Err(err) => {
            tracing::warn!(error = %err, "streaming connection upgrade failed");
            return;
        }
    };
    let transport = match session.transport {
        TransportKind::WebSocket { protocol } => Transport::WebSocket {
            io: Box::new(upgraded),
            protocol,
        },
        TransportKind::Spdy => Transport::Spdy {
            io: Box::new(upgraded),
        },
    };
    sessions::run(&server, session.pending, transport, session.ports).await;
    drop(permit);
}

fn unsupported_websocket(offered: &[&str], supported: &[&str]) -> Response<Body> {
    plain(
        StatusCode::BAD_REQUEST,
        &format!(
            "unsupported WebSocket subprotocols {offered:?}: set Sec-WebSocket-Protocol to one of {supported:?}"
        ),
    )
}

fn switching_protocols(upgrade: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static(upgrade));
    response
}

fn plain(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_split_into_route_and_token() {
        assert_eq!(split_path("/exec/abc"), Some(("exec", "abc")));
        assert_eq!(split_path("/portforward/abc"), Some(("portforward", "abc")));
        assert_eq!(split_path("/exec/"), None);
        assert_eq!(split_path("/shell/abc"), None);
        assert_eq!(split_path("/exec/abc/def"), None);
    }

    #[test]
    fn header_lists_are_split() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("v4.channel.k8s.io, v3.channel.k8s.io"),
        );
        headers.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("channel.k8s.io"),
        );

        assert_eq!(
            header_values(&headers, STREAM_PROTOCOL_VERSION),
            vec!["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]
        );
    }

    #[test]
    fn plain_request_needs_an_upgrade() {
        assert!(requested_upgrade(&Method::GET, &HeaderMap::new()).is_err());
    }
}
