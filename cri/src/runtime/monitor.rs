//! The per-container monitor: the `berth` binary re-executed as `berth monitor`.
//!
//! It creates and starts the container with the OCI runtime, and owns the container's stdout
//! and stderr, which it writes to the CRI log. As the subreaper of everything the runtime forks,
//! it reaps the container's init process and records the exit in `exit.json` in the bundle.
//! It runs in its own session, so containers and their logs outlive a crash or restart of the
//! daemon. The daemon learns the start result from one JSON line on the monitor's stdout.
//!
//! Signals: SIGUSR1 reopens the log file after the kubelet rotated it.
//!
//! Attach: the monitor serves `attach.sock` in the bundle (see `crate::stream::attach_socket`),
//! which copies the container's output to attached clients and passes their input and resizes
//! to a TTY container's terminal.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::logs::{LineSplitter, LogStream, LogWriter};
use super::oci::runtime_log_message;
use crate::cgroups::{self, CgroupDriver, CgroupPath, CgroupVersion, Hierarchy};
use crate::stream::attach_socket::{AttachServer, OutputStream};

/// File in the bundle where the monitor records the container's exit.
pub const EXIT_FILE: &str = "exit.json";
/// File in the bundle where the OCI runtime writes its own log.
pub const RUNTIME_LOG_FILE: &str = "runtime.log";
/// How long the OCI runtime may take to hand over the terminal of a TTY container.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long stdout and stderr may stay open after the init process exited, for example held by
/// a process that escaped into another PID namespace, before the monitor stops reading.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Set by the SIGUSR1 handler; the log writers reopen the file when they see it.
static REOPEN_LOG: AtomicBool = AtomicBool::new(false);

/// The attach server of this monitor's container, once it serves.
static ATTACH: std::sync::OnceLock<Arc<AttachServer>> = std::sync::OnceLock::new();

/// Arguments of `berth monitor`.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub log_path: PathBuf,
    pub tty: bool,
    /// cgroups path of the container, read at exit to tell an OOM kill from another SIGKILL.
    pub cgroup_path: Option<String>,
    /// Whether the container keeps its stdin open for attach clients.
    pub stdin: bool,
    /// Whether stdin closes when the first attach session ends.
    pub stdin_once: bool,
    /// Whether the OCI runtime gets `--systemd-cgroup`.
    pub systemd_cgroup: bool,
}

/// The line the monitor writes to its stdout once the container started, or failed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartReport {
    Started { pid: i32, started_at_ns: i64 },
    Failed { message: String },
}

/// The recorded exit of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code, or 128 plus the signal number when a signal ended the process.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub finished_at_ns: i64,
    pub oom_killed: bool,
}

impl ExitRecord {
    /// Reads the exit record of a bundle, if the container exited.
    pub fn read(bundle: &Path) -> Option<ExitRecord> {
        let bytes = std::fs::read(bundle.join(EXIT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Runs the monitor and returns the process exit code.
pub fn run(options: MonitorOptions) -> i32 {
    // SAFETY: fd 1 is the report pipe the daemon gave us; we take sole ownership of it.
    let mut report_pipe = unsafe { File::from_raw_fd(1) };
    let result = start_and_wait(&options, &mut report_pipe);
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("berth monitor {}: {message}", options.id);
            let _ = write_report(&mut report_pipe, &StartReport::Failed { message });
            1
        }
    }
}

fn start_and_wait(options: &MonitorOptions, report_pipe: &mut File) -> Result<(), String> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot become a subreaper: {}",
            io::Error::last_os_error()
        ));
    }
    install_reopen_handler()?;
    let log = LogWriter::open(&options.log_path)
        .map_err(|err| format!("cannot open log {}: {err}", options.log_path.display()))?;
    let log = Arc::new(Mutex::new(log));
    start_attach_server(&options.bundle);

    let (pid, readers) = if options.tty {
        create_with_terminal(options, &log)?
    } else {
        create_with_pipes(options, &log)?
    };

    let oom_watch = options.watch_oom_kills();

    let start = options
        .runtime_command()
        .arg("start")
        .arg(&options.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|err| format!("cannot run {}: {err}", options.runtime.display()))?;
    if !start.status.success() {
        let message = runtime_log_message(&options.bundle.join(RUNTIME_LOG_FILE));
        let _ = options
            .runtime_command()
            .args(["delete", "--force", &options.id])
            .status();
        return Err(format!(
            "{} start failed: {message}",
            options.runtime.display()
        ));
    }

    write_report(
        report_pipe,
        &StartReport::Started {
            pid,
            started_at_ns: now_ns(),
        },
    )
    .map_err(|err| format!("cannot report the start to the daemon: {err}"))?;

    let (exit_code, signal) = wait_for_init(pid);
    let finished_at_ns = now_ns();
    join_readers(readers);
    if let Some(attach) = ATTACH.get() {
        attach.close();
    }

    let oom_killed = signal == Some(libc::SIGKILL) && options.oom_kills(oom_watch.as_ref()) > 0;
    let record = ExitRecord {
        exit_code,
        signal,
        finished_at_ns,
        oom_killed,
    };
    write_exit_record(&options.bundle, &record).map_err(|err| {
        format!(
            "cannot record the exit in {}: {err}",
            options.bundle.display()
        )
    })
}

/// OOM kills of a container's cgroup v2 `memory.events`, followed while the container runs.
struct OomWatch {
    driver: Arc<dyn CgroupDriver>,
    path: CgroupPath,
    /// Highest count seen on a change of the file.
    seen: Arc<AtomicU64>,
    /// The parent (the pod's cgroup), and its count at the start.
    parent: CgroupPath,
    parent_baseline: Option<u64>,
}

impl OomWatch {
    /// Returns the container's OOM kills: the count read now, or, once the cgroup is gone, the
    /// highest count seen. When a change came too late to be read before the cgroup was gone,
    /// a rise of the pod's count counts as one.
    ///
    /// NOTE: another container of the same pod killed by the OOM killer at the same time
    /// raises the pod's count too, so such a fallback may blame the wrong container.
    fn kills(&self) -> u64 {
        let seen = self.seen.load(Ordering::SeqCst);
        if let Ok(count) = self.driver.oom_kills(&self.path) {
            return count.max(seen);
        }
        if seen > 0 {
            return seen;
        }
        match (
            self.parent_baseline,
            self.driver.oom_kills(&self.parent).ok(),
        ) {
            (Some(before), Some(now)) if now > before => 1,
            _ => 0,
        }
    }
}

impl MonitorOptions {
    /// Returns how often the kernel's OOM killer killed a process of the container. The counter
    /// lives in the container's own memory cgroup, also when the limit that was hit is the
    /// pod's, so a pod-level OOM is charged to the container it hit.
    ///
    /// With a `watch` from [`MonitorOptions::watch_oom_kills`] the count comes from it, because
    /// it still has the count after the cgroup went away with the container's last process.
    fn oom_kills(&self, watch: Option<&OomWatch>) -> u64 {
        if let Some(watch) = watch {
            return watch.kills();
        }
        let Some(path) = &self.cgroup_path else {
            return 0;
        };
        let counted = Hierarchy::detect()
            .and_then(|hierarchy| cgroups::cgroupfs(hierarchy).oom_kills(&CgroupPath::new(path)?));
        counted.unwrap_or_else(|err| {
            eprintln!("berth monitor: cannot read the OOM kill count of {path}: {err}");
            0
        })
    }

    /// Follows the `oom_kill` count of the container's cgroup v2 `memory.events` while the
    /// container runs, from a thread woken by inotify on every change. A systemd scope is
    /// removed as soon as its last process exits, counters included, so a count read only at
    /// exit would miss the OOM kill that ended the container.
    fn watch_oom_kills(&self) -> Option<OomWatch> {
        let path = CgroupPath::new(self.cgroup_path.as_deref()?).ok()?;
        let parent = path.parent()?;
        let hierarchy = Hierarchy::detect().ok()?;
        if hierarchy.version() != CgroupVersion::V2 {
            return None;
        }
        let file = hierarchy
            .mount_point("memory")?
            .join(path.as_str().trim_start_matches('/'))
            .join("memory.events");
        let driver = cgroups::cgroupfs(hierarchy);
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC).ok()?;
        if let Err(err) = inotify.add_watch(&file, AddWatchFlags::IN_MODIFY) {
            eprintln!("berth monitor: cannot watch {}: {err}", file.display());
            return None;
        }

        let seen = Arc::new(AtomicU64::new(driver.oom_kills(&path).unwrap_or(0)));
        let count = seen.clone();
        let (thread_driver, thread_path) = (driver.clone(), path.clone());
        // The thread ends with the monitor; once the cgroup is gone no event wakes it again.
        let spawned = std::thread::Builder::new()
            .name("oom-watch".to_string())
            .spawn(move || {
                while inotify.read_events().is_ok() {
                    if let Ok(kills) = thread_driver.oom_kills(&thread_path) {
                        count.fetch_max(kills, Ordering::SeqCst);
                    }
                }
            });
        let parent_baseline = driver.oom_kills(&parent).ok();
        spawned.ok().map(|_| OomWatch {
            driver,
            path,
            seen,
            parent,
            parent_baseline,
        })
    }

    fn runtime_command(&self) -> Command {
        let mut command = Command::new(&self.runtime);
        command.arg("--root").arg(&self.runtime_root);
        if self.systemd_cgroup {
            command.arg("--systemd-cgroup");
        }
        command
    }

    fn create_command(&self) -> Command {
        let mut command = self.runtime_command();
        command
            .arg("--log")
            .arg(self.bundle.join(RUNTIME_LOG_FILE))
            .arg("--log-format")
            .arg("json")
            .arg("create")
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--pid-file")
            .arg(self.bundle.join("init.pid"));
        command
    }

    fn read_init_pid(&self) -> Result<i32, String> {
        let path = self.bundle.join("init.pid");
        let text = std::fs::read_to_string(&path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        text.trim()
            .parse()
            .map_err(|_| format!("invalid PID {:?} in {}", text.trim(), path.display()))
    }

    fn create_failed(&self) -> String {
        let message = runtime_log_message(&self.bundle.join(RUNTIME_LOG_FILE));
        format!("{} create failed: {message}", self.runtime.display())
    }
}

/// Creates the container with its stdout and stderr on pipes that the monitor reads.
fn create_with_pipes(
    options: &MonitorOptions,
    log: &Arc<Mutex<LogWriter>>,
) -> Result<(i32, Vec<JoinHandle<()>>), String> {
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;

    // A container created with stdin reads from a pipe whose write end attach clients use.
    let stdin = if options.stdin {
        let (stdin_read, stdin_write) = pipe()?;
        if let Some(attach) = ATTACH.get() {
            attach.set_stdin(File::from(stdin_write), options.stdin_once);
        } else {
            // Without attach, keep the pipe open so the container waits for input rather
            // than reading end of file at once.
            std::mem::forget(stdin_write);
        }
        Stdio::from(stdin_read)
    } else {
        Stdio::null()
    };

    let mut create = options.create_command();
    create
        .arg(&options.id)
        .stdin(stdin)
        .stdout(Stdio::from(stdout_write))
        .stderr(Stdio::from(stderr_write));
    let status = create
        .status()
        .map_err(|err| format!("cannot run {}: {err}", options.runtime.display()))?;
    // The write ends now live only in the container, so the pipes end when it does.
    drop(create);
    if !status.success() {
        return Err(options.create_failed());
    }

    let pid = options.read_init_pid()?;
    let readers = vec![
        spawn_reader(File::from(stdout_read), LogStream::Stdout, log.clone()),
        spawn_reader(File::from(stderr_read), LogStream::Stderr, log.clone()),
    ];
    Ok((pid, readers))
}

/// Creates a TTY container: the runtime sends the pseudo-terminal's master over a console
/// socket, and everything the container writes to it is logged as stdout.
fn create_with_terminal(
    options: &MonitorOptions,
    log: &Arc<Mutex<LogWriter>>,
) -> Result<(i32, Vec<JoinHandle<()>>), String> {
    let socket_dir = ConsoleSocketDir::create()?;
    let socket_path = socket_dir.0.join("console.sock");
    let listener = UnixListener::bind(&socket_path)
        .map_err(|err| format!("cannot listen on {}: {err}", socket_path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|err| format!("cannot configure {}: {err}", socket_path.display()))?;

    let mut create = options.create_command();
    create
        .arg("--console-socket")
        .arg(&socket_path)
        .arg(&options.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = create
        .spawn()
        .map_err(|err| format!("cannot run {}: {err}", options.runtime.display()))?;

    let deadline = Instant::now() + CONSOLE_TIMEOUT;
    let master = loop {
        match listener.accept() {
            Ok((stream, _)) => break receive_fd(stream.as_raw_fd())?,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(format!("console socket failed: {err}")),
        }
        if let Ok(Some(status)) = child.try_wait()
            && !status.success()
        {
            return Err(options.create_failed());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "{} did not send the terminal within {} s",
                options.runtime.display(),
                CONSOLE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let status = child
        .wait()
        .map_err(|err| format!("cannot wait for {}: {err}", options.runtime.display()))?;
    drop(socket_dir);
    if !status.success() {
        return Err(options.create_failed());
    }
    let pid = options.read_init_pid()?;
    if let (Some(attach), Ok(terminal)) = (ATTACH.get(), master.try_clone()) {
        attach.set_terminal(File::from(terminal));
    }
    Ok((
        pid,
        vec![spawn_reader(
            File::from(master),
            LogStream::Stdout,
            log.clone(),
        )],
    ))
}

/// A private directory for the console socket under the system temp dir, removed on drop. The
/// socket is not put in the bundle because a socket path may hold at most 107 bytes, and a bundle
/// path under a state dir of more than about 30 bytes is already longer.
struct ConsoleSocketDir(PathBuf);

impl ConsoleSocketDir {
    fn create() -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt;
        let suffix: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("berth-console-{suffix:016x}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for ConsoleSocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Receives one file descriptor sent with SCM_RIGHTS, as runc does on its console socket.
fn receive_fd(socket: i32) -> Result<OwnedFd, String> {
    let mut buffer = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buffer)];
    let mut space = nix::cmsg_space!([i32; 1]);
    // The accepted stream inherits O_NONBLOCK; wait for the message with a blocking poll.
    let mut poll_fd = [libc::pollfd {
        fd: socket,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: poll on one valid pollfd for the given count.
    unsafe { libc::poll(poll_fd.as_mut_ptr(), 1, CONSOLE_TIMEOUT.as_millis() as i32) };
    let message = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|err| format!("cannot receive the terminal from the console socket: {err}"))?;
    for control in message
        .cmsgs()
        .map_err(|err| format!("bad console socket message: {err}"))?
    {
        if let ControlMessageOwned::ScmRights(fds) = control
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor in our table for us alone.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err("the console socket message carried no file descriptor".to_string())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|err| format!("cannot create a pipe: {err}"))
}

/// Copies one stream into the log until it ends.
fn spawn_reader(mut source: File, stream: LogStream, log: Arc<Mutex<LogWriter>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut buffer = vec![0u8; 32 * 1024];
        let mut emit = |content: &[u8], partial: bool| {
            let mut writer = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if REOPEN_LOG.swap(false, Ordering::Relaxed)
                && let Err(err) = writer.reopen()
            {
                eprintln!("berth monitor: cannot reopen the log: {err}");
            }
            writer.write_entry(stream, content, partial)
        };
        loop {
            match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    publish_to_attach(stream, &buffer[..n]);
                    if let Err(err) = splitter.push(&buffer[..n], &mut emit) {
                        eprintln!("berth monitor: cannot write the log: {err}");
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // A pseudo-terminal master reads EIO once the container side is closed.
                Err(_) => break,
            }
        }
        let _ = splitter.finish(&mut emit);
    })
}

/// Serves the attach socket. A container whose monitor cannot serve it still runs, without
/// attach.
fn start_attach_server(bundle: &Path) {
    match AttachServer::start(bundle) {
        Ok(server) => {
            let _ = ATTACH.set(server);
        }
        Err(err) => eprintln!(
            "berth monitor: cannot serve attach in {}: {err}",
            bundle.display()
        ),
    }
}

/// Copies container output to attached clients, if any.
fn publish_to_attach(stream: LogStream, bytes: &[u8]) {
    if let Some(attach) = ATTACH.get() {
        let stream = match stream {
            LogStream::Stdout => OutputStream::Stdout,
            LogStream::Stderr => OutputStream::Stderr,
        };
        attach.publish(stream, bytes);
    }
}

/// Waits for the container's init process and returns its exit code and signal. Other
/// processes reparented to the monitor are reaped along the way.
fn wait_for_init(pid: i32) -> (i32, Option<i32>) {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(exited, code)) if exited.as_raw() == pid => return (code, None),
            Ok(WaitStatus::Signaled(exited, signal, _)) if exited.as_raw() == pid => {
                return (128 + signal as i32, Some(signal as i32));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(err) => {
                eprintln!("berth monitor: waitpid failed: {err}");
                return (255, None);
            }
        }
    }
}

fn join_readers(readers: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    for reader in readers {
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}

fn write_report(pipe: &mut File, report: &StartReport) -> io::Result<()> {
    let mut line = serde_json::to_vec(report).map_err(io::Error::other)?;
    line.push(b'\n');
    pipe.write_all(&line)?;
    pipe.flush()
}

fn write_exit_record(bundle: &Path, record: &ExitRecord) -> io::Result<()> {
    let temporary = bundle.join(format!("{EXIT_FILE}.tmp"));
    std::fs::write(
        &temporary,
        serde_json::to_vec(record).map_err(io::Error::other)?,
    )?;
    std::fs::rename(&temporary, bundle.join(EXIT_FILE))
}

fn install_reopen_handler() -> Result<(), String> {
    extern "C" fn request_reopen(_: libc::c_int) {
        REOPEN_LOG.store(true, Ordering::Relaxed);
    }
    let action = SigAction::new(
        SigHandler::Handler(request_reopen),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGUSR1, &action) }
        .map(|_| ())
        .map_err(|err| format!("cannot install the SIGUSR1 handler: {err}"))
}

/// Returns the current time in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}
