//! PullImage: resolve a reference to a manifest for this host, fetch its blobs in parallel and
//! unpack each layer into its own directory while later layers still download.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use futures::TryStreamExt;
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::registry::{Endpoint, map_registry_error};
use super::unpack::{Compression, unpack_layer};
use super::{Credentials, ImageError, ImageService, digest_of, now_ns, reference, sha256_hex};
use crate::store::{ImageRecord, LayerRecord, LayerRef};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPTED_MANIFESTS: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];
const CONFIG_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// Largest manifest or config accepted, in bytes; real ones are a few kilobytes.
const MAX_METADATA_BYTES: i64 = 4 << 20;

/// Counter that keeps temporary layer directory names unique within this process.
static UNPACK_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

/// An image manifest or an index, distinguished by which fields are present.
#[derive(Debug, Deserialize)]
struct ManifestDocument {
    #[serde(rename = "schemaVersion")]
    schema_version: i64,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// Source of an image's blobs: the endpoint that served its manifest.
struct Source {
    endpoint: Endpoint,
    client: oci_client::Client,
    /// The reference as fetched from the endpoint (a mirror rewrites it).
    fetch_reference: Reference,
}

/// A manifest resolved for this host, with where it was found.
struct Resolved {
    source: Arc<Source>,
    /// Digest of what the reference names: the index, or the manifest when there is no index.
    top_digest: String,
    /// Index or manifest list, when the reference names one.
    index: Option<(String, bytes::Bytes)>,
    manifest_digest: String,
    manifest_bytes: bytes::Bytes,
    manifest: ManifestDocument,
}

/// Sets the shared cancel flag when the pull's future is dropped, so blocking unpacks stop.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl ImageService {
    /// Pulls an image and records it under its normalized name, returning the record.
    ///
    /// Dropping the returned future (a cancelled RPC) aborts every download and unpack and
    /// removes their partial files.
    pub async fn pull(
        self: &Arc<Self>,
        image: &str,
        credentials: Option<&Credentials>,
    ) -> Result<ImageRecord, ImageError> {
        let parsed = reference::parse(image)?;
        let started = Instant::now();
        let mut cancel_guard = PullCancelGuard {
            service: Some(self.clone()),
            image: parsed.whole(),
        };
        let result = {
            let _shared = self.sweep_lock.read().await;
            self.pull_locked(&parsed, credentials).await
        };
        cancel_guard.service = None;
        match &result {
            Ok(record) => tracing::info!(
                image = %parsed.whole(),
                id = %record.id,
                bytes = record.size,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "pulled image"
            ),
            Err(err) => {
                tracing::warn!(image = %parsed.whole(), error = %err, "pull failed");
                self.try_sweep().await;
            }
        }
        result
    }

    async fn pull_locked(
        self: &Arc<Self>,
        parsed: &Reference,
        credentials: Option<&Credentials>,
    ) -> Result<ImageRecord, ImageError> {
        let resolved = self.resolve(parsed, credentials).await?;
        let manifest_digest = resolved.manifest_digest.clone();
        let config_descriptor =
            resolved
                .manifest
                .config
                .as_ref()
                .ok_or_else(|| ImageError::InvalidManifest {
                    digest: manifest_digest.clone(),
                    reason: "the manifest has no config".into(),
                })?;
        if !CONFIG_MEDIA_TYPES.contains(&config_descriptor.media_type.as_str()) {
            return Err(ImageError::UnsupportedMediaType {
                media_type: config_descriptor.media_type.clone(),
                digest: config_descriptor.digest.clone(),
            });
        }
        let layers = resolved.manifest.layers.as_deref().unwrap_or_default();
        let mut compressions = Vec::with_capacity(layers.len());
        for layer in layers {
            sha256_hex(&layer.digest)?;
            let compression = Compression::from_media_type(&layer.media_type).ok_or_else(|| {
                ImageError::UnsupportedMediaType {
                    media_type: layer.media_type.clone(),
                    digest: layer.digest.clone(),
                }
            })?;
            compressions.push(compression);
        }

        let config_bytes = self.fetch_config(&resolved, config_descriptor).await?;
        let config: serde_json::Value =
            serde_json::from_slice(&config_bytes).map_err(|err| ImageError::InvalidConfig {
                digest: config_descriptor.digest.clone(),
                reason: err.to_string(),
            })?;
        let diff_ids = diff_ids_of(&config, &config_descriptor.digest)?;
        if diff_ids.len() != layers.len() {
            return Err(ImageError::InvalidConfig {
                digest: config_descriptor.digest.clone(),
                reason: format!(
                    "the config lists {} diff IDs but the manifest has {} layers",
                    diff_ids.len(),
                    layers.len()
                ),
            });
        }

        let layer_records = self
            .fetch_layers(&resolved, layers, &compressions, &diff_ids)
            .await?;

        // Blobs before the record that names them.
        self.content
            .write_bytes(&resolved.manifest_digest, &resolved.manifest_bytes)?;
        let mut blobs = vec![
            resolved.manifest_digest.clone(),
            config_descriptor.digest.clone(),
        ];
        if let Some((digest, bytes)) = &resolved.index {
            self.content.write_bytes(digest, bytes)?;
            blobs.push(digest.clone());
        }
        blobs.extend(layers.iter().map(|layer| layer.digest.clone()));

        let now = now_ns();
        let record = ImageRecord {
            id: config_descriptor.digest.clone(),
            repo_tags: reference::tag_name(parsed).into_iter().collect(),
            repo_digests: vec![reference::digest_name(parsed, &resolved.top_digest)],
            manifest_digest: resolved.manifest_digest.clone(),
            layers: layers
                .iter()
                .zip(&diff_ids)
                .map(|(layer, diff_id)| LayerRef {
                    digest: layer.digest.clone(),
                    diff_id: diff_id.clone(),
                    media_type: layer.media_type.clone(),
                    size: layer.size.max(0) as u64,
                })
                .collect(),
            size: resolved.manifest_bytes.len() as u64
                + config_descriptor.size.max(0) as u64
                + layers
                    .iter()
                    .map(|layer| layer.size.max(0) as u64)
                    .sum::<u64>(),
            user: config
                .pointer("/config/User")
                .and_then(|user| user.as_str())
                .unwrap_or_default()
                .to_string(),
            blobs,
            pulled_at_ns: now,
            last_used_ns: now,
            pinned: false,
        };
        self.store.put_image(&record, &layer_records)?;
        Ok(self.store.image(&record.id)?.unwrap_or(record))
    }

    /// Finds the manifest for this host, trying each mirror before the registry itself.
    async fn resolve(
        &self,
        parsed: &Reference,
        credentials: Option<&Credentials>,
    ) -> Result<Resolved, ImageError> {
        let endpoints = self.registries.endpoints(parsed.registry());
        let mut last_error = None;
        for endpoint in endpoints {
            match self.resolve_at(&endpoint, parsed, credentials).await {
                Ok(resolved) => return Ok(resolved),
                Err(err) if endpoint.mirror => {
                    tracing::warn!(
                        image = %parsed.whole(),
                        mirror = %endpoint.host,
                        error = %err,
                        "mirror failed, trying the next endpoint"
                    );
                    last_error = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_error.expect("the endpoint list always ends with the registry itself"))
    }

    async fn resolve_at(
        &self,
        endpoint: &Endpoint,
        parsed: &Reference,
        credentials: Option<&Credentials>,
    ) -> Result<Resolved, ImageError> {
        let client = self.registries.client(endpoint)?;
        let auth = self
            .registries
            .auth_for(endpoint, parsed, credentials)
            .await?;
        let fetch_reference = endpoint.reference_for(parsed);

        let (top_bytes, top_digest) = self
            .fetch_manifest(&client, &auth, endpoint, &fetch_reference)
            .await?;
        if let Some(pinned) = parsed.digest()
            && top_digest != pinned
        {
            return Err(ImageError::DigestMismatch {
                digest: pinned.to_string(),
                actual: top_digest,
            });
        }
        let top = parse_manifest(&top_bytes, &top_digest)?;

        let Some(entries) = &top.manifests else {
            return Ok(Resolved {
                source: Arc::new(Source {
                    endpoint: endpoint.clone(),
                    client,
                    fetch_reference,
                }),
                top_digest: top_digest.clone(),
                index: None,
                manifest_digest: top_digest,
                manifest_bytes: top_bytes,
                manifest: top,
            });
        };

        let chosen = choose_platform(entries).ok_or_else(|| ImageError::NoMatchingPlatform {
            reference: parsed.whole(),
            platform: host_platform_name(),
        })?;
        let child_reference = fetch_reference.clone_with_digest(chosen.digest.clone());
        let (bytes, digest) = self
            .fetch_manifest(&client, &auth, endpoint, &child_reference)
            .await?;
        if digest != chosen.digest {
            return Err(ImageError::DigestMismatch {
                digest: chosen.digest.clone(),
                actual: digest,
            });
        }
        let manifest = parse_manifest(&bytes, &digest)?;
        if manifest.manifests.is_some() {
            return Err(ImageError::InvalidManifest {
                digest,
                reason: "an index entry points at another index".into(),
            });
        }
        Ok(Resolved {
            source: Arc::new(Source {
                endpoint: endpoint.clone(),
                client,
                fetch_reference,
            }),
            top_digest: top_digest.clone(),
            index: Some((top_digest, top_bytes)),
            manifest_digest: digest,
            manifest_bytes: bytes,
            manifest,
        })
    }

    /// Fetches a manifest and returns it with the digest of the bytes actually received.
    async fn fetch_manifest(
        &self,
        client: &oci_client::Client,
        auth: &RegistryAuth,
        endpoint: &Endpoint,
        reference: &Reference,
    ) -> Result<(bytes::Bytes, String), ImageError> {
        let request = client.pull_manifest_raw(reference, auth, ACCEPTED_MANIFESTS);
        let (bytes, _) = tokio::time::timeout(self.config.progress_timeout(), request)
            .await
            .map_err(|_| ImageError::ProgressTimeout {
                digest: reference.whole(),
                seconds: self.config.progress_timeout_seconds,
            })?
            .map_err(|err| map_registry_error(err, &endpoint.host, &reference.whole()))?;
        if bytes.len() as i64 > MAX_METADATA_BYTES {
            return Err(ImageError::InvalidManifest {
                digest: reference.whole(),
                reason: format!(
                    "the manifest is {} bytes, over the limit of {MAX_METADATA_BYTES}",
                    bytes.len()
                ),
            });
        }
        let digest = digest_of(&bytes);
        Ok((bytes, digest))
    }

    async fn fetch_config(
        &self,
        resolved: &Resolved,
        descriptor: &Descriptor,
    ) -> Result<Vec<u8>, ImageError> {
        if descriptor.size > MAX_METADATA_BYTES {
            return Err(ImageError::InvalidConfig {
                digest: descriptor.digest.clone(),
                reason: format!(
                    "the config is {} bytes, over the limit of {MAX_METADATA_BYTES}",
                    descriptor.size
                ),
            });
        }
        self.ensure_blob(&resolved.source, &descriptor.digest, descriptor.size)
            .await?;
        self.content.read(&descriptor.digest)
    }

    /// Downloads a blob unless it is stored. Concurrent callers for one digest download it once.
    async fn ensure_blob(
        &self,
        source: &Source,
        digest: &str,
        size: i64,
    ) -> Result<(), ImageError> {
        let _blob = self.blob_locks.lock(digest).await;
        if self.content.contains(digest) {
            return Ok(());
        }
        let started = Instant::now();
        let host = source.endpoint.host.clone();
        let reference_name = source.fetch_reference.whole();
        let request = source
            .client
            .pull_blob_stream(&source.fetch_reference, digest);
        let sized = tokio::time::timeout(self.config.progress_timeout(), request)
            .await
            .map_err(|_| ImageError::ProgressTimeout {
                digest: digest.to_string(),
                seconds: self.config.progress_timeout_seconds,
            })?
            .map_err(|err| map_registry_error(err, &host, &reference_name))?;
        let stream = sized
            .stream
            .map_err(|err| blob_stream_error(err, digest, &host));
        self.content
            .write_stream(
                digest,
                size.max(0) as u64,
                stream,
                self.config.progress_timeout(),
            )
            .await?;
        tracing::debug!(
            digest,
            bytes = size,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fetched blob"
        );
        Ok(())
    }

    /// Fetches and unpacks every layer that is not unpacked yet. Downloads are limited to
    /// `max_concurrent_downloads`; a layer unpacks as soon as its blob is in, while the next
    /// downloads continue.
    async fn fetch_layers(
        self: &Arc<Self>,
        resolved: &Resolved,
        layers: &[Descriptor],
        compressions: &[Compression],
        diff_ids: &[String],
    ) -> Result<Vec<LayerRecord>, ImageError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        let downloads = Arc::new(Semaphore::new(self.config.max_concurrent_downloads));
        let mut tasks = JoinSet::new();

        for (index, layer) in layers.iter().enumerate() {
            let job = LayerJob {
                digest: layer.digest.clone(),
                size: layer.size,
                compression: compressions[index],
                diff_id: diff_ids[index].clone(),
            };
            let service = self.clone();
            let source = resolved.source.clone();
            let downloads = downloads.clone();
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let record = service
                    .fetch_layer(&source, job, &downloads, cancel)
                    .await?;
                Ok::<_, ImageError>((index, record))
            });
        }

        let mut records: Vec<Option<LayerRecord>> = vec![None; layers.len()];
        while let Some(joined) = tasks.join_next().await {
            let (index, record) = joined.map_err(|err| ImageError::Io {
                action: "run layer task",
                path: String::new(),
                source: std::io::Error::other(err),
            })??;
            records[index] = Some(record);
        }
        Ok(records.into_iter().flatten().collect())
    }

    async fn fetch_layer(
        &self,
        source: &Source,
        job: LayerJob,
        downloads: &Semaphore,
        cancel: Arc<AtomicBool>,
    ) -> Result<LayerRecord, ImageError> {
        let _layer = self.layer_locks.lock(&job.diff_id).await;
        if let Some(record) = self
            .layers
            .lock()
            .expect("layer map poisoned")
            .get(&job.diff_id)
        {
            return Ok(record.clone());
        }

        {
            let _permit = downloads
                .acquire()
                .await
                .expect("download semaphore is never closed");
            self.ensure_blob(source, &job.digest, job.size).await?;
        }

        let target = self.layer_path(&job.diff_id)?;
        let scratch = self.layers_dir.join(format!(
            ".tmp-{}-{}",
            sha256_hex(&job.diff_id)?,
            UNPACK_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&scratch).map_err(|err| ImageError::io("create", &scratch, err))?;
        let scratch_guard = Arc::new(ScratchDir {
            path: scratch.clone(),
            keep: AtomicBool::new(false),
        });

        let blob = self.content.path(&job.digest)?;
        let max_bytes = self.config.max_layer_bytes;
        let started = Instant::now();
        let unpacked = {
            let holder = scratch_guard.clone();
            tokio::task::spawn_blocking(move || {
                unpack_layer(&blob, job.compression, &holder.path, max_bytes, &cancel)
            })
            .await
            .map_err(|err| ImageError::Io {
                action: "run unpack task for",
                path: scratch.display().to_string(),
                source: std::io::Error::other(err),
            })?
            .map_err(|source| ImageError::Unpack {
                digest: job.digest.clone(),
                source,
            })?
        };
        if unpacked.diff_id != job.diff_id {
            return Err(ImageError::DiffIdMismatch {
                digest: job.digest.clone(),
                expected: job.diff_id.clone(),
                actual: unpacked.diff_id,
            });
        }

        if target.exists() {
            // Left by a crash between unpack and record; the record is the source of truth.
            std::fs::remove_dir_all(&target)
                .map_err(|err| ImageError::io("replace", &target, err))?;
        }
        std::fs::rename(&scratch, &target).map_err(|err| ImageError::io("rename", &target, err))?;
        scratch_guard.keep.store(true, Ordering::Relaxed);

        let record = LayerRecord {
            diff_id: job.diff_id.clone(),
            unpacked_bytes: unpacked.bytes,
            inodes: unpacked.inodes,
        };
        self.layers
            .lock()
            .expect("layer map poisoned")
            .insert(job.diff_id.clone(), record.clone());
        tracing::debug!(
            digest = %job.digest,
            diff_id = %job.diff_id,
            bytes = unpacked.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "unpacked layer"
        );
        Ok(record)
    }
}

struct LayerJob {
    digest: String,
    size: i64,
    compression: Compression,
    diff_id: String,
}

/// A scratch directory for one unpack, removed when its last holder drops it unless kept.
/// The pull and the blocking unpack each hold it, so a cancelled pull removes the directory
/// only after the unpack has stopped writing into it.
struct ScratchDir {
    path: PathBuf,
    keep: AtomicBool,
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep.load(Ordering::Relaxed) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Logs a pull whose RPC was cancelled and sweeps what it fetched, when dropped armed.
struct PullCancelGuard {
    service: Option<Arc<ImageService>>,
    image: String,
}

impl Drop for PullCancelGuard {
    fn drop(&mut self) {
        let Some(service) = self.service.take() else {
            return;
        };
        tracing::warn!(image = %self.image, "pull cancelled by the client");
        // The sweep waits for the cancelled pull's lock to be released, so it runs as a task.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { service.try_sweep().await });
        }
    }
}

fn parse_manifest(bytes: &[u8], digest: &str) -> Result<ManifestDocument, ImageError> {
    let document: ManifestDocument =
        serde_json::from_slice(bytes).map_err(|err| ImageError::InvalidManifest {
            digest: digest.to_string(),
            reason: err.to_string(),
        })?;
    if document.schema_version != 2 {
        return Err(ImageError::InvalidManifest {
            digest: digest.to_string(),
            reason: format!(
                "schema version {} is not supported; only schema 2 manifests and OCI manifests are",
                document.schema_version
            ),
        });
    }
    if let Some(media_type) = &document.media_type
        && !ACCEPTED_MANIFESTS.contains(&media_type.as_str())
    {
        return Err(ImageError::UnsupportedMediaType {
            media_type: media_type.clone(),
            digest: digest.to_string(),
        });
    }
    if document.manifests.is_none() && (document.config.is_none() || document.layers.is_none()) {
        return Err(ImageError::InvalidManifest {
            digest: digest.to_string(),
            reason: "neither an image manifest (config and layers) nor an index (manifests)".into(),
        });
    }
    Ok(document)
}

fn diff_ids_of(config: &serde_json::Value, digest: &str) -> Result<Vec<String>, ImageError> {
    let list = config
        .pointer("/rootfs/diff_ids")
        .and_then(|ids| ids.as_array())
        .ok_or_else(|| ImageError::InvalidConfig {
            digest: digest.to_string(),
            reason: "rootfs.diff_ids is missing".into(),
        })?;
    list.iter()
        .map(|id| {
            let id = id.as_str().unwrap_or_default();
            sha256_hex(id)?;
            Ok(id.to_string())
        })
        .collect()
}

/// Maps an error from a blob stream, telling a digest mismatch found by the client apart from
/// a broken connection.
fn blob_stream_error(err: std::io::Error, digest: &str, host: &str) -> ImageError {
    if let Some(inner) = err.get_ref()
        && let Some(oci_client::errors::DigestError::VerificationError { actual, .. }) =
            inner.downcast_ref::<oci_client::errors::DigestError>()
    {
        return ImageError::DigestMismatch {
            digest: digest.to_string(),
            actual: actual.clone(),
        };
    }
    ImageError::RegistryUnavailable {
        registry: host.to_string(),
        detail: format!("download of {digest} broke off: {err}"),
    }
}

/// Returns this host's OCI architecture name and the variant it prefers.
fn host_platform() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    }
}

fn host_platform_name() -> String {
    match host_platform() {
        (arch, Some(variant)) => format!("linux/{arch}/{variant}"),
        (arch, None) => format!("linux/{arch}"),
    }
}

/// Picks the index entry for linux on this host's architecture: an exact variant match first,
/// then an entry that names no variant.
fn choose_platform(entries: &[Descriptor]) -> Option<&Descriptor> {
    let (arch, variant) = host_platform();
    let candidates: Vec<&Descriptor> = entries
        .iter()
        .filter(|entry| {
            entry
                .platform
                .as_ref()
                .is_some_and(|platform| platform.os == "linux" && platform.architecture == arch)
        })
        .collect();
    let variant_of = |entry: &Descriptor| {
        entry
            .platform
            .as_ref()
            .and_then(|platform| platform.variant.clone())
            .filter(|variant| !variant.is_empty())
    };
    candidates
        .iter()
        .find(|entry| variant.is_some() && variant_of(entry).as_deref() == variant)
        .or_else(|| candidates.iter().find(|entry| variant_of(entry).is_none()))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    #[test]
    fn platform_choice_matches_host() {
        let (arch, variant) = host_platform();
        let entries = vec![
            entry("s390x-none", None, "other"),
            entry(arch, variant, "host"),
        ];
        assert_eq!(choose_platform(&entries).unwrap().digest, "host");
    }

    #[test]
    fn platform_choice_fails_without_host_arch() {
        let entries = vec![entry("not-an-arch", None, "x")];
        assert!(choose_platform(&entries).is_none());
    }

    #[test]
    fn schema1_manifest_is_rejected() {
        let err = parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#, "sha256:x").unwrap_err();
        assert!(err.to_string().contains("schema version 1"), "{err}");
    }

    #[test]
    fn unknown_manifest_media_type_is_rejected() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/x-unknown","config":{"mediaType":"a","digest":"sha256:x","size":1},"layers":[]}"#;
        let err = parse_manifest(body, "sha256:x").unwrap_err();
        assert!(
            matches!(err, ImageError::UnsupportedMediaType { .. }),
            "{err}"
        );
    }

    #[test]
    fn chain_id_follows_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert_eq!(super::super::chain_id([a.as_str()]).unwrap(), a);
        assert_eq!(
            super::super::chain_id([a.as_str(), b.as_str()]).unwrap(),
            digest_of(format!("{a} {b}").as_bytes())
        );
    }
}
