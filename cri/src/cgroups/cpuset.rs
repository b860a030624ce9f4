//! CPU and memory node lists in the kernel's list format (`0-3,8`), and the host's online sets
//! that a requested cpuset must fit in.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use super::CgroupError;

const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";
const ONLINE_NODES: &str = "/sys/devices/system/node/online";

/// Set of CPU or NUMA node IDs, kept as sorted, merged, inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct IdList {
    ranges: Vec<(u32, u32)>,
}

impl IdList {
    /// Parses the list format of cpuset(7): comma-separated IDs and `first-last` ranges. An empty
    /// or all-whitespace text is the empty set. The `first-last:used/group` stride form is
    /// rejected.
    pub(super) fn parse(text: &str) -> Result<IdList, String> {
        let text = text.trim();
        let mut ranges = Vec::new();
        if text.is_empty() {
            return Ok(IdList { ranges });
        }

        for item in text.split(',') {
            let (first, last) = match item.split_once('-') {
                Some((first, last)) => (parse_id(first)?, parse_id(last)?),
                None => {
                    let id = parse_id(item)?;
                    (id, id)
                }
            };
            if first > last {
                return Err(format!("range {item:?} ends before it starts"));
            }
            ranges.push((first, last));
        }
        Ok(IdList::merged(ranges))
    }

    /// Returns the set as a bitmask, lowest ID in bit 0 of the first byte: the form of
    /// systemd's `AllowedCPUs` and `AllowedMemoryNodes` properties. IDs past 65535 are dropped,
    /// as no host has that many.
    pub(super) fn bitmask(&self) -> Vec<u8> {
        let mut mask = Vec::new();
        for &(first, last) in &self.ranges {
            for id in first..=last.min(65_535) {
                let byte = id as usize / 8;
                if mask.len() <= byte {
                    mask.resize(byte + 1, 0);
                }
                mask[byte] |= 1 << (id % 8);
            }
        }
        mask
    }

    fn merged(mut ranges: Vec<(u32, u32)>) -> IdList {
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (first, last) in ranges {
            match merged.last_mut() {
                Some(previous) if first <= previous.1.saturating_add(1) => {
                    previous.1 = previous.1.max(last);
                }
                _ => merged.push((first, last)),
            }
        }
        IdList { ranges: merged }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Returns the IDs of `self` that are not in `other`, as a list, or `None` when every ID is.
    pub(super) fn missing_from(&self, other: &IdList) -> Option<IdList> {
        let missing: Vec<(u32, u32)> = self
            .ranges
            .iter()
            .flat_map(|&range| subtract(range, &other.ranges))
            .collect();
        if missing.is_empty() {
            None
        } else {
            Some(IdList::merged(missing))
        }
    }

    /// Returns the IDs in either list.
    pub(super) fn union(&self, other: &IdList) -> IdList {
        IdList::merged(self.ranges.iter().chain(&other.ranges).copied().collect())
    }
}

fn parse_id(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a decimal ID; expected a list such as 0-3,8"
        ));
    }
    text.parse()
        .map_err(|_| format!("ID {text} is out of range"))
}

/// Returns the parts of `range` that no range of `others` (sorted and merged) covers.
fn subtract((mut first, last): (u32, u32), others: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut left = Vec::new();
    for &(other_first, other_last) in others {
        if other_last < first {
            continue;
        }
        if other_first > last {
            break;
        }
        if other_first > first {
            left.push((first, other_first - 1));
        }
        if other_last >= last {
            return left;
        }
        first = other_last + 1;
    }
    left.push((first, last));
    left
}

impl fmt::Display for IdList {
    /// Writes the list format the kernel accepts and prints, such as `0-3,8`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, &(first, last)) in self.ranges.iter().enumerate() {
            if index > 0 {
                formatter.write_str(",")?;
            }
            if first == last {
                write!(formatter, "{first}")?;
            } else {
                write!(formatter, "{first}-{last}")?;
            }
        }
        Ok(())
    }
}

/// CPUs and NUMA memory nodes online on the host, which bound any cpuset a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTopology {
    pub(super) cpus: IdList,
    pub(super) mems: IdList,
}

impl HostTopology {
    /// Builds a topology from list-format strings, such as `"0-3"` and `"0"`.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Invalid`] when either list does not parse.
    pub fn new(cpus: &str, mems: &str) -> Result<HostTopology, CgroupError> {
        let parse = |field, text: &str| {
            IdList::parse(text).map_err(|reason| CgroupError::invalid(field, text, reason))
        };
        Ok(HostTopology {
            cpus: parse("online CPUs", cpus)?,
            mems: parse("online memory nodes", mems)?,
        })
    }

    /// Reads the online CPUs and memory nodes from sysfs. A kernel built without NUMA has no
    /// `/sys/devices/system/node`, and then node 0 is the only memory node.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Io`] or [`CgroupError::Parse`] when a sysfs file cannot be read or parsed.
    pub fn read() -> Result<HostTopology, CgroupError> {
        let cpus = read_list(Path::new(ONLINE_CPUS))?;
        let mems = match fs::read_to_string(ONLINE_NODES) {
            Ok(text) => IdList::parse(&text)
                .map_err(|reason| CgroupError::parse(Path::new(ONLINE_NODES), reason))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => IdList {
                ranges: vec![(0, 0)],
            },
            Err(err) => return Err(CgroupError::io("reading", Path::new(ONLINE_NODES), err)),
        };
        Ok(HostTopology { cpus, mems })
    }
}

fn read_list(path: &Path) -> Result<IdList, CgroupError> {
    let text = fs::read_to_string(path).map_err(|err| CgroupError::io("reading", path, err))?;
    IdList::parse(&text).map_err(|reason| CgroupError::parse(path, reason))
}
