//! PortForward through the streaming server: pages fetched from busybox httpd servers that
//! listen only on the pod's loopback interface, over WebSocket and SPDY.

mod stream_client;

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::cri::PortForwardRequest;
use berth_tests::pods::PodDaemon;
use stream_client::{StreamUrl, WsClient, WsMessage};

const V4: &str = "v4.channel.k8s.io";

/// Starts a pod serving `/www/index.html` ("page on PORT") on 127.0.0.1:8080 and :8081, and
/// returns its sandbox ID once both respond.
async fn start_web_pod(pods: &PodDaemon) -> String {
    let script = "for port in 8080 8081; do mkdir -p /www$port; echo page on $port > /www$port/index.html; \
                  httpd -p 127.0.0.1:$port -h /www$port; done; exec sleep 600";
    let (sandbox, container) = pods.run_busybox("web", &["sh", "-c", script]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    for port in [8080, 8081] {
        let url = format!("http://127.0.0.1:{port}/index.html");
        loop {
            let output = pods
                .exec(&container, &["wget", "-q", "-O", "-", &url])
                .await;
            if output.exit_code == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "httpd on {port} never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    sandbox
}

async fn port_forward_url(pods: &PodDaemon, sandbox: &str) -> StreamUrl {
    let response = pods
        .runtime()
        .await
        .port_forward(PortForwardRequest {
            pod_sandbox_id: sandbox.to_string(),
            port: vec![],
        })
        .await
        .unwrap_or_else(|status| {
            panic!(
                "PortForward failed: {status:?}\nlog:\n{}",
                pods.daemon.log()
            )
        })
        .into_inner();
    StreamUrl::parse(&response.url)
}

/// Sends an HTTP/1.0 request for `/index.html` on each data channel and returns what each
/// data and error channel received, without the port prefixes, once the server closed.
async fn fetch_over_websocket(url: &StreamUrl, ports: &[u16]) -> HashMap<u8, Vec<u8>> {
    let query: Vec<String> = ports.iter().map(|port| format!("port={port}")).collect();
    let mut client = WsClient::connect(&url.with_query(&query.join("&")), &[V4])
        .await
        .expect("port-forward upgrade");
    let mut received: HashMap<u8, Vec<u8>> = HashMap::new();
    let mut prefixes: HashMap<u8, Vec<u8>> = HashMap::new();
    // Each channel starts with its port, little-endian.
    while prefixes.len() < ports.len() * 2 {
        match client.recv().await {
            Some(WsMessage::Data(channel, data)) => {
                prefixes.insert(channel, data);
            }
            other => panic!("expected port prefixes, got {other:?}"),
        }
    }
    for (index, port) in ports.iter().enumerate() {
        let index = index as u8;
        assert_eq!(
            prefixes[&(index * 2)],
            port.to_le_bytes(),
            "data channel prefix"
        );
        assert_eq!(
            prefixes[&(index * 2 + 1)],
            port.to_le_bytes(),
            "error channel prefix"
        );
        client
            .send(
                index * 2,
                b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n",
            )
            .await;
    }
    while let Some(message) = client.recv().await {
        match message {
            WsMessage::Data(channel, data) => received.entry(channel).or_default().extend(data),
            WsMessage::Close(_) => break,
        }
    }
    received
}

fn text(received: &HashMap<u8, Vec<u8>>, channel: u8) -> String {
    String::from_utf8_lossy(
        received
            .get(&channel)
            .map(Vec::as_slice)
            .unwrap_or_default(),
    )
    .to_string()
}

#[tokio::test]
async fn websocket_forwards_several_ports_and_connections() {
    let pods = PodDaemon::start("").await;
    let sandbox = start_web_pod(&pods).await;

    let url = port_forward_url(&pods, &sandbox).await;
    let received = fetch_over_websocket(&url, &[8080, 8081]).await;
    assert!(
        text(&received, 0).contains("page on 8080"),
        "port 8080: {:?}",
        text(&received, 0)
    );
    assert!(
        text(&received, 2).contains("page on 8081"),
        "port 8081: {:?}",
        text(&received, 2)
    );
    assert_eq!(text(&received, 1), "", "no error on 8080");
    assert_eq!(text(&received, 3), "", "no error on 8081");

    // Connections in parallel, each on its own URL.
    let (first, second) = tokio::join!(
        port_forward_url(&pods, &sandbox),
        port_forward_url(&pods, &sandbox)
    );
    let (first, second) = tokio::join!(
        fetch_over_websocket(&first, &[8080]),
        fetch_over_websocket(&second, &[8081])
    );
    assert!(text(&first, 0).contains("page on 8080"));
    assert!(text(&second, 0).contains("page on 8081"));
}

#[tokio::test]
async fn websocket_reports_a_closed_port() {
    let pods = PodDaemon::start("").await;
    let sandbox = start_web_pod(&pods).await;

    let url = port_forward_url(&pods, &sandbox).await;
    let received = fetch_over_websocket(&url, &[9]).await;

    let error = text(&received, 1);
    assert!(
        error.contains("failed to connect to localhost:9"),
        "error channel: {error:?}"
    );
    assert!(error.contains("refused"), "error channel: {error:?}");

    let url = port_forward_url(&pods, &sandbox).await;
    let response = WsClient::connect(&url, &[V4])
        .await
        .err()
        .expect("a port-forward without ports must fail");
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response.body.contains("port"), "{response:?}");
}

#[tokio::test]
async fn spdy_forwards_pairs_on_one_connection() {
    use stream_client::spdy::{SpdyClient, SpdyFrame};

    let pods = PodDaemon::start("").await;
    let sandbox = start_web_pod(&pods).await;
    let url = port_forward_url(&pods, &sandbox).await;
    let mut client = SpdyClient::connect(&url, &["portforward.k8s.io"])
        .await
        .unwrap_or_else(|response| panic!("SPDY upgrade failed: {response:?}"));
    assert_eq!(client.protocol, "portforward.k8s.io");

    // Pairs as kubectl opens them: error stream, then data stream, with one requestID.
    for (request, port) in [("0", "8080"), ("1", "8081"), ("2", "9")] {
        let error = client
            .open(&[
                ("streamType", "error"),
                ("port", port),
                ("requestID", request),
            ])
            .await;
        let data = client
            .open(&[
                ("streamType", "data"),
                ("port", port),
                ("requestID", request),
            ])
            .await;
        client.send(error, b"", true).await;
        client
            .send(
                data,
                b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n",
                false,
            )
            .await;

        let mut page = Vec::new();
        let mut error_text = Vec::new();
        let mut data_done = false;
        let mut error_done = false;
        while !(data_done && error_done) {
            match client
                .next_frame()
                .await
                .expect("the connection stays open")
            {
                SpdyFrame::Data {
                    stream_id,
                    fin,
                    data: bytes,
                } if stream_id == data => {
                    page.extend(bytes);
                    data_done |= fin;
                }
                SpdyFrame::Data {
                    stream_id,
                    fin,
                    data: bytes,
                } if stream_id == error => {
                    error_text.extend(bytes);
                    error_done |= fin;
                }
                SpdyFrame::SynReply { .. } => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
        let page = String::from_utf8_lossy(&page);
        let error_text = String::from_utf8_lossy(&error_text);
        if port == "9" {
            assert!(
                error_text.contains("failed to connect to localhost:9"),
                "{error_text}"
            );
            assert!(page.is_empty(), "{page}");
        } else {
            assert!(
                page.contains(&format!("page on {port}")),
                "port {port}: {page}"
            );
            assert!(error_text.is_empty(), "port {port}: {error_text}");
        }
    }
}
