//! Running one CNI plugin executable as the CNI spec's execution protocol describes: the
//! operation and its parameters in environment variables, the network config on stdin, the
//! result or a CNI error object on stdout.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::error::{CniCommand, NetworkError};
use super::result::CniErrorOutput;

/// `PATH` given to plugins when the daemon has none. Plugins run `iptables` and other tools
/// found through it.
const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Maximum number of bytes of a plugin's stderr quoted in an error.
const MAX_QUOTED_STDERR: usize = 4096;

/// The per-call parameters of a plugin run, passed as `CNI_*` environment variables.
#[derive(Debug, Clone)]
pub struct PluginEnv {
    pub command: CniCommand,
    pub container_id: String,
    /// Network namespace path, or empty on a DEL whose namespace is already gone.
    pub netns: String,
    pub ifname: String,
    pub args: String,
    /// The plugin directories joined with ':'.
    pub cni_path: OsString,
}

impl PluginEnv {
    fn variables(&self) -> [(&'static str, OsString); 6] {
        [
            ("CNI_COMMAND", self.command.as_str().into()),
            ("CNI_CONTAINERID", self.container_id.clone().into()),
            ("CNI_NETNS", self.netns.clone().into()),
            ("CNI_IFNAME", self.ifname.clone().into()),
            ("CNI_ARGS", self.args.clone().into()),
            ("CNI_PATH", self.cni_path.clone()),
        ]
    }
}

/// Runs the plugin at `binary` with `config` on stdin and returns its stdout.
///
/// The plugin gets a cleared environment with only `PATH` and the `CNI_*` variables, so that
/// concurrent calls cannot see each other's parameters. It runs in a process group of its own,
/// which is killed when the run exceeds `timeout`, so that tools the plugin started (IPAM
/// plugins, `iptables`) die with it.
///
/// # Errors
///
/// [`NetworkError::PluginSpawn`], [`NetworkError::PluginTimeout`],
/// [`NetworkError::PluginFailed`] with the plugin's CNI error object, or
/// [`NetworkError::PluginExited`] with its stderr when it printed no CNI error object.
pub async fn run_plugin(
    plugin: &str,
    binary: &Path,
    env: &PluginEnv,
    config: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, NetworkError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| FALLBACK_PATH.into());
    let mut child = Command::new(binary)
        .env_clear()
        .env("PATH", path)
        .envs(env.variables())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| NetworkError::PluginSpawn {
            plugin: plugin.to_string(),
            command: env.command,
            source,
        })?;
    let process_group = child.id();

    let mut stdin = child.stdin.take().expect("stdin is piped");
    let write_config = async move {
        let written = stdin.write_all(&config).await;
        // Closing stdin marks the end of the config for the plugin.
        drop(stdin);
        written
    };
    let run = async { tokio::join!(write_config, child.wait_with_output()) };
    let (written, output) = match tokio::time::timeout(timeout, run).await {
        Ok(finished) => finished,
        Err(_) => {
            // Dropping the run killed the plugin itself; this kills what it started.
            if let Some(group) = process_group {
                let _ = killpg(Pid::from_raw(group as i32), Signal::SIGKILL);
            }
            return Err(NetworkError::PluginTimeout {
                plugin: plugin.to_string(),
                command: env.command,
                seconds: timeout.as_secs(),
            });
        }
    };
    let output = output.map_err(|source| NetworkError::PluginSpawn {
        plugin: plugin.to_string(),
        command: env.command,
        source,
    })?;

    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        if let Err(err) = written {
            // A plugin may legitimately exit before reading all of stdin.
            tracing::debug!(plugin, err = %err, "writing the CNI config to the plugin failed");
        }
        if !stderr.trim().is_empty() {
            tracing::debug!(plugin, command = %env.command, stderr = %stderr.trim(), "CNI plugin stderr");
        }
        return Ok(output.stdout);
    }
    if let Some(error) = CniErrorOutput::parse(&output.stdout) {
        return Err(NetworkError::PluginFailed {
            plugin: plugin.to_string(),
            command: env.command,
            code: error.code,
            msg: error.msg,
            details: error.details,
        });
    }
    let mut quoted = stderr.trim().to_string();
    if quoted.is_empty() {
        quoted = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    if quoted.is_empty() {
        quoted = "no output on stdout or stderr".to_string();
    }
    if quoted.len() > MAX_QUOTED_STDERR {
        let mut end = MAX_QUOTED_STDERR;
        while !quoted.is_char_boundary(end) {
            end -= 1;
        }
        quoted.truncate(end);
        quoted.push_str(" [truncated]");
    }
    Err(NetworkError::PluginExited {
        plugin: plugin.to_string(),
        command: env.command,
        status: output.status.to_string(),
        stderr: quoted,
    })
}
