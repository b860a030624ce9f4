//! Settings of the streaming server, read from the `[stream]` table of the daemon's config file.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// Settings of the exec, attach and port-forward streaming server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Address the HTTP server binds, as `IP:PORT`. Port 0 picks a free port, which the URLs
    /// returned by Exec, Attach and PortForward then carry.
    pub address: SocketAddr,
    /// Sessions served at the same time. A request beyond this gets HTTP 503.
    pub max_sessions: usize,
    /// Seconds a session may pass no data in either direction before it is closed. The
    /// default, 4 hours, is that of the kubelet's streaming server (`streaming.DefaultConfig`).
    pub idle_timeout_seconds: u64,
    /// Seconds a URL returned by Exec, Attach or PortForward stays valid before its first use.
    pub token_ttl_seconds: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_sessions: 64,
            idle_timeout_seconds: 4 * 60 * 60,
            token_ttl_seconds: 60,
        }
    }
}

impl StreamConfig {
    /// Checks the values that have no sensible meaning, naming the field and a valid example.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_sessions == 0 {
            return Err("stream.max_sessions must be at least 1, for example 64".into());
        }
        if self.idle_timeout_seconds == 0 {
            return Err("stream.idle_timeout_seconds must be positive, for example 14400".into());
        }
        if self.token_ttl_seconds == 0 {
            return Err("stream.token_ttl_seconds must be positive, for example 60".into());
        }
        Ok(())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_seconds)
    }
}
