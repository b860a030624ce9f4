//! Writable layer usage: a `du`-style walk of a container's upper directory, cached briefly.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use super::{CACHE_RETENTION, PRUNE_INTERVAL, WritableLayerUsage};
use crate::runtime::monitor::now_ns;

/// How long a measured writable layer usage is reused. The kubelet requests pod and container
/// stats in one housekeeping pass, so one walk serves all of them.
const LAYER_USAGE_TTL: Duration = Duration::from_secs(5);

/// Recent writable layer measurements, by container ID.
static LAYER_USAGES: LazyLock<Mutex<LayerUsages>> = LazyLock::new(Mutex::default);

/// Measures `<layers_dir>/<id>/upper`, or reuses a measurement younger than
/// [`LAYER_USAGE_TTL`]. Returns `None` when the layer is gone or cannot be read.
pub(super) fn writable_layer(layers_dir: &Path, id: &str) -> Option<WritableLayerUsage> {
    if let Some(cached) = LAYER_USAGES
        .lock()
        .expect("layer usage cache poisoned")
        .get(id)
    {
        return Some(cached);
    }

    let upper = layers_dir.join(id).join("upper");
    let timestamp_ns = now_ns();
    let (used_bytes, inodes_used) = match directory_usage(&upper) {
        Ok(usage) => usage,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!(container = id, path = %upper.display(), error = %err, "measuring the writable layer failed");
            return None;
        }
    };
    let usage = WritableLayerUsage {
        timestamp_ns,
        mountpoint: layers_dir.to_path_buf(),
        used_bytes,
        inodes_used,
    };
    LAYER_USAGES
        .lock()
        .expect("layer usage cache poisoned")
        .insert(id, usage.clone());
    Some(usage)
}

#[derive(Default)]
struct LayerUsages {
    by_container: HashMap<String, (Instant, WritableLayerUsage)>,
    last_pruned: Option<Instant>,
}

impl LayerUsages {
    fn get(&self, id: &str) -> Option<WritableLayerUsage> {
        let (measured, usage) = self.by_container.get(id)?;
        (measured.elapsed() < LAYER_USAGE_TTL).then(|| usage.clone())
    }

    fn insert(&mut self, id: &str, usage: WritableLayerUsage) {
        let now = Instant::now();
        if self
            .last_pruned
            .is_none_or(|pruned| now.saturating_duration_since(pruned) >= PRUNE_INTERVAL)
        {
            self.last_pruned = Some(now);
            self.by_container.retain(|_, (measured, _)| {
                now.saturating_duration_since(*measured) < CACHE_RETENTION
            });
        }
        self.by_container.insert(id.to_string(), (now, usage));
    }
}

/// Returns the bytes allocated and the inodes used below `root`, `root` included, the way
/// `du -x` counts them: symlinks are not followed, other file systems mounted below are skipped
/// and a file with several hard links counts once. Entries removed during the walk are skipped.
///
/// # Errors
///
/// The error of reading `root`'s metadata; errors below it are logged at debug level and
/// skipped.
fn directory_usage(root: &Path) -> io::Result<(u64, u64)> {
    let root_metadata = fs::symlink_metadata(root)?;
    let device = root_metadata.dev();
    let mut bytes = root_metadata.blocks() * 512;
    let mut inodes = 1;
    let mut linked = HashSet::new();
    let mut pending = Vec::new();
    if root_metadata.is_dir() {
        pending.push(root.to_path_buf());
    }

    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::debug!(path = %dir.display(), error = %err, "skipping an unreadable directory");
                continue;
            }
        };
        for entry in entries.flatten() {
            // DirEntry::metadata does not follow symlinks.
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.dev() != device {
                continue;
            }
            if !metadata.is_dir() && metadata.nlink() > 1 && !linked.insert(metadata.ino()) {
                continue;
            }
            bytes += metadata.blocks() * 512;
            inodes += 1;
            if metadata.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok((bytes, inodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_usage_counts_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 64 * 1024];
        fs::write(dir.path().join("file"), &data).unwrap();
        let (single_bytes, single_inodes) = directory_usage(dir.path()).unwrap();

        fs::hard_link(dir.path().join("file"), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/usr", dir.path().join("symlink")).unwrap();
        let (bytes, inodes) = directory_usage(dir.path()).unwrap();

        assert!(single_bytes >= data.len() as u64, "{single_bytes} bytes");
        assert_eq!(single_inodes, 2, "the directory and the file");
        assert!(
            bytes >= single_bytes,
            "the symlink adds at most its own blocks"
        );
        assert!(
            bytes < single_bytes + data.len() as u64,
            "the hard link was counted twice: {bytes} bytes"
        );
        assert_eq!(inodes, 3, "the directory, the file and the symlink");
    }

    #[test]
    fn directory_usage_of_missing_dir_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = directory_usage(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
