//! Single-use tokens that name a pending Exec, Attach or PortForward request in its URL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_proto::cri::{AttachRequest, ExecRequest, PortForwardRequest};

/// A request returned as a URL and not yet used.
#[derive(Debug, Clone)]
pub enum PendingRequest {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

impl PendingRequest {
    /// Returns the URL path segment that serves this kind of request.
    pub fn route(&self) -> &'static str {
        match self {
            PendingRequest::Exec(_) => "exec",
            PendingRequest::Attach(_) => "attach",
            PendingRequest::PortForward(_) => "portforward",
        }
    }
}

/// Pending requests keyed by token. A token is removed at its first use, whatever the outcome,
/// and is invalid after `ttl` even when unused.
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, PendingRequest)>>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores a request and returns its new token: 32 random bytes as 64 hex digits.
    pub fn insert(&self, request: PendingRequest) -> String {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("token cache poisoned");
        entries.retain(|_, (created, _)| now.duration_since(*created) < self.ttl);
        entries.insert(token.clone(), (now, request));
        token
    }

    /// Removes and returns the request of a token, unless the token is unknown, already used,
    /// expired, or names a request of another route.
    pub fn take(&self, route: &str, token: &str) -> Option<PendingRequest> {
        let (created, request) = self
            .entries
            .lock()
            .expect("token cache poisoned")
            .remove(token)?;
        if created.elapsed() >= self.ttl || request.route() != route {
            return None;
        }
        Some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_request() -> PendingRequest {
        PendingRequest::Exec(ExecRequest {
            container_id: "c1".to_string(),
            cmd: vec!["true".to_string()],
            ..Default::default()
        })
    }

    #[test]
    fn token_is_single_use() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let token = cache.insert(exec_request());

        assert_eq!(token.len(), 64);
        assert!(cache.take("exec", &token).is_some());
        assert!(cache.take("exec", &token).is_none());
    }

    #[test]
    fn expired_token_is_rejected() {
        let cache = TokenCache::new(Duration::from_millis(1));
        let token = cache.insert(exec_request());
        std::thread::sleep(Duration::from_millis(5));

        assert!(cache.take("exec", &token).is_none());
    }

    #[test]
    fn token_of_other_route_is_rejected_and_spent() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let token = cache.insert(exec_request());

        assert!(cache.take("attach", &token).is_none());
        assert!(cache.take("exec", &token).is_none());
    }

    #[test]
    fn tokens_differ() {
        let cache = TokenCache::new(Duration::from_secs(60));

        assert_ne!(cache.insert(exec_request()), cache.insert(exec_request()));
    }
}
