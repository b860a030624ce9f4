//! A small client for Berth's streaming server, written for the tests: HTTP/1.1 upgrade
//! requests, WebSocket client framing (RFC 6455, masked frames) with the Kubernetes channel
//! subprotocols, and a SPDY/3.1 client (see `spdy`).

#![allow(dead_code)]

pub mod spdy;

use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for one message before failing.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A URL returned by Exec, Attach or PortForward, split for the request line.
#[derive(Debug, Clone)]
pub struct StreamUrl {
    pub address: String,
    pub path_and_query: String,
}

impl StreamUrl {
    pub fn parse(url: &str) -> StreamUrl {
        let rest = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("streaming URL {url:?} is not http://"));
        let (address, path) = rest.split_at(rest.find('/').expect("URL has a path"));
        assert!(
            address.starts_with("127.0.0.1:"),
            "streaming URL {url:?} is not on loopback"
        );
        StreamUrl {
            address: address.to_string(),
            path_and_query: path.to_string(),
        }
    }

    /// Returns the URL with a query appended, such as `port=8080`.
    pub fn with_query(&self, query: &str) -> StreamUrl {
        let separator = if self.path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        StreamUrl {
            address: self.address.clone(),
            path_and_query: format!("{}{separator}{query}", self.path_and_query),
        }
    }
}

/// The status line, headers and body of a response that was not an upgrade.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends a request with `headers` and reads the response head. Returns the connection with
/// the response when the server switched protocols, else the whole response.
pub async fn request(
    url: &StreamUrl,
    method: &str,
    headers: &[(&str, &str)],
) -> Result<(TcpStream, HttpResponse), HttpResponse> {
    let mut stream = TcpStream::connect(&url.address)
        .await
        .unwrap_or_else(|err| panic!("connect to {}: {err}", url.address));
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n",
        url.path_and_query, url.address
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send request");

    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut byte))
            .await
            .expect("response head within the timeout")
            .expect("read response head");
        assert!(
            n == 1,
            "connection closed inside the response head: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let mut response = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    if status == 101 {
        return Ok((stream, response));
    }
    let length: usize = response
        .header("content-length")
        .and_then(|length| length.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = tokio::time::timeout(READ_TIMEOUT, stream.read_exact(&mut body)).await;
    response.body = String::from_utf8_lossy(&body).to_string();
    Err(response)
}

/// A WebSocket message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// A binary message: its channel byte and the rest.
    Data(u8, Vec<u8>),
    Close(Option<u16>),
}

/// A WebSocket client connection.
pub struct WsClient {
    stream: TcpStream,
    pub protocol: Option<String>,
}

impl WsClient {
    /// Opens `url` as a WebSocket offering `protocols`, checking the handshake as RFC 6455
    /// section 4.1 requires of a client.
    pub async fn connect(url: &StreamUrl, protocols: &[&str]) -> Result<WsClient, HttpResponse> {
        let key = base64::engine::general_purpose::STANDARD.encode(rand_bytes::<16>());
        let offered = protocols.join(", ");
        let mut headers = vec![
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", key.as_str()),
        ];
        if !protocols.is_empty() {
            headers.push(("Sec-WebSocket-Protocol", offered.as_str()));
        }
        let (stream, response) = request(url, "GET", &headers).await?;
        assert_eq!(
            response
                .header("upgrade")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("websocket")
        );
        assert!(
            response.header("sec-websocket-accept").is_some(),
            "101 response without Sec-WebSocket-Accept: {response:?}"
        );
        Ok(WsClient {
            stream,
            protocol: response
                .header("sec-websocket-protocol")
                .map(str::to_string),
        })
    }

    /// Sends a binary message `[channel] + data` in one masked frame.
    pub async fn send(&mut self, channel: u8, data: &[u8]) {
        let mut payload = vec![channel];
        payload.extend_from_slice(data);
        self.send_frame(0x2, &payload).await;
    }

    /// Sends a close frame with status 1000.
    pub async fn close(&mut self) {
        self.send_frame(0x8, &1000u16.to_be_bytes()).await;
    }

    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = rand_bytes::<4>();
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            length if length < 126 => frame.push(0x80 | length as u8),
            length if length <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(length as u16).to_be_bytes());
            }
            length => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, byte)| byte ^ mask[i % 4]),
        );
        self.stream.write_all(&frame).await.expect("send frame");
    }

    /// Returns the next data or close message, replying to pings on the way, or `None` when
    /// the connection ends without a close frame.
    pub async fn recv(&mut self) -> Option<WsMessage> {
        loop {
            let (opcode, payload) = tokio::time::timeout(READ_TIMEOUT, self.read_frame())
                .await
                .expect("a WebSocket message within the timeout")?;
            match opcode {
                0x1 | 0x2 => {
                    let (channel, data) =
                        payload.split_first().expect("message has a channel byte");
                    return Some(WsMessage::Data(*channel, data.to_vec()));
                }
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Some(WsMessage::Close(code));
                }
                0x9 => self.send_frame(0xA, &payload).await,
                _ => {}
            }
        }
    }

    async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).await.ok()?;
        assert_eq!(head[0] & 0x80, 0x80, "the server sent a fragmented frame");
        assert_eq!(head[1] & 0x80, 0, "the server masked a frame");
        let length = match head[1] & 0x7F {
            126 => u64::from(self.stream.read_u16().await.ok()?),
            127 => self.stream.read_u64().await.ok()?,
            length => u64::from(length),
        };
        let mut payload = vec![0u8; length as usize];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some((head[0] & 0x0F, payload))
    }

    /// Drops the TCP connection without a close frame, as a crashed client would.
    pub fn abandon(self) {
        drop(self.stream);
    }
}

/// What a remote command session sent until the server closed it.
#[derive(Debug, Default)]
pub struct RemoteOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The status JSON of the error channel.
    pub status: Option<serde_json::Value>,
    pub closed_with: Option<u16>,
}

impl RemoteOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).to_string()
    }

    /// Returns the status's `status` field: `Success` or `Failure`.
    pub fn status_kind(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|status| status["status"].as_str())
            .unwrap_or("<no status>")
    }

    /// Returns the exit code client-go reads from a `NonZeroExitCode` status.
    pub fn exit_code(&self) -> Option<i32> {
        let status = self.status.as_ref()?;
        if status["status"] == "Success" {
            return Some(0);
        }
        if status["reason"] != "NonZeroExitCode" {
            return None;
        }
        status["details"]["causes"]
            .as_array()?
            .iter()
            .find(|cause| cause["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }
}

/// Reads a remote command session until the server closes it: channel 1 is stdout, 2 stderr,
/// 3 the status.
pub async fn read_remote_output(client: &mut WsClient) -> RemoteOutput {
    let mut output = RemoteOutput::default();
    while let Some(message) = client.recv().await {
        match message {
            WsMessage::Data(1, data) => output.stdout.extend(data),
            WsMessage::Data(2, data) => output.stderr.extend(data),
            WsMessage::Data(3, data) => {
                output.status = Some(serde_json::from_slice(&data).unwrap_or_else(|err| {
                    panic!(
                        "status {:?} is not JSON: {err}",
                        String::from_utf8_lossy(&data)
                    )
                }));
            }
            WsMessage::Data(..) => {}
            WsMessage::Close(code) => {
                output.closed_with = code;
                break;
            }
        }
    }
    output
}

/// Reads stdout messages until their text contains `needle`, and returns all stdout read.
pub async fn read_stdout_until(client: &mut WsClient, needle: &str) -> String {
    let mut stdout = Vec::new();
    loop {
        match client.recv().await {
            Some(WsMessage::Data(1, data)) => {
                stdout.extend(data);
                if String::from_utf8_lossy(&stdout).contains(needle) {
                    return String::from_utf8_lossy(&stdout).to_string();
                }
            }
            Some(WsMessage::Data(..)) => {}
            other => panic!(
                "session ended ({other:?}) before stdout contained {needle:?}; stdout: {:?}",
                String::from_utf8_lossy(&stdout)
            ),
        }
    }
}

pub fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let mut state = nanos as u64 ^ u64::from(std::process::id()).rotate_left(32);
    for byte in &mut bytes {
        // xorshift64: test keys need to vary, not to be unpredictable.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    bytes
}
