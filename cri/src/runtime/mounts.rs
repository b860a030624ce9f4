//! Mounts the runtime makes on the host: container root filesystems and pod `/dev/shm`.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::RuntimeError;

/// Mounts an overlay of `lower` (base layer first) with a writable `upper` and `work` dir on
/// `target`.
pub fn mount_overlay(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RuntimeError> {
    // overlayfs lists the topmost lower layer first.
    let lowerdir = lower
        .iter()
        .rev()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let options = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    // NOTE: the kernel limits mount options to one 4 KiB page. With the default root each
    // layer path takes 88 bytes, so an image of more than about 45 layers fails here (an
    // estimate from the path length). containerd shortens the paths with symlinks.
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|err| RuntimeError::io("mount overlay on", target, err.into()))
}

/// Mounts a tmpfs of `size_bytes` for a pod's `/dev/shm`.
pub fn mount_shm(target: &Path, size_bytes: u64) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(target).map_err(|err| RuntimeError::io("create", target, err))?;
    let options = format!("mode=1777,size={size_bytes}");
    mount(
        Some("shm"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(|err| RuntimeError::io("mount shm on", target, err.into()))
}

/// Unmounts `target` if it is mounted, detaching it when busy. A path that is not a mount point
/// or does not exist is fine.
pub fn unmount(target: &Path) -> Result<(), RuntimeError> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(err) => Err(RuntimeError::io("unmount", target, err.into())),
    }
}
