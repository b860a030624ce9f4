//! `berth check` run as an operator would: the real binary against this host, with the
//! directories in a temporary dir.

use std::path::Path;
use std::process::{Command, Output};

use berth_tests::berth_binary;
use berth_tests::pods::systemd_is_init;
use serde_json::Value;

/// Runs `berth check` with `args` and returns its output, failing when it did not exit with 0
/// or 1 (for example 2 for a bad config, or a crash).
fn run_check(args: &[&str]) -> Output {
    let output = Command::new(berth_binary())
        .arg("check")
        .args(args)
        .output()
        .expect("run berth check");
    let code = output.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "berth check exited with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output
}

/// Parses the JSON report, checking that every finding has the four fields.
fn parse_findings(output: &Output) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("invalid JSON from berth check: {err}\n{stdout}"));
    let findings = report.as_array().expect("report is a JSON array").clone();
    assert!(!findings.is_empty(), "empty report");
    for finding in &findings {
        assert!(
            finding["name"].is_string(),
            "finding without name: {finding}"
        );
        assert!(
            finding["detail"].is_string(),
            "finding without detail: {finding}"
        );
        assert!(
            matches!(finding["status"].as_str(), Some("ok" | "warn" | "fail")),
            "finding with invalid status: {finding}"
        );
        let fix_expected = finding["status"] != "ok";
        assert_eq!(
            finding["fix"].is_string(),
            fix_expected,
            "fix field of {finding}"
        );
    }
    findings
}

fn find<'a>(findings: &'a [Value], name: &str) -> &'a Value {
    findings
        .iter()
        .find(|finding| finding["name"] == name)
        .unwrap_or_else(|| panic!("no finding named {name:?} in {findings:?}"))
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temp path is UTF-8")
}

#[test]
fn check_json_reports_host() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let state = dir.path().join("state");

    let output = run_check(&[
        "--output",
        "json",
        "--root",
        path_arg(&root),
        "--state-dir",
        path_arg(&state),
    ]);
    let findings = parse_findings(&output);

    assert_eq!(find(&findings, "overlayfs")["status"], "ok");
    assert_eq!(find(&findings, "runc")["status"], "ok");
    assert_eq!(find(&findings, "root dir")["status"], "ok");
    assert_eq!(find(&findings, "state dir")["status"], "ok");
    assert!(!root.exists(), "berth check created {}", root.display());
    let any_failed = findings.iter().any(|finding| finding["status"] == "fail");
    assert_eq!(
        output.status.code(),
        Some(i32::from(any_failed)),
        "exit status does not match the FAIL findings: {findings:?}"
    );
}

#[test]
fn check_unwritable_root_fails() {
    let dir = tempfile::tempdir().unwrap();

    let output = run_check(&[
        "--output",
        "json",
        "--root",
        "/proc/berth-not-writable",
        "--state-dir",
        path_arg(dir.path()),
    ]);
    let findings = parse_findings(&output);

    let root = find(&findings, "root dir");
    assert_eq!(root["status"], "fail", "{root}");
    assert!(
        root["detail"]
            .as_str()
            .unwrap()
            .contains("/proc/berth-not-writable"),
        "{root}"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn check_text_piped_has_no_colors() {
    let dir = tempfile::tempdir().unwrap();

    let output = run_check(&[
        "--root",
        path_arg(dir.path()),
        "--state-dir",
        path_arg(dir.path()),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);

    assert!(
        !stdout.contains('\x1b'),
        "escape codes in piped output:\n{stdout}"
    );
    let overlay = stdout
        .lines()
        .find(|line| line.contains("overlayfs"))
        .unwrap_or_else(|| panic!("no overlayfs line:\n{stdout}"));
    assert!(overlay.starts_with("ok "), "{overlay}");
}

#[test]
fn check_missing_explicit_config_exits_2() {
    let output = Command::new(berth_binary())
        .args(["check", "--config", "/nonexistent/berth.toml"])
        .output()
        .expect("run berth check");

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/berth.toml"), "{stderr}");
}

/// Runs `berth check --output json` with `config` as the config file.
fn check_with_config(config: &str) -> (Output, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let state = dir.path().join("state");
    let root = dir.path().join("root");
    let output = run_check(&[
        "--output",
        "json",
        "--config",
        path_arg(&path),
        "--root",
        path_arg(&root),
        "--state-dir",
        path_arg(&state),
    ]);
    let findings = parse_findings(&output);
    (output, findings)
}

#[test]
fn check_reports_cgroup_version_and_picked_driver() {
    let (_, findings) = check_with_config("");

    let version = find(&findings, "cgroup version");
    let expected = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    };
    assert!(
        version["detail"].as_str().unwrap().starts_with(expected),
        "{version}"
    );
    let driver = find(&findings, "cgroup driver");
    let detail = driver["detail"].as_str().unwrap();
    let picked = if systemd_is_init() {
        "systemd"
    } else {
        "cgroupfs"
    };
    assert!(detail.starts_with(picked), "{driver}");
    assert!(detail.contains("picked"), "{driver}");
    assert!(
        detail.contains(&format!("--cgroup-driver={picked}")),
        "{driver}"
    );
}

#[test]
fn check_fails_systemd_driver_without_systemd() {
    let (output, findings) = check_with_config("[runtime]\ncgroup_driver = \"systemd\"\n");

    let driver = find(&findings, "cgroup driver");
    if systemd_is_init() {
        assert_eq!(driver["status"], "ok", "{driver}");
        return;
    }
    assert_eq!(driver["status"], "fail", "{driver}");
    assert!(
        driver["detail"].as_str().unwrap().contains("PID 1"),
        "{driver}"
    );
    assert!(
        driver["fix"]
            .as_str()
            .unwrap()
            .contains("cgroup_driver = \"cgroupfs\""),
        "{driver}"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn mismatched_cgroup_parent_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[runtime]\ncgroup_driver = \"cgroupfs\"\ncgroup_parent = \"berth.slice\"\n",
    )
    .unwrap();

    let output = Command::new(berth_binary())
        .args(["check", "--config", path_arg(&path)])
        .output()
        .expect("run berth check");

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("runtime.cgroup_parent"), "{stderr}");
    assert!(
        stderr.contains("\"/berth\""),
        "the message suggests a value: {stderr}"
    );
}

#[test]
fn check_warns_crun_on_hybrid_cgroups() {
    let (_, findings) = check_with_config("");
    let version = find(&findings, "cgroup version");
    let crun = find(&findings, "crun");
    let hybrid = version["detail"].as_str().unwrap().contains("hybrid");
    let installed = !crun["detail"].as_str().unwrap().contains("not found");
    if hybrid && installed {
        assert_eq!(crun["status"], "warn", "{crun}");
        assert!(crun["detail"].as_str().unwrap().contains("runc"), "{crun}");
    } else if installed {
        assert_eq!(crun["status"], "ok", "{crun}");
    }
}
