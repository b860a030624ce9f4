//! Statistics and OOM counters parsed from sample cgroupfs files of both versions.

use super::*;

const POD: &str = "/berth/pod1";

/// `memory.stat` of a v1 cgroup, trimmed from a Linux 6.1 host.
const V1_MEMORY_STAT: &str = "\
cache 2297856
rss 7471104
rss_huge 0
shmem 0
mapped_file 1081344
dirty 0
writeback 0
pgpgin 4488
pgpgout 2102
pgfault 5115
pgmajfault 11
inactive_anon 7467008
active_anon 4096
inactive_file 1757184
active_file 540672
unevictable 0
hierarchical_memory_limit 67108864
hierarchical_memsw_limit 67108864
total_cache 2297856
total_rss 7471104
total_rss_huge 0
total_shmem 0
total_mapped_file 1081344
total_pgfault 5115
total_pgmajfault 11
total_inactive_anon 7467008
total_active_anon 4096
total_inactive_file 1757184
total_active_file 540672
total_unevictable 0
";

/// `memory.stat` of a v2 cgroup, trimmed from a Linux 6.1 host.
const V2_MEMORY_STAT: &str = "\
anon 7393280
file 2297856
kernel 544768
kernel_stack 49152
pagetables 94208
sock 0
shmem 0
file_mapped 1081344
file_dirty 0
file_writeback 0
anon_thp 0
inactive_anon 7389184
active_anon 4096
inactive_file 1757184
active_file 540672
unevictable 0
slab_reclaimable 153752
slab_unreclaimable 209984
pgfault 5115
pgmajfault 11
workingset_refault_anon 0
workingset_refault_file 0
";

fn v1_with_samples() -> FakeV1 {
    let fake = FakeV1::new(&["cpu", "cpuacct", "memory", "pids"]);
    fake.prepare(POD);
    fake.write("cpuacct", POD, "cpuacct.usage", "123456789\n");
    fake.write("cpuacct", POD, "cpuacct.usage_user", "100000000\n");
    fake.write("cpuacct", POD, "cpuacct.usage_sys", "23456789\n");
    fake.write(
        "cpu",
        POD,
        "cpu.stat",
        "nr_periods 40\nnr_throttled 7\nthrottled_time 350000000\nnr_bursts 0\nburst_time 0\n",
    );
    fake.write("memory", POD, "memory.usage_in_bytes", "10485760\n");
    fake.write("memory", POD, "memory.stat", V1_MEMORY_STAT);
    fake.write(
        "memory",
        POD,
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    fake.write("pids", POD, "pids.current", "5\n");
    fake
}

fn v2_with_samples() -> FakeV2 {
    let fake = FakeV2::new();
    fake.prepare(POD);
    fake.write(
        POD,
        "cpu.stat",
        "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 40\n\
         nr_throttled 7\nthrottled_usec 350000\nnr_bursts 0\nburst_usec 0\n",
    );
    fake.write(POD, "memory.current", "10485760\n");
    fake.write(POD, "memory.stat", V2_MEMORY_STAT);
    fake.write(
        POD,
        "memory.events",
        "low 0\nhigh 0\nmax 12\noom 3\noom_kill 3\noom_group_kill 0\n",
    );
    fake.write(POD, "pids.current", "5\n");
    fake
}

#[test]
fn v1_stats_from_samples() {
    let fake = v1_with_samples();

    let stats = fake.driver().stats(&cgroup(POD)).unwrap();

    assert_eq!(stats.cpu_usage_ns, Some(123_456_789));
    assert_eq!(stats.cpu_user_ns, Some(100_000_000));
    assert_eq!(stats.cpu_system_ns, Some(23_456_789));
    assert_eq!(stats.nr_periods, Some(40));
    assert_eq!(stats.throttled_periods, Some(7));
    assert_eq!(stats.throttled_ns, Some(350_000_000));
    assert_eq!(stats.memory_usage_bytes, Some(10_485_760));
    assert_eq!(stats.memory_working_set_bytes, Some(10_485_760 - 1_757_184));
    assert_eq!(stats.memory_rss_bytes, Some(7_471_104));
    assert_eq!(stats.page_faults, Some(5115));
    assert_eq!(stats.major_page_faults, Some(11));
    assert_eq!(stats.pids_current, Some(5));
    assert_eq!(stats.oom_kills, Some(2));
}

#[test]
fn v2_stats_from_samples() {
    let fake = v2_with_samples();

    let stats = fake.driver().stats(&cgroup(POD)).unwrap();

    assert_eq!(stats.cpu_usage_ns, Some(123_456_000));
    assert_eq!(stats.cpu_user_ns, Some(100_000_000));
    assert_eq!(stats.cpu_system_ns, Some(23_456_000));
    assert_eq!(stats.nr_periods, Some(40));
    assert_eq!(stats.throttled_periods, Some(7));
    assert_eq!(stats.throttled_ns, Some(350_000_000));
    assert_eq!(stats.memory_usage_bytes, Some(10_485_760));
    assert_eq!(stats.memory_working_set_bytes, Some(10_485_760 - 1_757_184));
    assert_eq!(stats.memory_rss_bytes, Some(7_393_280));
    assert_eq!(stats.page_faults, Some(5115));
    assert_eq!(stats.major_page_faults, Some(11));
    assert_eq!(stats.pids_current, Some(5));
    assert_eq!(stats.oom_kills, Some(3));
}

#[test]
fn working_set_floored_at_zero() {
    let fake = v1_with_samples();
    fake.write("memory", POD, "memory.usage_in_bytes", "1000\n");

    let stats = fake.driver().stats(&cgroup(POD)).unwrap();

    assert_eq!(stats.memory_usage_bytes, Some(1000));
    assert_eq!(stats.memory_working_set_bytes, Some(0));
}

#[test]
fn working_set_without_memory_stat_is_usage() {
    let fake = v2_with_samples();
    fake.remove(POD, "memory.stat");

    let stats = fake.driver().stats(&cgroup(POD)).unwrap();

    assert_eq!(stats.memory_working_set_bytes, Some(10_485_760));
    assert_eq!(stats.memory_rss_bytes, None);
}

#[test]
fn v1_missing_controllers_give_none() {
    let fake = FakeV1::new(&["cpuacct"]);
    fake.prepare(POD);
    fake.write("cpuacct", POD, "cpuacct.usage", "42\n");

    let stats = fake.driver().stats(&cgroup(POD)).unwrap();

    assert_eq!(stats.cpu_usage_ns, Some(42));
    assert_eq!(stats.nr_periods, None);
    assert_eq!(stats.memory_usage_bytes, None);
    assert_eq!(stats.memory_working_set_bytes, None);
    assert_eq!(stats.pids_current, None);
    assert_eq!(stats.oom_kills, None);
}

#[test]
fn v2_disabled_controllers_give_none() {
    let fake = FakeV2::new();
    fs::create_dir_all(fake.dir(POD)).unwrap();
    fake.write(
        POD,
        "cpu.stat",
        "usage_usec 7\nuser_usec 5\nsystem_usec 2\n",
    );

    let stats = fake.driver().stats(&cgroup(POD)).unwrap();

    assert_eq!(stats.cpu_usage_ns, Some(7000));
    assert_eq!(stats.throttled_periods, None);
    assert_eq!(stats.memory_usage_bytes, None);
    assert_eq!(stats.pids_current, None);
    assert_eq!(stats.oom_kills, None);
}

#[test]
fn stats_of_missing_cgroup_is_not_found() {
    let v1 = FakeV1::standard();
    let v2 = FakeV2::new();

    for driver in [v1.driver(), v2.driver()] {
        let err = driver.stats(&cgroup("/absent")).unwrap_err();
        assert!(matches!(err, CgroupError::NotFound { .. }), "{err}");
    }
}

#[test]
fn malformed_memory_stat_names_file() {
    let fake = v1_with_samples();
    fake.write("memory", POD, "memory.stat", "total_rss lots\n");

    let err = fake.driver().stats(&cgroup(POD)).unwrap_err();

    assert!(matches!(err, CgroupError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("memory.stat"), "{err}");
}

#[test]
fn v1_oom_kills_from_oom_control() {
    let fake = v1_with_samples();

    assert_eq!(fake.driver().oom_kills(&cgroup(POD)).unwrap(), 2);
}

#[test]
fn v2_oom_kills_from_memory_events() {
    let fake = v2_with_samples();

    assert_eq!(fake.driver().oom_kills(&cgroup(POD)).unwrap(), 3);
}

#[test]
fn oom_kills_without_counter_line() {
    let fake = v1_with_samples();
    fake.write(
        "memory",
        POD,
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\n",
    );

    let err = fake.driver().oom_kills(&cgroup(POD)).unwrap_err();

    assert!(matches!(err, CgroupError::Parse { .. }), "{err}");
}

#[test]
fn oom_kills_without_memory_controller() {
    let v1 = FakeV1::new(&["cpu"]);
    v1.prepare(POD);
    let v2 = FakeV2::new();
    fs::create_dir_all(v2.dir(POD)).unwrap();

    for driver in [v1.driver(), v2.driver()] {
        let err = driver.oom_kills(&cgroup(POD)).unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::ControllerMissing {
                    controller: "memory",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn oom_kills_of_missing_cgroup_is_not_found() {
    let v1 = FakeV1::standard();
    let v2 = FakeV2::new();

    for driver in [v1.driver(), v2.driver()] {
        let err = driver.oom_kills(&cgroup("/absent")).unwrap_err();
        assert!(matches!(err, CgroupError::NotFound { .. }), "{err}");
    }
}

#[test]
fn v2_io_from_io_stat() {
    let fake = v2_with_samples();
    fake.write(
        POD,
        "io.stat",
        "254:0 rbytes=90112 wbytes=4096 rios=3 wios=1 dbytes=0 dios=0\n\
         8:16 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
    );

    let stats = fake.driver().stats(&cgroup(POD)).unwrap();

    let expected = vec![
        DeviceIo {
            major: 8,
            minor: 16,
            read_bytes: 512,
            write_bytes: 0,
            reads: 1,
            writes: 0,
        },
        DeviceIo {
            major: 254,
            minor: 0,
            read_bytes: 90112,
            write_bytes: 4096,
            reads: 3,
            writes: 1,
        },
    ];
    assert_eq!(stats.io, expected);
}

#[test]
fn v2_io_stat_empty_or_malformed() {
    let fake = v2_with_samples();
    fake.write(POD, "io.stat", "");
    assert!(fake.driver().stats(&cgroup(POD)).unwrap().io.is_empty());

    fake.write(POD, "io.stat", "254:0 rbytes=many\n");
    let err = fake.driver().stats(&cgroup(POD)).unwrap_err();
    assert!(err.to_string().contains("io.stat"), "{err}");
}

#[test]
fn v1_io_from_blkio_throttle_files() {
    let fake = FakeV1::new(&["blkio"]);
    fake.prepare(POD);
    fake.write(
        "blkio",
        POD,
        "blkio.throttle.io_service_bytes_recursive",
        "8:0 Read 90112\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 98304\n8:0 Discard 0\n\
         8:0 Total 98304\nTotal 98304\n",
    );
    fake.write(
        "blkio",
        POD,
        "blkio.throttle.io_serviced_recursive",
        "8:0 Read 3\n8:0 Write 2\n8:0 Total 5\nTotal 5\n",
    );

    let stats = fake.driver().stats(&cgroup(POD)).unwrap();

    assert_eq!(
        stats.io,
        vec![DeviceIo {
            major: 8,
            minor: 0,
            read_bytes: 90112,
            write_bytes: 8192,
            reads: 3,
            writes: 2,
        }]
    );
}
