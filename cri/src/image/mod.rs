//! The image service: pull, list, inspect and remove images, and report image filesystem usage.
//!
//! On disk, under the root directory:
//!
//! ```text
//! blobs/sha256/<hex>   verified blobs: index, manifests, configs, compressed layers
//! ingest/              blobs being downloaded
//! layers/<hex>         one unpacked layer per diff ID, overlay whiteouts in place
//! layers/.tmp-*        layers being unpacked
//! containers/          container writable layers
//! meta.db              image and layer records
//! ```

mod content;
mod error;
pub(crate) mod locks;
mod pull;
pub mod reference;
pub mod registry;
pub mod unpack;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::RwLock;

use crate::config::{ImageConfig, RegistryHosts};
use crate::store::{ImageRecord, LayerRecord, Store};
pub use content::{ContentStore, digest_of, sha256_hex};
pub use error::ImageError;
use locks::KeyedLocks;
pub use registry::Credentials;
use registry::Registries;

/// Disk usage of one filesystem as the CRI's `ImageFsInfo` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// The image service over one root directory.
pub struct ImageService {
    root: PathBuf,
    layers_dir: PathBuf,
    containers_dir: PathBuf,
    config: ImageConfig,
    content: ContentStore,
    store: Arc<Store>,
    registries: Registries,
    /// Unpacked layers by diff ID, including those of pulls still running.
    layers: Mutex<HashMap<String, LayerRecord>>,
    blob_locks: KeyedLocks,
    layer_locks: KeyedLocks,
    /// Lock that pulls hold shared and the sweep of unreferenced files takes exclusively. The
    /// sweep thus never removes what a running pull has fetched but not yet recorded.
    sweep_lock: RwLock<()>,
}

impl ImageService {
    /// Opens the image store under `root`, then removes what an earlier run left half done:
    /// ingest files, partly unpacked layers, and blobs and layers that no image record names.
    pub fn open(
        root: &Path,
        store: Arc<Store>,
        config: ImageConfig,
        hosts: RegistryHosts,
    ) -> Result<Arc<Self>, ImageError> {
        let layers_dir = root.join("layers");
        let containers_dir = root.join("containers");
        for dir in [&layers_dir, &containers_dir] {
            std::fs::create_dir_all(dir).map_err(|err| ImageError::io("create", dir, err))?;
        }
        let content = ContentStore::open(root)?;
        let layers = store
            .layers()?
            .into_iter()
            .map(|layer| (layer.diff_id.clone(), layer))
            .collect();
        let registries = Registries::new(
            hosts,
            config.docker_config_path(),
            config.progress_timeout(),
        );
        let service = Arc::new(Self {
            root: root.to_path_buf(),
            layers_dir,
            containers_dir,
            config,
            content,
            store,
            registries,
            layers: Mutex::new(layers),
            blob_locks: KeyedLocks::default(),
            layer_locks: KeyedLocks::default(),
            sweep_lock: RwLock::new(()),
        });

        let ingest = service.content.clear_ingest()?;
        let swept = service.sweep_unlocked()?;
        if ingest > 0 || swept.blobs > 0 || swept.layers > 0 {
            tracing::info!(
                ingest_files = ingest,
                blobs = swept.blobs,
                layers = swept.layers,
                "removed leftovers of an interrupted run"
            );
        }
        Ok(service)
    }

    /// Returns the root directory of the image store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns every image.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let mut images = self.store.images()?;
        images.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(images)
    }

    /// Finds an image by ID, ID prefix, tag or digest reference.
    ///
    /// A full ID matches first. A name is then normalized (`busybox` is
    /// `docker.io/library/busybox:latest`) and matched against repo tags, or repo digests when it
    /// pins a digest. Last, a hex string matches the one image whose ID starts with it.
    pub fn find(&self, name: &str) -> Result<Option<ImageRecord>, ImageError> {
        let images = self.store.images()?;
        let name = name.trim();
        let full_id = if name.len() == 64 && reference::is_id_like(name) {
            format!("sha256:{name}")
        } else {
            name.to_string()
        };
        if let Some(image) = images.iter().find(|image| image.id == full_id) {
            return Ok(Some(image.clone()));
        }

        if let Ok(parsed) = reference::parse(name) {
            let found = match parsed.digest() {
                Some(digest) => {
                    let wanted = reference::digest_name(&parsed, digest);
                    images
                        .iter()
                        .find(|image| image.repo_digests.contains(&wanted))
                }
                None => reference::tag_name(&parsed)
                    .and_then(|tag| images.iter().find(|image| image.repo_tags.contains(&tag))),
            };
            if let Some(image) = found {
                return Ok(Some(image.clone()));
            }
        }

        if reference::is_id_like(name) {
            let prefix = name.strip_prefix("sha256:").unwrap_or(name);
            let mut matches = images
                .iter()
                .filter(|image| image.id.trim_start_matches("sha256:").starts_with(prefix));
            if let (Some(image), None) = (matches.next(), matches.next()) {
                return Ok(Some(image.clone()));
            }
        }
        Ok(None)
    }

    /// Records that a container was just created from the image with this ID, for the image
    /// collector's least-recently-used order. An unknown ID is ignored.
    pub fn touch(&self, id: &str) -> Result<(), ImageError> {
        self.store.touch_image(id, now_ns())?;
        Ok(())
    }

    /// Returns the image config JSON of a recorded image.
    pub fn config_json(&self, image: &ImageRecord) -> Result<serde_json::Value, ImageError> {
        let bytes = self.content.read(&image.id)?;
        serde_json::from_slice(&bytes).map_err(|err| ImageError::InvalidConfig {
            digest: image.id.clone(),
            reason: err.to_string(),
        })
    }

    /// Removes an image with all its tags and digests, then frees the blobs and layers no other
    /// image uses. Removing an unknown image succeeds, as the CRI requires.
    pub async fn remove(&self, name: &str) -> Result<Option<ImageRecord>, ImageError> {
        let Some(image) = self.find(name)? else {
            return Ok(None);
        };
        self.store.delete_image(&image.id)?;
        tracing::info!(image = %image.id, tags = ?image.repo_tags, "removed image");
        self.try_sweep().await;
        Ok(Some(image))
    }

    /// Reports the usage of the image filesystem (blobs and unpacked layers) and the container
    /// filesystem (writable layers). Image usage comes from recorded sizes plus one directory
    /// listing of the blobs, so it stays cheap to call every few seconds.
    pub fn fs_usage(&self) -> Result<(FsUsage, FsUsage), ImageError> {
        let (layer_bytes, layer_inodes) = {
            let layers = self.layers.lock().expect("layer map poisoned");
            layers.values().fold((0, 0), |(bytes, inodes), layer| {
                (bytes + layer.unpacked_bytes, inodes + layer.inodes)
            })
        };
        let blobs = self.content.list()?;
        let blob_bytes: u64 = blobs.iter().map(|(_, size)| size).sum();
        let image = FsUsage {
            mountpoint: self.root.clone(),
            used_bytes: layer_bytes + blob_bytes,
            inodes_used: layer_inodes + blobs.len() as u64,
        };
        let (bytes, inodes) = tree_usage(&self.containers_dir);
        let container = FsUsage {
            mountpoint: self.containers_dir.clone(),
            used_bytes: bytes,
            inodes_used: inodes,
        };
        Ok((image, container))
    }

    /// Runs the sweep unless a pull is running; a skipped sweep happens at a later removal or
    /// at the next start.
    async fn try_sweep(&self) {
        let Ok(_exclusive) = self.sweep_lock.try_write() else {
            tracing::debug!("sweep of unreferenced content skipped: a pull is running");
            return;
        };
        match self.sweep_unlocked() {
            Ok(swept) if swept.blobs > 0 || swept.layers > 0 => {
                tracing::info!(
                    blobs = swept.blobs,
                    layers = swept.layers,
                    "removed unreferenced content"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "sweep of unreferenced content failed"),
        }
    }

    /// Removes blobs, layer directories and layer records that no image record names.
    /// The caller must hold `sweep_lock` exclusively or be the only user of the store.
    fn sweep_unlocked(&self) -> Result<Swept, ImageError> {
        let images = self.store.images()?;
        let mut kept_blobs = HashSet::new();
        let mut kept_layers = HashSet::new();
        for image in &images {
            kept_blobs.insert(image.id.clone());
            kept_blobs.extend(image.blobs.iter().cloned());
            kept_layers.extend(image.diff_ids().map(str::to_string));
        }

        let mut swept = Swept::default();
        for (digest, _) in self.content.list()? {
            if !kept_blobs.contains(&digest) {
                self.content.remove(&digest)?;
                swept.blobs += 1;
            }
        }

        let entries = std::fs::read_dir(&self.layers_dir)
            .map_err(|err| ImageError::io("list", &self.layers_dir, err))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = kept_layers.contains(&format!("sha256:{name}"));
            if !keep {
                let path = entry.path();
                std::fs::remove_dir_all(&path)
                    .map_err(|err| ImageError::io("remove", &path, err))?;
                swept.layers += 1;
            }
        }

        let stale: Vec<String> = {
            let mut layers = self.layers.lock().expect("layer map poisoned");
            let stale = layers
                .keys()
                .filter(|diff_id| !kept_layers.contains(*diff_id))
                .cloned()
                .collect::<Vec<_>>();
            for diff_id in &stale {
                layers.remove(diff_id);
            }
            stale
        };
        self.store.delete_layers(&stale)?;
        Ok(swept)
    }

    fn layer_path(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.layers_dir.join(sha256_hex(diff_id)?))
    }

    /// Returns the unpacked directories of an image's layers, base first.
    pub fn layer_dirs(&self, image: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        image
            .diff_ids()
            .map(|diff_id| self.layer_path(diff_id))
            .collect()
    }
}

#[derive(Debug, Default)]
struct Swept {
    blobs: usize,
    layers: usize,
}

/// Returns the bytes and inodes used below `dir`, not following symlinks.
fn tree_usage(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut inodes = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            inodes += 1;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                bytes += meta.len();
            }
        }
    }
    (bytes, inodes)
}

/// Returns the current time in nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0)
}

/// Computes the chain ID of a layer stack from its diff IDs, as the OCI image spec defines it.
pub fn chain_id<'a>(diff_ids: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut chain: Option<String> = None;
    for diff_id in diff_ids {
        chain = Some(match chain {
            None => diff_id.to_string(),
            Some(parent) => digest_of(format!("{parent} {diff_id}").as_bytes()),
        });
    }
    chain
}
