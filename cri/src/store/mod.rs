//! Persistent metadata: one crash-safe redb database file holding image and layer records.
//!
//! Files on disk are always written before the record that points at them, so after a crash the
//! database never names a blob or layer directory that is missing. What a crash can leave behind
//! is the opposite, a file that no record names, and [`crate::image::ImageService::open`] sweeps
//! those at start.

mod records;

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

pub use records::{ContainerRecord, ImageRecord, LayerRecord, LayerRef, SandboxRecord};

/// Image records keyed by image ID (the config digest).
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Unpacked layer records keyed by diff ID.
const LAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("layers");
/// Pod sandbox records keyed by sandbox ID.
const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandboxes");
/// Container records keyed by container ID.
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata database error: {0}")]
    Database(#[from] redb::Error),
    #[error("corrupt record {key:?} in table {table}: {source}")]
    Corrupt {
        table: &'static str,
        key: String,
        source: serde_json::Error,
    },
}

macro_rules! impl_from_redb {
    ($($error:ty),*) => {
        $(impl From<$error> for StoreError {
            fn from(err: $error) -> Self {
                StoreError::Database(err.into())
            }
        })*
    };
}
impl_from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The metadata database.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens the database at `path`, creating it and its tables when missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(IMAGES)?;
        txn.open_table(LAYERS)?;
        txn.open_table(SANDBOXES)?;
        txn.open_table(CONTAINERS)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// Returns every image record.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IMAGES)?;
        let mut images = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            images.push(decode("images", key.value(), value.value())?);
        }
        Ok(images)
    }

    /// Returns the image with this ID, if recorded.
    pub fn image(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IMAGES)?;
        match table.get(id)? {
            Some(value) => Ok(Some(decode("images", id, value.value())?)),
            None => Ok(None),
        }
    }

    /// Returns every unpacked layer record.
    pub fn layers(&self) -> Result<Vec<LayerRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LAYERS)?;
        let mut layers = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            layers.push(decode("layers", key.value(), value.value())?);
        }
        Ok(layers)
    }

    /// Records a pulled image and its layers in one transaction.
    ///
    /// A tag names one image at a time, as in Docker and containerd: every repo tag of `image`
    /// is removed from the other images that carried it. When `image.id` is already recorded,
    /// its tags and digests are merged into the existing record.
    pub fn put_image(&self, image: &ImageRecord, layers: &[LayerRecord]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut images = txn.open_table(IMAGES)?;
            let mut retagged = Vec::new();
            let mut existing = None;
            for row in images.iter()? {
                let (key, value) = row?;
                let mut other: ImageRecord = decode("images", key.value(), value.value())?;
                if other.id == image.id {
                    existing = Some(other);
                    continue;
                }
                let before = other.repo_tags.len();
                other.repo_tags.retain(|tag| !image.repo_tags.contains(tag));
                if other.repo_tags.len() != before {
                    retagged.push(other);
                }
            }
            for other in retagged {
                images.insert(other.id.as_str(), encode(&other).as_slice())?;
            }
            let merged = match existing {
                Some(mut old) => {
                    old.merge_names(image);
                    old
                }
                None => image.clone(),
            };
            images.insert(merged.id.as_str(), encode(&merged).as_slice())?;

            let mut layer_table = txn.open_table(LAYERS)?;
            for layer in layers {
                layer_table.insert(layer.diff_id.as_str(), encode(layer).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Replaces an image record as given, for updates such as the last-used time.
    pub fn update_image(&self, image: &ImageRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut images = txn.open_table(IMAGES)?;
            images.insert(image.id.as_str(), encode(image).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Sets an image's last-used time to `now_ns` in one transaction, so that a concurrent pull
    /// or removal of the image is neither undone nor lost. Returns false when the image is not
    /// recorded.
    pub fn touch_image(&self, id: &str, now_ns: u64) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let touched = {
            let mut images = txn.open_table(IMAGES)?;
            let current: Option<ImageRecord> = match images.get(id)? {
                Some(value) => Some(decode("images", id, value.value())?),
                None => None,
            };
            match current {
                Some(mut image) => {
                    image.last_used_ns = image.last_used_ns.max(now_ns);
                    images.insert(id, encode(&image).as_slice())?;
                    true
                }
                None => false,
            }
        };
        txn.commit()?;
        Ok(touched)
    }

    /// Deletes an image record. Deleting an unknown ID is not an error.
    pub fn delete_image(&self, id: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(IMAGES)?.remove(id)?;
        txn.commit()?;
        Ok(())
    }

    /// Deletes layer records, after their directories are gone.
    pub fn delete_layers(&self, diff_ids: &[String]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(LAYERS)?;
            for diff_id in diff_ids {
                table.remove(diff_id.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl Store {
    /// Returns every sandbox record.
    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        self.all(SANDBOXES, "sandboxes")
    }

    /// Inserts or replaces a sandbox record.
    pub fn put_sandbox(&self, sandbox: &SandboxRecord) -> Result<(), StoreError> {
        self.put(SANDBOXES, &sandbox.id, sandbox)
    }

    /// Deletes a sandbox record. Deleting an unknown ID is not an error.
    pub fn delete_sandbox(&self, id: &str) -> Result<(), StoreError> {
        self.delete(SANDBOXES, id)
    }

    /// Returns every container record.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        self.all(CONTAINERS, "containers")
    }

    /// Inserts or replaces a container record.
    pub fn put_container(&self, container: &ContainerRecord) -> Result<(), StoreError> {
        self.put(CONTAINERS, &container.id, container)
    }

    /// Deletes a container record. Deleting an unknown ID is not an error.
    pub fn delete_container(&self, id: &str) -> Result<(), StoreError> {
        self.delete(CONTAINERS, id)
    }

    fn all<T: serde::de::DeserializeOwned>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
        name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(definition)?;
        let mut records = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            records.push(decode(name, key.value(), value.value())?);
        }
        Ok(records)
    }

    fn put<T: serde::Serialize>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(definition)?
            .insert(key, encode(value).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn delete(
        &self,
        definition: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(definition)?.remove(key)?;
        txn.commit()?;
        Ok(())
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize to JSON")
}

fn decode<T: serde::de::DeserializeOwned>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table,
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            id: id.to_string(),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            ..ImageRecord::default()
        }
    }

    #[test]
    fn put_image_moves_tag() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.db")).unwrap();
        store
            .put_image(&record("sha256:a", &["x:1", "x:2"]), &[])
            .unwrap();
        store.put_image(&record("sha256:b", &["x:1"]), &[]).unwrap();

        let old = store.image("sha256:a").unwrap().unwrap();
        assert_eq!(old.repo_tags, vec!["x:2".to_string()]);
        let new = store.image("sha256:b").unwrap().unwrap();
        assert_eq!(new.repo_tags, vec!["x:1".to_string()]);
    }

    #[test]
    fn put_image_merges_names_of_same_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.db")).unwrap();
        store.put_image(&record("sha256:a", &["x:1"]), &[]).unwrap();
        store.put_image(&record("sha256:a", &["y:1"]), &[]).unwrap();

        let merged = store.image("sha256:a").unwrap().unwrap();
        assert_eq!(merged.repo_tags, vec!["x:1".to_string(), "y:1".to_string()]);
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let store = Store::open(&path).unwrap();
            let layer = LayerRecord {
                diff_id: "sha256:l".into(),
                unpacked_bytes: 10,
                inodes: 2,
            };
            store
                .put_image(&record("sha256:a", &["x:1"]), &[layer])
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.images().unwrap().len(), 1);
        assert_eq!(store.layers().unwrap()[0].unpacked_bytes, 10);
    }
}
