//! Content-addressed blob store: `blobs/sha256/<hex>`, written through `ingest/`.
//!
//! A blob is streamed into an ingest file and hashed as it arrives. Only when its size and
//! digest match the descriptor is it renamed into `blobs/`, so a blob file that exists is
//! always complete and verified.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::ImageError;

/// The blob store under one root directory.
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
    ingest_counter: AtomicU64,
}

/// Splits `sha256:<hex>` into its hex part, rejecting other algorithms and malformed digests.
pub fn sha256_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hex),
        _ => Err(ImageError::UnsupportedDigest {
            digest: digest.to_string(),
        }),
    }
}

/// Returns the `sha256:<hex>` digest of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl ContentStore {
    /// Opens (creating when missing) the store's directories under `root`.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        for dir in [&blobs, &ingest] {
            std::fs::create_dir_all(dir).map_err(|err| ImageError::io("create", dir, err))?;
        }
        Ok(Self {
            blobs,
            ingest,
            ingest_counter: AtomicU64::new(0),
        })
    }

    /// Returns the path of a blob, which may not exist.
    pub fn path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.blobs.join(sha256_hex(digest)?))
    }

    /// Returns true when the blob is stored.
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).map(|path| path.exists()).unwrap_or(false)
    }

    /// Reads a whole blob into memory. For manifests and configs, which are small.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest)?;
        std::fs::read(&path).map_err(|err| ImageError::io("read", &path, err))
    }

    /// Stores bytes already in memory after checking them against `digest`.
    pub fn write_bytes(&self, digest: &str, data: &[u8]) -> Result<(), ImageError> {
        let actual = digest_of(data);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.to_string(),
                actual,
            });
        }
        let target = self.path(digest)?;
        if target.exists() {
            return Ok(());
        }
        let ingest = self.ingest_path(digest)?;
        let guard = IngestGuard(ingest.clone());
        std::fs::write(&ingest, data).map_err(|err| ImageError::io("write", &ingest, err))?;
        std::fs::rename(&ingest, &target).map_err(|err| ImageError::io("rename", &target, err))?;
        std::mem::forget(guard);
        Ok(())
    }

    /// Streams a blob into the store, checking its size and digest as the bytes arrive.
    ///
    /// # Errors
    ///
    /// `SizeMismatch` as soon as the stream passes `expected_size` or ends short of it,
    /// `DigestMismatch` when the content hashes to another digest, `ProgressTimeout` when the
    /// stream yields nothing for `progress_timeout`. On any error, and when the future is
    /// dropped, the ingest file is removed and nothing is stored.
    pub async fn write_stream<S>(
        &self,
        digest: &str,
        expected_size: u64,
        mut stream: S,
        progress_timeout: Duration,
    ) -> Result<(), ImageError>
    where
        S: Stream<Item = Result<Bytes, ImageError>> + Unpin,
    {
        let target = self.path(digest)?;
        let ingest = self.ingest_path(digest)?;
        let guard = IngestGuard(ingest.clone());
        let file = tokio::fs::File::create(&ingest)
            .await
            .map_err(|err| ImageError::io("create", &ingest, err))?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;

        loop {
            let next = tokio::time::timeout(progress_timeout, stream.next())
                .await
                .map_err(|_| ImageError::ProgressTimeout {
                    digest: digest.to_string(),
                    seconds: progress_timeout.as_secs(),
                })?;
            let chunk = match next {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(err)) => return Err(err),
            };
            received += chunk.len() as u64;
            if received > expected_size {
                return Err(ImageError::SizeMismatch {
                    digest: digest.to_string(),
                    expected: expected_size,
                    actual: received,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|err| ImageError::io("write", &ingest, err))?;
        }

        if received != expected_size {
            return Err(ImageError::SizeMismatch {
                digest: digest.to_string(),
                expected: expected_size,
                actual: received,
            });
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.to_string(),
                actual,
            });
        }
        file.flush()
            .await
            .map_err(|err| ImageError::io("write", &ingest, err))?;
        let file = file.into_inner();
        file.sync_data()
            .await
            .map_err(|err| ImageError::io("sync", &ingest, err))?;
        drop(file);
        tokio::fs::rename(&ingest, &target)
            .await
            .map_err(|err| ImageError::io("rename", &target, err))?;
        std::mem::forget(guard);
        Ok(())
    }

    /// Removes a blob. A missing blob is not an error.
    pub fn remove(&self, digest: &str) -> Result<(), ImageError> {
        let path = self.path(digest)?;
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(ImageError::io("remove", &path, err))
            }
            _ => Ok(()),
        }
    }

    /// Lists the stored blobs as `(digest, size in bytes)`.
    pub fn list(&self) -> Result<Vec<(String, u64)>, ImageError> {
        let entries = std::fs::read_dir(&self.blobs)
            .map_err(|err| ImageError::io("list", &self.blobs, err))?;
        let mut blobs = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let size = entry.metadata().map(|meta| meta.len()).unwrap_or(0);
            blobs.push((format!("sha256:{name}"), size));
        }
        Ok(blobs)
    }

    /// Removes every ingest file. Only safe while no download is running.
    pub fn clear_ingest(&self) -> Result<usize, ImageError> {
        let entries = std::fs::read_dir(&self.ingest)
            .map_err(|err| ImageError::io("list", &self.ingest, err))?;
        let mut removed = 0;
        for entry in entries.flatten() {
            if std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn ingest_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = sha256_hex(digest)?;
        let n = self.ingest_counter.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .ingest
            .join(format!("{hex}.{}.{n}", std::process::id())))
    }
}

/// Removes an ingest file when a write fails or its future is dropped.
struct IngestGuard(PathBuf);

impl Drop for IngestGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, ImageError>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|part| Ok(Bytes::from_static(part)))
                .collect::<Vec<_>>(),
        )
    }

    fn ingest_is_empty(root: &Path) -> bool {
        std::fs::read_dir(root.join("ingest"))
            .unwrap()
            .next()
            .is_none()
    }

    #[tokio::test]
    async fn stream_with_matching_digest_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = digest_of(b"hello world");

        store
            .write_stream(
                &digest,
                11,
                chunks(&[b"hello ", b"world"]),
                Duration::from_secs(5),
            )
            .await
            .unwrap();

        assert_eq!(store.read(&digest).unwrap(), b"hello world");
        assert!(ingest_is_empty(dir.path()));
    }

    #[tokio::test]
    async fn wrong_digest_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = digest_of(b"expected");

        let err = store
            .write_stream(&digest, 8, chunks(&[b"tampered"]), Duration::from_secs(5))
            .await
            .unwrap_err();

        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!store.contains(&digest));
        assert!(ingest_is_empty(dir.path()));
    }

    #[tokio::test]
    async fn oversized_stream_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = digest_of(b"abc");

        let err = store
            .write_stream(&digest, 3, chunks(&[b"ab", b"cd"]), Duration::from_secs(5))
            .await
            .unwrap_err();

        assert!(
            matches!(err, ImageError::SizeMismatch { actual: 4, .. }),
            "{err}"
        );
        assert!(ingest_is_empty(dir.path()));
    }

    #[tokio::test]
    async fn stalled_stream_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = digest_of(b"abc");
        let stalled = futures::stream::pending::<Result<Bytes, ImageError>>();

        let err = store
            .write_stream(&digest, 3, stalled, Duration::from_millis(50))
            .await
            .unwrap_err();

        assert!(matches!(err, ImageError::ProgressTimeout { .. }), "{err}");
        assert!(ingest_is_empty(dir.path()));
    }

    #[test]
    fn non_sha256_digest_is_rejected() {
        assert!(sha256_hex("sha512:abcd").is_err());
        assert!(sha256_hex("sha256:../../etc").is_err());
    }
}
