//! The cgroupfs driver against the host's real hierarchy. These tests need root, and fail
//! rather than skip without it. Each creates its cgroups under a fresh parent with a random
//! name, never touches a cgroup it did not create, and a guard removes everything it made, and
//! stops any process it started, even when the test fails.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use berth_proto::cri::LinuxContainerResources;

use super::*;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates cgroups in the host's hierarchy and must run as root"
    );
}

/// Cgroups and processes of one test, removed and stopped on drop.
struct HostCgroups {
    driver: Arc<dyn CgroupDriver>,
    hierarchy: Hierarchy,
    parent: CgroupPath,
    /// Cgroups below `parent` that the test created, in creation order.
    children: Vec<CgroupPath>,
    process: Option<Child>,
}

impl HostCgroups {
    fn new() -> HostCgroups {
        require_root();
        let hierarchy = Hierarchy::detect().expect("detecting the host's cgroup hierarchy");
        let parent = cgroup(&format!("/berth-cgtest-{:08x}", rand::random::<u32>()));
        let driver = cgroupfs(hierarchy.clone());
        driver
            .create(&parent, &Resources::default())
            .expect("creating the test's parent cgroup");
        HostCgroups {
            driver,
            hierarchy,
            parent,
            children: Vec::new(),
            process: None,
        }
    }

    /// Returns the path of a child of the test's parent, to be removed by the guard.
    fn child(&mut self, name: &str) -> CgroupPath {
        let parent = self.parent.clone();
        self.child_of(&parent, name)
    }

    /// Returns the path of a child of `parent`, to be removed by the guard.
    fn child_of(&mut self, parent: &CgroupPath, name: &str) -> CgroupPath {
        let path = parent.join(name).unwrap();
        self.children.push(path.clone());
        path
    }

    /// Returns the trimmed content of `file` of `path` in `controller`'s hierarchy.
    fn read(&self, controller: &str, path: &CgroupPath, file: &str) -> String {
        let mount = self
            .hierarchy
            .mount_point(controller)
            .unwrap_or_else(|| panic!("the {controller} controller is not mounted"));
        let file = path.under(mount).join(file);
        fs::read_to_string(&file)
            .unwrap_or_else(|err| panic!("reading {}: {err}", file.display()))
            .trim()
            .to_string()
    }

    fn has_file(&self, controller: &str, path: &CgroupPath, file: &str) -> bool {
        self.hierarchy
            .mount_point(controller)
            .is_some_and(|mount| path.under(mount).join(file).exists())
    }

    /// Starts `sleep` and moves it into `path`: in its memory and pids hierarchies on v1.
    fn start_process_in(&mut self, path: &CgroupPath) -> u32 {
        let child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .expect("starting sleep");
        let pid = child.id();
        self.process = Some(child);
        for controller in ["memory", "pids"] {
            let mount = self.hierarchy.mount_point(controller).unwrap();
            fs::write(path.under(mount).join("cgroup.procs"), pid.to_string())
                .expect("moving the test's own process into its cgroup");
        }
        pid
    }

    fn stop_process(&mut self) {
        if let Some(mut child) = self.process.take() {
            // Child::kill sends SIGKILL to this child's PID only.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn exists(&self, path: &CgroupPath) -> bool {
        self.hierarchy
            .mount_point("memory")
            .is_some_and(|mount| path.under(mount).exists())
    }
}

impl Drop for HostCgroups {
    fn drop(&mut self) {
        self.stop_process();
        // Deepest first, so that each parent is empty when its turn comes.
        let mut paths = self.children.clone();
        paths.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
        paths.push(self.parent.clone());
        for path in paths {
            if let Err(err) = self.driver.remove(&path) {
                eprintln!("cleanup: removing cgroup {path} failed: {err}");
            }
        }
    }
}

/// Resources from a CRI request of 64 MiB and half a CPU, plus a PIDs limit of 32.
fn half_cpu_64_mib() -> Resources {
    let cri = LinuxContainerResources {
        memory_limit_in_bytes: 64 * MIB as i64,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        ..Default::default()
    };
    let mut resources = Resources::from_cri(&cri).unwrap();
    resources.pids_limit = Some(Limit::Value(32));
    resources
}

#[test]
fn host_create_update_stats_remove() {
    let mut host = HostCgroups::new();
    let ctr = host.child("ctr");
    let driver = Arc::clone(&host.driver);

    driver.create(&ctr, &half_cpu_64_mib()).unwrap();

    match driver.version() {
        CgroupVersion::V1 => {
            assert_eq!(
                host.read("memory", &ctr, "memory.limit_in_bytes"),
                "67108864"
            );
            if host.has_file("memory", &ctr, "memory.memsw.limit_in_bytes") {
                assert_eq!(
                    host.read("memory", &ctr, "memory.memsw.limit_in_bytes"),
                    "67108864"
                );
            }
            assert_eq!(host.read("cpu", &ctr, "cpu.cfs_quota_us"), "50000");
            assert_eq!(host.read("cpu", &ctr, "cpu.cfs_period_us"), "100000");
            assert_eq!(host.read("pids", &ctr, "pids.max"), "32");
        }
        CgroupVersion::V2 => {
            assert_eq!(host.read("memory", &ctr, "memory.max"), "67108864");
            if host.has_file("memory", &ctr, "memory.swap.max") {
                assert_eq!(host.read("memory", &ctr, "memory.swap.max"), "0");
            }
            assert_eq!(host.read("cpu", &ctr, "cpu.max"), "50000 100000");
            assert_eq!(host.read("pids", &ctr, "pids.max"), "32");
        }
    }

    // Raising memory and memory+swap together needs memory+swap written first on v1.
    let raise = Resources {
        memory_limit_bytes: Some(Limit::Value(128 * MIB)),
        memory_swap_limit_bytes: Some(Limit::Value(128 * MIB)),
        ..Resources::default()
    };
    driver.update(&ctr, &raise).unwrap();
    let memory_file = match driver.version() {
        CgroupVersion::V1 => "memory.limit_in_bytes",
        CgroupVersion::V2 => "memory.max",
    };
    assert_eq!(host.read("memory", &ctr, memory_file), "134217728");

    // Lowering them needs memory written first on v1.
    let lower = Resources {
        memory_limit_bytes: Some(Limit::Value(32 * MIB)),
        memory_swap_limit_bytes: Some(Limit::Value(32 * MIB)),
        ..Resources::default()
    };
    driver.update(&ctr, &lower).unwrap();
    assert_eq!(host.read("memory", &ctr, memory_file), "33554432");
    assert_eq!(
        host.read("pids", &ctr, "pids.max"),
        "32",
        "update must leave the PIDs limit alone"
    );

    let stats = driver.stats(&ctr).unwrap();
    assert!(stats.cpu_usage_ns.is_some(), "{stats:?}");
    assert!(stats.memory_usage_bytes.is_some(), "{stats:?}");
    assert!(stats.memory_working_set_bytes.is_some(), "{stats:?}");
    assert_eq!(stats.pids_current, Some(0), "{stats:?}");
    assert_eq!(stats.oom_kills, Some(0), "{stats:?}");
    assert_eq!(driver.oom_kills(&ctr).unwrap(), 0);

    driver.remove(&ctr).unwrap();
    assert!(!host.exists(&ctr), "{ctr} still exists");
    driver.remove(&ctr).unwrap();
}

#[test]
fn host_lifting_memory_limit() {
    let mut host = HostCgroups::new();
    let ctr = host.child("ctr");
    let driver = Arc::clone(&host.driver);
    driver.create(&ctr, &half_cpu_64_mib()).unwrap();

    let lift = Resources {
        memory_limit_bytes: Some(Limit::Unlimited),
        ..Resources::default()
    };
    driver.update(&ctr, &lift).unwrap();

    let (file, unlimited) = match driver.version() {
        CgroupVersion::V1 => ("memory.limit_in_bytes", V1_UNLIMITED),
        CgroupVersion::V2 => ("memory.max", "max"),
    };
    assert_eq!(host.read("memory", &ctr, file), unlimited);
}

#[test]
fn host_stats_count_a_process() {
    let mut host = HostCgroups::new();
    let ctr = host.child("ctr");
    let driver = Arc::clone(&host.driver);
    driver.create(&ctr, &half_cpu_64_mib()).unwrap();
    let pid = host.start_process_in(&ctr);

    let stats = driver.stats(&ctr).unwrap();

    assert_eq!(stats.pids_current, Some(1), "sleep is PID {pid}: {stats:?}");
}

#[test]
fn host_remove_busy_with_process() {
    let mut host = HostCgroups::new();
    let ctr = host.child("ctr");
    let driver = Arc::clone(&host.driver);
    driver.create(&ctr, &Resources::default()).unwrap();
    let pid = host.start_process_in(&ctr);

    let err = driver.remove(&ctr).unwrap_err();

    assert!(matches!(err, CgroupError::Busy { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(ctr.as_str()), "{message}");
    assert!(message.contains(&format!("PID {pid}")), "{message}");

    host.stop_process();
    driver.remove(&ctr).unwrap();
    assert!(!host.exists(&ctr));
}

#[test]
fn host_remove_busy_with_child_cgroup() {
    let mut host = HostCgroups::new();
    let pod = host.child("pod");
    let ctr = host.child_of(&pod, "ctr");
    let driver = Arc::clone(&host.driver);
    driver.create(&ctr, &Resources::default()).unwrap();

    let err = driver.remove(&pod).unwrap_err();

    assert!(matches!(err, CgroupError::Busy { .. }), "{err}");
    assert!(
        err.to_string().contains("child cgroups remain: ctr"),
        "{err}"
    );
}

#[test]
fn host_cpuset_inherited_and_set() {
    let mut host = HostCgroups::new();
    let pod = host.child("pod");
    let ctr = host.child_of(&pod, "ctr");
    let driver = Arc::clone(&host.driver);
    let first_cpu = Resources {
        cpuset_cpus: Some("0".to_string()),
        ..Resources::default()
    };

    driver.create(&ctr, &first_cpu).unwrap();

    assert_eq!(host.read("cpuset", &ctr, "cpuset.cpus"), "0");
    if driver.version() == CgroupVersion::V1 {
        let root = host.hierarchy.mount_point("cpuset").unwrap();
        let root_cpus = fs::read_to_string(root.join("cpuset.cpus")).unwrap();
        let root_mems = fs::read_to_string(root.join("cpuset.mems")).unwrap();
        assert_eq!(host.read("cpuset", &pod, "cpuset.cpus"), root_cpus.trim());
        assert_eq!(host.read("cpuset", &pod, "cpuset.mems"), root_mems.trim());
        assert_eq!(host.read("cpuset", &ctr, "cpuset.mems"), root_mems.trim());
    }
}

#[test]
fn host_invalid_request_creates_nothing() {
    let mut host = HostCgroups::new();
    let ctr = host.child("ctr");
    let too_small = Resources {
        cpu_quota_us: Some(Limit::Value(500)),
        ..Resources::default()
    };

    let err = host.driver.create(&ctr, &too_small).unwrap_err();

    assert!(err.is_invalid_argument(), "{err}");
    assert!(!host.exists(&ctr));
}

#[test]
fn host_shorter_period_with_quota() {
    let mut host = HostCgroups::new();
    let ctr = host.child("ctr");
    let driver = Arc::clone(&host.driver);
    let half_cpu = Resources {
        cpu_quota_us: Some(Limit::Value(50_000)),
        cpu_period_us: Some(100_000),
        ..Resources::default()
    };
    driver.update(&host.parent, &half_cpu).unwrap();
    driver.create(&ctr, &half_cpu).unwrap();

    // On v1 the kernel rejects the period first: 50000 µs of quota per 50000 µs would be a whole
    // CPU, more than the parent's half. The driver retries it after the quota.
    let same_share_shorter_period = Resources {
        cpu_quota_us: Some(Limit::Value(25_000)),
        cpu_period_us: Some(50_000),
        ..Resources::default()
    };
    driver.update(&ctr, &same_share_shorter_period).unwrap();

    match driver.version() {
        CgroupVersion::V1 => {
            assert_eq!(host.read("cpu", &ctr, "cpu.cfs_quota_us"), "25000");
            assert_eq!(host.read("cpu", &ctr, "cpu.cfs_period_us"), "50000");
        }
        CgroupVersion::V2 => {
            assert_eq!(host.read("cpu", &ctr, "cpu.max"), "25000 50000");
        }
    }
}
