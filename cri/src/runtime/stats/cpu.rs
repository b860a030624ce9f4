//! CPU rates: the growth of a cgroup's CPU time between two samples, in nanocores.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use super::{CACHE_RETENTION, PRUNE_INTERVAL};

/// Shortest time between two samples of one cgroup that yields a new CPU rate. A sample taken
/// sooner after the reference reports the previous rate, so that two callers polling close
/// together (the kubelet and crictl) do not compute rates over a few milliseconds.
const MIN_RATE_WINDOW: Duration = Duration::from_millis(500);

/// The previous CPU sample of each cgroup, by cgroups path. It is process-wide rather than a
/// field of the runtime service, and paths are unique among the runtime services of a process,
/// because each pod cgroup path contains the pod UID and each container path the container ID.
static CPU_RATES: LazyLock<Mutex<CpuRates>> = LazyLock::new(Mutex::default);

/// Records a sample of `cgroup`'s CPU time taken now and returns its CPU rate in nanocores, as
/// [`CpuRates::update`] computes it.
pub(super) fn nano_cores(cgroup: &str, usage_ns: u64) -> Option<u64> {
    CPU_RATES
        .lock()
        .expect("CPU rate cache poisoned")
        .update(cgroup, usage_ns)
}

/// The reference sample of one cgroup and the last rate computed from it.
struct CpuReference {
    sampled_at: Instant,
    usage_ns: u64,
    nano_cores: Option<u64>,
    last_used: Instant,
}

#[derive(Default)]
struct CpuRates {
    by_cgroup: HashMap<String, CpuReference>,
    last_pruned: Option<Instant>,
}

impl CpuRates {
    /// Records a sample of `usage_ns` taken now and returns the CPU rate in nanocores.
    ///
    /// The rate covers the time since the reference sample, which this sample replaces when it
    /// is at least [`MIN_RATE_WINDOW`] newer. A sooner sample returns the previous rate. A
    /// counter lower than the reference means the cgroup was recreated under the same path,
    /// so the sample becomes the new reference without a rate.
    fn update(&mut self, cgroup: &str, usage_ns: u64) -> Option<u64> {
        self.update_at(cgroup, usage_ns, Instant::now())
    }

    fn update_at(&mut self, cgroup: &str, usage_ns: u64, now: Instant) -> Option<u64> {
        self.prune(now);
        let fresh = CpuReference {
            sampled_at: now,
            usage_ns,
            nano_cores: None,
            last_used: now,
        };
        let Some(reference) = self.by_cgroup.get_mut(cgroup) else {
            self.by_cgroup.insert(cgroup.to_string(), fresh);
            return None;
        };
        if usage_ns < reference.usage_ns {
            *reference = fresh;
            return None;
        }

        reference.last_used = now;
        let elapsed = now.saturating_duration_since(reference.sampled_at);
        if elapsed >= MIN_RATE_WINDOW {
            let used = u128::from(usage_ns - reference.usage_ns);
            let nano_cores = used * 1_000_000_000 / elapsed.as_nanos();
            reference.nano_cores = Some(u64::try_from(nano_cores).unwrap_or(u64::MAX));
            reference.sampled_at = now;
            reference.usage_ns = usage_ns;
        }
        reference.nano_cores
    }

    fn prune(&mut self, now: Instant) {
        if self
            .last_pruned
            .is_some_and(|pruned| now.saturating_duration_since(pruned) < PRUNE_INTERVAL)
        {
            return;
        }
        self.last_pruned = Some(now);
        self.by_cgroup.retain(|_, reference| {
            now.saturating_duration_since(reference.last_used) < CACHE_RETENTION
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_needs_two_samples() {
        let mut rates = CpuRates::default();
        let start = Instant::now();
        assert_eq!(rates.update_at("/pod/a", 1_000, start), None);

        let later = start + Duration::from_secs(2);
        // One core busy for 2 s is 2e9 ns of CPU time: 1e9 nanocores.
        assert_eq!(
            rates.update_at("/pod/a", 1_000 + 2_000_000_000, later),
            Some(1_000_000_000)
        );
    }

    #[test]
    fn cpu_rate_keeps_reference_for_close_samples() {
        let mut rates = CpuRates::default();
        let start = Instant::now();
        rates.update_at("/pod/a", 0, start);
        let first = rates.update_at("/pod/a", 500_000_000, start + Duration::from_secs(1));
        assert_eq!(first, Some(500_000_000));

        // 10 ms later: too close to the reference for a new rate, so the last one is repeated.
        let close = rates.update_at("/pod/a", 510_000_000, start + Duration::from_millis(1010));
        assert_eq!(close, Some(500_000_000));
    }

    #[test]
    fn cpu_rate_restarts_after_counter_reset() {
        let mut rates = CpuRates::default();
        let start = Instant::now();
        rates.update_at("/pod/a", 5_000_000_000, start);
        let reset = rates.update_at("/pod/a", 1_000, start + Duration::from_secs(1));
        assert_eq!(reset, None);

        let next = rates.update_at(
            "/pod/a",
            1_000 + 250_000_000,
            start + Duration::from_secs(2),
        );
        assert_eq!(next, Some(250_000_000));
    }

    #[test]
    fn cpu_rates_are_per_cgroup() {
        let mut rates = CpuRates::default();
        let start = Instant::now();
        rates.update_at("/pod/a", 0, start);
        assert_eq!(
            rates.update_at("/pod/b", 1_000_000_000, start + Duration::from_secs(1)),
            None
        );
    }
}
