//! Pod-level totals for the pod cgroup: the sum of a pod's container resources, and the
//! RuntimeClass overhead on top.

use std::collections::BTreeMap;

use super::Resources;
use super::cpuset::IdList;
use super::resources::{DEFAULT_CPU_PERIOD_US, Limit};

impl Resources {
    /// Adds up the resources of a pod's containers into limits for the pod cgroup. A container
    /// without a limit leaves the whole pod without one.
    ///
    /// - Memory, swap, CPU quota and PIDs: the sum when every item sets a value, no limit when
    ///   any item has no limit or leaves the field unset, unset when every item leaves it unset.
    /// - CPU quota with differing periods: each quota is rescaled to the default 100000 µs
    ///   period before adding, rounding up.
    /// - CPU shares: the sum of the items that set them.
    /// - Cpusets: the union when every item sets one, unset (all CPUs) otherwise. A list that
    ///   does not parse is joined as it is, so that the write fails and names it.
    /// - Huge pages: the sum per page size, an absent size counting as 0.
    /// - `unified`: left empty, because free-form files cannot be added up.
    pub fn sum(items: &[Resources]) -> Resources {
        let (cpu_quota_us, cpu_period_us) = sum_cpu_bandwidth(items);
        let mut hugepage_limits: BTreeMap<String, u64> = BTreeMap::new();
        for item in items {
            for (page_size, limit) in &item.hugepage_limits {
                let total = hugepage_limits.entry(page_size.clone()).or_default();
                *total = total.saturating_add(*limit);
            }
        }

        Resources {
            memory_limit_bytes: sum_limits(items.iter().map(|item| item.memory_limit_bytes)),
            memory_swap_limit_bytes: sum_limits(
                items.iter().map(|item| item.memory_swap_limit_bytes),
            ),
            cpu_shares: items
                .iter()
                .filter_map(|item| item.cpu_shares)
                .reduce(u64::saturating_add),
            cpu_quota_us,
            cpu_period_us,
            cpuset_cpus: union_cpusets(items.iter().map(|item| item.cpuset_cpus.as_deref())),
            cpuset_mems: union_cpusets(items.iter().map(|item| item.cpuset_mems.as_deref())),
            pids_limit: sum_limits(items.iter().map(|item| item.pids_limit)),
            hugepage_limits,
            unified: BTreeMap::new(),
        }
    }

    /// Adds a pod overhead (from the RuntimeClass) to these pod resources. Only memory and CPU
    /// take overhead, because Kubernetes' pod overhead lists no other resource.
    ///
    /// Overhead raises limits that are set and leaves "no limit" and unset limits alone. The
    /// swap limit grows by the overhead's swap limit, or by its memory limit when it has none,
    /// so that a "no swap" pod stays without swap. CPU shares grow even when unset here.
    pub fn add_overhead(&mut self, overhead: &Resources) {
        let overhead_memory = overhead.memory_limit_bytes.and_then(Limit::value);
        if let (Some(Limit::Value(memory)), Some(extra)) =
            (&mut self.memory_limit_bytes, overhead_memory)
        {
            *memory = memory.saturating_add(extra);
        }

        let overhead_swap = overhead
            .memory_swap_limit_bytes
            .and_then(Limit::value)
            .or(overhead_memory);
        if let (Some(Limit::Value(swap)), Some(extra)) =
            (&mut self.memory_swap_limit_bytes, overhead_swap)
        {
            *swap = swap.saturating_add(extra);
        }

        if let Some(extra) = overhead.cpu_shares {
            self.cpu_shares = Some(self.cpu_shares.unwrap_or(0).saturating_add(extra));
        }

        let period = self.cpu_period_us.unwrap_or(DEFAULT_CPU_PERIOD_US);
        let overhead_period = overhead.cpu_period_us.unwrap_or(DEFAULT_CPU_PERIOD_US);
        if let (Some(Limit::Value(quota)), Some(Limit::Value(extra))) =
            (&mut self.cpu_quota_us, overhead.cpu_quota_us)
        {
            *quota = quota.saturating_add(rescale_quota(extra, overhead_period, period));
        }
    }
}

fn sum_limits(limits: impl Iterator<Item = Option<Limit>>) -> Option<Limit> {
    let mut total = None;
    let mut any_unset = false;
    for limit in limits {
        match (limit, total) {
            (None, _) => any_unset = true,
            (Some(Limit::Unlimited), _) | (_, Some(Limit::Unlimited)) => {
                total = Some(Limit::Unlimited);
            }
            (Some(Limit::Value(value)), None) => total = Some(Limit::Value(value)),
            (Some(Limit::Value(value)), Some(Limit::Value(sum))) => {
                total = Some(Limit::Value(sum.saturating_add(value)));
            }
        }
    }
    match total {
        Some(Limit::Value(_)) if any_unset => Some(Limit::Unlimited),
        _ => total,
    }
}

fn sum_cpu_bandwidth(items: &[Resources]) -> (Option<Limit>, Option<u64>) {
    let quotas: Vec<Option<Limit>> = items.iter().map(|item| item.cpu_quota_us).collect();
    match sum_limits(quotas.iter().copied()) {
        None => return (None, None),
        Some(Limit::Unlimited) => return (Some(Limit::Unlimited), None),
        Some(Limit::Value(_)) => {}
    }

    let explicit_period = items.iter().any(|item| item.cpu_period_us.is_some());
    let periods: Vec<u64> = items
        .iter()
        .map(|item| item.cpu_period_us.unwrap_or(DEFAULT_CPU_PERIOD_US))
        .collect();
    let common = if periods.iter().all(|&period| period == periods[0]) {
        periods[0]
    } else {
        DEFAULT_CPU_PERIOD_US
    };

    let total = items
        .iter()
        .zip(&periods)
        .filter_map(|(item, &period)| {
            let quota = item.cpu_quota_us?.value()?;
            Some(rescale_quota(quota, period, common))
        })
        .fold(0u64, u64::saturating_add);
    let period = explicit_period.then_some(common);
    (Some(Limit::Value(total)), period)
}

/// Converts a quota from one CFS period to another, keeping the CPU fraction and rounding up.
fn rescale_quota(quota: u64, from_period: u64, to_period: u64) -> u64 {
    if from_period == to_period || from_period == 0 {
        return quota;
    }
    let scaled = (u128::from(quota) * u128::from(to_period)).div_ceil(u128::from(from_period));
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

fn union_cpusets<'a>(lists: impl Iterator<Item = Option<&'a str>>) -> Option<String> {
    let lists: Vec<&str> = lists.collect::<Option<Vec<&str>>>()?;
    if lists.is_empty() {
        return None;
    }
    let parsed: Result<Vec<IdList>, String> =
        lists.iter().map(|list| IdList::parse(list)).collect();
    match parsed {
        Ok(parsed) => {
            let union = parsed
                .iter()
                .fold(IdList::default(), |union, list| union.union(list));
            Some(union.to_string())
        }
        Err(_) => Some(lists.join(",")),
    }
}
