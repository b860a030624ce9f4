//! The Prometheus endpoint of `berth serve` and `berth gc`: `GET /metrics` returns the image
//! collector's counters in the text exposition format, version 0.0.4.
//!
//! The HTTP/1.1 responder is hand-written because it serves one fixed path. It reads one request
//! head per connection, sends one response and closes the connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_cri::gc::{GcMetrics, GcReport, Trigger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Maximum size in bytes of a request head. A longer one gets 431.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Time a client has to send its request head and read the response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The collector's counters, plus the images each trigger's last fired run kept, by reason.
#[derive(Debug, Default)]
pub struct Metrics {
    gc: GcMetrics,
    /// Images kept by the last fired, non-dry run of each trigger, keyed by trigger and
    /// [`berth_cri::gc::KeepReason::category`].
    kept: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    /// Adds a finished run. Like [`GcMetrics::record`], it skips runs whose trigger did not
    /// fire and dry runs.
    pub fn record(&self, report: &GcReport) {
        self.gc.record(report);
        if !report.plan.fired || report.dry_run {
            return;
        }
        let trigger = report.plan.trigger.as_str();
        let mut kept = self.kept.lock().expect("kept-images metric poisoned");
        kept.retain(|(kept_trigger, _), _| *kept_trigger != trigger);
        for image in &report.plan.keep {
            *kept.entry((trigger, image.why.category())).or_default() += 1;
        }
    }

    /// Renders all metrics in the Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut text = self.gc.render();
        text.push_str(
            "# HELP berth_gc_images_kept Images that the last run of the trigger kept, by reason.\n\
             # TYPE berth_gc_images_kept gauge\n",
        );
        let kept = self.kept.lock().expect("kept-images metric poisoned");
        for trigger in Trigger::ALL {
            for ((kept_trigger, reason), count) in kept.iter() {
                if *kept_trigger == trigger.as_str() {
                    text.push_str(&format!(
                        "berth_gc_images_kept{{trigger=\"{kept_trigger}\",reason=\"{reason}\"}} {count}\n"
                    ));
                }
            }
        }
        text
    }
}

/// Parses a `[metrics] address` or `--metrics-address` value: `None` for "" (off), else an
/// IP address and port such as 127.0.0.1:9108.
pub fn parse_address(address: &str) -> Result<Option<SocketAddr>, String> {
    if address.is_empty() {
        return Ok(None);
    }
    address.parse().map(Some).map_err(|_| {
        format!(
            "invalid metrics address {address:?}: expected an IP address and port such as \
             127.0.0.1:9108, or \"\" to turn the endpoint off"
        )
    })
}

/// Binds `address` and serves `GET /metrics` from `metrics` until the async runtime shuts
/// down. Returns the bound address, whose port differs from `address` when that port is 0.
pub async fn start(address: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving Prometheus metrics on /metrics");
    tokio::spawn(accept_loop(listener, metrics));
    Ok(bound)
}

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(REQUEST_TIMEOUT, respond(stream, &metrics)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => {
                            tracing::debug!(peer = %peer, error = %err, "metrics request failed");
                        }
                        Err(_) => tracing::debug!(peer = %peer, "metrics request timed out"),
                    }
                });
            }
            Err(err) => {
                // Running out of file descriptors fails every accept, so wait before the next.
                tracing::warn!(error = %err, "cannot accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request head from `stream` and writes the response.
async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|window| window == b"\r\n\r\n") {
            break true;
        }
        if head.len() > MAX_REQUEST_HEAD {
            break false;
        }
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            // The client closed the connection before the end of its request head.
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
    };

    let response = if complete {
        route(&head, metrics)
    } else {
        response("431 Request Header Fields Too Large", "", "")
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Builds the response to a request head: the metrics for `GET` or `HEAD /metrics`, 405 for
/// another method on `/metrics`, 404 for any other path and 400 for a malformed request line.
fn route(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let request_line = head
        .split(|byte| *byte == b'\r')
        .next()
        .and_then(|line| std::str::from_utf8(line).ok())
        .unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return response("400 Bad Request", "", "");
    };
    if !version.starts_with("HTTP/1.") {
        return response("400 Bad Request", "", "");
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return response("404 Not Found", "", "");
    }
    match method {
        "GET" => response("200 OK", CONTENT_TYPE, &metrics.render()),
        "HEAD" => {
            let mut head = response("200 OK", CONTENT_TYPE, &metrics.render());
            let end = head
                .windows(4)
                .position(|window| window == b"\r\n\r\n")
                .map_or(head.len(), |position| position + 4);
            head.truncate(end);
            head
        }
        _ => response("405 Method Not Allowed", "", ""),
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        text.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if status.starts_with("405") {
        text.push_str("Allow: GET, HEAD\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_line(response: &[u8]) -> String {
        let text = String::from_utf8_lossy(response);
        text.lines().next().unwrap_or("").to_string()
    }

    #[test]
    fn metrics_path_returns_counters() {
        let metrics = Metrics::default();

        let response = route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &metrics);

        let text = String::from_utf8(response).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(CONTENT_TYPE), "{text}");
        assert!(
            text.contains("berth_gc_runs_total{trigger=\"schedule\"} 0"),
            "{text}"
        );
        assert!(text.contains("# TYPE berth_gc_images_kept gauge"), "{text}");
    }

    #[test]
    fn head_has_no_body() {
        let response = route(b"HEAD /metrics HTTP/1.1\r\n\r\n", &Metrics::default());

        let text = String::from_utf8(response).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn other_requests_get_error_statuses() {
        let metrics = Metrics::default();
        let cases: [(&[u8], &str); 5] = [
            (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (
                b"POST /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics SPDY/3\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ];

        for (request, expected) in cases {
            assert_eq!(
                status_line(&route(request, &metrics)),
                expected,
                "request {:?}",
                String::from_utf8_lossy(request)
            );
        }
    }

    #[test]
    fn query_string_is_ignored() {
        let response = route(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", &Metrics::default());

        assert_eq!(status_line(&response), "HTTP/1.1 200 OK");
    }

    #[test]
    fn address_parses_or_turns_off() {
        assert_eq!(parse_address("").unwrap(), None);
        assert_eq!(
            parse_address("127.0.0.1:9108").unwrap(),
            Some("127.0.0.1:9108".parse().unwrap())
        );
        let err = parse_address("localhost:9108").unwrap_err();
        assert!(err.contains("localhost:9108"), "{err}");
    }
}
