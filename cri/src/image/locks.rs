//! Per-key async locks, so that concurrent pulls fetch each blob and unpack each layer once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// A set of async mutexes created on demand, one per key, removed when no one holds or waits.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds the lock of one key until dropped.
pub struct KeyedGuard<'a> {
    owner: &'a KeyedLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    /// Waits for and takes the lock of `key`.
    pub async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let mutex = {
            let mut locks = self.locks.lock().expect("keyed lock map poisoned");
            locks.entry(key.to_string()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyedGuard {
            owner: self,
            key: key.to_string(),
            guard: Some(guard),
        }
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.owner.locks.lock().expect("keyed lock map poisoned");
        self.guard.take();
        // Clones are only taken under the map lock, so the count cannot grow while we look:
        // a count of one means only the map holds the mutex, and no one waits for it.
        if let Some(mutex) = locks.get(&self.key)
            && Arc::strong_count(mutex) == 1
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn released_keys_are_forgotten() {
        let locks = KeyedLocks::default();
        {
            let _a = locks.lock("a").await;
            assert_eq!(locks.locks.lock().unwrap().len(), 1);
        }
        assert!(locks.locks.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn second_holder_waits() {
        let locks = Arc::new(KeyedLocks::default());
        let first = locks.lock("k").await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock("k").await;
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(first);
        waiter.await.unwrap();
    }
}
