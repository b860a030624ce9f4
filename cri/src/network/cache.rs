//! The ADD result cache. From spec version 0.4.0 on, DEL must pass the ADD result to plugins as
//! `prevResult`, so libcni-based runtimes keep each result, and Berth does too. Berth also keeps
//! the network list the ADD ran, so that a DEL reaches the same plugins after the conf dir
//! changed.
//!
//! One JSON file per sandbox and interface: `<cache dir>/<sandbox ID>-<interface>.json`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::NetworkError;

/// Value of the `kind` field, which marks the file format.
const CACHE_KIND: &str = "berthCniCacheV1";

/// Record of one successful ADD, read by its DEL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    /// The network list as the ADD ran it.
    pub config: Value,
    pub cni_args: String,
    /// The `runtimeConfig` values the ADD offered to plugins, by capability.
    pub capability_args: Value,
    /// The last plugin's result.
    pub result: Value,
}

impl CacheEntry {
    /// Builds an entry with the current format's `kind`.
    pub fn new(
        container_id: &str,
        if_name: &str,
        network_name: &str,
        config: Value,
        cni_args: &str,
        capability_args: Value,
        result: Value,
    ) -> Self {
        CacheEntry {
            kind: CACHE_KIND.to_string(),
            container_id: container_id.to_string(),
            if_name: if_name.to_string(),
            network_name: network_name.to_string(),
            config,
            cni_args: cni_args.to_string(),
            capability_args,
            result,
        }
    }
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub fn new(dir: PathBuf) -> Self {
        ResultCache { dir }
    }

    /// Returns the cache file of a sandbox's interface. The caller has validated both names
    /// as free of '/'.
    pub fn path(&self, container_id: &str, if_name: &str) -> PathBuf {
        self.dir.join(format!("{container_id}-{if_name}.json"))
    }

    /// Reads the entry of a sandbox's interface, or returns `Ok(None)` when there is none.
    ///
    /// # Errors
    ///
    /// [`NetworkError::Io`] when the file exists but cannot be read, and
    /// [`NetworkError::InvalidConfig`] when it contains no valid entry.
    pub fn load(
        &self,
        container_id: &str,
        if_name: &str,
    ) -> Result<Option<CacheEntry>, NetworkError> {
        let path = self.path(container_id, if_name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(NetworkError::io("read", &path, err)),
        };
        let entry: CacheEntry =
            serde_json::from_slice(&bytes).map_err(|err| NetworkError::InvalidConfig {
                path: path.clone(),
                reason: format!("invalid CNI result cache entry: {err}"),
            })?;
        if entry.kind != CACHE_KIND {
            return Err(NetworkError::InvalidConfig {
                path,
                reason: format!("unknown CNI result cache kind {:?}", entry.kind),
            });
        }
        Ok(Some(entry))
    }

    /// Writes the entry through a temporary file and a rename, so that a crash leaves either
    /// the old file or the new one.
    ///
    /// # Errors
    ///
    /// [`NetworkError::Io`] when the directory or file cannot be written.
    pub fn store(&self, entry: &CacheEntry) -> Result<(), NetworkError> {
        fs::create_dir_all(&self.dir)
            .map_err(|err| NetworkError::io("create directory", &self.dir, err))?;
        let path = self.path(&entry.container_id, &entry.if_name);
        let temporary = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(entry).expect("a cache entry serializes");
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&temporary, &path)
        };
        write().map_err(|err| {
            let _ = fs::remove_file(&temporary);
            NetworkError::io("write", &path, err)
        })
    }

    /// Removes the entry of a sandbox's interface. A missing entry is not an error.
    ///
    /// # Errors
    ///
    /// [`NetworkError::Io`] when the file exists but cannot be removed.
    pub fn remove(&self, container_id: &str, if_name: &str) -> Result<(), NetworkError> {
        remove_if_present(&self.path(container_id, if_name))
    }
}

fn remove_if_present(path: &Path) -> Result<(), NetworkError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(NetworkError::io("remove", path, err)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cache_round_trip_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path().join("cache"));
        let entry = CacheEntry::new(
            "abc123",
            "eth0",
            "berth",
            json!({ "name": "berth" }),
            "IgnoreUnknown=1",
            json!({}),
            json!({ "cniVersion": "1.0.0" }),
        );

        cache.store(&entry).unwrap();
        let loaded = cache.load("abc123", "eth0").unwrap().unwrap();
        cache.remove("abc123", "eth0").unwrap();

        assert_eq!(loaded.network_name, "berth");
        assert_eq!(loaded.result["cniVersion"], "1.0.0");
        assert!(cache.load("abc123", "eth0").unwrap().is_none());
        cache.remove("abc123", "eth0").unwrap();
    }

    #[test]
    fn corrupt_cache_entry_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path().to_path_buf());
        fs::write(cache.path("abc123", "eth0"), "{").unwrap();

        let loaded = cache.load("abc123", "eth0");

        assert!(matches!(loaded, Err(NetworkError::InvalidConfig { .. })));
    }
}
