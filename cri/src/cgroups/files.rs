//! Reads and writes of cgroupfs interface files and directories, shared by both versions.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::thread;
use std::time::Duration;

use super::CgroupError;

/// Attempts at removing a cgroup directory, because the kernel can report EBUSY for a short
/// while after the last process exits.
const RMDIR_ATTEMPTS: u32 = 5;

/// Delay before the second attempt; each later delay doubles it (150 ms in total).
const RMDIR_FIRST_DELAY: Duration = Duration::from_millis(10);

/// Writes `value` to the interface file `file` of the cgroup directory `dir`.
///
/// The file is opened without `O_CREAT`. On cgroupfs a missing file means the controller is not
/// available, so the write fails with ENOENT and names the file, where `O_CREAT` would leave a
/// stray file in a test directory.
pub(super) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let result = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut handle| handle.write_all(value.as_bytes()));
    tracing::debug!(path = %path.display(), value, ok = result.is_ok(), "cgroup write");
    result.map_err(|source| CgroupError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

/// Reads a whole interface file, or returns `None` when it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(CgroupError::io("reading", path, err)),
    }
}

/// Reads an interface file and trims the trailing newline.
pub(super) fn read_trimmed(path: &Path) -> Result<String, CgroupError> {
    let text = fs::read_to_string(path).map_err(|err| CgroupError::io("reading", path, err))?;
    Ok(text.trim().to_string())
}

/// Reads a single-value file such as `memory.current`, or returns `None` when it is missing.
pub(super) fn read_u64_optional(path: &Path) -> Result<Option<u64>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let text = text.trim();
    text.parse()
        .map(Some)
        .map_err(|_| CgroupError::parse(path, format!("{text:?} is not an unsigned integer")))
}

/// Reads a flat keyed file (`key value` per line, as `memory.stat` and `cpu.stat`), or
/// returns `None` when it is missing.
pub(super) fn read_keyed_optional(
    path: &Path,
) -> Result<Option<BTreeMap<String, u64>>, CgroupError> {
    match read_optional(path)? {
        Some(text) => parse_keyed(&text)
            .map(Some)
            .map_err(|reason| CgroupError::parse(path, reason)),
        None => Ok(None),
    }
}

/// Parses the flat keyed format of cgroup-v2.rst, which v1's `memory.stat`, `cpu.stat` and
/// `memory.oom_control` share.
pub(super) fn parse_keyed(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut values = BTreeMap::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(key), Some(value), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("line {line:?} is not a key and a value"));
        };
        let value = value
            .parse()
            .map_err(|_| format!("value of {key} is not an unsigned integer: {value:?}"))?;
        values.insert(key.to_string(), value);
    }
    Ok(values)
}

/// Creates `dir` and any missing parents. Returns whether `dir` itself was created.
pub(super) fn create_dir(dir: &Path) -> Result<bool, CgroupError> {
    if dir.is_dir() {
        return Ok(false);
    }
    fs::create_dir_all(dir).map_err(|err| CgroupError::io("creating cgroup", dir, err))?;
    Ok(true)
}

/// Removes an empty cgroup directory, retrying while the kernel reports it busy. A missing
/// directory counts as removed.
///
/// # Errors
///
/// [`CgroupError::Busy`] naming the processes or child cgroups still in it.
pub(super) fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = RMDIR_FIRST_DELAY;
    for attempt in 1..=RMDIR_ATTEMPTS {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && attempt < RMDIR_ATTEMPTS => {
                tracing::debug!(path = %dir.display(), attempt, "cgroup busy, retrying rmdir");
                thread::sleep(delay);
                delay *= 2;
            }
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                return Err(CgroupError::Busy {
                    path: dir.to_path_buf(),
                    detail: busy_detail(dir),
                });
            }
            Err(err) => return Err(CgroupError::io("removing cgroup", dir, err)),
        }
    }
    unreachable!("the last attempt returns");
}

/// Describes what keeps a cgroup busy: its processes, or else its child cgroups.
fn busy_detail(dir: &Path) -> String {
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    let pids: Vec<&str> = procs.split_whitespace().collect();
    if !pids.is_empty() {
        let listed = pids.iter().take(10).copied().collect::<Vec<_>>().join(", ");
        return format!(
            "{} process(es) still in it: PID {listed}; stop them first",
            pids.len()
        );
    }

    let children: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    if children.is_empty() {
        "the kernel reports it busy with no process or child cgroup left".to_string()
    } else {
        format!(
            "child cgroups remain: {}; remove them first",
            children.join(", ")
        )
    }
}

/// Removes the leaf directories a failed create made, so that the failure leaves nothing
/// behind but the ancestors it shares with other cgroups. A failed removal is logged and
/// otherwise ignored, because the create error is the one to report.
pub(super) fn remove_created(dirs: &[std::path::PathBuf]) {
    for dir in dirs {
        if let Err(err) = remove_dir(dir) {
            tracing::warn!(path = %dir.display(), %err, "removing cgroup after a failed create failed");
        }
    }
}
