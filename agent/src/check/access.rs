//! Access checks: the configured directories are writable, and the process runs as root.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::Finding;

/// Checks that `berth serve` can write to `dir`, or create it. `setting` is the config field
/// that sets the directory; its flag is the same name with dashes.
pub fn check_dir(name: &'static str, dir: &Path, setting: &str) -> Finding {
    let fix = format!(
        "run as root, or choose a writable directory with --{} or `{setting}` in the config",
        setting.replace('_', "-")
    );
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => match probe_write(dir) {
            Ok(()) => Finding::ok(name, format!("{} is writable", dir.display())),
            Err(err) => Finding::fail(
                name,
                format!("cannot create a file in {}: {err}", dir.display()),
                fix,
            ),
        },
        Ok(_) => Finding::fail(name, format!("{} is not a directory", dir.display()), fix),
        // NotADirectory: a component of the path is a file, which check_creatable names.
        Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            check_creatable(name, dir, fix)
        }
        Err(err) => Finding::fail(name, format!("cannot access {}: {err}", dir.display()), fix),
    }
}

/// Checks the directory of the CRI socket, which `--socket` or `socket` in the config sets.
pub fn check_socket_dir(socket: &Path) -> Finding {
    let dir = match socket.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    check_dir("socket dir", dir, "socket")
}

/// Checks a directory that does not exist yet: `berth serve` creates it and its missing parents,
/// so the nearest existing ancestor must be a writable directory.
fn check_creatable(name: &'static str, dir: &Path, fix: String) -> Finding {
    let ancestor = nearest_existing_ancestor(dir);
    if !ancestor.is_dir() {
        return Finding::fail(
            name,
            format!(
                "{} does not exist and {} is not a directory",
                dir.display(),
                ancestor.display()
            ),
            fix,
        );
    }
    match probe_write(&ancestor) {
        Ok(()) => Finding::ok(
            name,
            format!(
                "{} does not exist yet; berth serve can create it in {}",
                dir.display(),
                ancestor.display()
            ),
        ),
        Err(err) => Finding::fail(
            name,
            format!(
                "{} does not exist and cannot be created: cannot create a file in {}: {err}",
                dir.display(),
                ancestor.display()
            ),
            fix,
        ),
    }
}

fn nearest_existing_ancestor(dir: &Path) -> PathBuf {
    dir.ancestors()
        .skip(1)
        .map(|ancestor| {
            if ancestor.as_os_str().is_empty() {
                Path::new(".")
            } else {
                ancestor
            }
        })
        .find(|ancestor| std::fs::symlink_metadata(ancestor).is_ok())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// Creates and removes a file in `dir`. Unlike checking permission bits, this also catches
/// read-only mounts, ACLs and filesystems such as /proc that take no new files.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(format!(".berth-check-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)
}

/// Warns when the effective user is not root: `berth serve` mounts overlayfs, creates cgroups
/// and network namespaces, which need root.
pub fn check_root_user() -> Finding {
    const NAME: &str = "running as root";
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match effective_uid(&status) {
        Some(0) => Finding::ok(NAME, "effective uid 0"),
        Some(uid) => Finding::warn(
            NAME,
            format!("effective uid {uid}; berth serve needs root, and some checks differ as root"),
            "run berth check and berth serve as root",
        ),
        None => Finding::warn(
            NAME,
            "cannot read the Uid field of /proc/self/status",
            "run berth check and berth serve as root",
        ),
    }
}

/// Reads the effective uid, the second number of the `Uid:` line of /proc/self/status.
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;

    #[test]
    fn effective_uid_is_second_number() {
        let status = "Name:\tberth\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";

        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name:\tberth\n"), None);
    }

    #[test]
    fn existing_writable_dir_is_ok() {
        let dir = tempfile::tempdir().unwrap();

        let finding = check_dir("root dir", dir.path(), "root");

        assert_eq!(finding.status, Status::Ok, "{finding:?}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "probe file left behind: {leftovers:?}"
        );
    }

    #[test]
    fn missing_dir_under_writable_parent_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b/c");

        let finding = check_dir("state dir", &missing, "state_dir");

        assert_eq!(finding.status, Status::Ok, "{finding:?}");
        assert!(finding.detail.contains("does not exist yet"), "{finding:?}");
        assert!(!missing.exists());
    }

    #[test]
    fn dir_under_a_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();

        let finding = check_dir("root dir", &file.join("sub"), "root");

        assert_eq!(finding.status, Status::Fail, "{finding:?}");
        assert!(finding.detail.contains("is not a directory"), "{finding:?}");
        assert!(finding.fix.unwrap().contains("--root"));
    }

    #[test]
    fn dir_under_proc_fails() {
        let finding = check_dir("root dir", Path::new("/proc/berth-not-writable"), "root");

        assert_eq!(finding.status, Status::Fail, "{finding:?}");
    }

    #[test]
    fn socket_dir_flag_is_socket() {
        let finding = check_socket_dir(Path::new("/proc/berth-not-writable/berth.sock"));

        assert_eq!(finding.name, "socket dir");
        assert!(finding.fix.unwrap().contains("--socket"));
    }
}
