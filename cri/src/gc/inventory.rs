//! The inventory a run reads from a runtime before it plans: images, containers, sandboxes and
//! the usage of the image filesystem. The same types describe Berth's own store and a remote
//! CRI runtime, so one selection function serves both.

use serde::Serialize;

/// An image, as the collector records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcImage {
    /// Image ID, the config digest (`sha256:...`).
    pub id: String,
    /// Repo tags, then repo digests, normalized as ListImages reports them.
    pub names: Vec<String>,
    /// Size as the runtime reports it (Berth: config, manifest and compressed layers), in bytes.
    /// Layers shared with other images are counted in each image.
    pub size_bytes: u64,
    /// When the image was pulled, or first seen by a collector that cannot know the pull time,
    /// in nanoseconds since the Unix epoch.
    pub first_seen_ns: u64,
    /// When a pull or a new container last used the image, in nanoseconds since the epoch.
    pub last_used_ns: u64,
    /// The CRI `pinned` flag, set by the runtime for images that must never be removed.
    pub pinned: bool,
}

impl GcImage {
    /// Returns the name to show: the first repo tag, else the first repo digest, else the ID.
    pub fn display_name(&self) -> &str {
        self.names.first().map_or(self.id.as_str(), String::as_str)
    }
}

/// Lifecycle state of a container, as the CRI reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A container, as the collector records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcContainer {
    pub id: String,
    pub sandbox_id: String,
    /// The container's image: its ID, or a name when the runtime reports only that.
    pub image: String,
    pub state: GcContainerState,
    /// When an exited container finished, in nanoseconds since the epoch; 0 otherwise.
    pub finished_at_ns: u64,
}

/// A pod sandbox, as the collector records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcSandbox {
    pub id: String,
    pub ready: bool,
}

/// Capacity and usage of the filesystem that contains the images, counted as df(1) counts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// A path on the filesystem: the image store's root or the runtime's reported mountpoint.
    pub path: String,
    /// Used plus available bytes. Blocks reserved for root are in neither, so that usage in
    /// percent is the `Use%` that df(1) shows.
    pub capacity_bytes: u64,
    pub used_bytes: u64,
}

impl DiskUsage {
    /// Returns the usage in percent of the capacity; a filesystem of capacity 0 is 0 % used.
    pub fn used_percent(&self) -> f64 {
        if self.capacity_bytes == 0 {
            return 0.0;
        }
        self.used_bytes as f64 * 100.0 / self.capacity_bytes as f64
    }

    /// Returns the bytes to free to bring usage down to `percent` of the capacity.
    pub fn bytes_above(&self, percent: u8) -> u64 {
        let allowed = (self.capacity_bytes as u128 * u128::from(percent) / 100) as u64;
        self.used_bytes.saturating_sub(allowed)
    }

    /// Reads the usage of the filesystem that contains `path` with statvfs(3).
    pub fn of_path(path: &std::path::Path) -> std::io::Result<Self> {
        let stats = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
        let fragment = stats.fragment_size();
        let used_bytes = stats.blocks().saturating_sub(stats.blocks_free()) * fragment;
        let available_bytes = stats.blocks_available() * fragment;
        Ok(Self {
            path: path.display().to_string(),
            capacity_bytes: used_bytes + available_bytes,
            used_bytes,
        })
    }
}

/// Everything one run plans from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub images: Vec<GcImage>,
    pub containers: Vec<GcContainer>,
    pub sandboxes: Vec<GcSandbox>,
    /// Usage of the image filesystem; `None` when the target could not measure it.
    pub disk: Option<DiskUsage>,
}
