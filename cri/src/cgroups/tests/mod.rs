//! Tests of the cgroup layer. Most run on temporary directories laid out like cgroupfs, with
//! every interface file created beforehand, since a plain directory gets no files from the
//! kernel. `host` runs against the machine's real hierarchy and needs root.

mod detect;
mod driver_v1;
mod driver_v2;
mod host;
mod layout;
mod path;
mod resources;
mod stats;
mod systemd_host;
mod systemd_naming;

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;

/// What `memory.limit_in_bytes` reads when no limit is set: `PAGE_COUNTER_MAX` pages of 4 KiB.
const V1_UNLIMITED: &str = "9223372036854771712";

const MIB: u64 = 1024 * 1024;

/// Interface files of a fresh v1 cgroup, per controller, with the kernel's defaults.
fn v1_files(controller: &str) -> &'static [(&'static str, &'static str)] {
    match controller {
        "cpu" => &[
            ("cpu.shares", "1024"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "-1"),
            (
                "cpu.stat",
                "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
            ),
        ],
        "cpuacct" => &[
            ("cpuacct.usage", "0"),
            ("cpuacct.usage_user", "0"),
            ("cpuacct.usage_sys", "0"),
        ],
        "cpuset" => &[("cpuset.cpus", ""), ("cpuset.mems", "")],
        "memory" => &[
            ("memory.limit_in_bytes", V1_UNLIMITED),
            ("memory.memsw.limit_in_bytes", V1_UNLIMITED),
            ("memory.usage_in_bytes", "0"),
            ("memory.stat", "total_rss 0\ntotal_inactive_file 0\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            ),
        ],
        "pids" => &[("pids.max", "max"), ("pids.current", "0")],
        "hugetlb" => &[
            ("hugetlb.2MB.limit_in_bytes", V1_UNLIMITED),
            ("hugetlb.2MB.rsvd.limit_in_bytes", V1_UNLIMITED),
            ("hugetlb.1GB.limit_in_bytes", V1_UNLIMITED),
        ],
        _ => &[],
    }
}

/// Temporary cgroup v1 layout: one directory per hierarchy under a temporary root.
struct FakeV1 {
    root: TempDir,
    /// Hierarchy directory names, such as `memory` or `cpu,cpuacct`.
    hierarchies: Vec<String>,
}

impl FakeV1 {
    /// Lays out the given hierarchies, with the root cpuset spanning CPUs 0-3 and node 0.
    fn new(hierarchies: &[&str]) -> FakeV1 {
        let fake = FakeV1 {
            root: tempfile::tempdir().expect("temporary directory"),
            hierarchies: hierarchies.iter().map(|name| name.to_string()).collect(),
        };
        for name in hierarchies {
            fs::create_dir(fake.root.path().join(name)).unwrap();
        }
        if let Some(dir) = fake.controller_root("cpuset") {
            fs::write(dir.join("cpuset.cpus"), "0-3\n").unwrap();
            fs::write(dir.join("cpuset.mems"), "0\n").unwrap();
        }
        fake
    }

    /// Returns a layout with the usual v1 hierarchies, cpu and cpuacct mounted apart as on
    /// Berth's test machines.
    fn standard() -> FakeV1 {
        FakeV1::new(&["cpu", "cpuacct", "cpuset", "memory", "pids", "hugetlb"])
    }

    fn hierarchy(&self) -> Hierarchy {
        Hierarchy::at(self.root.path(), CgroupVersion::V1).unwrap()
    }

    fn driver(&self) -> std::sync::Arc<dyn CgroupDriver> {
        cgroupfs(self.hierarchy())
    }

    fn controller_root(&self, controller: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|name| name.split(',').any(|part| part == controller))
            .map(|name| self.root.path().join(name))
    }

    /// Creates `path` and its ancestors in every hierarchy, each with its controllers' files.
    fn prepare(&self, path: &str) {
        for name in &self.hierarchies {
            let mut dir = self.root.path().join(name);
            for component in path.trim_start_matches('/').split('/') {
                dir.push(component);
                fs::create_dir_all(&dir).unwrap();
                for controller in name.split(',') {
                    for (file, value) in v1_files(controller) {
                        fs::write(dir.join(file), value).unwrap();
                    }
                }
            }
        }
    }

    /// Returns the trimmed content of `file` in `path` of `controller`'s hierarchy.
    fn read(&self, controller: &str, path: &str, file: &str) -> String {
        let dir = self.dir(controller, path);
        fs::read_to_string(dir.join(file))
            .unwrap_or_else(|err| panic!("reading {}/{file}: {err}", dir.display()))
            .trim()
            .to_string()
    }

    fn write(&self, controller: &str, path: &str, file: &str, value: &str) {
        fs::write(self.dir(controller, path).join(file), value).unwrap();
    }

    fn dir(&self, controller: &str, path: &str) -> PathBuf {
        self.controller_root(controller)
            .unwrap_or_else(|| panic!("no {controller} hierarchy in the fake layout"))
            .join(path.trim_start_matches('/'))
    }
}

/// Controllers a fake v2 root offers.
const V2_AVAILABLE: &str = "cpuset cpu io memory hugetlb pids";

/// Interface files of a fresh v2 cgroup with the kernel's defaults.
const V2_FILES: &[(&str, &str)] = &[
    ("cgroup.subtree_control", ""),
    ("cgroup.procs", ""),
    ("cpu.weight", "100"),
    ("cpu.max", "max 100000"),
    ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
    ("cpuset.cpus", ""),
    ("cpuset.mems", ""),
    ("memory.max", "max"),
    ("memory.swap.max", "max"),
    ("memory.high", "max"),
    ("memory.current", "0"),
    ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
    ("pids.max", "max"),
    ("pids.current", "0"),
    ("hugetlb.2MB.max", "max"),
    ("hugetlb.2MB.rsvd.max", "max"),
];

/// Temporary cgroup v2 layout.
struct FakeV2 {
    root: TempDir,
}

impl FakeV2 {
    fn new() -> FakeV2 {
        let fake = FakeV2 {
            root: tempfile::tempdir().expect("temporary directory"),
        };
        let root = fake.root.path();
        fs::write(root.join("cgroup.controllers"), V2_AVAILABLE).unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        fake
    }

    fn driver(&self) -> std::sync::Arc<dyn CgroupDriver> {
        cgroupfs(Hierarchy::at(self.root.path(), CgroupVersion::V2).unwrap())
    }

    /// Creates `path` and its ancestors, each listing `controllers` in `cgroup.controllers`,
    /// with every interface file of [`V2_FILES`].
    fn prepare_with(&self, path: &str, controllers: &str) {
        let mut dir = self.root.path().to_path_buf();
        for component in path.trim_start_matches('/').split('/') {
            dir.push(component);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
            for (file, value) in V2_FILES {
                fs::write(dir.join(file), value).unwrap();
            }
        }
    }

    fn prepare(&self, path: &str) {
        self.prepare_with(path, V2_AVAILABLE);
    }

    fn dir(&self, path: &str) -> PathBuf {
        self.root.path().join(path.trim_start_matches('/'))
    }

    fn read(&self, path: &str, file: &str) -> String {
        let dir = self.dir(path);
        fs::read_to_string(dir.join(file))
            .unwrap_or_else(|err| panic!("reading {}/{file}: {err}", dir.display()))
            .trim()
            .to_string()
    }

    fn write(&self, path: &str, file: &str, value: &str) {
        fs::write(self.dir(path).join(file), value).unwrap();
    }

    fn remove(&self, path: &str, file: &str) {
        fs::remove_file(self.dir(path).join(file)).unwrap();
    }
}

fn cgroup(path: &str) -> CgroupPath {
    CgroupPath::new(path).unwrap()
}

/// Returns a host topology with four CPUs and one memory node.
fn four_cpus() -> HostTopology {
    HostTopology::new("0-3", "0").unwrap()
}

/// Resources that set every field the drivers write.
fn every_resource() -> Resources {
    Resources {
        memory_limit_bytes: Some(Limit::Value(64 * MIB)),
        memory_swap_limit_bytes: Some(Limit::Value(96 * MIB)),
        cpu_shares: Some(512),
        cpu_quota_us: Some(Limit::Value(50_000)),
        cpu_period_us: Some(100_000),
        cpuset_cpus: Some("1-2".to_string()),
        cpuset_mems: Some("0".to_string()),
        pids_limit: Some(Limit::Value(32)),
        hugepage_limits: [("2MB".to_string(), 4 * MIB)].into(),
        unified: Default::default(),
    }
}
