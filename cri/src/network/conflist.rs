//! CNI network configuration lists: finding the one in the conf dir, parsing it, and finding
//! its plugin executables.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::NetworkError;

/// CNI spec versions whose result format (`interfaces`, `ips`, `routes`, `dns`) Berth reads.
/// Versions before 0.3.0 used another result format.
pub const SUPPORTED_CNI_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// File name extensions of CNI configs, as libcni reads them: `.conflist` contains a list, `.conf`
/// and `.json` a single plugin.
const CONFIG_EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// Origin of the network list in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file in the conf dir.
    File(PathBuf),
    /// The built-in default, because the conf dir contains no config.
    BuiltIn,
    /// The list cached with a sandbox's ADD result, used for its DEL.
    Cached(PathBuf),
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(path) => write!(formatter, "{}", path.display()),
            ConfigSource::BuiltIn => formatter.write_str("the built-in default"),
            ConfigSource::Cached(path) => write!(formatter, "the cached ADD of {}", path.display()),
        }
    }
}

/// One plugin of a network list.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The `type` field: the executable's file name.
    pub plugin_type: String,
    /// Capabilities the plugin declares with `true` in `capabilities`, such as `portMappings`.
    pub capabilities: BTreeSet<String>,
    /// The plugin's JSON object as written in the config.
    pub raw: Map<String, Value>,
}

impl PluginConfig {
    /// Returns the executables this plugin needs: its own and, if it delegates address
    /// management, that of its `ipam.type`.
    pub fn executables(&self) -> Vec<&str> {
        let mut names = vec![self.plugin_type.as_str()];
        let ipam = self.raw.get("ipam").and_then(|ipam| ipam.get("type"));
        if let Some(ipam) = ipam.and_then(Value::as_str).filter(|name| !name.is_empty()) {
            names.push(ipam);
        }
        names
    }
}

/// A CNI network configuration list.
#[derive(Debug, Clone)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<PluginConfig>,
    pub source: ConfigSource,
    /// The list as JSON, with a single-plugin config already wrapped into a list.
    pub raw: Value,
}

impl NetworkList {
    /// Parses a conflist, or wraps a single-plugin config (an object with `type` and no
    /// `plugins`) into a one-plugin list, as libcni does for `.conf` files.
    ///
    /// # Errors
    ///
    /// A message naming the missing or invalid field.
    pub fn parse(value: Value, source: ConfigSource) -> Result<Self, String> {
        let value = wrap_single_plugin(value)?;
        let object = value.as_object().ok_or("the config is not a JSON object")?;

        let name = required_string(object, "name")?;
        validate_network_name(name)?;
        let cni_version = required_string(object, "cniVersion")?;
        if !SUPPORTED_CNI_VERSIONS.contains(&cni_version) {
            return Err(format!(
                "cniVersion {cni_version:?} is not supported; use one of {}",
                SUPPORTED_CNI_VERSIONS.join(", ")
            ));
        }

        let plugins = object
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or("the field \"plugins\" is missing or not an array")?;
        if plugins.is_empty() {
            return Err("the list \"plugins\" is empty".to_string());
        }
        let plugins = plugins
            .iter()
            .enumerate()
            .map(|(index, plugin)| {
                parse_plugin(plugin).map_err(|reason| format!("plugins[{index}]: {reason}"))
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(NetworkList {
            name: name.to_string(),
            cni_version: cni_version.to_string(),
            plugins,
            source,
            raw: value.clone(),
        })
    }

    /// Reads and parses the config file at `path`.
    ///
    /// # Errors
    ///
    /// [`NetworkError::Io`] when the file cannot be read and [`NetworkError::InvalidConfig`]
    /// when it is not valid JSON or not a valid CNI config.
    pub fn from_file(path: &Path) -> Result<Self, NetworkError> {
        let bytes = fs::read(path).map_err(|err| NetworkError::io("read", path, err))?;
        let invalid = |reason: String| NetworkError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        let value = serde_json::from_slice(&bytes).map_err(|err| invalid(err.to_string()))?;
        Self::parse(value, ConfigSource::File(path.to_path_buf())).map_err(invalid)
    }

    /// Returns true when the list's spec version passes the ADD result to plugins on DEL as
    /// `prevResult`, which the CNI spec requires from 0.4.0 on.
    pub fn passes_result_on_del(&self) -> bool {
        !self.cni_version.starts_with("0.3.")
    }
}

/// Returns the lexically first CNI config file in `conf_dir`, or `None` when the directory is
/// missing or contains none.
///
/// # Errors
///
/// [`NetworkError::Io`] when the directory exists but cannot be read.
pub fn find_config_file(conf_dir: &Path) -> Result<Option<PathBuf>, NetworkError> {
    let entries = match fs::read_dir(conf_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(NetworkError::io("read directory", conf_dir, err)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| NetworkError::io("read directory", conf_dir, err))?;
        let path = entry.path();
        let has_config_extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| CONFIG_EXTENSIONS.contains(&extension));
        // fs::metadata follows symlinks, which ConfigMap-mounted conf dirs consist of.
        if has_config_extension && fs::metadata(&path).is_ok_and(|meta| meta.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files.into_iter().next())
}

/// Returns the path of the executable `name` in the first of `bin_dirs` that has it.
pub fn find_plugin(bin_dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    bin_dirs.iter().map(|dir| dir.join(name)).find(|path| {
        fs::metadata(path)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

fn wrap_single_plugin(value: Value) -> Result<Value, String> {
    let Some(object) = value.as_object() else {
        return Err("the config is not a JSON object".to_string());
    };
    if object.contains_key("plugins") || !object.contains_key("type") {
        return Ok(value);
    }
    let mut list = Map::new();
    for field in ["cniVersion", "name"] {
        if let Some(field_value) = object.get(field) {
            list.insert(field.to_string(), field_value.clone());
        }
    }
    list.insert("plugins".to_string(), Value::Array(vec![value]));
    Ok(Value::Object(list))
}

fn parse_plugin(plugin: &Value) -> Result<PluginConfig, String> {
    let raw = plugin
        .as_object()
        .ok_or("the plugin is not a JSON object")?;
    let plugin_type = required_string(raw, "type")?;
    if plugin_type.contains('/') || plugin_type == "." || plugin_type == ".." {
        return Err(format!(
            "type {plugin_type:?} must be a file name in the plugin directories, not a path"
        ));
    }
    let capabilities = match raw.get("capabilities") {
        None => BTreeSet::new(),
        Some(Value::Object(declared)) => declared
            .iter()
            .filter(|(_, enabled)| enabled.as_bool() == Some(true))
            .map(|(capability, _)| capability.clone())
            .collect(),
        Some(_) => return Err("the field \"capabilities\" is not an object".to_string()),
    };
    Ok(PluginConfig {
        plugin_type: plugin_type.to_string(),
        capabilities,
        raw: raw.clone(),
    })
}

fn required_string<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    object
        .get(field)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .ok_or_else(|| format!("the field {field:?} is missing, empty or not a string"))
}

/// Checks a network name against the CNI spec's pattern `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
fn validate_network_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid_first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let valid_rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid_first && valid_rest {
        Ok(())
    } else {
        Err(format!(
            "network name {name:?} must start with a letter or digit and contain only letters, \
             digits, '_', '.' and '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn conflist_parses_capabilities() {
        let value = json!({
            "cniVersion": "1.0.0",
            "name": "podnet",
            "plugins": [
                { "type": "bridge", "ipam": { "type": "host-local" } },
                { "type": "portmap", "capabilities": { "portMappings": true, "bandwidth": false } },
            ],
        });

        let list = NetworkList::parse(value, ConfigSource::BuiltIn).unwrap();

        assert_eq!(list.name, "podnet");
        assert_eq!(list.plugins.len(), 2);
        assert_eq!(list.plugins[0].executables(), ["bridge", "host-local"]);
        assert!(list.plugins[0].capabilities.is_empty());
        assert_eq!(
            list.plugins[1].capabilities.iter().collect::<Vec<_>>(),
            ["portMappings"]
        );
        assert!(list.passes_result_on_del());
    }

    #[test]
    fn single_plugin_wrapped() {
        let value = json!({ "cniVersion": "0.3.1", "name": "single", "type": "ptp" });

        let list = NetworkList::parse(value, ConfigSource::BuiltIn).unwrap();

        assert_eq!(list.name, "single");
        assert_eq!(list.cni_version, "0.3.1");
        assert_eq!(list.plugins[0].plugin_type, "ptp");
        assert_eq!(list.raw["plugins"][0]["type"], "ptp");
        assert!(!list.passes_result_on_del());
    }

    #[test]
    fn invalid_lists_rejected() {
        let cases = [
            (
                "no name",
                json!({ "cniVersion": "1.0.0", "plugins": [{ "type": "bridge" }] }),
            ),
            (
                "bad name",
                json!({ "cniVersion": "1.0.0", "name": "-x", "plugins": [{ "type": "bridge" }] }),
            ),
            (
                "old version",
                json!({ "cniVersion": "0.2.0", "name": "n", "plugins": [{ "type": "bridge" }] }),
            ),
            (
                "no plugins",
                json!({ "cniVersion": "1.0.0", "name": "n", "plugins": [] }),
            ),
            (
                "path as type",
                json!({ "cniVersion": "1.0.0", "name": "n", "plugins": [{ "type": "../sh" }] }),
            ),
            (
                "no type",
                json!({ "cniVersion": "1.0.0", "name": "n", "plugins": [{ "bridge": "x" }] }),
            ),
            ("not an object", json!(["bridge"])),
        ];
        for (case, value) in cases {
            assert!(
                NetworkList::parse(value, ConfigSource::BuiltIn).is_err(),
                "{case} must be rejected"
            );
        }
    }

    #[test]
    fn first_config_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["20-b.conflist", "10-a.conf", "05-ignored.txt", "30-c.json"] {
            fs::write(dir.path().join(name), "{}").unwrap();
        }
        fs::create_dir(dir.path().join("00-dir.conflist")).unwrap();

        let found = find_config_file(dir.path()).unwrap();

        assert_eq!(found, Some(dir.path().join("10-a.conf")));
    }

    #[test]
    fn missing_conf_dir_has_no_config() {
        let dir = tempfile::tempdir().unwrap();

        let found = find_config_file(&dir.path().join("absent")).unwrap();

        assert_eq!(found, None);
    }

    #[test]
    fn plugin_lookup_follows_dir_order() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let not_executable = first.path().join("bridge");
        fs::write(&not_executable, "").unwrap();
        let executable = second.path().join("bridge");
        fs::write(&executable, "").unwrap();
        fs::set_permissions(&executable, fs::Permissions::from_mode(0o755)).unwrap();
        let dirs = [first.path().to_path_buf(), second.path().to_path_buf()];

        assert_eq!(find_plugin(&dirs, "bridge"), Some(executable));
        assert_eq!(find_plugin(&dirs, "absent"), None);
        assert_eq!(find_plugin(&dirs, "../bridge"), None);
    }
}
