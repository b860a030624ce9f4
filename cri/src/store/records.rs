//! Records kept in the metadata store, serialized as JSON.

use serde::{Deserialize, Serialize};

/// A pulled image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Image ID: the digest of the image config blob.
    pub id: String,
    /// Normalized `registry/repository:tag` names.
    pub repo_tags: Vec<String>,
    /// Normalized `registry/repository@digest` names, with the digest of the manifest or index
    /// that was pulled.
    pub repo_digests: Vec<String>,
    /// Digest of the image manifest chosen for this host.
    pub manifest_digest: String,
    /// Layers, base first.
    pub layers: Vec<LayerRef>,
    /// Size reported to the kubelet: config plus compressed layers, in bytes.
    pub size: u64,
    /// The image config's `User` field.
    pub user: String,
    /// Digests of every blob this image needs kept: index, manifest, config and layers.
    pub blobs: Vec<String>,
    /// When the image was first pulled, in nanoseconds since the Unix epoch.
    pub pulled_at_ns: u64,
    /// When a pull or container last used the image, in nanoseconds since the Unix epoch.
    pub last_used_ns: u64,
    /// Whether the kubelet's image GC must leave the image alone.
    pub pinned: bool,
}

impl ImageRecord {
    /// Adds the names of `other` (another pull of the same image) to this record.
    pub fn merge_names(&mut self, other: &ImageRecord) {
        for tag in &other.repo_tags {
            if !self.repo_tags.contains(tag) {
                self.repo_tags.push(tag.clone());
            }
        }
        for digest in &other.repo_digests {
            if !self.repo_digests.contains(digest) {
                self.repo_digests.push(digest.clone());
            }
        }
        for blob in &other.blobs {
            if !self.blobs.contains(blob) {
                self.blobs.push(blob.clone());
            }
        }
        self.last_used_ns = self.last_used_ns.max(other.last_used_ns);
    }

    /// Returns the diff IDs of the image's layers, base first.
    pub fn diff_ids(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(|layer| layer.diff_id.as_str())
    }
}

/// One layer as an image's manifest names it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Digest of the (possibly compressed) blob.
    pub digest: String,
    /// Digest of the uncompressed tar stream.
    pub diff_id: String,
    pub media_type: String,
    /// Compressed size in bytes.
    pub size: u64,
}

/// A layer unpacked into its own directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub diff_id: String,
    /// Bytes of regular file content written by the unpack.
    pub unpacked_bytes: u64,
    /// Files, directories, links and nodes created by the unpack.
    pub inodes: u64,
}

/// A pod sandbox. The CRI config is kept as protobuf bytes, so every field the kubelet sent
/// survives a restart without a parallel schema here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    /// `PodSandboxConfig` encoded as protobuf.
    #[serde(with = "base64_bytes")]
    pub config: Vec<u8>,
    pub runtime_handler: String,
    pub ready: bool,
    pub created_at_ns: i64,
    /// Pod IPs from CNI, IPv4 first; empty for host-network pods.
    pub ips: Vec<String>,
    /// Directory of pinned namespaces and the pod's hostname, hosts, resolv.conf and shm.
    pub dir: String,
    /// PID of the infra process when the pod shares one PID namespace.
    pub infra_pid: Option<i32>,
    /// cgroups path of the pod, parent of its containers' cgroups.
    pub cgroup_parent: String,
    /// Whether Berth chose and created the pod cgroup, and so removes it with the pod. A parent
    /// named by the request belongs to the kubelet.
    #[serde(default)]
    pub owns_cgroup: bool,
}

/// A container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    /// `ContainerConfig` encoded as protobuf.
    #[serde(with = "base64_bytes")]
    pub config: Vec<u8>,
    /// Image ID (config digest).
    pub image_id: String,
    /// The image reference the request named.
    pub image_ref: String,
    /// Absolute log path: the sandbox's log directory joined with the container's log path.
    pub log_path: String,
    pub created_at_ns: i64,
    pub started_at_ns: i64,
    pub finished_at_ns: i64,
    pub exit_code: i32,
    /// Reason of the exit: `Completed`, `Error`, `OOMKilled`; empty while running.
    pub reason: String,
    pub message: String,
    /// PID of the container's init process, while known.
    pub pid: Option<i32>,
    /// PID of the container's monitor process, while it runs.
    pub monitor_pid: Option<i32>,
    pub cgroups_path: String,
    pub runtime_handler: String,
    /// The user the container's process runs as, resolved at creation.
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}
