//! Errors of the streaming server.

use std::io;
use std::net::SocketAddr;

use crate::runtime::RuntimeError;

/// Error of an Exec, Attach or PortForward request, or of a streaming session.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    #[error("cannot bind the streaming server to {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },

    #[error("cannot {action} {target}: {source}")]
    Io {
        action: &'static str,
        target: String,
        #[source]
        source: io::Error,
    },

    #[error("the client closed the connection")]
    ClientGone,

    #[error("the session passed no data for {seconds} s and was closed")]
    IdleTimeout { seconds: u64 },
}

impl StreamError {
    /// Wraps an I/O error with the action and the thing it concerns.
    pub fn io(action: &'static str, target: impl std::fmt::Display, source: io::Error) -> Self {
        StreamError::Io {
            action,
            target: target.to_string(),
            source,
        }
    }
}
