//! The state file of `berth gc --endpoint`: when the collector first saw each image and when it
//! last saw a container use it, because the CRI reports neither a pull time nor a last-used time.
//!
//! Format (JSON), keyed by image ID:
//!
//! ```json
//! {"version": 1, "images": {"sha256:...": {"first_seen_ns": 1750000000000000000,
//!                                          "last_used_ns": 1750000360000000000}}}
//! ```

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_cri::gc::GcImage;
use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

/// First-seen and last-used times of one image, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageTimes {
    pub first_seen_ns: u64,
    pub last_used_ns: u64,
}

/// The contents of the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcState {
    pub version: u32,
    pub images: BTreeMap<String, ImageTimes>,
}

impl Default for GcState {
    fn default() -> Self {
        Self {
            version: VERSION,
            images: BTreeMap::new(),
        }
    }
}

/// Error of reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {operation} the GC state file {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl GcState {
    /// Reads the state file. A missing file gives an empty state. An unreadable or corrupt file
    /// also gives an empty state, with a warning: every image then counts as first seen now,
    /// which only delays removals by `min_age_seconds`.
    pub fn load(path: &Path) -> Self {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read the GC state file; starting with no image times");
                return Self::default();
            }
        };
        match serde_json::from_str::<GcState>(&text) {
            Ok(state) if state.version == VERSION => state,
            Ok(state) => {
                tracing::warn!(path = %path.display(), version = state.version, expected = VERSION, "GC state file has an unknown version; starting with no image times");
                Self::default()
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "GC state file is not valid JSON; starting with no image times");
                Self::default()
            }
        }
    }

    /// Writes the state file through a temporary file and a rename, so a crash leaves the old
    /// or the new file, never a partial one. Creates the parent directory when missing.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io_error = |operation, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io {
                operation,
                path,
                source,
            }
        };
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(io_error("create the directory of", path))?;
        }
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).expect("the GC state serializes to JSON");
        let mut file = std::fs::File::create(&temporary).map_err(io_error("create", &temporary))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(io_error("write", &temporary))?;
        std::fs::rename(&temporary, path).map_err(io_error("replace", path))?;
        Ok(())
    }

    /// Fills in the times of `images` at `now_ns` and records them: an image seen for the first
    /// time is first seen and last used now, and an image that a container uses now is last
    /// used now. Images no longer present are forgotten.
    pub fn observe(&mut self, images: &mut [GcImage], in_use: &HashSet<String>, now_ns: u64) {
        let mut seen = BTreeMap::new();
        for image in images.iter_mut() {
            let mut times = self.images.get(&image.id).copied().unwrap_or(ImageTimes {
                first_seen_ns: now_ns,
                last_used_ns: now_ns,
            });
            if in_use.contains(&image.id) {
                times.last_used_ns = times.last_used_ns.max(now_ns);
            }
            image.first_seen_ns = times.first_seen_ns;
            image.last_used_ns = times.last_used_ns;
            seen.insert(image.id.clone(), times);
        }
        self.images = seen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str) -> GcImage {
        GcImage {
            id: id.to_string(),
            names: Vec::new(),
            size_bytes: 1,
            first_seen_ns: 0,
            last_used_ns: 0,
            pinned: false,
        }
    }

    #[test]
    fn new_image_is_first_seen_now() {
        let mut state = GcState::default();
        let mut images = vec![image("sha256:a")];

        state.observe(&mut images, &HashSet::new(), 100);

        assert_eq!(
            (images[0].first_seen_ns, images[0].last_used_ns),
            (100, 100)
        );
    }

    #[test]
    fn use_moves_last_used_but_not_first_seen() {
        let mut state = GcState::default();
        let mut images = vec![image("sha256:a"), image("sha256:b")];
        state.observe(&mut images, &HashSet::new(), 100);

        let in_use = HashSet::from(["sha256:a".to_string()]);
        state.observe(&mut images, &in_use, 500);

        assert_eq!(
            (images[0].first_seen_ns, images[0].last_used_ns),
            (100, 500)
        );
        assert_eq!(
            (images[1].first_seen_ns, images[1].last_used_ns),
            (100, 100)
        );
    }

    #[test]
    fn removed_images_are_forgotten() {
        let mut state = GcState::default();
        state.observe(
            &mut [image("sha256:a"), image("sha256:b")],
            &HashSet::new(),
            100,
        );

        state.observe(&mut [image("sha256:b")], &HashSet::new(), 200);

        assert_eq!(state.images.keys().collect::<Vec<_>>(), ["sha256:b"]);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/gc-state.json");
        let mut state = GcState::default();
        state.observe(&mut [image("sha256:a")], &HashSet::new(), 42);

        state.save(&path).unwrap();

        assert_eq!(GcState::load(&path), state);
    }

    #[test]
    fn corrupt_file_gives_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc-state.json");
        std::fs::write(&path, "{not json").unwrap();

        assert_eq!(GcState::load(&path), GcState::default());
    }
}
