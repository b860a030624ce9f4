//! The container process's command line, environment and working directory, from the CRI
//! container config over the image config.

use berth_proto::cri::ContainerConfig;
use oci_spec::image::Config as ImageConfig;

use super::SpecError;

/// `PATH` for containers whose image and CRI config set none; the value Docker and containerd use.
pub(super) const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Reads the `config` object of an OCI image config JSON. A missing or null `config` reads as
/// an empty one, as for an image built `FROM scratch` without settings.
pub(super) fn image_config(image: &serde_json::Value) -> Result<ImageConfig, SpecError> {
    match image.get("config") {
        None | Some(serde_json::Value::Null) => Ok(ImageConfig::default()),
        Some(config) => {
            serde_json::from_value(config.clone()).map_err(|e| SpecError::InvalidImageConfig {
                field: "config",
                reason: e.to_string(),
            })
        }
    }
}

/// Builds `process.args` with Docker's rules, which Kubernetes documents for `command` and
/// `args`. A CRI command replaces the image's Entrypoint and Cmd, and only the CRI args follow
/// it. Without a CRI command, the CRI args replace only Cmd and follow the image's Entrypoint.
pub(super) fn process_args(
    config: &ContainerConfig,
    image: &ImageConfig,
) -> Result<Vec<String>, SpecError> {
    let mut args = Vec::new();
    if !config.command.is_empty() {
        args.extend(config.command.iter().cloned());
        args.extend(config.args.iter().cloned());
    } else {
        let entrypoint = image.entrypoint().clone().unwrap_or_default();
        // An Entrypoint of `[""]` means no entrypoint, as in containerd and Docker.
        if entrypoint != [String::new()] {
            args.extend(entrypoint);
        }
        if config.args.is_empty() {
            args.extend(image.cmd().clone().unwrap_or_default());
        } else {
            args.extend(config.args.iter().cloned());
        }
    }

    if args.is_empty() {
        let container = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        return Err(SpecError::NoCommand { container });
    }
    Ok(args)
}

/// Builds `process.env`: the default `PATH`, `TERM=xterm` for a TTY, `HOSTNAME`, then the
/// image's variables, then the CRI's. A later variable replaces an earlier one with the same key
/// in place; an image entry without `=` removes the key.
pub(super) fn process_env(
    config: &ContainerConfig,
    image: &ImageConfig,
    hostname: &str,
) -> Result<Vec<String>, SpecError> {
    let mut env = vec![DEFAULT_PATH_ENV.to_string()];
    if config.tty {
        env.push("TERM=xterm".to_string());
    }
    set_env(&mut env, format!("HOSTNAME={hostname}"));

    for entry in image.env().iter().flatten() {
        set_env(&mut env, entry.clone());
    }
    for kv in &config.envs {
        let value = std::str::from_utf8(&kv.value).map_err(|_| SpecError::InvalidEnv {
            key: kv.key.clone(),
        })?;
        set_env(&mut env, format!("{}={value}", kv.key));
    }
    Ok(env)
}

fn set_env(env: &mut Vec<String>, entry: String) {
    let (key, has_value) = match entry.split_once('=') {
        Some((key, _)) => (key.to_string(), true),
        None => (entry.clone(), false),
    };
    let position = env
        .iter()
        .position(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
    match (position, has_value) {
        (Some(i), true) => env[i] = entry,
        (Some(i), false) => {
            env.remove(i);
        }
        (None, true) => env.push(entry),
        (None, false) => {}
    }
}

/// Returns `process.cwd`: the CRI working dir, else the image's, else `/`.
pub(super) fn working_dir(config: &ContainerConfig, image: &ImageConfig) -> String {
    if !config.working_dir.is_empty() {
        return config.working_dir.clone();
    }
    match image.working_dir() {
        Some(dir) if !dir.is_empty() => dir.clone(),
        _ => "/".to_string(),
    }
}
