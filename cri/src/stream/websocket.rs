//! The server side of WebSocket (RFC 6455) with the Kubernetes channel subprotocols.
//!
//! In `v4.channel.k8s.io` every binary message starts with a channel byte: for exec and attach
//! 0 is stdin, 1 stdout, 2 stderr, 3 the error channel (the final status JSON) and 4 resize;
//! for port-forward, channels `2i` and `2i+1` are the data and error channels of the `i`-th
//! port. `v5.channel.k8s.io` adds channel 255 from the client: a message `[255, c]` closes
//! channel `c`, which is how a client half-closes stdin.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::session::{Activity, EndReason, EndSignal, OUTPUT_QUEUE, Output, spawn_idle_watchdog};

/// The GUID that RFC 6455 appends to `Sec-WebSocket-Key` for `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message accepted from a client. Clients send stdin and port-forward data in chunks
/// of 32 KiB or less, so this only stops a client from making the daemon buffer without end.
const MAX_MESSAGE_BYTES: usize = 4 << 20;

pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";
pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
/// The v5 channel on which a client closes one of its channels.
const CLOSE_CHANNEL: u8 = 255;

const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

/// Close codes of RFC 6455 section 7.4.1.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_TOO_BIG: u16 = 1009;

/// Returns the `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(ACCEPT_GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Picks the first protocol in the client's `Sec-WebSocket-Protocol` list that the server
/// supports, as the Kubernetes servers do.
pub fn negotiate<'a>(offered: &[&str], supported: &[&'a str]) -> Option<&'a str> {
    offered
        .iter()
        .find_map(|protocol| supported.iter().find(|known| *known == protocol).copied())
}

/// A message from the client, after control frames were handled.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    Data(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close,
}

/// A protocol violation, which the server reports with a close frame carrying `code`.
#[derive(Debug)]
struct ProtocolError {
    code: u16,
    reason: String,
}

impl ProtocolError {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Reads WebSocket frames and joins fragmented messages.
struct MessageReader<R> {
    reader: R,
    fragments: Option<Vec<u8>>,
}

enum ReadError {
    /// The connection closed or failed, so no close frame can be sent.
    Io,
    Protocol(ProtocolError),
}

impl From<std::io::Error> for ReadError {
    fn from(_: std::io::Error) -> Self {
        ReadError::Io
    }
}

impl From<ProtocolError> for ReadError {
    fn from(err: ProtocolError) -> Self {
        ReadError::Protocol(err)
    }
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            fragments: None,
        }
    }

    async fn next(&mut self) -> Result<Message, ReadError> {
        loop {
            let (fin, opcode, payload) = self.read_frame().await?;
            match opcode {
                OPCODE_CLOSE => return Ok(Message::Close),
                OPCODE_PING => return Ok(Message::Ping(payload)),
                OPCODE_PONG => return Ok(Message::Pong),
                OPCODE_TEXT | OPCODE_BINARY if self.fragments.is_some() => {
                    return Err(ProtocolError::new(
                        CLOSE_PROTOCOL_ERROR,
                        "a new message started before the fragmented one ended",
                    )
                    .into());
                }
                OPCODE_TEXT | OPCODE_BINARY if fin => return Ok(Message::Data(payload)),
                OPCODE_TEXT | OPCODE_BINARY => self.fragments = Some(payload),
                OPCODE_CONTINUATION => {
                    let Some(fragments) = self.fragments.as_mut() else {
                        return Err(ProtocolError::new(
                            CLOSE_PROTOCOL_ERROR,
                            "continuation frame without a message to continue",
                        )
                        .into());
                    };
                    if fragments.len() + payload.len() > MAX_MESSAGE_BYTES {
                        return Err(ProtocolError::new(
                            CLOSE_TOO_BIG,
                            format!("message larger than {MAX_MESSAGE_BYTES} bytes"),
                        )
                        .into());
                    }
                    fragments.extend_from_slice(&payload);
                    if fin {
                        return Ok(Message::Data(self.fragments.take().unwrap_or_default()));
                    }
                }
                other => {
                    return Err(ProtocolError::new(
                        CLOSE_PROTOCOL_ERROR,
                        format!("unknown opcode {other:#x}"),
                    )
                    .into());
                }
            }
        }
    }

    /// Reads one frame and returns its FIN bit, opcode and unmasked payload.
    async fn read_frame(&mut self) -> Result<(bool, u8, Vec<u8>), ReadError> {
        let mut head = [0u8; 2];
        self.reader.read_exact(&mut head).await?;
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0F;

        if head[0] & 0x70 != 0 {
            return Err(ProtocolError::new(
                CLOSE_PROTOCOL_ERROR,
                "reserved bits set, but no extension was negotiated",
            )
            .into());
        }
        // RFC 6455 section 5.1: a server must close the connection on an unmasked client frame.
        if head[1] & 0x80 == 0 {
            return Err(
                ProtocolError::new(CLOSE_PROTOCOL_ERROR, "client frame is not masked").into(),
            );
        }

        let length = match head[1] & 0x7F {
            126 => u64::from(self.reader.read_u16().await?),
            127 => self.reader.read_u64().await?,
            short => u64::from(short),
        };
        let is_control = opcode & 0x8 != 0;
        if is_control && (length > 125 || !fin) {
            return Err(ProtocolError::new(
                CLOSE_PROTOCOL_ERROR,
                "control frame longer than 125 bytes or fragmented",
            )
            .into());
        }
        if length > MAX_MESSAGE_BYTES as u64 {
            return Err(ProtocolError::new(
                CLOSE_TOO_BIG,
                format!("frame of {length} bytes is larger than {MAX_MESSAGE_BYTES}"),
            )
            .into());
        }

        let mut mask = [0u8; 4];
        self.reader.read_exact(&mut mask).await?;
        let mut payload = vec![0u8; length as usize];
        self.reader.read_exact(&mut payload).await?;
        for (index, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[index % 4];
        }
        Ok((fin, opcode, payload))
    }
}

/// Encodes one unmasked, unfragmented server frame.
fn encode_frame(opcode: u8, parts: &[&[u8]]) -> Vec<u8> {
    let length: usize = parts.iter().map(|part| part.len()).sum();
    let mut frame = Vec::with_capacity(length + 10);
    frame.push(0x80 | opcode);
    if length < 126 {
        frame.push(length as u8);
    } else if length <= usize::from(u16::MAX) {
        frame.push(126);
        frame.extend_from_slice(&(length as u16).to_be_bytes());
    } else {
        frame.push(127);
        frame.extend_from_slice(&(length as u64).to_be_bytes());
    }
    for part in parts {
        frame.extend_from_slice(part);
    }
    frame
}

fn close_frame(code: u16) -> Vec<u8> {
    encode_frame(OPCODE_CLOSE, &[&code.to_be_bytes()])
}

/// Frames the reader asks the writer to send.
enum Control {
    Pong(Vec<u8>),
    /// Reply to the client's close, or close after a protocol error, then stop.
    Close(u16),
}

/// A running WebSocket connection: where the session writes, and its end signal.
pub struct Connection {
    pub output: mpsc::Sender<Output>,
    pub end: EndSignal,
}

/// Starts the reader, writer and idle watchdog of an upgraded connection. Client messages on
/// a channel in `routes` go to its queue; messages on other channels are dropped, as the
/// Kubernetes servers do.
pub fn start<IO>(
    io: IO,
    protocol: &str,
    routes: HashMap<u8, mpsc::Sender<Bytes>>,
    idle_timeout: Duration,
) -> Connection
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(io);
    let (output, output_queue) = mpsc::channel(OUTPUT_QUEUE);
    let (control, control_queue) = mpsc::channel(4);
    let end = EndSignal::new();
    let activity = Activity::new();
    let closes_channels = protocol == PROTOCOL_V5;

    tokio::spawn(read_loop(
        MessageReader::new(reader),
        routes,
        closes_channels,
        control,
        activity.clone(),
        end.clone(),
    ));
    tokio::spawn(write_loop(
        writer,
        output_queue,
        control_queue,
        activity.clone(),
        end.clone(),
    ));
    spawn_idle_watchdog(activity, idle_timeout, end.clone());
    Connection { output, end }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: MessageReader<R>,
    mut routes: HashMap<u8, mpsc::Sender<Bytes>>,
    closes_channels: bool,
    control: mpsc::Sender<Control>,
    activity: std::sync::Arc<Activity>,
    end: EndSignal,
) {
    loop {
        let message = tokio::select! {
            message = reader.next() => message,
            _ = end.ended() => return,
        };
        activity.touch();
        let message = match message {
            Ok(message) => message,
            Err(ReadError::Io) => break,
            Err(ReadError::Protocol(err)) => {
                tracing::warn!(reason = %err.reason, "closing a WebSocket stream after a protocol error");
                let _ = control.send(Control::Close(err.code)).await;
                break;
            }
        };
        match message {
            Message::Data(data) => {
                let Some((&channel, payload)) = data.split_first() else {
                    continue;
                };
                if closes_channels && channel == CLOSE_CHANNEL {
                    if let Some(closed) = payload.first() {
                        routes.remove(closed);
                    }
                    continue;
                }
                let Some(route) = routes.get(&channel) else {
                    continue;
                };
                if payload.is_empty() {
                    continue;
                }
                if route.send(Bytes::copy_from_slice(payload)).await.is_err() {
                    routes.remove(&channel);
                }
            }
            Message::Ping(payload) => {
                let _ = control.send(Control::Pong(payload)).await;
            }
            Message::Pong => {}
            Message::Close => {
                let _ = control.send(Control::Close(CLOSE_NORMAL)).await;
                break;
            }
        }
    }
    end.end(EndReason::ClientGone);
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut output: mpsc::Receiver<Output>,
    mut control: mpsc::Receiver<Control>,
    activity: std::sync::Arc<Activity>,
    end: EndSignal,
) {
    loop {
        let frame = tokio::select! {
            biased;
            Some(message) = control.recv() => match message {
                Control::Pong(payload) => encode_frame(OPCODE_PONG, &[&payload]),
                Control::Close(code) => {
                    let _ = writer.write_all(&close_frame(code)).await;
                    let _ = writer.shutdown().await;
                    end.end(EndReason::ClientGone);
                    return;
                }
            },
            message = output.recv() => match message {
                Some(Output::Data { channel, bytes }) => {
                    encode_frame(OPCODE_BINARY, &[&[channel as u8], &bytes])
                }
                Some(Output::Close { .. }) => continue,
                Some(Output::Finish) | None => {
                    let _ = writer.write_all(&close_frame(CLOSE_NORMAL)).await;
                    let _ = writer.shutdown().await;
                    end.end(EndReason::Finished);
                    return;
                }
            },
            _ = end.closed() => return,
        };
        activity.touch();
        if writer.write_all(&frame).await.is_err() || writer.flush().await.is_err() {
            end.end(EndReason::ClientGone);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn negotiation_follows_client_order() {
        let supported = [PROTOCOL_V4, PROTOCOL_V5];

        assert_eq!(
            negotiate(&["v5.channel.k8s.io", "v4.channel.k8s.io"], &supported),
            Some(PROTOCOL_V5)
        );
        assert_eq!(negotiate(&["channel.k8s.io"], &supported), None);
    }

    fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[tokio::test]
    async fn fragmented_message_is_joined_around_ping() {
        let mut input = masked(false, OPCODE_BINARY, b"\x00hel");
        input.extend(masked(true, OPCODE_PING, b"p"));
        input.extend(masked(true, OPCODE_CONTINUATION, b"lo"));
        let mut reader = MessageReader::new(&input[..]);

        assert_eq!(reader.next().await.ok(), Some(Message::Ping(b"p".to_vec())));
        assert_eq!(
            reader.next().await.ok(),
            Some(Message::Data(b"\x00hello".to_vec()))
        );
    }

    #[tokio::test]
    async fn long_frame_length_is_read() {
        let payload = vec![7u8; 300];
        let input = masked(true, OPCODE_BINARY, &payload);
        let mut reader = MessageReader::new(&input[..]);

        assert_eq!(reader.next().await.ok(), Some(Message::Data(payload)));
    }

    #[tokio::test]
    async fn unmasked_frame_is_a_protocol_error() {
        let input = [0x82u8, 0x01, 0x00];
        let mut reader = MessageReader::new(&input[..]);

        let Err(ReadError::Protocol(err)) = reader.next().await else {
            panic!("an unmasked frame must be rejected");
        };
        assert_eq!(err.code, CLOSE_PROTOCOL_ERROR);
    }

    #[test]
    fn server_frames_use_extended_lengths() {
        assert_eq!(&encode_frame(OPCODE_BINARY, &[b"ab"])[..2], &[0x82, 2]);
        let long = vec![0u8; 70_000];
        let frame = encode_frame(OPCODE_BINARY, &[&long]);
        assert_eq!(frame[1], 127);
        assert_eq!(&frame[2..10], &70_000u64.to_be_bytes());
    }
}
