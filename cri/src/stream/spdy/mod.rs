//! SPDY/3.1, as kubectl, crictl and the kubelet speak it for exec, attach and port-forward.
//!
//! The client opens every stream (odd IDs) with a SYN_STREAM whose headers name what the stream
//! carries, such as `streamType: stdin`, or `streamType: data` with `port: 8080`. The server
//! accepts each with a SYN_REPLY before it sends data on it. A data frame with FLAG_FIN
//! half-closes a stream. The Go implementation the clients use (moby/spdystream) does not
//! enforce flow control, so neither does this server: WINDOW_UPDATE and SETTINGS are read and
//! ignored, and none are sent.

mod frame;
mod headers;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub use headers::Headers;
use headers::{HeaderCompressor, HeaderDecompressor};

use super::session::{
    Activity, CHUNK_BYTES, EndReason, EndSignal, INPUT_QUEUE, OUTPUT_QUEUE, Output,
    spawn_idle_watchdog,
};

/// The `Upgrade` header value of a SPDY streaming request.
pub const UPGRADE: &str = "SPDY/3.1";

/// A stream the client opened, already accepted with a SYN_REPLY.
#[derive(Debug)]
pub struct NewStream {
    pub id: u32,
    pub headers: Headers,
    /// Data the client sends on the stream; closed when the client half-closes or resets it.
    pub inbound: mpsc::Receiver<Bytes>,
}

/// Control frames that the reader or the session queue for the writer.
#[derive(Debug)]
enum Control {
    Reply(u32),
    Ping(u32),
    Reset { stream_id: u32, status: u32 },
}

/// A running SPDY connection.
pub struct Connection {
    pub output: mpsc::Sender<Output>,
    /// Streams in the order the client opened them.
    pub streams: mpsc::Receiver<NewStream>,
    pub end: EndSignal,
    control: mpsc::Sender<Control>,
}

impl Connection {
    /// Resets a stream the session has no use for, with status REFUSED_STREAM.
    pub async fn reject(&self, stream_id: u32) {
        let _ = self
            .control
            .send(Control::Reset {
                stream_id,
                status: frame::RST_REFUSED_STREAM,
            })
            .await;
    }

    /// Rejects every stream the client opens from now on, once the session has all it needs.
    pub fn reject_later_streams(&mut self) {
        let (_, closed) = mpsc::channel(1);
        let mut streams = std::mem::replace(&mut self.streams, closed);
        let control = self.control.clone();
        tokio::spawn(async move {
            while let Some(stream) = streams.recv().await {
                let reset = Control::Reset {
                    stream_id: stream.id,
                    status: frame::RST_REFUSED_STREAM,
                };
                if control.send(reset).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Cancels a stream, for example one whose pair never completed.
    pub async fn cancel(&self, stream_id: u32) {
        let _ = self
            .control
            .send(Control::Reset {
                stream_id,
                status: frame::RST_CANCEL,
            })
            .await;
    }
}

/// Starts the reader, writer and idle watchdog of an upgraded connection.
pub fn start<IO>(io: IO, idle_timeout: Duration) -> Connection
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(io);
    let (output, output_queue) = mpsc::channel(OUTPUT_QUEUE);
    let (control, control_queue) = mpsc::channel(16);
    let (new_streams, streams) = mpsc::channel(16);
    let end = EndSignal::new();
    let activity = Activity::new();
    let last_stream_id = Arc::new(AtomicU32::new(0));

    let read_state = ReadState {
        decompressor: HeaderDecompressor::new(),
        routes: HashMap::new(),
        last_stream_id: last_stream_id.clone(),
        control: control.clone(),
        new_streams,
    };
    tokio::spawn(read_loop(reader, read_state, activity.clone(), end.clone()));
    tokio::spawn(write_loop(
        writer,
        output_queue,
        control_queue,
        last_stream_id,
        activity.clone(),
        end.clone(),
    ));
    spawn_idle_watchdog(activity, idle_timeout, end.clone());
    Connection {
        output,
        streams,
        end,
        control,
    }
}

struct ReadState {
    decompressor: HeaderDecompressor,
    /// Inbound queues of the streams the client may still send on.
    routes: HashMap<u32, mpsc::Sender<Bytes>>,
    last_stream_id: Arc<AtomicU32>,
    control: mpsc::Sender<Control>,
    new_streams: mpsc::Sender<NewStream>,
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    mut state: ReadState,
    activity: Arc<Activity>,
    end: EndSignal,
) {
    loop {
        let frame = tokio::select! {
            frame = frame::read_frame(&mut reader) => frame,
            _ = end.ended() => return,
        };
        activity.touch();
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(error = %err, "closing a SPDY stream connection after a protocol error");
                break;
            }
            Err(_) => break,
        };
        match frame {
            frame::Frame::SynStream {
                stream_id,
                flags,
                header_block,
            } => {
                // The decompressor's state spans the connection: a bad block ends it.
                let headers = match state.decompressor.decompress(&header_block) {
                    Ok(headers) => headers,
                    Err(message) => {
                        tracing::warn!(stream = stream_id, error = %message, "closing a SPDY stream connection");
                        break;
                    }
                };
                state.open_stream(stream_id, flags, headers).await;
            }
            frame::Frame::Data {
                stream_id,
                flags,
                data,
            } => state.deliver(stream_id, flags, data).await,
            frame::Frame::RstStream { stream_id, .. } => {
                state.routes.remove(&stream_id);
            }
            // Client pings have odd IDs. An even ID would be the reply to a server ping, and
            // this server sends none.
            frame::Frame::Ping { id } if id % 2 == 1 => {
                let _ = state.control.send(Control::Ping(id)).await;
            }
            frame::Frame::GoAway => break,
            frame::Frame::Ping { .. } | frame::Frame::Ignored { .. } => {}
        }
    }
    end.end(EndReason::ClientGone);
}

impl ReadState {
    async fn open_stream(&mut self, stream_id: u32, flags: u8, headers: Headers) {
        let last = self.last_stream_id.load(Ordering::Relaxed);
        // SPDY/3 section 2.3.2: client stream IDs are odd and increase.
        if stream_id.is_multiple_of(2) || stream_id <= last {
            let _ = self
                .control
                .send(Control::Reset {
                    stream_id,
                    status: frame::RST_PROTOCOL_ERROR,
                })
                .await;
            return;
        }
        self.last_stream_id.store(stream_id, Ordering::Relaxed);
        let _ = self.control.send(Control::Reply(stream_id)).await;

        let (sender, inbound) = mpsc::channel(INPUT_QUEUE);
        if flags & frame::FLAG_FIN == 0 {
            self.routes.insert(stream_id, sender);
        }
        let stream = NewStream {
            id: stream_id,
            headers,
            inbound,
        };
        if self.new_streams.send(stream).await.is_err() {
            self.routes.remove(&stream_id);
        }
    }

    async fn deliver(&mut self, stream_id: u32, flags: u8, data: Vec<u8>) {
        if let Some(route) = self.routes.get(&stream_id)
            && !data.is_empty()
            && route.send(Bytes::from(data)).await.is_err()
        {
            self.routes.remove(&stream_id);
        }
        if flags & frame::FLAG_FIN != 0 {
            self.routes.remove(&stream_id);
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut output: mpsc::Receiver<Output>,
    mut control: mpsc::Receiver<Control>,
    last_stream_id: Arc<AtomicU32>,
    activity: Arc<Activity>,
    end: EndSignal,
) {
    let mut compressor = HeaderCompressor::new();
    loop {
        // Control first: a SYN_REPLY queued when a stream opened must precede the session's
        // data on that stream, which the Go client drops otherwise.
        let bytes = tokio::select! {
            biased;
            Some(message) = control.recv() => match message {
                Control::Reply(stream_id) => {
                    frame::syn_reply(stream_id, &compressor.compress(&Headers::default()))
                }
                Control::Ping(id) => frame::ping(id),
                Control::Reset { stream_id, status } => frame::rst_stream(stream_id, status),
            },
            message = output.recv() => match message {
                Some(Output::Data { channel, bytes }) => data_frames(channel, &bytes),
                Some(Output::Close { channel }) => frame::data(channel, frame::FLAG_FIN, &[]),
                Some(Output::Finish) | None => {
                    let last = last_stream_id.load(Ordering::Relaxed);
                    let _ = writer.write_all(&frame::goaway(last, frame::GOAWAY_OK)).await;
                    let _ = writer.shutdown().await;
                    end.end(EndReason::Finished);
                    return;
                }
            },
            _ = end.closed() => return,
        };
        activity.touch();
        if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
            end.end(EndReason::ClientGone);
            return;
        }
    }
}

/// Encodes bytes as data frames of at most [`CHUNK_BYTES`] each.
fn data_frames(stream_id: u32, bytes: &[u8]) -> Vec<u8> {
    let mut frames = Vec::with_capacity(bytes.len() + 16);
    for chunk in bytes.chunks(CHUNK_BYTES) {
        frames.extend_from_slice(&frame::data(stream_id, 0, chunk));
    }
    frames
}
