//! Interface counters of a pod's network namespace, from its `/proc/net/dev`.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use nix::sched::{CloneFlags, setns};

use super::{InterfaceUsage, NetworkUsage};
use crate::runtime::monitor::now_ns;
use crate::runtime::sandbox::Sandbox;

/// Reads the interface counters of a sandbox's pinned network namespace, or returns `None` for
/// a host-network pod or a namespace that is gone.
pub(super) fn sandbox_network(sandbox: &Sandbox) -> Option<NetworkUsage> {
    if sandbox.host_network() {
        return None;
    }
    let netns = sandbox.dir().join("ns").join("net");
    if !netns.exists() {
        return None;
    }
    match read_netns_dev(&netns) {
        Ok(text) => Some(NetworkUsage {
            timestamp_ns: now_ns(),
            interfaces: parse_net_dev(&text)
                .into_iter()
                .filter(|interface| interface.name != "lo")
                .collect(),
        }),
        Err(err) => {
            tracing::warn!(sandbox = %sandbox.record.id, netns = %netns.display(), error = %err, "reading the pod's interface counters failed");
            None
        }
    }
}

/// Returns `/proc/net/dev` as seen from the network namespace pinned at `netns`.
///
/// A thread of its own enters the namespace with `setns(2)`, which moves only the calling
/// thread, and reads `/proc/thread-self/net/dev`, which shows that thread's namespace. The
/// thread exits afterwards, so no pooled thread is left in the pod's namespace.
fn read_netns_dev(netns: &Path) -> io::Result<String> {
    let namespace = File::open(netns)?;
    std::thread::Builder::new()
        .name("berth-netns-stats".to_string())
        .spawn(move || {
            setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            fs::read_to_string("/proc/thread-self/net/dev")
        })?
        .join()
        .map_err(|_| io::Error::other("the thread reading interface counters panicked"))?
}

/// Parses the text of `/proc/net/dev`: two header lines, then per interface `name:` followed
/// by eight receive and eight transmit counters. Lines that do not have that form are skipped.
fn parse_net_dev(text: &str) -> Vec<InterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let counters: Vec<u64> = counters
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if counters.len() < 16 {
                return None;
            }
            Some(InterfaceUsage {
                name: name.trim().to_string(),
                rx_bytes: counters[0],
                rx_packets: counters[1],
                rx_errors: counters[2],
                rx_dropped: counters[3],
                tx_bytes: counters[8],
                tx_packets: counters[9],
                tx_errors: counters[10],
                tx_dropped: counters[11],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:    5106      41    1    2    0     0          0         0     1258      15    3    4    0     0       0          0
";

    #[test]
    fn net_dev_parses_every_interface() {
        let interfaces = parse_net_dev(NET_DEV);
        assert_eq!(interfaces.len(), 2);
        assert_eq!(
            interfaces[1],
            InterfaceUsage {
                name: "eth0".to_string(),
                rx_bytes: 5106,
                rx_packets: 41,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 1258,
                tx_packets: 15,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
    }

    #[test]
    fn net_dev_skips_malformed_lines() {
        let text = format!("{NET_DEV}  bad0: 1 2 3\nnot an interface line\n");
        assert_eq!(parse_net_dev(&text).len(), 2);
    }
}
