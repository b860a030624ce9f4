//! The OCI runtime binary (runc, crun) driven through its command line, as containerd's shim
//! and CRI-O do.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Time an OCI runtime command may take before it is considered hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Error of an OCI runtime command.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{runtime} {command} {id} failed: {message}")]
    Failed {
        runtime: String,
        command: &'static str,
        id: String,
        message: String,
    },
    #[error("{runtime} {command} {id} did not finish within {seconds} s")]
    TimedOut {
        runtime: String,
        command: &'static str,
        id: String,
        seconds: u64,
    },
    #[error("cannot run {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One OCI runtime: its binary and the state directory it keeps container state in.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    pub name: String,
    pub binary: PathBuf,
    pub state_root: PathBuf,
    /// Passes `--systemd-cgroup`, so that the runtime creates container cgroups as systemd
    /// scopes and reads `linux.cgroupsPath` in `slice:prefix:name` form.
    pub systemd_cgroup: bool,
}

/// State of a container as `runc state` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct OciState {
    pub status: String,
    #[serde(default)]
    pub pid: i32,
}

impl OciRuntime {
    /// Returns a command with the runtime's global flags set, for `monitor` and `exec`.
    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binary);
        command.args(self.global_args());
        command
    }

    /// Returns the global flags that go before every subcommand.
    pub fn global_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = vec!["--root".into(), self.state_root.clone().into_os_string()];
        if self.systemd_cgroup {
            args.push("--systemd-cgroup".into());
        }
        args
    }

    /// Sends a signal to the container's init process, or to every process in it with `all`.
    pub async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), OciError> {
        let mut args = vec!["kill".to_string()];
        if all {
            args.push("--all".to_string());
        }
        args.push(id.to_string());
        args.push(signal.to_string());
        match self.run("kill", id, &args).await {
            Err(OciError::Failed { message, .. }) if is_gone(&message) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Deletes the container's runtime state. A container the runtime does not know is fine.
    pub async fn delete(&self, id: &str) -> Result<(), OciError> {
        let args = ["delete".to_string(), "--force".to_string(), id.to_string()];
        match self.run("delete", id, &args).await {
            Err(OciError::Failed { message, .. }) if is_gone(&message) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Returns the container's state, or `None` when the runtime does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<OciState>, OciError> {
        let args = ["state".to_string(), id.to_string()];
        match self.run("state", id, &args).await {
            Ok(output) => {
                serde_json::from_slice(&output)
                    .map(Some)
                    .map_err(|err| OciError::Failed {
                        runtime: self.name.clone(),
                        command: "state",
                        id: id.to_string(),
                        message: format!("unreadable state JSON: {err}"),
                    })
            }
            Err(OciError::Failed { message, .. }) if is_gone(&message) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn run(
        &self,
        command: &'static str,
        id: &str,
        args: &[String],
    ) -> Result<Vec<u8>, OciError> {
        let mut process = Command::new(&self.binary);
        process
            .args(self.global_args())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = process.spawn().map_err(|source| OciError::Spawn {
            path: self.binary.clone(),
            source,
        })?;
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| OciError::TimedOut {
                runtime: self.name.clone(),
                command,
                id: id.to_string(),
                seconds: COMMAND_TIMEOUT.as_secs(),
            })?
            .map_err(|source| OciError::Spawn {
                path: self.binary.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(OciError::Failed {
            runtime: self.name.clone(),
            command,
            id: id.to_string(),
            message: runtime_message(&output.stderr),
        })
    }
}

/// Returns true when a runtime error means that the container does not exist. runc and crun
/// word it differently.
fn is_gone(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("does not exist")
        || lower.contains("not found")
        || lower.contains("no such file")
        || lower.contains("container not running")
        || lower.contains("process already finished")
}

/// Extracts the message from a runtime's stderr, which runc writes as JSON log lines
/// (`{"level":"error","msg":"..."}`) or plain text.
pub fn runtime_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut messages = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(entry) if entry.get("msg").is_some() => {
                if entry["level"] == "error" || entry["level"] == "fatal" {
                    messages.push(entry["msg"].as_str().unwrap_or_default().to_string());
                }
            }
            _ => messages.push(line.trim().to_string()),
        }
    }
    if messages.is_empty() {
        "no error message".to_string()
    } else {
        messages.join("; ")
    }
}

/// Reads the error messages a runtime wrote to its `--log` file.
pub fn runtime_log_message(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| runtime_message(&bytes))
        .unwrap_or_else(|err| format!("no runtime log at {}: {err}", path.display()))
}

/// Finds a runtime binary by name in PATH and the usual system directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_log_errors_are_extracted() {
        let stderr = br#"{"level":"info","msg":"starting"}
{"level":"error","msg":"container_linux.go: starting container process caused: exec: \"nope\": executable file not found in $PATH"}"#;
        let message = runtime_message(stderr);
        assert!(message.contains("executable file not found"), "{message}");
        assert!(!message.contains("starting\""), "{message}");
    }

    #[test]
    fn plain_text_errors_are_kept() {
        assert_eq!(
            runtime_message(b"container \"x\" does not exist\n"),
            "container \"x\" does not exist"
        );
    }

    #[test]
    fn missing_container_messages_count_as_gone() {
        assert!(is_gone("container \"abc\" does not exist"));
        assert!(is_gone("error: container not found"));
        assert!(!is_gone("permission denied"));
    }
}
