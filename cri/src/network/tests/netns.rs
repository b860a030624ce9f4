//! Namespace pinning against the real kernel.

use std::fs;
use std::os::unix::fs::MetadataExt;

use nix::sys::statfs::{NSFS_MAGIC, statfs};

use super::*;

/// Unpins the directory when the test ends, even when it fails.
struct PinGuard {
    root: tempfile::TempDir,
}

impl PinGuard {
    fn new() -> Self {
        require_root();
        PinGuard {
            root: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join(format!("ns-{}", random_suffix()))
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        for entry in fs::read_dir(self.root.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Err(err) = unpin(&entry.path()) {
                eprintln!(
                    "cleanup: unpinning {} failed: {err}",
                    entry.path().display()
                );
            }
        }
    }
}

fn mountinfo_mentions(path: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.display().to_string();
    mountinfo
        .lines()
        .any(|line| line.split_whitespace().nth(4) == Some(path.as_str()))
}

fn namespace_inode(path: &Path) -> u64 {
    fs::metadata(path).unwrap().ino()
}

#[test]
fn pin_creates_nsfs_files() {
    let guard = PinGuard::new();
    let dir = guard.dir();
    let hostname = format!("pod-{}", random_suffix());
    let own_net = namespace_inode(Path::new("/proc/self/ns/net"));
    let own_uts = namespace_inode(Path::new("/proc/self/ns/uts"));
    let own_hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();

    let pinned = pin_namespaces(&dir, &NamespaceKind::ALL, Some(&hostname)).unwrap();

    for kind in NamespaceKind::ALL {
        let path = pinned.path(kind).unwrap();
        assert_eq!(path, dir.join(kind.file_name()));
        let stat = statfs(path).unwrap();
        assert_eq!(
            stat.filesystem_type(),
            NSFS_MAGIC,
            "{} is not nsfs",
            path.display()
        );
        assert!(
            mountinfo_mentions(path),
            "{} is not a mount point",
            path.display()
        );
    }
    assert_ne!(namespace_inode(pinned.net.as_deref().unwrap()), own_net);
    assert_ne!(namespace_inode(pinned.uts.as_deref().unwrap()), own_uts);
    let uts = format!("--uts={}", pinned.uts.as_deref().unwrap().display());
    assert_eq!(run_ok("nsenter", &[&uts, "hostname"]).trim(), hostname);
    let lo = run_in_netns(
        pinned.net.as_deref().unwrap(),
        &["ip", "-o", "link", "show", "lo"],
    );
    let lo = String::from_utf8_lossy(&lo.stdout);
    assert!(
        lo.contains("<LOOPBACK,UP"),
        "lo is not up in the new netns: {lo}"
    );
    assert_eq!(
        namespace_inode(Path::new("/proc/self/ns/net")),
        own_net,
        "the daemon's own network namespace changed"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        own_hostname,
        "the daemon's own hostname changed"
    );
}

#[test]
fn unpin_leaves_no_mount() {
    let guard = PinGuard::new();
    let dir = guard.dir();
    let pinned = pin_namespaces(&dir, &NamespaceKind::ALL, Some("unpin-test")).unwrap();

    unpin(&dir).unwrap();

    for kind in NamespaceKind::ALL {
        let path = pinned.path(kind).unwrap();
        assert!(
            !mountinfo_mentions(path),
            "{} is still mounted",
            path.display()
        );
        assert!(!path.exists(), "{} still exists", path.display());
    }
    assert!(dir.is_dir(), "unpin removes only the namespace files");
    unpin(&dir).expect("a second unpin succeeds");
}

#[test]
fn pin_subset_of_kinds() {
    let guard = PinGuard::new();
    let dir = guard.dir();

    let pinned = pin_namespaces(&dir, &[NamespaceKind::Net], None).unwrap();

    assert!(pinned.net.is_some());
    assert_eq!(pinned.ipc, None);
    assert_eq!(pinned.uts, None);
    assert!(!dir.join("ipc").exists());
    assert!(!dir.join("uts").exists());
}

#[test]
fn pin_twice_rejected() {
    let guard = PinGuard::new();
    let dir = guard.dir();
    let first = pin_namespaces(&dir, &[NamespaceKind::Net], None).unwrap();
    let inode = namespace_inode(first.net.as_deref().unwrap());

    let second = pin_namespaces(&dir, &[NamespaceKind::Net, NamespaceKind::Ipc], None);

    assert!(
        matches!(second, Err(NetworkError::AlreadyPinned { .. })),
        "{second:?}"
    );
    assert_eq!(
        namespace_inode(first.net.as_deref().unwrap()),
        inode,
        "the first pin must stay intact"
    );
    assert!(!dir.join("ipc").exists());
}

#[test]
fn hostname_without_uts_rejected() {
    let guard = PinGuard::new();
    let dir = guard.dir();

    let pinned = pin_namespaces(&dir, &[NamespaceKind::Net], Some("name"));

    assert!(
        matches!(pinned, Err(NetworkError::InvalidArgument { .. })),
        "{pinned:?}"
    );
    assert!(!dir.join("net").exists());
}

#[test]
fn invalid_hostname_cleans_up() {
    let guard = PinGuard::new();
    let dir = guard.dir();

    let pinned = pin_namespaces(&dir, &NamespaceKind::ALL, Some(&"x".repeat(100)));

    assert!(
        matches!(pinned, Err(NetworkError::Namespace { .. })),
        "{pinned:?}"
    );
    for kind in NamespaceKind::ALL {
        let path = dir.join(kind.file_name());
        assert!(!path.exists(), "{} was left behind", path.display());
        assert!(!mountinfo_mentions(&path));
    }
}
