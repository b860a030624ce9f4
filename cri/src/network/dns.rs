//! The sandbox's `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`, written once when the
//! sandbox is created and bind-mounted into its containers.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::NetworkError;

/// The host's resolver config, copied when the CRI `DNSConfig` is empty.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Maximum hostname length in bytes that Linux accepts (`HOST_NAME_MAX`).
const MAX_HOSTNAME_LEN: usize = 64;

/// Lines of the kubelet's managed hosts file that precede the pod's own entries.
const HOSTS_PREAMBLE: &str = "# Kubernetes-managed hosts file.\n\
127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
fe00::0\tip6-mcastprefix\n\
fe00::1\tip6-allnodes\n\
fe00::2\tip6-allrouters\n";

/// Writes the sandbox's resolv.conf from the CRI `DNSConfig` fields: a `search` line, one
/// `nameserver` line per server, and an `options` line. When all three are empty, the host's
/// `/etc/resolv.conf` is copied instead, as the kubelet expects for `dnsPolicy: Default`.
///
/// # Errors
///
/// [`NetworkError::InvalidArgument`] for a server that is not an IP address or an entry with
/// whitespace, and [`NetworkError::Io`] when a file cannot be read or written.
pub fn write_resolv_conf(
    path: &Path,
    servers: &[String],
    searches: &[String],
    options: &[String],
) -> Result<(), NetworkError> {
    write_resolv_conf_or_copy(
        path,
        servers,
        searches,
        options,
        Path::new(HOST_RESOLV_CONF),
    )
}

fn write_resolv_conf_or_copy(
    path: &Path,
    servers: &[String],
    searches: &[String],
    options: &[String],
    host_resolv_conf: &Path,
) -> Result<(), NetworkError> {
    if servers.is_empty() && searches.is_empty() && options.is_empty() {
        let host = fs::read(host_resolv_conf)
            .map_err(|err| NetworkError::io("read", host_resolv_conf, err))?;
        return write_file(path, &host);
    }

    for server in servers {
        if server.parse::<IpAddr>().is_err() {
            return Err(NetworkError::InvalidArgument {
                field: "DNS server",
                value: server.clone(),
                reason: "it must be an IP address",
            });
        }
    }
    check_words("DNS search domain", searches)?;
    check_words("DNS option", options)?;

    let mut content = String::new();
    if !searches.is_empty() {
        writeln!(content, "search {}", searches.join(" ")).expect("writing to a String");
    }
    for server in servers {
        writeln!(content, "nameserver {server}").expect("writing to a String");
    }
    if !options.is_empty() {
        writeln!(content, "options {}", options.join(" ")).expect("writing to a String");
    }
    write_file(path, content.as_bytes())
}

/// Writes the sandbox's hosts file in the kubelet's format: the loopback and IPv6 multicast
/// names, then one `IP<TAB>hostname` line per pod IP.
///
/// # Errors
///
/// [`NetworkError::InvalidArgument`] for an invalid hostname and [`NetworkError::Io`] when the
/// file cannot be written.
pub fn write_hosts(path: &Path, hostname: &str, ips: &[IpAddr]) -> Result<(), NetworkError> {
    check_hostname(hostname)?;
    let mut content = String::from(HOSTS_PREAMBLE);
    for ip in ips {
        writeln!(content, "{ip}\t{hostname}").expect("writing to a String");
    }
    write_file(path, content.as_bytes())
}

/// Writes the sandbox's hostname file: the name and a newline.
///
/// # Errors
///
/// [`NetworkError::InvalidArgument`] for an invalid hostname and [`NetworkError::Io`] when the
/// file cannot be written.
pub fn write_hostname(path: &Path, hostname: &str) -> Result<(), NetworkError> {
    check_hostname(hostname)?;
    write_file(path, format!("{hostname}\n").as_bytes())
}

fn check_hostname(hostname: &str) -> Result<(), NetworkError> {
    let invalid = |reason| NetworkError::InvalidArgument {
        field: "hostname",
        value: hostname.to_string(),
        reason,
    };
    if hostname.is_empty() || hostname.len() > MAX_HOSTNAME_LEN {
        return Err(invalid("it must be 1 to 64 bytes long"));
    }
    if hostname.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "it must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

/// Rejects entries that would break the line format of resolv.conf.
fn check_words(field: &'static str, words: &[String]) -> Result<(), NetworkError> {
    for word in words {
        if word.is_empty() || word.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(NetworkError::InvalidArgument {
                field,
                value: word.clone(),
                reason: "it must be non-empty and contain no whitespace",
            });
        }
    }
    Ok(())
}

/// Writes `content` to `path` with mode 0644, replacing what was there. The file is rewritten
/// in place rather than renamed over, because a bind mount into a running container keeps
/// pointing at the old inode after a rename.
fn write_file(path: &Path, content: &[u8]) -> Result<(), NetworkError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(|err| NetworkError::io("create", path, err))?;
    file.write_all(content)
        .map_err(|err| NetworkError::io("write", path, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn resolv_conf_from_dns_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");

        write_resolv_conf(
            &path,
            &strings(&["10.96.0.10", "fd00::10"]),
            &strings(&["default.svc.cluster.local", "svc.cluster.local"]),
            &strings(&["ndots:5"]),
        )
        .unwrap();

        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\n\
             nameserver 10.96.0.10\n\
             nameserver fd00::10\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn empty_dns_config_copies_host() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host-resolv.conf");
        fs::write(&host, "nameserver 192.0.2.53\n").unwrap();
        let path = dir.path().join("resolv.conf");

        write_resolv_conf_or_copy(&path, &[], &[], &[], &host).unwrap();

        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "nameserver 192.0.2.53\n"
        );
    }

    #[test]
    fn empty_dns_config_reads_etc_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");

        let written = write_resolv_conf(&path, &[], &[], &[]);

        match fs::read(HOST_RESOLV_CONF) {
            Ok(host) => {
                written.unwrap();
                assert_eq!(fs::read(&path).unwrap(), host);
            }
            Err(_) => assert!(matches!(written, Err(NetworkError::Io { .. }))),
        }
    }

    #[test]
    fn resolv_conf_rejects_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");

        let bad_server = write_resolv_conf(&path, &strings(&["dns.example"]), &[], &[]);
        let bad_search = write_resolv_conf(&path, &[], &strings(&["a\nnameserver 1.1.1.1"]), &[]);

        assert!(matches!(
            bad_server,
            Err(NetworkError::InvalidArgument { .. })
        ));
        assert!(matches!(
            bad_search,
            Err(NetworkError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn hosts_file_in_kubelet_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        let ips: Vec<IpAddr> = vec!["10.88.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];

        write_hosts(&path, "web-0", &ips).unwrap();

        let content = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = content.lines().collect();
        assert_eq!(lines[1], "127.0.0.1\tlocalhost");
        assert_eq!(lines[2], "::1\tlocalhost ip6-localhost ip6-loopback");
        assert_eq!(lines[lines.len() - 2], "10.88.0.5\tweb-0");
        assert_eq!(lines[lines.len() - 1], "fd00::5\tweb-0");
    }

    #[test]
    fn hostname_file_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hostname");

        write_hostname(&path, "web-0").unwrap();

        assert_eq!(fs::read_to_string(&path).unwrap(), "web-0\n");
        assert!(write_hostname(&path, "").is_err());
        assert!(write_hostname(&path, "a b").is_err());
        assert!(write_hostname(&path, &"x".repeat(65)).is_err());
    }

    #[test]
    fn rewrite_keeps_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hostname");
        write_hostname(&path, "a-much-longer-name").unwrap();
        let inode = fs::metadata(&path).unwrap().ino();

        write_hostname(&path, "short").unwrap();

        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(fs::read_to_string(&path).unwrap(), "short\n");
    }
}
