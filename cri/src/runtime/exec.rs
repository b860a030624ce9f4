//! ExecSync: run a command in a running container and return its output and exit code.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::container::ContainerState;
use super::{RuntimeError, RuntimeService, new_id};

/// How long a timed-out ExecSync waits for `runc exec` to reap the killed command.
const EXEC_REAP_WAIT: Duration = Duration::from_secs(5);

/// Output of a finished ExecSync command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

impl RuntimeService {
    /// Runs `command` in the container with the container's own process settings (user, env,
    /// working directory, capabilities), and no terminal. `timeout_seconds` of 0 means no
    /// limit. Output beyond `runtime.exec_sync_max_output_bytes` per stream is dropped.
    pub async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout_seconds: i64,
    ) -> Result<ExecOutput, RuntimeError> {
        if command.is_empty() {
            return Err(RuntimeError::InvalidArgument {
                field: "cmd",
                reason: "the command to run must not be empty".to_string(),
            });
        }
        let container = self.container(id)?;
        if container.state != ContainerState::Running {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {} is not running: exec needs a running container",
                container.record.id
            )));
        }
        let id = container.record.id.clone();
        let runtime = self.runtime(&container.record.runtime_handler)?;
        let bundle = self.bundle_dir(&id);

        let spec_path = bundle.join("config.json");
        let spec: serde_json::Value = std::fs::read(&spec_path)
            .map_err(|err| RuntimeError::io("read", &spec_path, err))
            .and_then(|bytes| {
                serde_json::from_slice(&bytes).map_err(|err| {
                    RuntimeError::io("parse", &spec_path, std::io::Error::other(err))
                })
            })?;
        let mut process = spec.get("process").cloned().unwrap_or_default();
        process["args"] = serde_json::json!(command);
        process["terminal"] = serde_json::json!(false);

        let exec_id = &new_id()[..16];
        let process_path = bundle.join(format!("exec-{exec_id}.json"));
        let pid_path = bundle.join(format!("exec-{exec_id}.pid"));
        std::fs::write(&process_path, process.to_string())
            .map_err(|err| RuntimeError::io("write", &process_path, err))?;
        let _cleanup = RemoveFiles(vec![process_path.clone(), pid_path.clone()]);

        let mut child = tokio::process::Command::from(runtime.command())
            .arg("exec")
            .arg("--process")
            .arg(&process_path)
            .arg("--pid-file")
            .arg(&pid_path)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| RuntimeError::io("run", &runtime.binary, err))?;
        let cap = self.config.exec_sync_max_output_bytes;
        let stdout = read_capped(child.stdout.take().expect("stdout is piped"), cap);
        let stderr = read_capped(child.stderr.take().expect("stderr is piped"), cap);
        let run = async {
            let (stdout, stderr, status) = tokio::join!(stdout, stderr, child.wait());
            (stdout, stderr, status)
        };

        let (stdout, stderr, status) = if timeout_seconds > 0 {
            match tokio::time::timeout(Duration::from_secs(timeout_seconds as u64), run).await {
                Ok(done) => done,
                Err(_) => {
                    // Killing `runc exec` would leave the command running in the container.
                    if let Some(pid) = std::fs::read_to_string(&pid_path)
                        .ok()
                        .and_then(|text| text.trim().parse::<i32>().ok())
                    {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    // `runc exec` is the command's parent, so let it reap the command and exit.
                    // Killed first, it would pass the dead command to the host's init, which
                    // leaves a zombie unless it reaps orphans.
                    let _ = tokio::time::timeout(EXEC_REAP_WAIT, child.wait()).await;
                    return Err(RuntimeError::ExecTimedOut {
                        id,
                        seconds: timeout_seconds,
                    });
                }
            }
        } else {
            run.await
        };
        let status = status.map_err(|err| RuntimeError::io("wait for", &runtime.binary, err))?;
        let exit_code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }
}

/// Reads a stream to its end, keeping at most `cap` bytes.
async fn read_capped(mut stream: impl AsyncRead + Unpin, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
}

/// Removes files when dropped.
struct RemoveFiles(Vec<std::path::PathBuf>);

impl Drop for RemoveFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}
