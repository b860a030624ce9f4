//! The attach socket between a container's monitor and the daemon.
//!
//! The monitor owns the container's stdio, so it serves `attach.sock` in the bundle. Every
//! connected client gets a copy of what the container writes to stdout and stderr from the
//! moment it connects. A client may also send input to the container's terminal and resize it.
//!
//! Messages in both directions are `[kind: u8][length: u32 big-endian][payload]`, with kinds
//! numbered like the Kubernetes channels: 0 stdin, 1 stdout, 2 stderr, 4 resize (payload:
//! width and height as big-endian u16).
//!
//! The monitor side runs on plain threads, as the monitor has no async runtime.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// File name of the attach socket in the container's bundle.
pub const ATTACH_SOCKET_FILE: &str = "attach.sock";

pub const KIND_STDIN: u8 = 0;
pub const KIND_STDOUT: u8 = 1;
pub const KIND_STDERR: u8 = 2;
pub const KIND_RESIZE: u8 = 4;
/// Sent by the daemon when the client closed its stdin.
pub const KIND_CLOSE_STDIN: u8 = 5;

/// Largest message payload either side accepts.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Output messages queued per client. A client that falls this far behind is disconnected, so
/// that a stalled client never holds up the container's log.
const CLIENT_QUEUE: usize = 256;

/// The container output streams the monitor publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Encodes one message.
pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(5 + payload.len());
    message.push(kind);
    message.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    message.extend_from_slice(payload);
    message
}

/// Encodes a terminal size as a resize payload.
pub fn resize_payload(width: u16, height: u16) -> [u8; 4] {
    let mut payload = [0u8; 4];
    payload[..2].copy_from_slice(&width.to_be_bytes());
    payload[2..].copy_from_slice(&height.to_be_bytes());
    payload
}

/// Returns a path to `name` in `dir` that fits in a socket address. A socket path may have at
/// most 107 bytes and bundle paths are often longer, so the path goes through the
/// `/proc/self/fd` link of the open directory, which the caller keeps open while it binds or
/// connects.
pub fn short_path(dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// Connects to the attach socket of the container whose bundle is `bundle`. Blocking.
pub fn connect(bundle: &Path) -> io::Result<UnixStream> {
    let dir = File::open(bundle)?;
    UnixStream::connect(short_path(&dir, ATTACH_SOCKET_FILE))
}

struct Client {
    queue: SyncSender<Vec<u8>>,
    stream: UnixStream,
}

/// The monitor's attach server: fans out container output to clients, and passes their
/// terminal input and resizes to the container's pseudo-terminal.
pub struct AttachServer {
    socket: PathBuf,
    clients: Mutex<Vec<Client>>,
    /// The pseudo-terminal master of a TTY container.
    terminal: Mutex<Option<Arc<File>>>,
    /// The write end of a non-TTY container's stdin pipe, while it is open.
    stdin: Mutex<Option<Arc<File>>>,
    /// Whether the container's stdin closes when the first attach session ends.
    stdin_once: std::sync::atomic::AtomicBool,
}

impl AttachServer {
    /// Binds `attach.sock` in the bundle (mode 0600) and accepts clients on a thread.
    ///
    /// # Errors
    ///
    /// Fails when the bundle cannot be opened or the socket cannot be bound.
    pub fn start(bundle: &Path) -> io::Result<Arc<Self>> {
        let dir = File::open(bundle)?;
        let path = short_path(&dir, ATTACH_SOCKET_FILE);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let server = Arc::new(Self {
            socket: bundle.join(ATTACH_SOCKET_FILE),
            clients: Mutex::new(Vec::new()),
            terminal: Mutex::new(None),
            stdin: Mutex::new(None),
            stdin_once: std::sync::atomic::AtomicBool::new(false),
        });
        let accepting = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => accepting.add_client(stream),
                    Err(err) => eprintln!("berth monitor: attach socket accept failed: {err}"),
                }
            }
        });
        Ok(server)
    }

    /// Sets the pseudo-terminal master that client input and resizes go to.
    pub fn set_terminal(&self, master: File) {
        *self
            .terminal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(master));
    }

    /// Sets the write end of a non-TTY container's stdin pipe. With `once`, stdin closes when
    /// the first attach session that writes to it ends, as the CRI's `stdin_once` requires.
    pub fn set_stdin(&self, pipe: File, once: bool) {
        self.stdin_once.store(once, std::sync::atomic::Ordering::Relaxed);
        *self.stdin.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(pipe));
    }

    /// Closes a non-TTY container's stdin if it is to close after one session.
    fn end_stdin_session(&self) {
        if self.stdin_once.load(std::sync::atomic::Ordering::Relaxed) {
            self.stdin.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        }
    }

    /// Sends container output to every client.
    pub fn publish(&self, stream: OutputStream, bytes: &[u8]) {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if clients.is_empty() {
            return;
        }
        let kind = match stream {
            OutputStream::Stdout => KIND_STDOUT,
            OutputStream::Stderr => KIND_STDERR,
        };
        let message = encode(kind, bytes);
        clients.retain(|client| match client.queue.try_send(message.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                eprintln!("berth monitor: disconnecting an attach client that stopped reading");
                let _ = client.stream.shutdown(std::net::Shutdown::Both);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }

    /// Disconnects every client and removes the socket, once the container exited and its
    /// output was drained.
    pub fn close(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let clients = std::mem::take(
            &mut *self
                .clients
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        // Dropping each queue lets its writer thread send what is queued, then shut down.
        drop(clients);
    }

    fn add_client(self: &Arc<Self>, stream: UnixStream) {
        let (Ok(writer), Ok(reader)) = (stream.try_clone(), stream.try_clone()) else {
            return;
        };
        let (queue, outgoing) = std::sync::mpsc::sync_channel::<Vec<u8>>(CLIENT_QUEUE);
        std::thread::spawn(move || {
            let mut writer = writer;
            for message in outgoing {
                if writer.write_all(&message).is_err() {
                    break;
                }
            }
            let _ = writer.shutdown(std::net::Shutdown::Both);
        });
        let server = self.clone();
        std::thread::spawn(move || server.read_client(reader));
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Client { queue, stream });
    }

    /// Applies a client's input until it disconnects.
    fn read_client(&self, mut stream: UnixStream) {
        let mut wrote_stdin = false;
        while let Ok((kind, payload)) = read_message(&mut stream) {
            let terminal = self
                .terminal
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            let Some(terminal) = terminal else {
                match kind {
                    KIND_STDIN => {
                        let pipe = self.stdin.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
                        if let Some(pipe) = pipe {
                            wrote_stdin = true;
                            let _ = (&*pipe).write_all(&payload);
                        }
                    }
                    KIND_CLOSE_STDIN => self.end_stdin_session(),
                    _ => {}
                }
                continue;
            };
            match kind {
                KIND_STDIN => {
                    let _ = (&*terminal).write_all(&payload);
                }
                KIND_RESIZE if payload.len() == 4 => {
                    let width = u16::from_be_bytes([payload[0], payload[1]]);
                    let height = u16::from_be_bytes([payload[2], payload[3]]);
                    if let Err(err) = set_window_size(&terminal, width, height) {
                        eprintln!("berth monitor: cannot resize the terminal: {err}");
                    }
                }
                _ => {}
            }
        }
        if wrote_stdin {
            self.end_stdin_session();
        }
    }
}

/// Reads one message. Blocking.
pub fn read_message(reader: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    reader.read_exact(&mut head)?;
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if length > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("attach message of {length} bytes is larger than {MAX_MESSAGE_BYTES}"),
        ));
    }
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload)?;
    Ok((head[0], payload))
}

/// Sets the window size of a terminal; the kernel then sends SIGWINCH to its foreground
/// process group.
pub fn set_window_size(terminal: &impl AsRawFd, width: u16, height: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    let result = unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips() {
        let bytes = encode(KIND_RESIZE, &resize_payload(100, 40));

        let (kind, payload) = read_message(&mut &bytes[..]).unwrap();

        assert_eq!(kind, KIND_RESIZE);
        assert_eq!(payload, [0, 100, 0, 40]);
    }

    #[test]
    fn clients_get_output_through_a_long_bundle_path() {
        let temp = tempfile::tempdir().unwrap();
        let bundle = temp.path().join("x".repeat(120));
        std::fs::create_dir(&bundle).unwrap();
        let server = AttachServer::start(&bundle).unwrap();

        let mut client = connect(&bundle).unwrap();
        for _ in 0..100 {
            if !server.clients.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        server.publish(OutputStream::Stderr, b"hello");
        server.close();

        assert_eq!(
            read_message(&mut client).unwrap(),
            (KIND_STDERR, b"hello".to_vec())
        );
        assert!(
            read_message(&mut client).is_err(),
            "the socket closes with the server"
        );
        assert!(!bundle.join(ATTACH_SOCKET_FILE).exists());
    }
}
