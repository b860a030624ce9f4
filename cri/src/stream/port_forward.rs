//! PortForward: connect to a port on the pod's loopback interface, inside the pod's network
//! namespace, and copy bytes between that connection and the client's data channel.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream as StdTcpStream};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::session::{CHUNK_BYTES, EndSignal, ForwardPair};

/// How long connecting to the port in the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pod a port-forward session reaches.
#[derive(Debug, Clone)]
pub struct ForwardTarget {
    pub sandbox_id: String,
    /// The pinned network namespace of the pod, or `None` for a pod on the host network.
    pub netns: Option<PathBuf>,
}

/// Forwards one connection until the pod side closes it, the client goes away, or the
/// session ends. A failure to connect is reported on the pair's error channel.
pub async fn forward(target: &ForwardTarget, pair: ForwardPair, end: EndSignal) {
    let ForwardPair {
        port,
        mut inbound,
        data,
        error,
    } = pair;
    let connection = match dial(target, port).await {
        Ok(connection) => connection,
        Err(message) => {
            tracing::info!(pod = %target.sandbox_id, port, error = %message, "port-forward connection failed");
            let _ = error.write(Bytes::from(message)).await;
            error.close().await;
            data.close().await;
            return;
        }
    };
    tracing::debug!(pod = %target.sandbox_id, port, "port-forward connection open");
    let (mut from_pod, mut to_pod) = connection.into_split();

    let upload = async {
        while let Some(bytes) = inbound.recv().await {
            if to_pod.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // The client half-closed its data channel: pass the half-close on to the pod.
        let _ = to_pod.shutdown().await;
        std::future::pending::<()>().await;
    };
    let download = async {
        let mut buffer = vec![0u8; CHUNK_BYTES];
        loop {
            match from_pod.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if data
                        .write(Bytes::copy_from_slice(&buffer[..n]))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    // The connection is done when the pod side closes, as in containerd and CRI-O.
    tokio::select! {
        () = upload => {}
        () = download => {}
        _ = end.ended() => {}
    }
    data.close().await;
    error.close().await;
    tracing::debug!(pod = %target.sandbox_id, port, "port-forward connection closed");
}

/// Connects to `port` on the pod's loopback address, IPv4 first, then IPv6.
async fn dial(target: &ForwardTarget, port: u16) -> Result<TcpStream, String> {
    let netns = target.netns.clone();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    // setns changes only the calling thread's namespace, so a thread of its own, which ends
    // after connecting, keeps that change away from the async runtime's threads. The socket
    // stays in the namespace it was created in.
    std::thread::spawn(move || {
        let _ = sender.send(connect_in_namespace(netns, port));
    });
    let stream = receiver
        .await
        .map_err(|_| "the connecting thread stopped".to_string())??;
    stream
        .set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(stream))
        .map_err(|err| format!("cannot use the connection to port {port}: {err}"))
}

fn connect_in_namespace(netns: Option<PathBuf>, port: u16) -> Result<StdTcpStream, String> {
    if let Some(path) = &netns {
        let namespace = File::open(path)
            .map_err(|err| format!("cannot open network namespace {}: {err}", path.display()))?;
        nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|err| format!("cannot enter network namespace {}: {err}", path.display()))?;
    }
    let ipv4 = connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let ipv4_error = match ipv4 {
        Ok(stream) => return Ok(stream),
        Err(err) => err,
    };
    let ipv6_error = match connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
        Ok(stream) => return Ok(stream),
        Err(err) => err,
    };
    let place = match &netns {
        Some(path) => format!("in network namespace {}", path.display()),
        None => "on the host network".to_string(),
    };
    Err(format!(
        "failed to connect to localhost:{port} {place}: IPv4: {ipv4_error}; IPv6: {ipv6_error}"
    ))
}

fn connect(address: SocketAddr) -> io::Result<StdTcpStream> {
    StdTcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
}

/// Parses the `port` values of a WebSocket port-forward URL (`?port=80&port=8080`).
pub fn ports_from_query(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.split('&') {
        let Some(value) = pair.strip_prefix("port=") else {
            continue;
        };
        let port: u16 = value
            .parse()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("invalid port {value:?}: expected a number from 1 to 65535"))?;
        ports.push(port);
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_ports_are_parsed_in_order() {
        assert_eq!(
            ports_from_query("port=8080&other=1&port=80"),
            Ok(vec![8080, 80])
        );
        assert_eq!(ports_from_query(""), Ok(vec![]));
    }

    #[test]
    fn bad_query_port_is_rejected() {
        assert!(ports_from_query("port=http").is_err());
        assert!(ports_from_query("port=0").is_err());
        assert!(ports_from_query("port=70000").is_err());
    }

    #[tokio::test]
    async fn host_network_connection_is_forwarded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = ForwardTarget {
            sandbox_id: "pod".to_string(),
            netns: None,
        };

        let (connection, accepted) = tokio::join!(dial(&target, port), listener.accept());

        assert!(connection.is_ok());
        assert!(accepted.is_ok());
    }
}
