//! Exec: `runc exec` with the container's own process settings, its stdio connected to the
//! client's channels.
//!
//! With a TTY, runc runs in the foreground with a pseudo-terminal of Berth's as its stdio.
//! runc then makes the container's terminal, copies between the two, and resizes the
//! container's terminal to match Berth's on SIGWINCH, which the kernel sends when Berth
//! resizes its end. `runc exec --console-socket` would hand over the container's terminal
//! directly, but runc accepts it only with `--detach`, and a detached exec process is
//! reparented away from Berth, which then cannot learn its exit code.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::cri::ExecRequest;
use bytes::Bytes;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::StreamError;
use super::attach_socket::set_window_size;
use super::session::{
    CHUNK_BYTES, OutputSink, RemoteCommand, ResizeStream, TerminalSize, next_resize,
};
use crate::runtime::stream_target::StreamTarget;

/// How long output may keep flowing after the command exited, for example from a background
/// process that keeps the pipe open, before the session stops reading.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `runc exec` may take to reap the killed command after the client went away.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a TTY exec waits for the client's terminal size before it starts the command.
/// kubectl and crictl send it right after the upgrade, so only a client that sends none is
/// delayed by this much.
const INITIAL_SIZE_WAIT: Duration = Duration::from_millis(300);

/// Runs the command of `request` in the container and returns its exit code: the command's
/// own, or 128 plus the signal that ended it.
///
/// # Errors
///
/// Fails when the process spec cannot be prepared or runc cannot be started. When the client
/// goes away first, the command is killed and the session's end reason is returned.
pub async fn run(
    target: &StreamTarget,
    request: &ExecRequest,
    io: &mut RemoteCommand,
) -> Result<i32, StreamError> {
    let initial_size = match request.tty {
        true => first_resize(&mut io.resize).await,
        false => None,
    };
    let files = ExecFiles::write(target, &request.cmd, request.tty, initial_size)?;
    let mut command = tokio::process::Command::from(target.runtime.command());
    command
        .arg("exec")
        .arg("--process")
        .arg(&files.process)
        .arg("--pid-file")
        .arg(&files.pid)
        .kill_on_drop(true);
    if request.tty {
        command.arg("--tty");
    }
    command.arg(&target.container_id);

    if request.tty {
        run_with_terminal(command, &files, initial_size, io).await
    } else {
        run_with_pipes(command, &files, io).await
    }
}

/// The process spec and PID file of one exec, removed on drop.
struct ExecFiles {
    process: PathBuf,
    pid: PathBuf,
}

impl ExecFiles {
    fn write(
        target: &StreamTarget,
        command: &[String],
        tty: bool,
        size: Option<TerminalSize>,
    ) -> Result<Self, StreamError> {
        let spec_path = target.bundle.join("config.json");
        let spec = std::fs::read(&spec_path)
            .map_err(|err| StreamError::io("read", spec_path.display(), err))?;
        let spec: serde_json::Value = serde_json::from_slice(&spec)
            .map_err(|err| StreamError::io("parse", spec_path.display(), io::Error::other(err)))?;
        let mut process = spec.get("process").cloned().unwrap_or_default();
        process["args"] = serde_json::json!(command);
        process["terminal"] = serde_json::json!(tty);
        // runc sizes the container's terminal from this before the command starts, so even a
        // command that reads the size at once, such as `stty size`, gets the client's size.
        if let Some(size) = size {
            process["consoleSize"] =
                serde_json::json!({"height": size.height, "width": size.width});
        }

        let exec_id = hex::encode(rand::random::<[u8; 8]>());
        let files = ExecFiles {
            process: target.bundle.join(format!("exec-{exec_id}.json")),
            pid: target.bundle.join(format!("exec-{exec_id}.pid")),
        };
        std::fs::write(&files.process, process.to_string())
            .map_err(|err| StreamError::io("write", files.process.display(), err))?;
        Ok(files)
    }
}

impl Drop for ExecFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.process);
        let _ = std::fs::remove_file(&self.pid);
    }
}

async fn run_with_pipes(
    mut command: tokio::process::Command,
    files: &ExecFiles,
    io: &mut RemoteCommand,
) -> Result<i32, StreamError> {
    let piped_if = |wanted: bool| {
        if wanted {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    command
        .stdin(piped_if(io.stdin.is_some()))
        .stdout(piped_if(io.stdout.is_some()))
        .stderr(piped_if(io.stderr.is_some()));
    let mut child = spawn(&mut command)?;

    let mut outputs = Vec::new();
    if let (Some(pipe), Some(sink)) = (child.stdout.take(), io.stdout.clone()) {
        outputs.push(tokio::spawn(copy_to_client(pipe, sink)));
    }
    if let (Some(pipe), Some(sink)) = (child.stderr.take(), io.stderr.clone()) {
        outputs.push(tokio::spawn(copy_to_client(pipe, sink)));
    }
    let input = match (child.stdin.take(), io.stdin.take()) {
        (Some(mut pipe), Some(mut stdin)) => Some(tokio::spawn(async move {
            while let Some(bytes) = stdin.recv().await {
                if pipe.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            // Dropping the pipe closes the command's stdin: the client half-closed it.
        })),
        _ => None,
    };

    let result = wait(&mut child, files, io, None).await;
    if let Some(input) = input {
        input.abort();
    }
    let status = result?;
    drain(outputs).await;
    Ok(exit_code(status))
}

async fn run_with_terminal(
    mut command: tokio::process::Command,
    files: &ExecFiles,
    initial_size: Option<TerminalSize>,
    io: &mut RemoteCommand,
) -> Result<i32, StreamError> {
    let pty = nix::pty::openpty(None, None)
        .map_err(|err| StreamError::io("open", "a pseudo-terminal", err.into()))?;
    // runc copies this terminal's size to the container's once the command runs, which must
    // not undo the size the process spec set.
    if let Some(size) = initial_size
        && let Err(err) = set_window_size(&pty.master, size.width, size.height)
    {
        tracing::warn!(error = %err, "cannot set the initial size of the exec terminal");
    }
    let slave = File::from(pty.slave);
    // runc switches its terminal to raw mode once the command started. Raw from the start,
    // input typed before that passes through unchanged instead of being echoed and
    // line-edited by this side of the terminal as well.
    let raw = nix::sys::termios::tcgetattr(&slave).and_then(|mut termios| {
        nix::sys::termios::cfmakeraw(&mut termios);
        nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &termios)
    });
    raw.map_err(|err| StreamError::io("configure", "the pseudo-terminal", err.into()))?;
    let stdio = |file: &File| -> Result<Stdio, StreamError> {
        file.try_clone()
            .map(Stdio::from)
            .map_err(|err| StreamError::io("duplicate", "the pseudo-terminal", err))
    };
    command
        .stdin(stdio(&slave)?)
        .stdout(stdio(&slave)?)
        .stderr(stdio(&slave)?);
    // SAFETY: setsid and ioctl are async-signal-safe. The new session takes the terminal as its
    // controlling terminal, so that resizing it sends SIGWINCH to runc, and hanging it up
    // sends runc SIGHUP, which runc passes on to the command.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = spawn(&mut command);
    // Once runc has the only open copy of the slave, reading the master ends when runc exits.
    drop(command);
    drop(slave);
    let mut child = spawned?;

    let master = Arc::new(PtyMaster::new(pty.master)?);
    let output = io
        .stdout
        .clone()
        .map(|sink| tokio::spawn(copy_terminal_to_client(master.clone(), sink)));
    let input = io.stdin.take().map(|stdin| {
        let master = master.clone();
        tokio::spawn(copy_client_to_terminal(stdin, master))
    });

    let result = wait(&mut child, files, io, Some(&master)).await;
    if let Some(input) = input {
        input.abort();
    }
    let status = result?;
    drain(output.into_iter().collect()).await;
    Ok(exit_code(status))
}

/// Waits briefly for the size that clients send right after connecting.
async fn first_resize(resize: &mut Option<ResizeStream>) -> Option<TerminalSize> {
    let stream = resize.as_mut()?;
    tokio::time::timeout(INITIAL_SIZE_WAIT, stream.next())
        .await
        .ok()
        .flatten()
}

fn spawn(command: &mut tokio::process::Command) -> Result<Child, StreamError> {
    command.spawn().map_err(|err| {
        StreamError::io("run", command.as_std().get_program().to_string_lossy(), err)
    })
}

/// Waits for runc to exit, applying resizes to the terminal on the way. When the client goes
/// away first, kills the command and lets runc reap it.
async fn wait(
    child: &mut Child,
    files: &ExecFiles,
    io: &mut RemoteCommand,
    terminal: Option<&PtyMaster>,
) -> Result<ExitStatus, StreamError> {
    loop {
        tokio::select! {
            status = child.wait() => {
                return status.map_err(|err| StreamError::io("wait for", "runc exec", err));
            }
            size = next_resize(&mut io.resize) => {
                if let Some(terminal) = terminal
                    && let Err(err) = set_window_size(terminal, size.width, size.height)
                {
                    tracing::warn!(error = %err, "cannot resize the exec terminal");
                }
            }
            reason = io.end.ended() => {
                kill_command(child, &files.pid).await;
                return Err(reason.into_error());
            }
        }
    }
}

/// Kills the exec'd command by the PID runc recorded, then waits for runc to reap it. Killing
/// runc instead would leave the command running in the container.
async fn kill_command(child: &mut Child, pid_file: &Path) {
    let deadline = tokio::time::Instant::now() + REAP_TIMEOUT;
    loop {
        if let Some(pid) = read_pid(pid_file) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            break;
        }
        // runc writes the PID file once the command started. Until then, runc may still exit.
        if matches!(child.try_wait(), Ok(Some(_))) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if tokio::time::timeout_at(deadline, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid_file = %pid_file.display(), "runc exec did not exit after its command was killed");
        let _ = child.start_kill();
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| {
        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
    })
}

/// Waits for the output copies to finish, at most [`DRAIN_TIMEOUT`] in all.
async fn drain(outputs: Vec<JoinHandle<()>>) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    for mut output in outputs {
        if tokio::time::timeout_at(deadline, &mut output)
            .await
            .is_err()
        {
            output.abort();
        }
    }
}

async fn copy_to_client(mut source: impl AsyncRead + Unpin, sink: OutputSink) {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        match source.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if sink
                    .write(Bytes::copy_from_slice(&buffer[..n]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn copy_terminal_to_client(master: Arc<PtyMaster>, sink: OutputSink) {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    // Reading a master fails with EIO once no process has the slave open: the end of output.
    while let Ok(n) = master.read(&mut buffer).await {
        if n == 0
            || sink
                .write(Bytes::copy_from_slice(&buffer[..n]))
                .await
                .is_err()
        {
            return;
        }
    }
}

async fn copy_client_to_terminal(mut stdin: mpsc::Receiver<Bytes>, master: Arc<PtyMaster>) {
    while let Some(bytes) = stdin.recv().await {
        if master.write_all(&bytes).await.is_err() {
            return;
        }
    }
    // NOTE: a terminal has no end-of-input signal apart from the EOF character, so a client
    // that closes stdin leaves the command's terminal open.
}

/// The master side of a pseudo-terminal, read and written without blocking a runtime thread.
pub struct PtyMaster {
    fd: AsyncFd<File>,
}

impl PtyMaster {
    fn new(master: OwnedFd) -> Result<Self, StreamError> {
        let file = File::from(master);
        let nonblocking = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)
            .map(nix::fcntl::OFlag::from_bits_retain)
            .and_then(|flags| {
                nix::fcntl::fcntl(
                    &file,
                    nix::fcntl::FcntlArg::F_SETFL(flags | nix::fcntl::OFlag::O_NONBLOCK),
                )
            });
        nonblocking
            .map_err(|err| StreamError::io("configure", "the pseudo-terminal", err.into()))?;
        // SAFETY: the File owns the descriptor, and nothing closes or replaces it while the
        // AsyncFd owns it.
        let fd = unsafe { AsyncFd::register(file) }.map_err(|err| {
            StreamError::io("register", "the pseudo-terminal", err.into_parts().1)
        })?;
        Ok(Self { fd })
    }

    async fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|file| file.get_ref().read(buffer)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|file| file.get_ref().write(bytes)) {
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

impl AsRawFd for PtyMaster {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}
