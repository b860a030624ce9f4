//! Capabilities, masked and read-only paths, and AppArmor for one container.

use berth_proto::cri::{LinuxContainerSecurityContext, SecurityProfile, security_profile};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::SpecError;
use super::host::HostFeatures;

/// Every capability that oci-spec 0.10 defines, with its number from `linux/capability.h`.
pub(super) const CAPABILITIES: [(u32, Capability); 41] = [
    (0, Capability::Chown),
    (1, Capability::DacOverride),
    (2, Capability::DacReadSearch),
    (3, Capability::Fowner),
    (4, Capability::Fsetid),
    (5, Capability::Kill),
    (6, Capability::Setgid),
    (7, Capability::Setuid),
    (8, Capability::Setpcap),
    (9, Capability::LinuxImmutable),
    (10, Capability::NetBindService),
    (11, Capability::NetBroadcast),
    (12, Capability::NetAdmin),
    (13, Capability::NetRaw),
    (14, Capability::IpcLock),
    (15, Capability::IpcOwner),
    (16, Capability::SysModule),
    (17, Capability::SysRawio),
    (18, Capability::SysChroot),
    (19, Capability::SysPtrace),
    (20, Capability::SysPacct),
    (21, Capability::SysAdmin),
    (22, Capability::SysBoot),
    (23, Capability::SysNice),
    (24, Capability::SysResource),
    (25, Capability::SysTime),
    (26, Capability::SysTtyConfig),
    (27, Capability::Mknod),
    (28, Capability::Lease),
    (29, Capability::AuditWrite),
    (30, Capability::AuditControl),
    (31, Capability::Setfcap),
    (32, Capability::MacOverride),
    (33, Capability::MacAdmin),
    (34, Capability::Syslog),
    (35, Capability::WakeAlarm),
    (36, Capability::BlockSuspend),
    (37, Capability::AuditRead),
    (38, Capability::Perfmon),
    (39, Capability::Bpf),
    (40, Capability::CheckpointRestore),
];

/// containerd's default capability set for unprivileged containers, the same as Docker's.
pub(super) const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// containerd's default `linux.maskedPaths`.
pub(super) const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// containerd's default `linux.readonlyPaths`.
pub(super) const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Converts a capability bit mask, as in `CapEff` of `/proc/PID/status`, to a set.
pub(super) fn capabilities_from_mask(mask: u64) -> Capabilities {
    CAPABILITIES
        .iter()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, cap)| *cap)
        .collect()
}

/// Parses a capability name as the CRI sends it: `CHOWN`, `CAP_CHOWN` or `chown`.
pub(super) fn parse_capability(field: &'static str, name: &str) -> Result<Capability, SpecError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES
        .iter()
        .map(|(_, cap)| *cap)
        .find(|cap| cap.to_string() == bare)
        .ok_or_else(|| SpecError::InvalidCapability {
            field,
            name: name.to_string(),
        })
}

/// Returns the capability set of the container process.
///
/// A privileged container gets all of Berth's own capabilities. Otherwise "ALL" in
/// `add_capabilities` starts from Berth's own set and "ALL" in `drop_capabilities` from the empty
/// set, then the named adds and drops apply in that order, as in containerd. An added capability
/// that Berth itself lacks is an error, because the OCI runtime would fail to grant it.
pub(super) fn capability_set(
    security: Option<&LinuxContainerSecurityContext>,
    host: &HostFeatures,
) -> Result<Capabilities, SpecError> {
    if security.is_some_and(|s| s.privileged) {
        return Ok(host.capabilities.clone());
    }

    let mut set: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let Some(requested) = security.and_then(|s| s.capabilities.as_ref()) else {
        return Ok(set);
    };

    let is_all = |name: &String| name.eq_ignore_ascii_case("ALL");
    if requested.add_capabilities.iter().any(is_all) {
        set = host.capabilities.clone();
    }
    if requested.drop_capabilities.iter().any(is_all) {
        set.clear();
    }

    for name in requested.add_capabilities.iter().filter(|n| !is_all(n)) {
        let cap = parse_capability("add_capabilities", name)?;
        if !host.capabilities.contains(&cap) {
            return Err(SpecError::CapabilityUnavailable {
                field: "add_capabilities",
                name: format!("CAP_{cap}"),
            });
        }
        set.insert(cap);
    }
    for name in requested.drop_capabilities.iter().filter(|n| !is_all(n)) {
        set.remove(&parse_capability("drop_capabilities", name)?);
    }

    // NOTE: add_ambient_capabilities is ignored, as containerd does: Kubernetes does not
    // define how ambient capabilities combine with a non-root user.
    Ok(set)
}

/// Builds `process.capabilities`: the set as bounding, effective and permitted. Inheritable and
/// ambient stay empty, so a non-root process does not keep them across exec (CVE-2022-24769).
pub(super) fn linux_capabilities(set: &Capabilities) -> LinuxCapabilities {
    // Every field is set: oci-spec's default fills all five sets with its own defaults.
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(set.clone()));
    capabilities.set_effective(Some(set.clone()));
    capabilities.set_permitted(Some(set.clone()));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    capabilities
}

/// Returns `linux.maskedPaths`: none when privileged, the CRI list when non-empty, else
/// containerd's defaults.
pub(super) fn masked_paths(security: Option<&LinuxContainerSecurityContext>) -> Vec<String> {
    paths_or_default(security, |s| &s.masked_paths, &DEFAULT_MASKED_PATHS)
}

/// Returns `linux.readonlyPaths` by the rules of [`masked_paths`].
pub(super) fn readonly_paths(security: Option<&LinuxContainerSecurityContext>) -> Vec<String> {
    paths_or_default(security, |s| &s.readonly_paths, &DEFAULT_READONLY_PATHS)
}

fn paths_or_default(
    security: Option<&LinuxContainerSecurityContext>,
    requested: impl Fn(&LinuxContainerSecurityContext) -> &Vec<String>,
    defaults: &[&str],
) -> Vec<String> {
    if security.is_some_and(|s| s.privileged) {
        return Vec::new();
    }
    match security.map(requested) {
        Some(paths) if !paths.is_empty() => paths.clone(),
        // TODO: kubelet sends empty lists for `procMount: Unmasked`, which this cannot tell
        // from "not set", so such a container still gets the default lists.
        _ => defaults.iter().map(|p| p.to_string()).collect(),
    }
}

/// Returns `process.apparmorProfile` for the container, or `None` to run unconfined.
///
/// # Errors
///
/// [`SpecError::InvalidAppArmorProfile`] for a Localhost profile without a name or an
/// unknown deprecated profile string.
pub(super) fn apparmor_profile(
    security: Option<&LinuxContainerSecurityContext>,
    host: &HostFeatures,
) -> Result<Option<String>, SpecError> {
    let Some(security) = security else {
        return Ok(None);
    };
    // NOTE: on a host without AppArmor every AppArmor request is ignored, as containerd does,
    // so the profile checks below run only on AppArmor hosts.
    if !host.apparmor || security.privileged {
        return Ok(None);
    }

    #[allow(deprecated)]
    let legacy = security.apparmor_profile.as_str();
    let profile = match &security.apparmor {
        Some(profile) => profile.clone(),
        None => legacy_profile(legacy, "apparmor_profile")
            .map_err(|reason| invalid_apparmor(legacy, reason))?,
    };

    match security_profile::ProfileType::try_from(profile.profile_type) {
        Ok(security_profile::ProfileType::Unconfined) => Ok(None),
        Ok(security_profile::ProfileType::Localhost) if profile.localhost_ref.is_empty() => {
            Err(invalid_apparmor(
                "localhost/",
                "a Localhost profile needs a profile name".into(),
            ))
        }
        Ok(security_profile::ProfileType::Localhost) => Ok(Some(profile.localhost_ref)),
        Ok(security_profile::ProfileType::RuntimeDefault) => {
            // TODO: load a default AppArmor profile, as containerd loads
            // "cri-containerd.apparmor.d"; until then RuntimeDefault runs unconfined.
            tracing::warn!("AppArmor RuntimeDefault is not implemented; running unconfined");
            Ok(None)
        }
        Err(_) => Err(SpecError::UnknownEnumValue {
            field: "apparmor.profile_type",
            value: profile.profile_type,
        }),
    }
}

fn invalid_apparmor(value: &str, reason: String) -> SpecError {
    SpecError::InvalidAppArmorProfile {
        value: value.to_string(),
        reason,
    }
}

/// Converts a deprecated profile string ("", "unconfined", "runtime/default", "docker/default",
/// "localhost/<ref>") to a [`SecurityProfile`]. An empty string means unconfined, as in
/// containerd's default configuration.
pub(super) fn legacy_profile(value: &str, field: &str) -> Result<SecurityProfile, String> {
    use security_profile::ProfileType;

    let (profile_type, localhost_ref) = match value {
        "" | "unconfined" => (ProfileType::Unconfined, ""),
        "runtime/default" | "docker/default" => (ProfileType::RuntimeDefault, ""),
        _ => match value.strip_prefix("localhost/") {
            Some(reference) => (ProfileType::Localhost, reference),
            None => return Err(format!("unknown value in deprecated field {field}")),
        },
    };
    Ok(SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref: localhost_ref.to_string(),
    })
}
