//! Device nodes for the container (`linux.devices`) and the device cgroup rules that let it use
//! them (`linux.resources.devices`).

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_proto::cri::Device;
use nix::sys::stat::{major, minor};
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use super::SpecError;

/// Directories of `/dev` that contain no device nodes of their own or that the container gets
/// through other mounts. containerd skips the same ones.
const SKIPPED_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Devices of the container and their cgroup rules.
#[derive(Debug, Default)]
pub(super) struct DevicePlan {
    pub devices: Vec<LinuxDevice>,
    /// Cgroup rules, starting with one that denies every device. The OCI runtime adds its own
    /// rules for `/dev/null`, `/dev/zero`, the terminals and the like.
    pub cgroup_rules: Vec<LinuxDeviceCgroup>,
}

/// Resolves the CRI devices. A host path that is a directory adds every device below it, with
/// container paths below `container_path`. An empty `container_path` means the host path, and
/// empty permissions mean `rwm`.
///
/// # Errors
///
/// [`SpecError::InvalidDevice`] when a host path cannot be read or is not a device node, or when
/// permissions contain letters other than `r`, `w` and `m`.
pub(super) fn container_devices(
    requested: &[Device],
    privileged: bool,
) -> Result<DevicePlan, SpecError> {
    let mut plan = DevicePlan {
        devices: Vec::new(),
        cgroup_rules: vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()?,
        ],
    };

    if privileged {
        // A privileged container gets every host device node and may use any device, as with
        // containerd's default `privileged_without_host_devices = false`.
        plan.devices = devices_below(Path::new("/dev"), None)
            .map_err(|e| invalid_device("/dev", "", format!("cannot list host devices: {e}")))?;
        plan.cgroup_rules = vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .access("rwm")
                .build()?,
        ];
    }

    for device in requested {
        let permissions = if device.permissions.is_empty() {
            "rwm"
        } else {
            device.permissions.as_str()
        };
        if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(invalid_device(
                &device.host_path,
                &device.container_path,
                format!("invalid permissions {permissions:?}: only r, w and m are allowed"),
            ));
        }

        let container_path = if device.container_path.is_empty() {
            device.host_path.clone()
        } else {
            device.container_path.clone()
        };
        let found = host_devices(Path::new(&device.host_path), Path::new(&container_path))
            .map_err(|reason| invalid_device(&device.host_path, &device.container_path, reason))?;

        for linux_device in found {
            plan.cgroup_rules.push(
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(linux_device.typ())
                    .major(linux_device.major())
                    .minor(linux_device.minor())
                    .access(permissions)
                    .build()?,
            );
            plan.devices.push(linux_device);
        }
    }
    Ok(plan)
}

fn invalid_device(host_path: &str, container_path: &str, reason: String) -> SpecError {
    SpecError::InvalidDevice {
        host_path: host_path.to_string(),
        container_path: container_path.to_string(),
        reason,
    }
}

/// Returns the device at `host_path`, or every device below it when it is a directory.
fn host_devices(host_path: &Path, container_path: &Path) -> Result<Vec<LinuxDevice>, String> {
    let resolved = fs::canonicalize(host_path).map_err(|e| e.to_string())?;
    let metadata = fs::metadata(&resolved).map_err(|e| e.to_string())?;
    if metadata.is_dir() {
        return devices_below(&resolved, Some(container_path)).map_err(|e| e.to_string());
    }
    match device_from_metadata(container_path, &metadata) {
        Some(device) => device.map_err(|e| e.to_string()),
        None => Err("not a device node".to_string()),
    }
    .map(|device| vec![device])
}

/// Lists the block and character devices below `dir`, skipping [`SKIPPED_DIRS`], `console`,
/// FIFOs and entries that vanish while being read. Container paths mirror the host's below
/// `container_dir`, or equal them when it is `None`.
fn devices_below(dir: &Path, container_dir: Option<&Path>) -> io::Result<Vec<LinuxDevice>> {
    let mut devices = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let host_path = entry.path();
        let container_path: PathBuf = match container_dir {
            Some(parent) => parent.join(&name),
            None => host_path.clone(),
        };

        let metadata = match fs::symlink_metadata(&host_path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if metadata.is_dir() {
            if !SKIPPED_DIRS.iter().any(|skipped| name == *skipped) {
                let below = devices_below(&host_path, container_dir.map(|_| &*container_path))?;
                devices.extend(below);
            }
            continue;
        }
        if name == "console" || metadata.file_type().is_fifo() {
            continue;
        }
        if let Some(device) = device_from_metadata(&container_path, &metadata) {
            devices.push(device.map_err(io::Error::other)?);
        }
    }
    Ok(devices)
}

/// Returns the OCI device for a block or character device node, or `None` for other files.
fn device_from_metadata(
    container_path: &Path,
    metadata: &fs::Metadata,
) -> Option<Result<LinuxDevice, oci_spec::OciSpecError>> {
    let file_type = metadata.file_type();
    let typ = if file_type.is_block_device() {
        LinuxDeviceType::B
    } else if file_type.is_char_device() {
        LinuxDeviceType::C
    } else if file_type.is_fifo() {
        LinuxDeviceType::P
    } else {
        return None;
    };

    let rdev = metadata.rdev();
    Some(
        LinuxDeviceBuilder::default()
            .path(container_path)
            .typ(typ)
            .major(major(rdev) as i64)
            .minor(minor(rdev) as i64)
            .file_mode(metadata.mode() & 0o7777)
            .uid(metadata.uid())
            .gid(metadata.gid())
            .build(),
    )
}
