//! Errors of the pod network: namespace pinning, CNI plugin runs and sandbox files.

use std::io;
use std::path::{Path, PathBuf};

/// Error of a pod network operation.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("pinning namespaces under {dir}: {step} failed: {source}")]
    Namespace {
        dir: PathBuf,
        step: String,
        #[source]
        source: nix::Error,
    },

    #[error("{path} is already a mount point; unpin the sandbox's namespaces before pinning again")]
    AlreadyPinned { path: PathBuf },

    #[error("the thread that creates namespaces for {dir} panicked")]
    PinThreadPanicked { dir: PathBuf },

    #[error("invalid CNI config {path}: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },

    #[error("invalid network settings: {reason}")]
    InvalidSetting { reason: String },

    #[error("invalid {field} {value:?} for the CNI call: {reason}")]
    InvalidArgument {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error(
        "CNI plugin {plugin:?} of network {network:?} not found in {dirs}; install the Debian \
         package containernetworking-plugins or list the plugin's directory in network.bin_dirs"
    )]
    PluginNotFound {
        plugin: String,
        network: String,
        dirs: String,
    },

    #[error("starting CNI plugin {plugin:?} for {command} failed: {source}")]
    PluginSpawn {
        plugin: String,
        command: CniCommand,
        #[source]
        source: io::Error,
    },

    #[error(
        "CNI plugin {plugin:?} timed out after {seconds} s on {command} (network.plugin_timeout_seconds)"
    )]
    PluginTimeout {
        plugin: String,
        command: CniCommand,
        seconds: u64,
    },

    #[error("CNI plugin {plugin:?} failed on {command} with error code {code}: {msg}{}", details_suffix(.details))]
    PluginFailed {
        plugin: String,
        command: CniCommand,
        /// Error code from the CNI spec: 1 to 99 are reserved by the spec, 100 and up belong to
        /// the plugin.
        code: u32,
        msg: String,
        details: String,
    },

    #[error("CNI plugin {plugin:?} failed on {command} ({status}) without a CNI error: {stderr}")]
    PluginExited {
        plugin: String,
        command: CniCommand,
        status: String,
        stderr: String,
    },

    #[error("CNI plugin {plugin:?} returned an invalid {command} result: {reason}")]
    InvalidResult {
        plugin: String,
        command: CniCommand,
        reason: String,
    },
}

/// CNI operation passed to a plugin in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
}

impl CniCommand {
    /// Returns the value of `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
        }
    }
}

impl std::fmt::Display for CniCommand {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

impl NetworkError {
    /// Wraps an I/O error with the action and path it concerns.
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        NetworkError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
