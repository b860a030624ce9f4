//! The container's seccomp filter: none, Berth's built-in default profile, or a profile file on
//! the node.
//!
//! The default profile is an allowlist in the manner of Docker's and containerd's: a syscall not
//! listed fails with `EPERM`. Some syscalls that change the whole host are allowed only with the
//! capability the kernel checks for them: `mount` with CAP_SYS_ADMIN, `reboot` with
//! CAP_SYS_BOOT, module loading with CAP_SYS_MODULE, clock setting with CAP_SYS_TIME. Others are
//! never allowed: `kexec_load`, `swapon`, the kernel keyring, `pivot_root`, and io_uring, whose
//! operations seccomp cannot inspect. The OCI runtime skips names its libseccomp does not know, so the
//! list may name syscalls newer than the host.

use std::path::Path;

use berth_proto::cri::{LinuxContainerSecurityContext, SecurityProfile, security_profile};
use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use serde_json::Value;

use super::SpecError;
use super::host::HostFeatures;
use super::security::legacy_profile;

/// Syscalls any container may make.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    // Files, directories and extended attributes.
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range",
    "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
    "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
    "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futimesat", "getcwd", "getdents", "getdents64", "getxattr", "getxattrat",
    "lchown", "lchown32", "lgetxattr", "link", "linkat", "listxattr", "listxattrat", "llistxattr",
    "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat",
    "mknod", "mknodat", "newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2",
    "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
    "removexattr", "removexattrat", "rename", "renameat", "renameat2", "rmdir", "sendfile",
    "sendfile64", "setxattr", "setxattrat", "splice", "stat", "stat64", "statfs", "statfs64",
    "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate",
    "truncate64", "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64",
    "utimes", "vmsplice", "write", "writev",
    // Mount table queries; changing mounts needs CAP_SYS_ADMIN below.
    "listmount", "statmount",
    // Polling, events and notifications.
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "_newselect", "pause", "poll", "ppoll",
    "ppoll_time64", "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64",
    // Asynchronous I/O.
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set",
    // Memory.
    "brk", "cachestat", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mremap", "mseal", "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "remap_file_pages",
    // Pipes.
    "pipe", "pipe2",
    // Processes, threads, scheduling and limits.
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "futex",
    "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "get_robust_list",
    "get_thread_area", "getcpu", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
    "getrlimit", "getrusage", "getsid", "gettid", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64",
    "process_mrelease", "restart_syscall", "rseq", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "set_robust_list", "set_thread_area", "set_tid_address", "setpgid", "setpriority",
    "setrlimit", "setsid", "ugetrlimit", "vfork", "wait4", "waitid", "waitpid",
    // Credentials; the kernel checks CAP_SETUID and CAP_SETGID itself.
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid", "getuid32",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32",
    // Signals.
    "alarm", "kill", "nice", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sigaction", "sigaltstack", "sigpending", "sigprocmask", "sigreturn",
    "sigsuspend", "tgkill", "tkill",
    // Time and timers; setting the clock needs CAP_SYS_TIME below.
    "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "getitimer",
    "gettimeofday", "nanosleep", "setitimer", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "times",
    // Sockets.
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
    "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg",
    "sendto", "setsockopt", "shutdown", "socket", "socketcall", "socketpair",
    // System V and POSIX IPC, which live in the pod's IPC namespace.
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt",
    "shmget",
    // System information.
    "getrandom", "sysinfo", "uname",
    // Architecture-specific: x86 and x86-64.
    "arch_prctl", "modify_ldt",
    // Architecture-specific: 32- and 64-bit Arm.
    "arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls",
    "sync_file_range2",
];

/// Syscalls allowed only with a capability, because the kernel checks that capability for them
/// or because they reach beyond the container.
#[rustfmt::skip]
const ALLOWED_WITH_CAPABILITY: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "mount", "mount_setattr", "move_mount", "name_to_handle_at",
            "open_tree", "perf_event_open", "quotactl", "quotactl_fd", "setdomainname",
            "sethostname", "setns", "syslog", "umount", "umount2", "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "finit_module", "init_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &[
            "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
            "ptrace", "userfaultfd",
        ],
    ),
    (Capability::SysRawio, &["ioperm", "iopl"]),
    (
        Capability::SysTime,
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &[
            "get_mempolicy", "mbind", "migrate_pages", "move_pages", "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// `personality(2)` arguments allowed without restriction: PER_LINUX, PER_LINUX32, UNAME26,
/// UNAME26 | PER_LINUX32, and 0xffffffff, which queries the current persona.
const ALLOWED_PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET`: the namespace-creating `clone(2)` flags, which need CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

const ENOSYS: u32 = 38;

/// Returns `linux.seccomp` for the container, or `None` to run without a filter.
///
/// A privileged container runs without a filter. Otherwise the CRI `seccomp` profile applies,
/// else the deprecated `seccomp_profile_path`. When neither is set the container runs
/// unconfined, as with containerd's default configuration and kubelet's default.
///
/// # Errors
///
/// [`SpecError::InvalidSeccompProfile`] for an unknown profile string, a relative or unreadable
/// Localhost path, or a file that is not a seccomp profile.
pub(super) fn seccomp(
    security: Option<&LinuxContainerSecurityContext>,
    capabilities: &Capabilities,
    host: &HostFeatures,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let Some(security) = security else {
        return Ok(None);
    };
    if security.privileged {
        return Ok(None);
    }

    #[allow(deprecated)]
    let legacy = security.seccomp_profile_path.as_str();
    let profile: SecurityProfile = match &security.seccomp {
        Some(profile) => profile.clone(),
        None => legacy_profile(legacy, "seccomp_profile_path")
            .map_err(|reason| invalid_profile(legacy, reason))?,
    };

    match security_profile::ProfileType::try_from(profile.profile_type) {
        Ok(security_profile::ProfileType::Unconfined) => Ok(None),
        Ok(security_profile::ProfileType::RuntimeDefault) => {
            Ok(Some(default_profile(capabilities)?))
        }
        Ok(security_profile::ProfileType::Localhost) => Ok(Some(load_profile(
            Path::new(&profile.localhost_ref),
            capabilities,
            host,
        )?)),
        Err(_) => Err(SpecError::UnknownEnumValue {
            field: "seccomp.profile_type",
            value: profile.profile_type,
        }),
    }
}

fn invalid_profile(value: &str, reason: impl Into<String>) -> SpecError {
    SpecError::InvalidSeccompProfile {
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Builds Berth's default profile for a container holding `capabilities`.
pub(super) fn default_profile(capabilities: &Capabilities) -> Result<LinuxSeccomp, SpecError> {
    let mut names: Vec<String> = ALLOWED.iter().map(|name| name.to_string()).collect();
    for (capability, syscalls) in ALLOWED_WITH_CAPABILITY {
        if capabilities.contains(capability) {
            names.extend(syscalls.iter().map(|name| name.to_string()));
        }
    }
    names.sort();
    names.dedup();

    let mut syscalls = vec![
        LinuxSyscallBuilder::default()
            .names(names)
            .action(LinuxSeccompAction::ScmpActAllow)
            .build()?,
    ];
    for persona in ALLOWED_PERSONALITIES {
        syscalls.push(allow_if_argument(
            "personality",
            LinuxSeccompOperator::ScmpCmpEq,
            persona,
            None,
        )?);
    }
    if !capabilities.contains(&Capability::SysAdmin) {
        // clone may not create namespaces. clone3 passes its flags in memory, where seccomp
        // cannot inspect them, so it fails with ENOSYS and the C library falls back to clone.
        syscalls.push(allow_if_argument(
            "clone",
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            CLONE_NAMESPACE_FLAGS,
            Some(0),
        )?);
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone3".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(ENOSYS)
                .build()?,
        );
    }

    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .architectures(native_architectures())
        .syscalls(syscalls)
        .build()?)
}

fn allow_if_argument(
    name: &str,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> Result<LinuxSyscall, SpecError> {
    let mut arg = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(value)
        .op(op);
    if let Some(value_two) = value_two {
        arg = arg.value_two(value_two);
    }
    Ok(LinuxSyscallBuilder::default()
        .names(vec![name.to_string()])
        .action(LinuxSeccompAction::ScmpActAllow)
        .args(vec![arg.build()?])
        .build()?)
}

/// Returns the native architecture and the compatibility ABIs the kernel also runs, so that a
/// 32-bit binary cannot reach syscalls the native filter denies.
fn native_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        Vec::new()
    }
}

/// Returns the native architecture's libseccomp name, as profiles spell it.
fn native_scmp_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "SCMP_ARCH_X86_64"
    } else if cfg!(target_arch = "aarch64") {
        "SCMP_ARCH_AARCH64"
    } else {
        "SCMP_ARCH_NATIVE"
    }
}

/// Returns the native architecture's Go name, as Docker profiles spell it in `includes.arches`.
fn native_go_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        std::env::consts::ARCH
    }
}

/// Loads a Localhost profile: OCI `linux.seccomp` JSON, or the Docker format that Kubernetes
/// documents, whose `archMap`, `includes` and `excludes` are resolved here for this host and
/// this container's capabilities.
pub(super) fn load_profile(
    path: &Path,
    capabilities: &Capabilities,
    host: &HostFeatures,
) -> Result<LinuxSeccomp, SpecError> {
    let path_text = path.display().to_string();
    if !path.is_absolute() {
        return Err(invalid_profile(
            &path_text,
            "a Localhost profile path must be absolute",
        ));
    }
    let text = std::fs::read(path)
        .map_err(|e| invalid_profile(&path_text, format!("cannot read the file: {e}")))?;
    let mut profile: Value = serde_json::from_slice(&text)
        .map_err(|e| invalid_profile(&path_text, format!("invalid JSON: {e}")))?;

    resolve_docker_fields(&mut profile, capabilities, host.kernel_version);

    serde_json::from_value(profile)
        .map_err(|e| invalid_profile(&path_text, format!("not a seccomp profile: {e}")))
}

fn resolve_docker_fields(profile: &mut Value, capabilities: &Capabilities, kernel: (u32, u32)) {
    let Some(object) = profile.as_object_mut() else {
        return;
    };

    let arch_map = object.remove("archMap");
    let has_architectures = object
        .get("architectures")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_architectures && let Some(architectures) = arch_map.and_then(native_arch_map_entry) {
        object.insert("architectures".to_string(), architectures);
    }

    if let Some(Value::Array(rules)) = object.get_mut("syscalls") {
        rules.retain(|rule| rule_applies(rule, capabilities, kernel));
        for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
            for docker_only in ["comment", "includes", "excludes"] {
                rule.remove(docker_only);
            }
            if !rule.contains_key("names")
                && let Some(name) = rule.remove("name")
            {
                rule.insert("names".to_string(), Value::Array(vec![name]));
            }
        }
    }
}

/// Returns `[architecture, subArchitectures...]` of the `archMap` entry for this host.
fn native_arch_map_entry(arch_map: Value) -> Option<Value> {
    let entry = arch_map.as_array()?.iter().find(|entry| {
        entry.get("architecture").and_then(Value::as_str) == Some(native_scmp_arch())
    })?;
    let mut architectures = vec![entry.get("architecture")?.clone()];
    if let Some(Value::Array(sub)) = entry.get("subArchitectures") {
        architectures.extend(sub.iter().cloned());
    }
    Some(Value::Array(architectures))
}

// Docker's rule conditions: the container must have every capability in includes.caps, the
// native arch must be in includes.arches, and the kernel must be at least includes.minKernel.
// Any capability or arch in excludes drops the rule.
fn rule_applies(rule: &Value, capabilities: &Capabilities, kernel: (u32, u32)) -> bool {
    let strings = |value: Option<&Value>| -> Vec<String> {
        value
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let has_capability = |name: &String| {
        super::security::parse_capability("seccomp includes", name)
            .is_ok_and(|cap| capabilities.contains(&cap))
    };

    if let Some(includes) = rule.get("includes") {
        let caps = strings(includes.get("caps"));
        let arches = strings(includes.get("arches"));
        if !caps.iter().all(has_capability) {
            return false;
        }
        if !arches.is_empty() && !arches.iter().any(|a| a == native_go_arch()) {
            return false;
        }
        if let Some(min) = includes.get("minKernel").and_then(Value::as_str)
            && kernel < super::host::parse_kernel_version(min)
        {
            return false;
        }
    }
    if let Some(excludes) = rule.get("excludes") {
        if strings(excludes.get("caps")).iter().any(has_capability) {
            return false;
        }
        if strings(excludes.get("arches"))
            .iter()
            .any(|a| a == native_go_arch())
        {
            return false;
        }
    }
    true
}
