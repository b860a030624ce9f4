//! Attach: connect the client's channels to a running container's stdio through the attach
//! socket that the container's monitor serves.

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::StreamError;
use super::attach_socket::{self, KIND_RESIZE, KIND_STDERR, KIND_STDIN, KIND_STDOUT};
use super::session::{RemoteCommand, next_resize};
use crate::runtime::stream_target::StreamTarget;

/// Copies the container's output to the client, and the client's input and resizes to the
/// container's terminal, until the container exits or the client goes away.
///
/// # Errors
///
/// Fails when the monitor's attach socket cannot be reached, and with the session's end
/// reason when the client goes away first.
pub async fn run(target: &StreamTarget, io: &mut RemoteCommand) -> Result<(), StreamError> {
    let bundle = target.bundle.clone();
    let socket = tokio::task::spawn_blocking(move || attach_socket::connect(&bundle))
        .await
        .map_err(|err| {
            StreamError::io(
                "connect to",
                "the attach socket",
                std::io::Error::other(err),
            )
        })?
        .map_err(|err| {
            StreamError::io(
                "connect to",
                format!("the attach socket of container {}", target.container_id),
                err,
            )
        })?;
    socket
        .set_nonblocking(true)
        .map_err(|err| StreamError::io("configure", "the attach socket", err))?;
    let socket = UnixStream::from_std(socket)
        .map_err(|err| StreamError::io("register", "the attach socket", err))?;
    let (from_monitor, to_monitor) = socket.into_split();

    // Input reaches only the terminal of a container created with stdin open.
    let stdin = io.stdin.take().filter(|_| target.config.stdin);
    let input = tokio::spawn(forward_input(stdin, to_monitor, io.resize.take()));
    let result = tokio::select! {
        result = forward_output(from_monitor, io) => result,
        reason = io.end.ended() => Err(reason.into_error()),
    };
    input.abort();
    result
}

/// Copies output messages from the monitor to the client until the monitor closes the socket.
async fn forward_output(
    mut from_monitor: OwnedReadHalf,
    io: &RemoteCommand,
) -> Result<(), StreamError> {
    loop {
        let mut head = [0u8; 5];
        if from_monitor.read_exact(&mut head).await.is_err() {
            // The monitor closes the socket after the container exited and its output drained.
            return Ok(());
        }
        let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if length > attach_socket::MAX_MESSAGE_BYTES {
            return Err(StreamError::io(
                "read",
                "the attach socket",
                std::io::Error::new(std::io::ErrorKind::InvalidData, "oversized message"),
            ));
        }
        let mut payload = vec![0u8; length];
        if from_monitor.read_exact(&mut payload).await.is_err() {
            return Ok(());
        }
        let sink = match head[0] {
            KIND_STDOUT => io.stdout.as_ref(),
            KIND_STDERR => io.stderr.as_ref(),
            _ => None,
        };
        if let Some(sink) = sink {
            sink.write(Bytes::from(payload)).await?;
        }
    }
}

async fn forward_input(
    mut stdin: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    mut to_monitor: OwnedWriteHalf,
    mut resize: Option<super::session::ResizeStream>,
) {
    loop {
        let message = tokio::select! {
            bytes = async { stdin.as_mut()?.recv().await }, if stdin.is_some() => match bytes {
                Some(bytes) => attach_socket::encode(KIND_STDIN, &bytes),
                None => {
                    // The client closed stdin: the monitor closes the container's stdin if
                    // the container asked for `stdin_once`.
                    stdin = None;
                    attach_socket::encode(attach_socket::KIND_CLOSE_STDIN, &[])
                }
            },
            size = next_resize(&mut resize) => {
                attach_socket::encode(KIND_RESIZE, &attach_socket::resize_payload(size.width, size.height))
            }
        };
        if to_monitor.write_all(&message).await.is_err() {
            return;
        }
    }
}
