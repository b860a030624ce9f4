//! The protocol-neutral side of a streaming session: what exec, attach and port-forward read
//! from and write to, whether the client speaks WebSocket or SPDY.
//!
//! Each protocol runs a reader task, which routes the client's bytes to per-channel queues, and
//! a writer task, which turns [`Output`] messages into frames. A channel is a WebSocket channel
//! number or a SPDY stream ID.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::StreamError;

/// A WebSocket channel number or a SPDY stream ID.
pub type ChannelId = u32;

/// Queued output messages per session before writers wait for the client to read.
pub const OUTPUT_QUEUE: usize = 64;
/// Queued input messages per channel before the reader stops reading from the client.
pub const INPUT_QUEUE: usize = 16;
/// Largest chunk read from a process or socket and sent as one frame.
pub const CHUNK_BYTES: usize = 32 * 1024;

/// A message for the client, in the order the session produced it.
#[derive(Debug)]
pub enum Output {
    Data {
        channel: ChannelId,
        bytes: Bytes,
    },
    /// No more data on this channel. SPDY sends a FIN. WebSocket, which has no server-side
    /// channel close, ignores it.
    Close {
        channel: ChannelId,
    },
    /// The session is over: the writer closes the connection after the messages queued
    /// before this one.
    Finish,
}

/// The writing end of one channel.
#[derive(Debug, Clone)]
pub struct OutputSink {
    channel: ChannelId,
    queue: mpsc::Sender<Output>,
}

impl OutputSink {
    pub fn new(channel: ChannelId, queue: mpsc::Sender<Output>) -> Self {
        Self { channel, queue }
    }

    /// Queues bytes for the client, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`StreamError::ClientGone`] when the connection's writer has stopped.
    pub async fn write(&self, bytes: Bytes) -> Result<(), StreamError> {
        self.queue
            .send(Output::Data {
                channel: self.channel,
                bytes,
            })
            .await
            .map_err(|_| StreamError::ClientGone)
    }

    /// Marks the end of this channel's data.
    pub async fn close(&self) {
        let _ = self
            .queue
            .send(Output::Close {
                channel: self.channel,
            })
            .await;
    }
}

/// The reason a session ended before its command or forward finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client closed the connection, sent a close frame or GOAWAY, or a write failed.
    ClientGone,
    /// Nothing passed in either direction for the idle timeout.
    Idle { seconds: u64 },
    /// The writer closed the connection after [`Output::Finish`].
    Finished,
}

impl EndReason {
    pub fn into_error(self) -> StreamError {
        match self {
            EndReason::Idle { seconds } => StreamError::IdleTimeout { seconds },
            EndReason::ClientGone | EndReason::Finished => StreamError::ClientGone,
        }
    }
}

/// The shared end-of-session signal. The first reason recorded is the session's. Whether the
/// connection can still carry data is tracked apart from it, because an idle session still
/// gets its final status written.
#[derive(Debug, Clone)]
pub struct EndSignal {
    sender: Arc<watch::Sender<EndState>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct EndState {
    reason: Option<EndReason>,
    connection_closed: bool,
}

impl EndSignal {
    pub fn new() -> Self {
        Self {
            sender: Arc::new(watch::channel(EndState::default()).0),
        }
    }

    /// Records the end, keeping an earlier reason.
    pub fn end(&self, reason: EndReason) {
        self.sender.send_if_modified(|state| {
            let before = (state.reason, state.connection_closed);
            state.reason.get_or_insert(reason);
            if !matches!(reason, EndReason::Idle { .. }) {
                state.connection_closed = true;
            }
            before != (state.reason, state.connection_closed)
        });
    }

    pub fn reason(&self) -> Option<EndReason> {
        self.sender.borrow().reason
    }

    /// Waits until the session ended and returns why.
    pub async fn ended(&self) -> EndReason {
        self.wait_for(|state| state.reason.is_some()).await
    }

    /// Waits until the connection can no longer carry data: the client left, or the writer
    /// closed it. Writers wait for this rather than for [`EndSignal::ended`].
    pub async fn closed(&self) -> EndReason {
        self.wait_for(|state| state.connection_closed).await
    }

    async fn wait_for(&self, done: impl Fn(&EndState) -> bool) -> EndReason {
        let mut receiver = self.sender.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let reason = receiver
            .wait_for(|state| done(state))
            .await
            .map(|state| state.reason);
        reason.ok().flatten().unwrap_or(EndReason::ClientGone)
    }
}

/// The time of the last frame in either direction, for the idle timeout.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_millis: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_millis: AtomicU64::new(0),
        })
    }

    pub fn touch(&self) {
        let elapsed = self.start.elapsed().as_millis() as u64;
        self.last_millis.store(elapsed, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_millis.load(Ordering::Relaxed))
    }
}

/// Ends the session with [`EndReason::Idle`] once no frame passed for `timeout`.
pub fn spawn_idle_watchdog(activity: Arc<Activity>, timeout: Duration, end: EndSignal) {
    tokio::spawn(async move {
        loop {
            let deadline = activity.last() + timeout;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if activity.last() + timeout <= Instant::now() {
                        end.end(EndReason::Idle { seconds: timeout.as_secs() });
                        return;
                    }
                }
                _ = end.ended() => return,
            }
        }
    });
}

/// A terminal size as the resize channel carries it: `{"Width":80,"Height":24}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Terminal sizes decoded from the resize channel. Clients write one JSON object per message
/// over WebSocket, and a stream of concatenated objects over SPDY. A SPDY frame may end inside
/// an object, so bytes are buffered until an object is complete.
#[derive(Debug)]
pub struct ResizeStream {
    inbound: mpsc::Receiver<Bytes>,
    buffer: Vec<u8>,
}

/// Most bytes of an incomplete resize object kept before the buffer is dropped as garbage.
const MAX_RESIZE_BUFFER: usize = 4096;

impl ResizeStream {
    pub fn new(inbound: mpsc::Receiver<Bytes>) -> Self {
        Self {
            inbound,
            buffer: Vec::new(),
        }
    }

    /// Returns the next size, or `None` when the client closed the channel.
    pub async fn next(&mut self) -> Option<TerminalSize> {
        loop {
            if let Some(size) = self.decode_buffered() {
                return Some(size);
            }
            let bytes = self.inbound.recv().await?;
            self.buffer.extend_from_slice(&bytes);
        }
    }

    fn decode_buffered(&mut self) -> Option<TerminalSize> {
        let mut objects =
            serde_json::Deserializer::from_slice(&self.buffer).into_iter::<TerminalSize>();
        match objects.next() {
            Some(Ok(size)) => {
                let used = objects.byte_offset();
                self.buffer.drain(..used);
                Some(size)
            }
            Some(Err(err)) if err.is_eof() && self.buffer.len() <= MAX_RESIZE_BUFFER => None,
            Some(Err(err)) => {
                tracing::warn!(error = %err, "dropping an unreadable terminal resize message");
                self.buffer.clear();
                None
            }
            None => {
                self.buffer.clear();
                None
            }
        }
    }
}

/// Waits for the next terminal size, forever when there is no resize channel or it closed.
pub async fn next_resize(resize: &mut Option<ResizeStream>) -> TerminalSize {
    if let Some(stream) = resize {
        if let Some(size) = stream.next().await {
            return size;
        }
        *resize = None;
    }
    std::future::pending().await
}

/// The channels of an exec or attach session. A channel is `None` when the request did not
/// ask for it.
#[derive(Debug)]
pub struct RemoteCommand {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<OutputSink>,
    pub stderr: Option<OutputSink>,
    pub resize: Option<ResizeStream>,
    /// The channel of the final [`super::status::Status`].
    pub error: OutputSink,
    pub end: EndSignal,
}

impl RemoteCommand {
    /// Writes the final status, closes the output channels and ends the session.
    pub async fn finish(self, status: &super::status::Status) {
        for sink in [&self.stdout, &self.stderr].into_iter().flatten() {
            sink.close().await;
        }
        let _ = self.error.write(Bytes::from(status.to_json())).await;
        self.error.close().await;
        let _ = self.error.queue.send(Output::Finish).await;
    }
}

/// One forwarded connection: bytes from the client for a port in the pod, and the channels
/// back. A message on `error` reports to the client that the connection failed.
#[derive(Debug)]
pub struct ForwardPair {
    pub port: u16,
    pub inbound: mpsc::Receiver<Bytes>,
    pub data: OutputSink,
    pub error: OutputSink,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resize_objects_split_across_frames_are_joined() {
        let (sender, receiver) = mpsc::channel(4);
        let mut resize = ResizeStream::new(receiver);
        sender
            .send(Bytes::from_static(b"{\"Width\":100,"))
            .await
            .unwrap();
        sender
            .send(Bytes::from_static(b"\"Height\":40}{\"Width\":8"))
            .await
            .unwrap();
        sender
            .send(Bytes::from_static(b"0,\"Height\":24}"))
            .await
            .unwrap();
        drop(sender);

        assert_eq!(
            resize.next().await,
            Some(TerminalSize {
                width: 100,
                height: 40
            })
        );
        assert_eq!(
            resize.next().await,
            Some(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(resize.next().await, None);
    }

    #[tokio::test]
    async fn garbage_resize_is_skipped() {
        let (sender, receiver) = mpsc::channel(4);
        let mut resize = ResizeStream::new(receiver);
        sender.send(Bytes::from_static(b"not json")).await.unwrap();
        sender
            .send(Bytes::from_static(b"{\"Width\":1,\"Height\":2}"))
            .await
            .unwrap();
        drop(sender);

        assert_eq!(
            resize.next().await,
            Some(TerminalSize {
                width: 1,
                height: 2
            })
        );
    }

    #[tokio::test]
    async fn idle_watchdog_ends_quiet_session() {
        let end = EndSignal::new();
        let activity = Activity::new();
        spawn_idle_watchdog(activity.clone(), Duration::from_millis(100), end.clone());

        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            activity.touch();
        }
        assert_eq!(end.reason(), None, "a session with traffic stays open");

        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(end.reason(), Some(EndReason::Idle { seconds: 0 }));
    }
}
