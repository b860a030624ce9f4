//! ListMetricDescriptors and ListPodSandboxMetrics content: cAdvisor's metric names, help
//! texts and labels, with values from the same samples as the stats RPCs.

use berth_proto::cri::{
    ContainerMetrics, Metric, MetricDescriptor, MetricType, PodSandboxMetadata, PodSandboxMetrics,
};

use super::uint64;
use crate::runtime::stats::{CgroupUsage, ContainerUsage, NetworkUsage, SandboxUsage};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Label keys of every metric, the ones the kubelet gives cAdvisor's series: the container's
/// name in the pod, its cgroup, its image, its runtime ID, and the pod's namespace and name.
/// Pod-level metrics have an empty `container` and `image`, and the sandbox ID as `name`.
const BASE_LABEL_KEYS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// Label key of the CPU usage metric, whose only value here is `total`, as cAdvisor reports
/// it without per-CPU accounting.
const CPU_LABEL: &str = "cpu";

/// Label key of the network metrics: the interface name.
const INTERFACE_LABEL: &str = "interface";

/// A metric that Berth reports, with the extra label keys after [`BASE_LABEL_KEYS`].
struct MetricSpec {
    name: &'static str,
    help: &'static str,
    metric_type: MetricType,
    extra_labels: &'static [&'static str],
}

impl MetricSpec {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor {
            name: self.name.to_string(),
            help: self.help.to_string(),
            label_keys: BASE_LABEL_KEYS
                .iter()
                .chain(self.extra_labels)
                .map(|key| key.to_string())
                .collect(),
        }
    }
}

const fn counter(name: &'static str, help: &'static str) -> MetricSpec {
    MetricSpec {
        name,
        help,
        metric_type: MetricType::Counter,
        extra_labels: &[],
    }
}

const fn gauge(name: &'static str, help: &'static str) -> MetricSpec {
    MetricSpec {
        name,
        help,
        metric_type: MetricType::Gauge,
        extra_labels: &[],
    }
}

const fn network_counter(name: &'static str, help: &'static str) -> MetricSpec {
    MetricSpec {
        name,
        help,
        metric_type: MetricType::Counter,
        extra_labels: &[INTERFACE_LABEL],
    }
}

const CPU_USAGE: MetricSpec = MetricSpec {
    name: "container_cpu_usage_seconds_total",
    help: "Cumulative cpu time consumed in seconds.",
    metric_type: MetricType::Counter,
    extra_labels: &[CPU_LABEL],
};
const CPU_USER: MetricSpec = counter(
    "container_cpu_user_seconds_total",
    "Cumulative user cpu time consumed in seconds.",
);
const CPU_SYSTEM: MetricSpec = counter(
    "container_cpu_system_seconds_total",
    "Cumulative system cpu time consumed in seconds.",
);
const CFS_PERIODS: MetricSpec = counter(
    "container_cpu_cfs_periods_total",
    "Number of elapsed enforcement period intervals.",
);
const CFS_THROTTLED_PERIODS: MetricSpec = counter(
    "container_cpu_cfs_throttled_periods_total",
    "Number of throttled period intervals.",
);
const CFS_THROTTLED_SECONDS: MetricSpec = counter(
    "container_cpu_cfs_throttled_seconds_total",
    "Total time duration the container has been throttled.",
);
const MEMORY_USAGE: MetricSpec = gauge(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including all memory regardless of when it was accessed",
);
const MEMORY_WORKING_SET: MetricSpec = gauge(
    "container_memory_working_set_bytes",
    "Current working set in bytes.",
);
const MEMORY_RSS: MetricSpec = gauge("container_memory_rss", "Size of RSS in bytes.");
const MEMORY_SWAP: MetricSpec = gauge("container_memory_swap", "Container swap usage in bytes.");
const MEMORY_FAILURES: MetricSpec = MetricSpec {
    name: "container_memory_failures_total",
    help: "Cumulative count of memory allocation failures.",
    metric_type: MetricType::Counter,
    extra_labels: &["failure_type", "scope"],
};
const MEMORY_LIMIT: MetricSpec = gauge(
    "container_spec_memory_limit_bytes",
    "Memory limit for the container.",
);
const OOM_EVENTS: MetricSpec = counter(
    "container_oom_events_total",
    "Count of out of memory events observed for the container",
);
const PROCESSES: MetricSpec = gauge(
    "container_processes",
    "Number of processes running inside the container.",
);
const RX_BYTES: MetricSpec = network_counter(
    "container_network_receive_bytes_total",
    "Cumulative count of bytes received",
);
const RX_PACKETS: MetricSpec = network_counter(
    "container_network_receive_packets_total",
    "Cumulative count of packets received",
);
const RX_ERRORS: MetricSpec = network_counter(
    "container_network_receive_errors_total",
    "Cumulative count of errors encountered while receiving",
);
const RX_DROPPED: MetricSpec = network_counter(
    "container_network_receive_packets_dropped_total",
    "Cumulative count of packets dropped while receiving",
);
const TX_BYTES: MetricSpec = network_counter(
    "container_network_transmit_bytes_total",
    "Cumulative count of bytes transmitted",
);
const TX_PACKETS: MetricSpec = network_counter(
    "container_network_transmit_packets_total",
    "Cumulative count of packets transmitted",
);
const TX_ERRORS: MetricSpec = network_counter(
    "container_network_transmit_errors_total",
    "Cumulative count of errors encountered while transmitting",
);
const TX_DROPPED: MetricSpec = network_counter(
    "container_network_transmit_packets_dropped_total",
    "Cumulative count of packets dropped while transmitting",
);

/// Label key of the block I/O metrics: the device, such as `/dev/vda`.
const DEVICE_LABEL: &str = "device";

const fn device_counter(name: &'static str, help: &'static str) -> MetricSpec {
    MetricSpec {
        name,
        help,
        metric_type: MetricType::Counter,
        extra_labels: &[DEVICE_LABEL],
    }
}

const FS_READ_BYTES: MetricSpec = device_counter(
    "container_fs_reads_bytes_total",
    "Bytes the cgroup has read from the block device, in total.",
);
const FS_WRITE_BYTES: MetricSpec = device_counter(
    "container_fs_writes_bytes_total",
    "Bytes the cgroup has written to the block device, in total.",
);
const FS_READS: MetricSpec = device_counter(
    "container_fs_reads_total",
    "Read operations the cgroup has completed on the block device, in total.",
);
const FS_WRITES: MetricSpec = device_counter(
    "container_fs_writes_total",
    "Write operations the cgroup has completed on the block device, in total.",
);

/// Every metric ListMetricDescriptors returns.
const METRICS: [&MetricSpec; 26] = [
    &CPU_USAGE,
    &CPU_USER,
    &CPU_SYSTEM,
    &CFS_PERIODS,
    &CFS_THROTTLED_PERIODS,
    &CFS_THROTTLED_SECONDS,
    &MEMORY_USAGE,
    &MEMORY_WORKING_SET,
    &MEMORY_RSS,
    &MEMORY_SWAP,
    &MEMORY_FAILURES,
    &MEMORY_LIMIT,
    &OOM_EVENTS,
    &PROCESSES,
    &RX_BYTES,
    &RX_PACKETS,
    &RX_ERRORS,
    &RX_DROPPED,
    &TX_BYTES,
    &TX_PACKETS,
    &TX_ERRORS,
    &TX_DROPPED,
    &FS_READ_BYTES,
    &FS_WRITE_BYTES,
    &FS_READS,
    &FS_WRITES,
];

/// Returns the descriptor of every metric that ListPodSandboxMetrics reports.
pub(super) fn descriptors() -> Vec<MetricDescriptor> {
    METRICS.iter().map(|spec| spec.descriptor()).collect()
}

/// Collects metrics that share a timestamp and base label values.
struct MetricSet {
    timestamp_ns: i64,
    base_labels: Vec<String>,
    metrics: Vec<Metric>,
}

impl MetricSet {
    fn new(timestamp_ns: i64, base_labels: Vec<String>) -> Self {
        MetricSet {
            timestamp_ns,
            base_labels,
            metrics: Vec::new(),
        }
    }

    /// Adds `spec` with `extra_labels` after the base labels, unless `value` is `None`.
    fn add(&mut self, spec: &MetricSpec, extra_labels: &[&str], value: Option<u64>) {
        debug_assert_eq!(extra_labels.len(), spec.extra_labels.len(), "{}", spec.name);
        let Some(value) = value else {
            return;
        };
        let mut label_values = self.base_labels.clone();
        label_values.extend(extra_labels.iter().map(|label| label.to_string()));
        self.metrics.push(Metric {
            name: spec.name.to_string(),
            timestamp: self.timestamp_ns,
            metric_type: spec.metric_type as i32,
            label_values,
            value: Some(uint64(value)),
        });
    }
}

/// Converts nanoseconds to whole seconds.
///
/// NOTE: a CRI `Metric` carries an unsigned integer, so the `*_seconds_total` metrics lose
/// their fraction of a second; rates over minutes stay accurate.
fn whole_seconds(nanoseconds: Option<u64>) -> Option<u64> {
    nanoseconds.map(|nanoseconds| nanoseconds / NANOS_PER_SECOND)
}

/// Adds the metrics of one cgroup's counters.
fn add_cgroup_metrics(set: &mut MetricSet, cgroup: &CgroupUsage) {
    let stats = &cgroup.stats;
    set.add(&CPU_USAGE, &["total"], whole_seconds(stats.cpu_usage_ns));
    set.add(&CPU_USER, &[], whole_seconds(stats.cpu_user_ns));
    set.add(&CPU_SYSTEM, &[], whole_seconds(stats.cpu_system_ns));
    set.add(&CFS_PERIODS, &[], stats.nr_periods);
    set.add(&CFS_THROTTLED_PERIODS, &[], stats.throttled_periods);
    set.add(
        &CFS_THROTTLED_SECONDS,
        &[],
        whole_seconds(stats.throttled_ns),
    );

    set.add(&MEMORY_USAGE, &[], stats.memory_usage_bytes);
    set.add(&MEMORY_WORKING_SET, &[], stats.memory_working_set_bytes);
    set.add(&MEMORY_RSS, &[], stats.memory_rss_bytes);
    set.add(&MEMORY_SWAP, &[], cgroup.swap.map(|swap| swap.usage_bytes));
    // The counters include descendant cgroups: cgroup v1's total_* keys, and v2's memory.stat.
    set.add(
        &MEMORY_FAILURES,
        &["pgfault", "hierarchy"],
        stats.page_faults,
    );
    set.add(
        &MEMORY_FAILURES,
        &["pgmajfault", "hierarchy"],
        stats.major_page_faults,
    );

    // cAdvisor reports 0 for a cgroup without a memory limit.
    set.add(
        &MEMORY_LIMIT,
        &[],
        Some(cgroup.memory_limit_bytes.unwrap_or(0)),
    );
    set.add(&OOM_EVENTS, &[], stats.oom_kills);

    set.add(&PROCESSES, &[], stats.pids_current);

    for device in &stats.io {
        let device_name = device_name(device.major, device.minor);
        let name = [device_name.as_str()];
        set.add(&FS_READ_BYTES, &name, Some(device.read_bytes));
        set.add(&FS_WRITE_BYTES, &name, Some(device.write_bytes));
        set.add(&FS_READS, &name, Some(device.reads));
        set.add(&FS_WRITES, &name, Some(device.writes));
    }
}

/// Returns a block device's node path from sysfs, such as `/dev/vda`, or `MAJOR:MINOR` when
/// sysfs does not name it.
fn device_name(major: u32, minor: u32) -> String {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"));
    uevent
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("DEVNAME="))
                .map(|name| format!("/dev/{name}"))
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

fn add_network_metrics(set: &mut MetricSet, network: &NetworkUsage) {
    for interface in &network.interfaces {
        let name = [interface.name.as_str()];
        set.add(&RX_BYTES, &name, Some(interface.rx_bytes));
        set.add(&RX_PACKETS, &name, Some(interface.rx_packets));
        set.add(&RX_ERRORS, &name, Some(interface.rx_errors));
        set.add(&RX_DROPPED, &name, Some(interface.rx_dropped));
        set.add(&TX_BYTES, &name, Some(interface.tx_bytes));
        set.add(&TX_PACKETS, &name, Some(interface.tx_packets));
        set.add(&TX_ERRORS, &name, Some(interface.tx_errors));
        set.add(&TX_DROPPED, &name, Some(interface.tx_dropped));
    }
}

/// Returns a pod's metrics: the pod cgroup's and the network's as pod-level metrics, and each
/// running container's cgroup metrics.
pub(super) fn to_cri_sandbox_metrics(usage: &SandboxUsage) -> PodSandboxMetrics {
    let sandbox = &usage.sandbox;
    let pod = sandbox.config.metadata.clone().unwrap_or_default();

    let cgroup_timestamp = usage.cgroup.as_ref().map(|cgroup| cgroup.timestamp_ns);
    let mut pod_set = MetricSet::new(
        cgroup_timestamp.unwrap_or_default(),
        vec![
            String::new(),
            sandbox.record.cgroup_parent.clone(),
            String::new(),
            sandbox.record.id.clone(),
            pod.namespace.clone(),
            pod.name.clone(),
        ],
    );
    if let Some(cgroup) = &usage.cgroup {
        add_cgroup_metrics(&mut pod_set, cgroup);
    }
    if let Some(network) = &usage.network {
        // Interface counters are read after the pod cgroup, at a time of their own.
        pod_set.timestamp_ns = network.timestamp_ns;
        add_network_metrics(&mut pod_set, network);
    }

    PodSandboxMetrics {
        pod_sandbox_id: sandbox.record.id.clone(),
        metrics: pod_set.metrics,
        container_metrics: usage
            .containers
            .iter()
            .map(|container| to_cri_container_metrics(container, &pod))
            .collect(),
    }
}

/// Returns a container's cgroup metrics, labelled with the pod it runs in.
fn to_cri_container_metrics(usage: &ContainerUsage, pod: &PodSandboxMetadata) -> ContainerMetrics {
    let container = &usage.container;
    let image = container
        .config
        .image
        .as_ref()
        .map(|image| image.image.clone())
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| container.record.image_ref.clone());
    let name = container
        .config
        .metadata
        .as_ref()
        .map(|metadata| metadata.name.clone())
        .unwrap_or_default();

    let mut set = MetricSet::new(
        usage
            .cgroup
            .as_ref()
            .map(|cgroup| cgroup.timestamp_ns)
            .unwrap_or_default(),
        vec![
            name,
            container.record.cgroups_path.clone(),
            image,
            container.record.id.clone(),
            pod.namespace.clone(),
            pod.name.clone(),
        ],
    );
    if let Some(cgroup) = &usage.cgroup {
        add_cgroup_metrics(&mut set, cgroup);
    }
    ContainerMetrics {
        container_id: container.record.id.clone(),
        metrics: set.metrics,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::runtime::stats::InterfaceUsage;

    #[test]
    fn metric_names_are_unique() {
        let mut names = HashSet::new();
        for spec in METRICS {
            assert!(names.insert(spec.name), "{} is listed twice", spec.name);
        }
    }

    #[test]
    fn metrics_have_one_value_per_label_key() {
        let cgroup = CgroupUsage {
            timestamp_ns: 1,
            stats: crate::cgroups::CgroupStats {
                cpu_usage_ns: Some(2_500_000_000),
                page_faults: Some(10),
                io: vec![crate::cgroups::DeviceIo {
                    major: 4095,
                    minor: 4095,
                    read_bytes: 4096,
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let mut set = MetricSet::new(1, vec![String::new(); BASE_LABEL_KEYS.len()]);
        add_cgroup_metrics(&mut set, &cgroup);
        add_network_metrics(
            &mut set,
            &NetworkUsage {
                timestamp_ns: 1,
                interfaces: vec![InterfaceUsage {
                    name: "eth0".to_string(),
                    ..Default::default()
                }],
            },
        );

        for metric in &set.metrics {
            let spec = METRICS
                .iter()
                .find(|spec| spec.name == metric.name)
                .unwrap_or_else(|| panic!("{} has no descriptor", metric.name));
            assert_eq!(
                metric.label_values.len(),
                spec.descriptor().label_keys.len(),
                "{}",
                metric.name
            );
        }
        let cpu = set
            .metrics
            .iter()
            .find(|metric| metric.name == CPU_USAGE.name)
            .expect("CPU usage metric");
        assert_eq!(cpu.value, Some(uint64(2)), "2.5 s truncate to 2");
        assert_eq!(cpu.label_values.last().map(String::as_str), Some("total"));
    }

    #[test]
    fn io_metrics_name_the_device() {
        let cgroup = CgroupUsage {
            timestamp_ns: 1,
            stats: crate::cgroups::CgroupStats {
                io: vec![crate::cgroups::DeviceIo {
                    major: 4095,
                    minor: 4095,
                    write_bytes: 8192,
                    writes: 2,
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let mut set = MetricSet::new(1, vec![String::new(); BASE_LABEL_KEYS.len()]);
        add_cgroup_metrics(&mut set, &cgroup);

        let written = set
            .metrics
            .iter()
            .find(|metric| metric.name == "container_fs_writes_bytes_total")
            .expect("written bytes are reported");
        // No device has these numbers, so sysfs names none and the numbers stand in.
        assert_eq!(
            written.label_values.last().map(String::as_str),
            Some("4095:4095")
        );
        assert_eq!(written.value.as_ref().map(|value| value.value), Some(8192));
    }
}
