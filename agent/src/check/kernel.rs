//! Kernel checks: release, overlayfs, namespaces and seccomp.

use std::path::Path;

use super::Finding;

/// Below this release `berth check` warns.
const WARN_BELOW: (u32, u32) = (5, 4);
/// Below this release `berth check` fails.
const FAIL_BELOW: (u32, u32) = (4, 15);

/// Namespaces every pod sandbox needs, each with the kernel option that provides it.
const NAMESPACES: &[(&str, &str)] = &[
    ("net", "CONFIG_NET_NS"),
    ("ipc", "CONFIG_IPC_NS"),
    ("uts", "CONFIG_UTS_NS"),
    ("pid", "CONFIG_PID_NS"),
    ("mnt", "CONFIG_NAMESPACES"),
];

/// Compares the running kernel's release (as `uname -r` prints it) with [`WARN_BELOW`] and
/// [`FAIL_BELOW`].
pub fn check_version() -> Finding {
    const NAME: &str = "kernel";
    let release = match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(text) => text.trim().to_string(),
        Err(err) => {
            return Finding::warn(
                NAME,
                format!("cannot read /proc/sys/kernel/osrelease: {err}"),
                "mount procfs on /proc",
            );
        }
    };
    let Some(version) = parse_release(&release) else {
        return Finding::warn(
            NAME,
            format!("cannot parse kernel release {release:?}"),
            "check the release by hand: berth check fails below 4.15 and warns below 5.4",
        );
    };

    let upgrade =
        "upgrade the kernel (Debian package linux-image-<arch>, such as linux-image-amd64)";
    if version < FAIL_BELOW {
        Finding::fail(NAME, format!("{release} is older than 4.15"), upgrade)
    } else if version < WARN_BELOW {
        Finding::warn(NAME, format!("{release} is older than 5.4"), upgrade)
    } else {
        Finding::ok(NAME, release)
    }
}

/// Parses the major and minor number of a release such as `6.1.0-18-amd64`.
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_text = parts.next()?;
    let digits = minor_text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(minor_text.len());
    let minor = minor_text[..digits].parse().ok()?;
    Some((major, minor))
}

/// Looks for `overlay` in /proc/filesystems: image layers are mounted as overlayfs.
pub fn check_overlayfs() -> Finding {
    const NAME: &str = "overlayfs";
    match std::fs::read_to_string("/proc/filesystems") {
        Ok(text) if lists_filesystem(&text, "overlay") => {
            Finding::ok(NAME, "overlay is in /proc/filesystems")
        }
        Ok(_) => Finding::fail(
            NAME,
            "overlay is not in /proc/filesystems",
            "modprobe overlay, and add overlay to /etc/modules to load it at boot",
        ),
        Err(err) => Finding::fail(
            NAME,
            format!("cannot read /proc/filesystems: {err}"),
            "mount procfs on /proc",
        ),
    }
}

/// Returns whether /proc/filesystems content lists `fs_type`. Each line is the type, preceded by
/// `nodev` and a tab for filesystems without a block device.
fn lists_filesystem(proc_filesystems: &str, fs_type: &str) -> bool {
    proc_filesystems
        .lines()
        .any(|line| line.split_whitespace().last() == Some(fs_type))
}

/// Checks that this process has each namespace a pod sandbox needs, as /proc/self/ns shows.
pub fn check_namespaces() -> Finding {
    const NAME: &str = "namespaces";
    let missing: Vec<&(&str, &str)> = NAMESPACES
        .iter()
        .filter(|(kind, _)| {
            std::fs::symlink_metadata(Path::new("/proc/self/ns").join(kind)).is_err()
        })
        .collect();
    if missing.is_empty() {
        let kinds: Vec<&str> = NAMESPACES.iter().map(|(kind, _)| *kind).collect();
        return Finding::ok(NAME, kinds.join(", "));
    }

    let kinds: Vec<&str> = missing.iter().map(|(kind, _)| *kind).collect();
    let options: Vec<&str> = missing.iter().map(|(_, option)| *option).collect();
    Finding::fail(
        NAME,
        format!("missing from /proc/self/ns: {}", kinds.join(", ")),
        format!("a kernel built with {}", options.join(", ")),
    )
}

/// Reports whether user namespaces can be created. Berth does not need them, so this check
/// reports at most a warning.
pub fn check_user_namespaces() -> Finding {
    const NAME: &str = "user namespaces";
    match std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        Ok(text) if text.trim() == "0" => Finding::warn(
            NAME,
            "disabled: user.max_user_namespaces is 0 (not required)",
            "sysctl -w user.max_user_namespaces=<limit above 0>",
        ),
        Ok(text) => Finding::ok(
            NAME,
            format!(
                "enabled, user.max_user_namespaces = {} (not required)",
                text.trim()
            ),
        ),
        Err(_) => Finding::warn(
            NAME,
            "/proc/sys/user/max_user_namespaces is missing (not required)",
            "a kernel built with CONFIG_USER_NS",
        ),
    }
}

/// Looks for the `Seccomp` field of /proc/self/status, which the kernel prints only when built
/// with CONFIG_SECCOMP. OCI runtimes apply the pod's seccomp profile with it.
pub fn check_seccomp() -> Finding {
    const NAME: &str = "seccomp";
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|line| line.starts_with("Seccomp:")) {
        Finding::ok(NAME, "Seccomp field present in /proc/self/status")
    } else {
        Finding::fail(
            NAME,
            "no Seccomp field in /proc/self/status",
            "a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_parses_distro_suffixes() {
        assert_eq!(parse_release("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_release("6.18.44-fc-v1252"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_release("4.15-rc1"), Some((4, 15)));
        assert_eq!(parse_release("6.8+"), Some((6, 8)));
    }

    #[test]
    fn release_rejects_garbage() {
        assert_eq!(parse_release(""), None);
        assert_eq!(parse_release("6"), None);
        assert_eq!(parse_release("v6.1"), None);
        assert_eq!(parse_release("6.x"), None);
    }

    #[test]
    fn release_compares_numerically() {
        let version = |release| parse_release(release).unwrap();

        assert!(version("5.10.0") > WARN_BELOW);
        assert!(version("5.4.0") >= WARN_BELOW);
        assert!(version("5.3.18") < WARN_BELOW);
        assert!(version("4.19.0") < WARN_BELOW);
        assert!(version("4.19.0") >= FAIL_BELOW);
        assert!(version("4.15.0") >= FAIL_BELOW);
        assert!(version("4.9.0") < FAIL_BELOW);
        assert!(version("3.10.0") < FAIL_BELOW);
    }

    #[test]
    fn filesystems_lists_overlay() {
        let text = "nodev\tsysfs\nnodev\tcgroup2\n\text4\nnodev\toverlay\n";

        assert!(lists_filesystem(text, "overlay"));
        assert!(lists_filesystem(text, "ext4"));
        assert!(!lists_filesystem(text, "cgroup"));
        assert!(!lists_filesystem("nodev\toverlayfs\n", "overlay"));
    }
}
