//! Container logs in the CRI format that the kubelet and `crictl logs` read:
//! `<RFC 3339 timestamp with nanoseconds> <stdout|stderr> <P|F> <content>\n`, where `P` marks a
//! partial line that continues in the next entry and `F` a full one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Maximum content of one log entry in bytes. Longer lines are split into partial entries.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

/// The stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// An open CRI log file.
pub struct LogWriter {
    path: PathBuf,
    file: File,
}

impl LogWriter {
    /// Opens the log for appending, creating it and its directory when missing.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: open_append(path)?,
        })
    }

    /// Opens the log path again, after the kubelet rotated the old file away.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path)?;
        Ok(())
    }

    /// Writes one entry.
    pub fn write_entry(
        &mut self,
        stream: LogStream,
        content: &[u8],
        partial: bool,
    ) -> io::Result<()> {
        self.file
            .write_all(&format_entry(SystemTime::now(), stream, content, partial))
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Formats one log entry; `content` must not contain the trailing newline.
pub fn format_entry(time: SystemTime, stream: LogStream, content: &[u8], partial: bool) -> Vec<u8> {
    let mut line = Vec::with_capacity(content.len() + 48);
    line.extend_from_slice(rfc3339_nanos(time).as_bytes());
    line.push(b' ');
    line.extend_from_slice(stream.as_str().as_bytes());
    line.extend_from_slice(if partial { b" P " } else { b" F " });
    line.extend_from_slice(content);
    line.push(b'\n');
    line
}

/// Splits a byte stream into log entries: one per line, and partial entries for lines longer
/// than [`MAX_ENTRY_BYTES`] or cut by the end of the stream.
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self {
            pending: Vec::with_capacity(MAX_ENTRY_BYTES),
        }
    }
}

impl LineSplitter {
    /// Feeds bytes and calls `emit(content, partial)` for each complete entry.
    pub fn push(
        &mut self,
        mut data: &[u8],
        emit: &mut impl FnMut(&[u8], bool) -> io::Result<()>,
    ) -> io::Result<()> {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(newline) => {
                    let (line, rest) = data.split_at(newline);
                    self.append(line, emit)?;
                    emit(&self.pending, false)?;
                    self.pending.clear();
                    data = &rest[1..];
                }
                None => {
                    self.append(data, emit)?;
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// Emits what is left at the end of the stream as a full entry, as containerd does.
    pub fn finish(
        &mut self,
        emit: &mut impl FnMut(&[u8], bool) -> io::Result<()>,
    ) -> io::Result<()> {
        if !self.pending.is_empty() {
            emit(&self.pending, false)?;
            self.pending.clear();
        }
        Ok(())
    }

    fn append(
        &mut self,
        mut data: &[u8],
        emit: &mut impl FnMut(&[u8], bool) -> io::Result<()>,
    ) -> io::Result<()> {
        while self.pending.len() + data.len() > MAX_ENTRY_BYTES {
            let room = MAX_ENTRY_BYTES - self.pending.len();
            self.pending.extend_from_slice(&data[..room]);
            emit(&self.pending, true)?;
            self.pending.clear();
            data = &data[room..];
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }
}

/// Formats a time as RFC 3339 in UTC with nine fraction digits, such as
/// `2026-12-04T21:10:16.123456789Z`.
pub fn rfc3339_nanos(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs() as i64;
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_nanos()
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), using Howard
/// Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamp_is_rfc3339_with_nanoseconds() {
        let time = UNIX_EPOCH + Duration::new(1_733_346_616, 5);
        assert_eq!(rfc3339_nanos(time), "2024-12-04T21:10:16.000000005Z");
        assert_eq!(rfc3339_nanos(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_nanos(leap_day), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn entry_has_stream_and_flag() {
        let entry = format_entry(UNIX_EPOCH, LogStream::Stderr, b"oops", true);
        assert_eq!(entry, b"1970-01-01T00:00:00.000000000Z stderr P oops\n");
    }

    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut splitter = LineSplitter::default();
        let mut entries = Vec::new();
        let mut emit = |content: &[u8], partial: bool| {
            entries.push((content.to_vec(), partial));
            Ok(())
        };
        for chunk in chunks {
            splitter.push(chunk, &mut emit).unwrap();
        }
        splitter.finish(&mut emit).unwrap();
        entries
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let entries = split(&[b"hel", b"lo\nwor", b"ld\n"]);
        assert_eq!(
            entries,
            vec![(b"hello".to_vec(), false), (b"world".to_vec(), false)]
        );
    }

    #[test]
    fn long_line_becomes_partial_entries() {
        let long = vec![b'x'; MAX_ENTRY_BYTES + 10];
        let mut input = long.clone();
        input.push(b'\n');

        let entries = split(&[&input]);

        assert_eq!(entries.len(), 2);
        assert!(entries[0].1, "first entry should be partial");
        assert_eq!(entries[0].0.len(), MAX_ENTRY_BYTES);
        assert!(!entries[1].1, "last entry should be full");
        assert_eq!(entries[1].0.len(), 10);
    }

    #[test]
    fn unterminated_last_line_is_full() {
        let entries = split(&[b"a\nb"]);
        assert_eq!(
            entries,
            vec![(b"a".to_vec(), false), (b"b".to_vec(), false)]
        );
    }

    #[test]
    fn empty_line_is_kept() {
        let entries = split(&[b"\n"]);
        assert_eq!(entries, vec![(Vec::new(), false)]);
    }
}
