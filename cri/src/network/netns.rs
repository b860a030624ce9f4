//! Network, IPC and UTS namespaces for a pod sandbox, held open by bind mounts instead of by a
//! process ("pinned"), so that CNI plugins and the sandbox's containers can join them before any
//! container runs.
//!
//! Under the sandbox's namespace directory:
//!
//! ```text
//! net   bind mount of the sandbox's network namespace (nsfs)
//! ipc   bind mount of its IPC namespace
//! uts   bind mount of its UTS namespace
//! ```

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::statfs::{NSFS_MAGIC, statfs};

use super::error::NetworkError;

/// Kind of namespace that a sandbox may get a new instance of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamespaceKind {
    Net,
    Ipc,
    Uts,
}

impl NamespaceKind {
    /// Every kind that [`pin_namespaces`] can create, in the order the files are handled.
    pub const ALL: [NamespaceKind; 3] =
        [NamespaceKind::Net, NamespaceKind::Ipc, NamespaceKind::Uts];

    /// Returns the name of the kind's file under `/proc/<pid>/ns/`, which is also the name of
    /// its file in the sandbox's namespace directory.
    pub fn file_name(self) -> &'static str {
        match self {
            NamespaceKind::Net => "net",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Uts => "uts",
        }
    }

    fn clone_flag(self) -> CloneFlags {
        match self {
            NamespaceKind::Net => CloneFlags::CLONE_NEWNET,
            NamespaceKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NamespaceKind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }
}

impl fmt::Display for NamespaceKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.file_name())
    }
}

/// Paths of a sandbox's pinned namespaces; `None` for a kind that was not requested, which the
/// sandbox then shares with the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinnedNamespaces {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

impl PinnedNamespaces {
    /// Returns the path of the pinned namespace of `kind`, if one was created.
    pub fn path(&self, kind: NamespaceKind) -> Option<&Path> {
        match kind {
            NamespaceKind::Net => self.net.as_deref(),
            NamespaceKind::Ipc => self.ipc.as_deref(),
            NamespaceKind::Uts => self.uts.as_deref(),
        }
    }

    fn set(&mut self, kind: NamespaceKind, path: PathBuf) {
        match kind {
            NamespaceKind::Net => self.net = Some(path),
            NamespaceKind::Ipc => self.ipc = Some(path),
            NamespaceKind::Uts => self.uts = Some(path),
        }
    }
}

/// Creates new namespaces of the given kinds and pins each on a file in `dir` (`dir/net`,
/// `dir/ipc`, `dir/uts`), so that they outlive the thread that created them.
///
/// The namespaces are created by a dedicated OS thread: `unshare(2)` of these kinds changes only
/// the calling thread, so the daemon's other threads keep the host's namespaces, and the thread
/// exits once the bind mounts exist. In a new UTS namespace the hostname is set to `hostname`,
/// and in a new network namespace the loopback interface `lo` is brought up. The mounts are made
/// in the daemon's mount namespace, which must be the host's for CNI plugins and the OCI
/// runtime to see them. This call blocks for the thread's lifetime; call it from
/// `spawn_blocking` in async code.
///
/// # Errors
///
/// [`NetworkError::InvalidArgument`] when `hostname` is given without [`NamespaceKind::Uts`],
/// [`NetworkError::AlreadyPinned`] when a file in `dir` is already a namespace mount, and
/// [`NetworkError::Namespace`] or [`NetworkError::Io`] when a step fails. Whatever was created
/// before a failure is unmounted and removed.
pub fn pin_namespaces(
    dir: &Path,
    kinds: &[NamespaceKind],
    hostname: Option<&str>,
) -> Result<PinnedNamespaces, NetworkError> {
    if let Some(hostname) = hostname
        && !kinds.contains(&NamespaceKind::Uts)
    {
        return Err(NetworkError::InvalidArgument {
            field: "hostname",
            value: hostname.to_string(),
            reason: "a hostname needs a new UTS namespace",
        });
    }

    fs::create_dir_all(dir).map_err(|err| NetworkError::io("create directory", dir, err))?;
    let mut pinned = PinnedNamespaces::default();
    let mut targets = Vec::new();
    for kind in NamespaceKind::ALL {
        if !kinds.contains(&kind) {
            continue;
        }
        let target = dir.join(kind.file_name());
        if holds_namespace(&target) {
            return Err(NetworkError::AlreadyPinned { path: target });
        }
        targets.push((kind, target.clone()));
        pinned.set(kind, target);
    }
    if targets.is_empty() {
        return Ok(pinned);
    }

    let result =
        create_bind_targets(&targets).and_then(|()| run_pin_thread(dir, &targets, hostname));
    if let Err(err) = result {
        for (_, target) in &targets {
            if let Err(cleanup) = unpin_file(target) {
                tracing::warn!(path = %target.display(), err = %cleanup, "removing a partly pinned namespace failed");
            }
        }
        return Err(err);
    }
    Ok(pinned)
}

/// Unmounts and removes the namespace files in `dir`. The kernel then frees each namespace that
/// nothing else references (no process, no other mount, no open file). Missing files are not
/// an error, so a second call succeeds, and `dir` itself is left in place.
///
/// # Errors
///
/// [`NetworkError::Io`] when a file cannot be unmounted or removed.
pub fn unpin(dir: &Path) -> Result<(), NetworkError> {
    for kind in NamespaceKind::ALL {
        unpin_file(&dir.join(kind.file_name()))?;
    }
    Ok(())
}

/// Returns true when `path` is an nsfs mount, that is, a pinned namespace.
pub(super) fn holds_namespace(path: &Path) -> bool {
    statfs(path).is_ok_and(|stat| stat.filesystem_type() == NSFS_MAGIC)
}

/// Runs [`unshare_and_pin`] on a new OS thread and waits for it. The thread ends right after,
/// so no other code ever runs in its namespaces.
fn run_pin_thread(
    dir: &Path,
    targets: &[(NamespaceKind, PathBuf)],
    hostname: Option<&str>,
) -> Result<(), NetworkError> {
    let thread_dir = dir.to_path_buf();
    let thread_targets = targets.to_vec();
    let hostname = hostname.map(str::to_string);
    let thread = std::thread::Builder::new()
        .name("berth-pin-ns".to_string())
        .spawn(move || unshare_and_pin(&thread_dir, &thread_targets, hostname.as_deref()))
        .map_err(|err| NetworkError::io("start the namespace thread for", dir, err))?;
    thread.join().unwrap_or_else(|_| {
        Err(NetworkError::PinThreadPanicked {
            dir: dir.to_path_buf(),
        })
    })
}

/// Creates the empty regular files that the namespace files are bind-mounted onto: a bind mount
/// of a file needs an existing file as its target.
fn create_bind_targets(targets: &[(NamespaceKind, PathBuf)]) -> Result<(), NetworkError> {
    for (_, target) in targets {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(target)
            .map_err(|err| NetworkError::io("create", target, err))?;
    }
    Ok(())
}

/// Runs on the dedicated thread: moves the thread into new namespaces, prepares them and
/// bind-mounts them onto the target files.
fn unshare_and_pin(
    dir: &Path,
    targets: &[(NamespaceKind, PathBuf)],
    hostname: Option<&str>,
) -> Result<(), NetworkError> {
    let failed = |step: String, source: nix::Error| NetworkError::Namespace {
        dir: dir.to_path_buf(),
        step,
        source,
    };

    let flags = targets
        .iter()
        .fold(CloneFlags::empty(), |flags, (kind, _)| {
            flags | kind.clone_flag()
        });
    nix::sched::unshare(flags).map_err(|err| failed(format!("unshare({flags:?})"), err))?;

    if let Some(hostname) = hostname {
        set_hostname(hostname)
            .map_err(|err| failed(format!("setting hostname {hostname:?}"), err))?;
    }
    if targets.iter().any(|(kind, _)| *kind == NamespaceKind::Net) {
        bring_loopback_up().map_err(|err| failed("bringing up lo".to_string(), err))?;
    }

    let tid = nix::unistd::gettid();
    for (kind, target) in targets {
        let source = format!("/proc/self/task/{tid}/ns/{}", kind.file_name());
        nix::mount::mount(
            Some(source.as_str()),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|err| {
            failed(
                format!("bind-mounting {source} on {}", target.display()),
                err,
            )
        })?;
    }
    Ok(())
}

fn set_hostname(hostname: &str) -> nix::Result<()> {
    // SAFETY: the pointer and length describe the bytes of a live &str; sethostname copies them.
    let status = unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) };
    Errno::result(status).map(drop)
}

/// Sets IFF_UP on `lo` of the calling thread's network namespace. A new network namespace has
/// `lo` down, and pods expect 127.0.0.1 to work.
fn bring_loopback_up() -> nix::Result<()> {
    // SAFETY: socket(2) takes no pointers; the returned descriptor is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let raw = Errno::result(raw)?;
    // SAFETY: `raw` is a new, valid descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: ifreq is plain old data, for which all-zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes the flags into `request`,
    // which lives for the whole call.
    let status = unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut request as *mut libc::ifreq,
        )
    };
    Errno::result(status)?;
    // SAFETY: SIOCGIFFLAGS succeeded, so the union contains the flags.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `request`.
    let status = unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &request as *const libc::ifreq,
        )
    };
    Errno::result(status).map(drop)
}

/// Detaches every mount stacked on `path`, then removes the file. Missing files are fine.
fn unpin_file(path: &Path) -> Result<(), NetworkError> {
    loop {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            // EINVAL: `path` is not a mount point (any more).
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(err) => {
                return Err(NetworkError::io("unmount", path, io::Error::from(err)));
            }
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(NetworkError::io("remove", path, err)),
    }
}
