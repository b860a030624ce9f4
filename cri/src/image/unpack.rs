//! Layer unpacking: one tar stream into one fresh directory, entry by entry.
//!
//! Each layer gets its own directory, so overlayfs can stack them later. The loop is our own
//! rather than `tar::Archive::unpack`, because a layer needs overlay whiteouts, owners, xattrs
//! and device nodes kept as they are, and every path checked against escape.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};
use tar::EntryType;

/// Prefix of overlay-style whiteout names in OCI and Docker layers.
const WHITEOUT_PREFIX: &str = ".wh.";
/// Name that marks its directory opaque: lower layers' contents are hidden.
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The xattr overlayfs reads to treat a directory as opaque.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Compression of a layer blob, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Maps an OCI or Docker layer media type to its compression, or `None` when the media type
    /// is not a layer type Berth can unpack.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Error of a layer unpack.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry {path:?} escapes the layer directory")]
    PathEscape { path: PathBuf },
    #[error("entry {path:?} would be written through the symlink {symlink:?}")]
    SymlinkParent { path: PathBuf, symlink: PathBuf },
    #[error("entry {path:?} has parent {parent:?}, which is not a directory")]
    ParentNotDirectory { path: PathBuf, parent: PathBuf },
    #[error("hard link {path:?} points at {target:?}, which is not in this layer")]
    LinkTargetMissing { path: PathBuf, target: PathBuf },
    #[error("entry {path:?} has unsupported tar type {kind}")]
    UnsupportedEntry { path: PathBuf, kind: String },
    #[error("layer expands past the limit of {limit} bytes (image.max_layer_bytes)")]
    TooLarge { limit: u64 },
    #[error("unpack was cancelled")]
    Cancelled,
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed tar stream: {0}")]
    Tar(io::Error),
}

/// Result of a successful unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedLayer {
    /// `sha256:` digest of the uncompressed tar stream.
    pub diff_id: String,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Entries created.
    pub inodes: u64,
}

/// Unpacks the layer blob at `blob` into `dest`, which must be an empty directory.
///
/// The uncompressed stream is hashed to give the diff ID and counted against `max_bytes`.
/// `cancel` is polled between entries. On error `dest` is left partly written: the caller
/// removes it.
pub fn unpack_layer(
    blob: &Path,
    compression: Compression,
    dest: &Path,
    max_bytes: u64,
    cancel: &AtomicBool,
) -> Result<UnpackedLayer, UnpackError> {
    let file = File::open(blob).map_err(|source| UnpackError::Io {
        action: "open",
        path: blob.to_path_buf(),
        source,
    })?;
    let buffered = BufReader::with_capacity(1 << 20, file);
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(UnpackError::Tar)?)
        }
    };
    unpack_stream(decompressed, dest, max_bytes, cancel)
}

/// Unpacks an uncompressed tar stream into `dest`. See [`unpack_layer`].
pub fn unpack_stream<R: Read>(
    reader: R,
    dest: &Path,
    max_bytes: u64,
    cancel: &AtomicBool,
) -> Result<UnpackedLayer, UnpackError> {
    let over_limit = Rc::new(Cell::new(false));
    let counter = CountingReader {
        inner: reader,
        hasher: Sha256::new(),
        count: 0,
        limit: max_bytes,
        over_limit: over_limit.clone(),
    };
    let mut archive = tar::Archive::new(counter);
    let mut unpacker = Unpacker {
        root: dest.to_path_buf(),
        bytes: 0,
        inodes: 0,
        dir_times: HashMap::new(),
    };

    let result = unpacker.unpack_entries(&mut archive, cancel);
    if over_limit.get() {
        return Err(UnpackError::TooLarge { limit: max_bytes });
    }
    result?;

    // The diff ID covers the whole stream, including the end-of-archive blocks after the last entry.
    let mut counter = archive.into_inner();
    io::copy(&mut counter, &mut io::sink()).map_err(|err| {
        if over_limit.get() {
            UnpackError::TooLarge { limit: max_bytes }
        } else {
            UnpackError::Tar(err)
        }
    })?;
    unpacker.apply_dir_times()?;

    Ok(UnpackedLayer {
        diff_id: format!("sha256:{}", hex::encode(counter.hasher.finalize())),
        bytes: unpacker.bytes,
        inodes: unpacker.inodes,
    })
}

/// Hashes and counts the uncompressed stream, failing once it passes the size limit.
struct CountingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
    /// Set once the limit is passed, so callers can tell this failure from a malformed stream.
    over_limit: Rc<Cell<bool>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            self.over_limit.set(true);
            return Err(io::Error::other("layer size limit exceeded"));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct Unpacker {
    root: PathBuf,
    bytes: u64,
    inodes: u64,
    /// Directory mtimes, applied after all entries because adding children changes them.
    dir_times: HashMap<PathBuf, u64>,
}

impl Unpacker {
    fn unpack_entries<R: Read>(
        &mut self,
        archive: &mut tar::Archive<R>,
        cancel: &AtomicBool,
    ) -> Result<(), UnpackError> {
        let entries = archive.entries().map_err(UnpackError::Tar)?;
        for entry in entries {
            if cancel.load(Ordering::Relaxed) {
                return Err(UnpackError::Cancelled);
            }
            let mut entry = entry.map_err(UnpackError::Tar)?;
            let kind = entry.header().entry_type();
            if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
                continue;
            }
            let raw_path = entry.path().map_err(UnpackError::Tar)?.into_owned();
            let Some(relative) = sanitize(&raw_path)? else {
                // The layer root itself (`./`): its directory already exists.
                continue;
            };
            self.unpack_entry(&mut entry, kind, &relative)?;
        }
        Ok(())
    }

    fn unpack_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        relative: &Path,
    ) -> Result<(), UnpackError> {
        let parent = self.ensure_parent(relative)?;
        let name = relative.file_name().unwrap_or_default();

        if name == OPAQUE_MARKER {
            return set_xattr(&parent, OVERLAY_OPAQUE_XATTR, b"y");
        }
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            // overlayfs hides a lower file behind a 0/0 character device of the same name.
            let target = parent.join(OsStr::from_bytes(hidden));
            self.remove_existing(&target, false)?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(|err| io_error("create whiteout", &target, err.into()))?;
            self.inodes += 1;
            return Ok(());
        }

        let target = self.root.join(relative);
        let header = entry.header();
        let mode = header.mode().map_err(UnpackError::Tar)? & 0o7777;
        let uid = header.uid().map_err(UnpackError::Tar)?;
        let gid = header.gid().map_err(UnpackError::Tar)?;
        let mtime = header.mtime().map_err(UnpackError::Tar)?;

        match kind {
            EntryType::Directory => {
                self.remove_existing(&target, true)?;
                if !target.is_dir() {
                    fs::create_dir(&target).map_err(|err| io_error("create", &target, err))?;
                    self.inodes += 1;
                }
                self.dir_times.insert(target.clone(), mtime);
            }
            EntryType::Regular | EntryType::Continuous => {
                self.remove_existing(&target, false)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .map_err(|err| io_error("create", &target, err))?;
                let written = io::copy(entry, &mut file).map_err(|err| {
                    // io::copy mixes read errors (a broken tar) with write errors (a full disk).
                    if matches!(err.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                        io_error("write", &target, err)
                    } else {
                        UnpackError::Tar(err)
                    }
                })?;
                self.bytes += written;
                self.inodes += 1;
            }
            EntryType::Symlink => {
                self.remove_existing(&target, false)?;
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .ok_or_else(|| unsupported(relative, "symlink without a target"))?;
                // A symlink's target is resolved inside the container, never by the unpack, so any
                // target is allowed; writes through it are rejected by `ensure_parent`.
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|err| io_error("create symlink", &target, err))?;
                self.inodes += 1;
            }
            EntryType::Link => {
                self.remove_existing(&target, false)?;
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .ok_or_else(|| unsupported(relative, "hard link without a target"))?;
                let link_relative = sanitize(&link)?.ok_or_else(|| UnpackError::PathEscape {
                    path: link.to_path_buf(),
                })?;
                self.ensure_parent(&link_relative)?;
                let source = self.root.join(&link_relative);
                if fs::symlink_metadata(&source).is_err() {
                    return Err(UnpackError::LinkTargetMissing {
                        path: relative.to_path_buf(),
                        target: link_relative,
                    });
                }
                fs::hard_link(&source, &target)
                    .map_err(|err| io_error("create hard link", &target, err))?;
                // A hard link shares its target's inode: its own mode, owner and times do not apply.
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.remove_existing(&target, false)?;
                let (file_type, device) = match kind {
                    EntryType::Char => (SFlag::S_IFCHR, device_number(header)?),
                    EntryType::Block => (SFlag::S_IFBLK, device_number(header)?),
                    _ => (SFlag::S_IFIFO, 0),
                };
                mknod(&target, file_type, Mode::from_bits_truncate(mode), device)
                    .map_err(|err| io_error("create node", &target, err.into()))?;
                self.inodes += 1;
            }
            other => {
                return Err(unsupported(relative, &format!("{other:?}")));
            }
        }

        std::os::unix::fs::lchown(&target, Some(uid as u32), Some(gid as u32))
            .map_err(|err| io_error("chown", &target, err))?;
        if kind != EntryType::Symlink {
            // chmod after chown, because chown clears the setuid and setgid bits.
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(|err| io_error("chmod", &target, err))?;
        }
        if let Some(extensions) = entry.pax_extensions().map_err(UnpackError::Tar)? {
            for extension in extensions {
                let extension = extension.map_err(UnpackError::Tar)?;
                let key = extension.key().unwrap_or_default();
                if let Some(xattr) = key.strip_prefix("SCHILY.xattr.") {
                    set_xattr(&target, xattr, extension.value_bytes())?;
                }
            }
        }
        if kind != EntryType::Directory {
            set_mtime(&target, mtime)?;
        }
        Ok(())
    }

    /// Creates missing parent directories of `relative` and returns the parent's path.
    /// Fails when a parent is a symlink, so no entry is written outside the layer directory.
    fn ensure_parent(&mut self, relative: &Path) -> Result<PathBuf, UnpackError> {
        let mut current = self.root.clone();
        let Some(parent) = relative.parent() else {
            return Ok(current);
        };
        for component in parent.components() {
            current.push(component);
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(UnpackError::SymlinkParent {
                        path: relative.to_path_buf(),
                        symlink: current
                            .strip_prefix(&self.root)
                            .unwrap_or(&current)
                            .to_path_buf(),
                    });
                }
                Ok(_) => {
                    return Err(UnpackError::ParentNotDirectory {
                        path: relative.to_path_buf(),
                        parent: current
                            .strip_prefix(&self.root)
                            .unwrap_or(&current)
                            .to_path_buf(),
                    });
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&current).map_err(|err| io_error("create", &current, err))?;
                    self.inodes += 1;
                }
                Err(err) => return Err(io_error("inspect", &current, err)),
            }
        }
        Ok(current)
    }

    /// Removes what a later entry of the same path replaces. A directory is kept when the new
    /// entry is a directory too, as tar does.
    fn remove_existing(&mut self, target: &Path, keep_dir: bool) -> Result<(), UnpackError> {
        match fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => {
                if !keep_dir {
                    fs::remove_dir_all(target).map_err(|err| io_error("replace", target, err))?;
                    self.dir_times.retain(|path, _| !path.starts_with(target));
                }
            }
            Ok(_) => fs::remove_file(target).map_err(|err| io_error("replace", target, err))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error("inspect", target, err)),
        }
        Ok(())
    }

    fn apply_dir_times(&self) -> Result<(), UnpackError> {
        for (dir, mtime) in &self.dir_times {
            set_mtime(dir, *mtime)?;
        }
        Ok(())
    }
}

/// Turns a tar path into a relative path inside the layer, or `None` for the layer root.
/// Absolute paths and `..` components are rejected outright rather than cleaned, because
/// a well-formed layer never has them.
fn sanitize(path: &Path) -> Result<Option<PathBuf>, UnpackError> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::PathEscape {
                    path: path.to_path_buf(),
                });
            }
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

fn device_number(header: &tar::Header) -> Result<u64, UnpackError> {
    let major = header
        .device_major()
        .map_err(UnpackError::Tar)?
        .unwrap_or(0);
    let minor = header
        .device_minor()
        .map_err(UnpackError::Tar)?
        .unwrap_or(0);
    Ok(makedev(major.into(), minor.into()))
}

fn set_mtime(path: &Path, mtime: u64) -> Result<(), UnpackError> {
    let time = TimeSpec::new(mtime as i64, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &time,
        &time,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|err| io_error("set times of", path, err.into()))
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), UnpackError> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| unsupported(path, "path with a NUL byte"))?;
    let c_name = CString::new(name).map_err(|_| unsupported(path, "xattr name with a NUL byte"))?;
    // SAFETY: both strings are NUL-terminated and outlive the call; `value` is a valid slice.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io_error("set xattr on", path, io::Error::last_os_error()));
    }
    Ok(())
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> UnpackError {
    UnpackError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn unsupported(path: &Path, kind: &str) -> UnpackError {
    UnpackError::UnsupportedEntry {
        path: path.to_path_buf(),
        kind: kind.to_string(),
    }
}

#[cfg(test)]
mod tests;
