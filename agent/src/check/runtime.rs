//! OCI runtime checks: runc, which Berth requires, and crun, which it can use instead.

use super::{Finding, find_executable, version_line};

/// Looks for runc and reports its version.
pub fn check_runc() -> Finding {
    check_runtime("runc", Finding::fail)
}

/// Looks for crun and reports its version. crun is optional, so a missing one is a warning.
pub fn check_crun() -> Finding {
    check_runtime("crun", Finding::warn)
}

/// Finds the runtime binary `name` and reports its `--version` line. `missing` builds the
/// finding for a binary that is absent or broken; the Debian package has the binary's name.
fn check_runtime(
    name: &'static str,
    missing: fn(&'static str, String, String) -> Finding,
) -> Finding {
    let install = format!("apt-get install {name}");

    // TODO: check the binary the config's runtime handlers name, when they name one, before
    // searching PATH.
    let Some(path) = find_executable(name) else {
        return missing(name, "not found in PATH or /usr/sbin".to_string(), install);
    };
    match version_line(&path) {
        Ok(version) => Finding::ok(name, format!("{}: {version}", path.display())),
        Err(err) => missing(
            name,
            err,
            format!("reinstall it: apt-get install --reinstall {name}"),
        ),
    }
}
