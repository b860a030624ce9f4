//! OCI runtime checks: runc, which Berth requires, and crun, which it can use instead.

use super::{Finding, Status, find_executable, version_line};

/// Looks for runc and reports its version.
pub fn check_runc() -> Finding {
    check_runtime("runc", Finding::fail)
}

/// Looks for crun and reports its version. crun is optional, so a missing one is a warning, as
/// is one on a hybrid cgroup host, whose layout crun 1.8 rejects.
pub fn check_crun() -> Finding {
    let finding = check_runtime("crun", Finding::warn);
    if finding.status != Status::Ok || !super::cgroup::is_hybrid() {
        return finding;
    }
    Finding::warn(
        "crun",
        format!(
            "{}; this host mounts cgroup v1 controllers next to a cgroup2 hierarchy, which crun \
             1.8 rejects, so Berth's default handler here is runc",
            finding.detail
        ),
        "keep runtime.default_runtime empty or \"runc\", or boot the host with cgroup v2 only",
    )
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
