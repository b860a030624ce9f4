//! Pod network checks: CNI plugins, CNI network config and iptables.

use std::path::{Path, PathBuf};

use super::{Finding, find_executable, version_line};

/// Plugins the pod network needs: `bridge` and `host-local` connect and address pods, `portmap`
/// serves hostPort, `loopback` brings up `lo` in each sandbox.
const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "loopback"];
// TODO: take the plugin and config directories from the config's network settings (`bin_dirs`,
// `conf_dir`), so that a changed setting is what gets checked. These are their defaults.
/// Where Debian's containernetworking-plugins installs plugins, then the upstream default.
const CNI_BIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];
const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// File extensions libcni loads from the config directory.
const CNI_CONF_EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

/// Looks for each plugin of [`CNI_PLUGINS`] in [`CNI_BIN_DIRS`].
pub fn check_cni_plugins() -> Finding {
    const NAME: &str = "CNI plugins";
    let mut missing = Vec::new();
    let mut found_in: Vec<&str> = Vec::new();
    for plugin in CNI_PLUGINS {
        match CNI_BIN_DIRS
            .iter()
            .find(|dir| Path::new(dir).join(plugin).is_file())
        {
            Some(dir) if !found_in.contains(dir) => found_in.push(dir),
            Some(_) => {}
            None => missing.push(*plugin),
        }
    }

    if missing.is_empty() {
        return Finding::ok(
            NAME,
            format!("{} in {}", CNI_PLUGINS.join(", "), found_in.join(" and ")),
        );
    }
    Finding::fail(
        NAME,
        format!(
            "{} not found in {}",
            missing.join(", "),
            CNI_BIN_DIRS.join(" or ")
        ),
        "apt-get install containernetworking-plugins",
    )
}

/// Looks for a network config in /etc/cni/net.d.
pub fn check_cni_config() -> Finding {
    const NAME: &str = "CNI config";
    match first_cni_config(Path::new(CNI_CONF_DIR)) {
        Some(path) => Finding::ok(NAME, path.display().to_string()),
        None => Finding::warn(
            NAME,
            format!("none in {CNI_CONF_DIR}; the built-in bridge default will be used"),
            format!("add a .conflist to {CNI_CONF_DIR} for another network"),
        ),
    }
}

/// Returns the config file libcni would load first: the lowest name with a config extension.
fn first_cni_config(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut configs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .and_then(|ext| ext.to_str())
                .is_some_and(|ext| CNI_CONF_EXTENSIONS.contains(&ext))
        })
        .collect();
    configs.sort();
    configs.into_iter().next()
}

/// Looks for iptables, which the portmap plugin and the bridge plugin's masquerading call.
pub fn check_iptables() -> Finding {
    const NAME: &str = "iptables";
    let Some(path) = find_executable("iptables") else {
        return Finding::fail(
            NAME,
            "not found in PATH or /usr/sbin",
            "apt-get install iptables",
        );
    };
    match version_line(&path) {
        Ok(version) => Finding::ok(NAME, format!("{}: {version}", path.display())),
        Err(err) => Finding::fail(NAME, err, "apt-get install --reinstall iptables"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_config_is_lowest_name_with_extension() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "99-last.conflist",
            "10-bridge.conf",
            "05-notes.txt",
            "20-net.json",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }

        let first = first_cni_config(dir.path());

        assert_eq!(first, Some(dir.path().join("10-bridge.conf")));
    }

    #[test]
    fn cni_config_none_in_missing_dir() {
        let dir = tempfile::tempdir().unwrap();

        assert_eq!(first_cni_config(dir.path()), None);
        assert_eq!(first_cni_config(&dir.path().join("missing")), None);
    }
}
