//! `berth check`: reports in one screen whether this host can run Berth, and what to install or
//! change when it cannot.
//!
//! Each check is a small function that inspects the host (procfs, cgroupfs, `PATH`, the configured
//! directories) and returns one [`Finding`]. `FAIL` marks something `berth serve` or the pods it
//! runs need, and makes the exit status 1. `warn` marks something optional or degraded.

mod access;
mod cgroup;
mod kernel;
mod network;
mod runtime;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;

use crate::config::{AgentConfig, DEFAULT_CONFIG};

/// Flags of `berth check`. The directory flags override the config file as in `berth serve`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// Config file (TOML). A missing file at the default path means all defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for blobs, layers and the metadata database [default: /var/lib/berth].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Directory for runtime state that does not survive a reboot [default: /run/berth].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// CRI socket path [default: <state-dir>/berth.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Report format: one line per check, or a JSON array of {name, status, detail, fix}.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Optional or degraded: reported, but the exit status stays 0.
    Warn,
    /// Required and missing: the exit status becomes 1.
    Fail,
}

/// Result of one check: what was found and, unless it is `Ok`, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// The Debian package to install or the setting to change.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check, in report order.
const CHECKS: &[fn(&AgentConfig) -> Finding] = &[
    |_| kernel::check_version(),
    |_| kernel::check_overlayfs(),
    |_| kernel::check_namespaces(),
    |_| kernel::check_user_namespaces(),
    |_| kernel::check_seccomp(),
    |_| cgroup::check_version(),
    |_| cgroup::check_required_controllers(),
    |_| cgroup::check_optional_controllers(),
    |config| cgroup::check_driver(&config.runtime),
    |_| runtime::check_runc(),
    |_| runtime::check_crun(),
    |_| network::check_cni_plugins(),
    |_| network::check_cni_config(),
    |_| network::check_iptables(),
    |config| access::check_dir("root dir", &config.root, "root"),
    |config| access::check_dir("state dir", &config.state_dir, "state_dir"),
    |config| access::check_socket_dir(&config.socket_path()),
    |_| access::check_root_user(),
];

/// Runs every check, prints the report and returns 0 when no check failed, 1 when one did, and
/// 2 when the config file cannot be loaded.
pub fn run(args: CheckArgs) -> ExitCode {
    let explicit = args.config.is_some();
    let path = args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
    let mut config = match AgentConfig::load(&path, explicit) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("berth: {err}");
            return ExitCode::from(2);
        }
    };
    apply_flags(&mut config, &args);

    let findings: Vec<Finding> = CHECKS.iter().map(|check| check(&config)).collect();

    match args.output {
        OutputFormat::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print!("{}", render_text(&findings, color));
        }
        OutputFormat::Json => println!("{}", render_json(&findings)),
    }
    if findings
        .iter()
        .any(|finding| finding.status == Status::Fail)
    {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn apply_flags(config: &mut AgentConfig, args: &CheckArgs) {
    if let Some(root) = &args.root {
        config.root = root.clone();
    }
    if let Some(state_dir) = &args.state_dir {
        config.state_dir = state_dir.clone();
    }
    if let Some(socket) = &args.socket {
        config.socket = Some(socket.clone());
    }
}

/// Formats one aligned line per finding, `status  name  detail; fix: ...`, and a summary line.
/// With `color`, the status word is green, yellow or red.
fn render_text(findings: &[Finding], color: bool) -> String {
    let name_width = findings.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for finding in findings {
        let (word, ansi) = match finding.status {
            Status::Ok => ("ok", "32"),
            Status::Warn => ("warn", "33"),
            Status::Fail => ("FAIL", "31"),
        };
        let status = if color {
            format!("\x1b[{ansi}m{word:<4}\x1b[0m")
        } else {
            format!("{word:<4}")
        };
        let name = finding.name;
        out.push_str(&format!(
            "{status}  {name:<name_width$}  {}",
            finding.detail
        ));
        if let Some(fix) = &finding.fix {
            out.push_str(&format!("; fix: {fix}"));
        }
        out.push('\n');
    }

    let failures = count(findings, Status::Fail);
    let warnings = count(findings, Status::Warn);
    let verdict = if failures == 0 {
        "this host can run Berth"
    } else {
        "this host cannot run Berth until the FAIL lines are fixed"
    };
    out.push_str(&format!(
        "\n{failures} failed, {warnings} warnings: {verdict}\n"
    ));
    out
}

fn count(findings: &[Finding], status: Status) -> usize {
    findings.iter().filter(|f| f.status == status).count()
}

/// Formats the findings as a JSON array of `{name, status, detail, fix}`, with `status` one of
/// `ok`, `warn`, `fail` and `fix` null for passing checks.
fn render_json(findings: &[Finding]) -> String {
    let items: Vec<String> = findings
        .iter()
        .map(|finding| {
            let status = match finding.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "fail",
            };
            let fix = finding
                .fix
                .as_deref()
                .map_or_else(|| "null".to_string(), json_string);
            format!(
                "  {{\"name\": {}, \"status\": \"{status}\", \"detail\": {}, \"fix\": {fix}}}",
                json_string(finding.name),
                json_string(&finding.detail),
            )
        })
        .collect();
    format!("[\n{}\n]", items.join(",\n"))
}

/// Quotes `text` as a JSON string. The agent crate does not depend on serde_json, and these few
/// flat records do not need it.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Finds an executable named `name` in `PATH`, then in the sbin directories where Debian installs
/// runc and iptables, which a non-root user's `PATH` often lacks.
fn find_executable(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;

    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path_var)
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `binary --version` and returns the first line of its output.
fn version_line(binary: &Path) -> Result<String, String> {
    let output = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|err| format!("cannot run {} --version: {err}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} --version failed with {}",
            binary.display(),
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout.lines().next().unwrap_or("").trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_escapes_quotes_and_controls() {
        assert_eq!(json_string(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(json_string("line\nnext\u{1}"), r#""line\nnext\u0001""#);
    }

    #[test]
    fn json_has_null_fix_for_ok() {
        let findings = [
            Finding::ok("runc", "runc version 1.1.5"),
            Finding::fail("iptables", "not found", "apt-get install iptables"),
        ];

        let json = render_json(&findings);

        assert!(json.contains(r#""name": "runc", "status": "ok""#), "{json}");
        assert!(json.contains(r#""fix": null"#), "{json}");
        assert!(
            json.contains(
                r#""status": "fail", "detail": "not found", "fix": "apt-get install iptables""#
            ),
            "{json}"
        );
    }

    #[test]
    fn text_without_color_has_no_escapes() {
        let findings = [
            Finding::ok("runc", "runc version 1.1.5"),
            Finding::warn("crun", "not found", "apt-get install crun"),
        ];

        let text = render_text(&findings, false);

        assert!(!text.contains('\x1b'), "{text}");
        assert!(
            text.starts_with("ok    runc  runc version 1.1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("warn  crun  not found; fix: apt-get install crun\n"),
            "{text}"
        );
        assert!(text.contains("0 failed, 1 warnings"), "{text}");
    }
}
