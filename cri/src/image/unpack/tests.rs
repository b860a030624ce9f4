use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::*;

/// Builds a tar stream from `(path, kind, data or link target, mode)` rows, writing raw names
/// so that malicious paths reach the unpacker unchanged.
fn tar_of(rows: &[(&str, EntryType, &[u8], u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, payload, mode) in rows {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(*mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        let name = header.as_old_mut().name.as_mut();
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        match kind {
            EntryType::Symlink | EntryType::Link => {
                let link = header.as_old_mut().linkname.as_mut();
                link[..payload.len()].copy_from_slice(payload);
                header.set_size(0);
                header.set_cksum();
                builder.append(&header, io::empty()).unwrap();
            }
            _ => {
                header.set_size(payload.len() as u64);
                header.set_cksum();
                builder.append(&header, *payload).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn unpack(tar: &[u8], limit: u64) -> (tempfile::TempDir, Result<UnpackedLayer, UnpackError>) {
    let dir = tempfile::tempdir().unwrap();
    let result = unpack_stream(tar, dir.path(), limit, &AtomicBool::new(false));
    (dir, result)
}

#[test]
fn regular_files_and_dirs_are_written() {
    let tar = tar_of(&[
        ("etc/", EntryType::Directory, b"", 0o755),
        ("etc/hostname", EntryType::Regular, b"berth\n", 0o640),
        ("bin/tool", EntryType::Regular, b"#!/bin/sh\n", 0o4755),
    ]);

    let (dir, result) = unpack(&tar, 1 << 20);
    let layer = result.unwrap();

    assert_eq!(
        fs::read(dir.path().join("etc/hostname")).unwrap(),
        b"berth\n"
    );
    let mode = fs::metadata(dir.path().join("bin/tool")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o4755, "setuid bit must survive chown");
    assert_eq!(
        fs::metadata(dir.path().join("etc/hostname"))
            .unwrap()
            .mtime(),
        1_600_000_000
    );
    assert_eq!(layer.bytes, 16);
    assert_eq!(
        layer.diff_id,
        format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
    );
}

#[test]
fn whiteout_becomes_overlay_char_device() {
    let tar = tar_of(&[("data/.wh.gone.txt", EntryType::Regular, b"", 0o644)]);

    let (dir, result) = unpack(&tar, 1 << 20);
    result.unwrap();

    let meta = fs::symlink_metadata(dir.path().join("data/gone.txt")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), 0);
    assert!(!dir.path().join("data/.wh.gone.txt").exists());
}

#[test]
fn opaque_marker_sets_overlay_xattr() {
    let tar = tar_of(&[
        ("opaque/", EntryType::Directory, b"", 0o755),
        ("opaque/.wh..wh..opq", EntryType::Regular, b"", 0o644),
    ]);

    let (dir, result) = unpack(&tar, 1 << 20);
    result.unwrap();

    let path = CString::new(dir.path().join("opaque").as_os_str().as_bytes()).unwrap();
    let name = CString::new(OVERLAY_OPAQUE_XATTR).unwrap();
    let mut value = [0u8; 4];
    // SAFETY: valid C strings and a buffer of the stated length.
    let len = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(
        len,
        1,
        "opaque xattr missing: {}",
        io::Error::last_os_error()
    );
    assert_eq!(value[0], b'y');
    assert!(!dir.path().join("opaque/.wh..wh..opq").exists());
}

#[test]
fn hard_link_keeps_target_mode() {
    let tar = tar_of(&[
        ("bin/app", EntryType::Regular, b"binary", 0o755),
        ("bin/alias", EntryType::Link, b"bin/app", 0o644),
    ]);

    let (dir, result) = unpack(&tar, 1 << 20);
    result.unwrap();

    let target = fs::metadata(dir.path().join("bin/app")).unwrap();
    let alias = fs::metadata(dir.path().join("bin/alias")).unwrap();
    assert_eq!(target.ino(), alias.ino());
    assert_eq!(alias.mode() & 0o777, 0o755);
}

#[test]
fn symlink_with_absolute_target_is_kept() {
    let tar = tar_of(&[("bin/sh", EntryType::Symlink, b"/bin/busybox", 0o777)]);

    let (dir, result) = unpack(&tar, 1 << 20);
    result.unwrap();

    assert_eq!(
        fs::read_link(dir.path().join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
}

#[test]
fn parent_traversal_is_rejected() {
    let tar = tar_of(&[("../../escape.txt", EntryType::Regular, b"x", 0o644)]);

    let (dir, result) = unpack(&tar, 1 << 20);

    assert!(
        matches!(result, Err(UnpackError::PathEscape { .. })),
        "{result:?}"
    );
    assert!(!dir.path().parent().unwrap().join("escape.txt").exists());
}

#[test]
fn absolute_path_is_rejected() {
    let tar = tar_of(&[("/abs-escape.txt", EntryType::Regular, b"x", 0o644)]);

    let (_dir, result) = unpack(&tar, 1 << 20);

    assert!(
        matches!(result, Err(UnpackError::PathEscape { .. })),
        "{result:?}"
    );
}

#[test]
fn write_through_symlink_is_rejected() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().as_bytes().to_vec();
    let tar = tar_of(&[
        ("link", EntryType::Symlink, &target, 0o777),
        ("link/escaped.txt", EntryType::Regular, b"x", 0o644),
    ]);

    let (_dir, result) = unpack(&tar, 1 << 20);

    assert!(
        matches!(result, Err(UnpackError::SymlinkParent { .. })),
        "{result:?}"
    );
    assert!(!outside.path().join("escaped.txt").exists());
}

#[test]
fn relative_symlink_escape_is_rejected() {
    let tar = tar_of(&[
        ("up", EntryType::Symlink, b"../../..", 0o777),
        ("up/escaped2.txt", EntryType::Regular, b"x", 0o644),
    ]);

    let (_dir, result) = unpack(&tar, 1 << 20);

    assert!(
        matches!(result, Err(UnpackError::SymlinkParent { .. })),
        "{result:?}"
    );
}

#[test]
fn hard_link_outside_layer_is_rejected() {
    let tar = tar_of(&[("steal", EntryType::Link, b"../../etc/shadow", 0o644)]);

    let (_dir, result) = unpack(&tar, 1 << 20);

    assert!(
        matches!(result, Err(UnpackError::PathEscape { .. })),
        "{result:?}"
    );
}

#[test]
fn layer_past_size_limit_is_stopped() {
    let zeros = vec![0u8; 256 * 1024];
    let tar = tar_of(&[("big", EntryType::Regular, &zeros, 0o644)]);

    let (_dir, result) = unpack(&tar, 64 * 1024);

    assert!(
        matches!(result, Err(UnpackError::TooLarge { limit: 65536 })),
        "{result:?}"
    );
}

#[test]
fn gzip_bomb_is_stopped_before_expanding() {
    let zeros = vec![0u8; 8 << 20];
    let tar = tar_of(&[("bomb", EntryType::Regular, &zeros, 0o644)]);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    io::Write::write_all(&mut encoder, &tar).unwrap();
    let compressed = encoder.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob");
    fs::write(&blob, &compressed).unwrap();
    let dest = dir.path().join("layer");
    fs::create_dir(&dest).unwrap();

    let result = unpack_layer(
        &blob,
        Compression::Gzip,
        &dest,
        1 << 20,
        &AtomicBool::new(false),
    );

    assert!(
        matches!(result, Err(UnpackError::TooLarge { .. })),
        "{result:?}"
    );
    let written = fs::metadata(dest.join("bomb"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written <= 1 << 20, "wrote {written} bytes past the limit");
}

#[test]
fn cancelled_unpack_stops() {
    let tar = tar_of(&[("a", EntryType::Regular, b"x", 0o644)]);
    let dir = tempfile::tempdir().unwrap();

    let result = unpack_stream(tar.as_slice(), dir.path(), 1 << 20, &AtomicBool::new(true));

    assert!(matches!(result, Err(UnpackError::Cancelled)), "{result:?}");
}

#[test]
fn later_entry_replaces_earlier_file() {
    let tar = tar_of(&[
        ("f", EntryType::Regular, b"old", 0o644),
        ("f", EntryType::Regular, b"new", 0o644),
    ]);

    let (dir, result) = unpack(&tar, 1 << 20);
    result.unwrap();

    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"new");
}

#[test]
fn media_types_map_to_compression() {
    assert_eq!(
        Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        Some(Compression::Gzip)
    );
    assert_eq!(
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
        Some(Compression::Zstd)
    );
    assert_eq!(
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar"),
        Some(Compression::None)
    );
    assert_eq!(
        Compression::from_media_type("application/vnd.example.unknown"),
        None
    );
}
