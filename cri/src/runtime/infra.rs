//! The infra process of a pod that shares one PID namespace: the `berth` binary re-executed as
//! `berth infra`. It is PID 1 of the pod's PID namespace and reaps the orphans of every
//! container there, so the namespace outlives any one container. Pods without a shared PID
//! namespace have no infra process at all.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork};
use tokio::io::AsyncBufReadExt;

use super::RuntimeError;

/// Time the infra process may take to report its PID.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the infra process in the given namespaces and a new PID namespace, and returns its
/// host PID. The PID namespace to join is then `/proc/<pid>/ns/pid`.
pub async fn spawn(
    berth: &Path,
    net: Option<&Path>,
    ipc: Option<&Path>,
    uts: Option<&Path>,
) -> Result<i32, RuntimeError> {
    let mut namespaces = Vec::new();
    for (path, flag) in [
        (net, CloneFlags::CLONE_NEWNET),
        (ipc, CloneFlags::CLONE_NEWIPC),
        (uts, CloneFlags::CLONE_NEWUTS),
    ] {
        if let Some(path) = path {
            let file =
                File::open(path).map_err(|err| RuntimeError::io("open namespace", path, err))?;
            namespaces.push((file, flag));
        }
    }

    let mut command = tokio::process::Command::new(berth);
    command
        .arg("infra")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: between fork and exec the closure only calls setns, unshare and setsid, which are
    // async-signal-safe system calls, on descriptors opened before the fork.
    unsafe {
        command.pre_exec(move || {
            for (file, flag) in &namespaces {
                setns(file.as_fd(), *flag).map_err(std::io::Error::from)?;
            }
            unshare(CloneFlags::CLONE_NEWPID).map_err(std::io::Error::from)?;
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|err| RuntimeError::io("start infra process", berth, err))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    let read = tokio::time::timeout(
        SPAWN_TIMEOUT,
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    let _ = child.wait().await;
    match read {
        Ok(Ok(_)) => line.trim().parse().map_err(|_| {
            RuntimeError::FailedPrecondition(format!(
                "infra process reported an invalid PID {:?}",
                line.trim()
            ))
        }),
        _ => Err(RuntimeError::FailedPrecondition(
            "infra process did not report its PID".to_string(),
        )),
    }
}

/// Stops an infra process, and with it every process left in its PID namespace.
pub fn stop(pid: i32) {
    if let Err(err) = kill(Pid::from_raw(pid), Signal::SIGKILL)
        && err != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pid, error = %err, "cannot stop infra process");
    }
}

/// Runs `berth infra`: forks the PID namespace's first process, prints its host PID and exits.
/// The child reaps orphans until it is killed.
pub fn run() -> i32 {
    // SAFETY: `berth infra` is single-threaded at this point: main calls this before starting
    // any thread or runtime.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            // SAFETY: fd 1 is the pipe the daemon reads the PID from; this process owns it.
            let mut stdout = unsafe { File::from_raw_fd(std::io::stdout().as_raw_fd()) };
            let written = writeln!(stdout, "{child}");
            if written.is_err() { 1 } else { 0 }
        }
        Ok(ForkResult::Child) => {
            // SAFETY: closing the inherited report pipe, which this process never uses.
            unsafe { libc::close(1) };
            loop {
                match waitpid(None::<Pid>, None) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    // No children: wait for one to be reparented here.
                    Err(_) => std::thread::sleep(Duration::from_secs(1)),
                }
            }
        }
        Err(err) => {
            eprintln!("berth infra: fork failed: {err}");
            1
        }
    }
}
