//! A small blocking D-Bus client: the part of the wire protocol that calling methods of
//! systemd's manager needs, and nothing more.
//!
//! It connects to systemd's private socket, which needs no bus daemon, or else to the system
//! bus. It authenticates with EXTERNAL, so the peer reads our UID from the socket. It sends method
//! calls in little-endian marshalling and reads messages until the reply to the call. Signals
//! and other messages in between are skipped. Unix file descriptors are never passed.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// systemd's own socket: a direct connection to PID 1 for root, without dbus-daemon.
pub(super) const SYSTEMD_PRIVATE_SOCKET: &str = "/run/systemd/private";

/// The system bus, the fallback when the private socket is not there.
const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// Time a reply may take. Starting or stopping a unit only queues a job, so replies are quick.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Time to wait for a reply before sending a ping. systemd 252 can leave a call that reached
/// it in the same read as the authentication's BEGIN unprocessed until more data arrives on the
/// connection, so the ping supplies that data. Its reply is skipped like any other message.
const PING_INTERVAL: Duration = Duration::from_millis(200);

/// Largest message accepted from the peer, the protocol's own limit.
const MAX_MESSAGE_BYTES: usize = 128 << 20;

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SIGNATURE: u8 = 8;

/// Error of a D-Bus call.
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error(
        "cannot connect to systemd over D-Bus ({SYSTEMD_PRIVATE_SOCKET}: {private}; {SYSTEM_BUS_SOCKET}: {bus})"
    )]
    Connect { private: io::Error, bus: io::Error },
    #[error("D-Bus I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("D-Bus authentication was refused: {0}")]
    Auth(String),
    #[error("malformed D-Bus message: {0}")]
    Protocol(String),
    /// The peer returned an error, such as `org.freedesktop.systemd1.NoSuchUnit`.
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
}

impl DbusError {
    /// Returns the D-Bus error name of an error reply.
    pub fn remote_name(&self) -> Option<&str> {
        match self {
            DbusError::Remote { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// A value of a method argument or of a unit property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    U64(u64),
    Str(String),
    Bytes(Vec<u8>),
}

impl Value {
    fn signature(&self) -> &'static str {
        match self {
            Value::Bool(_) => "b",
            Value::U64(_) => "t",
            Value::Str(_) => "s",
            Value::Bytes(_) => "ay",
        }
    }
}

/// Marshals values in the little-endian D-Bus format. Alignment is counted from the start of
/// the buffer, which is right for a message body: the body starts on an 8-byte boundary.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn align(&mut self, alignment: usize) {
        while !self.buf.len().is_multiple_of(alignment) {
            self.buf.push(0);
        }
    }

    pub fn byte(&mut self, value: u8) {
        self.buf.push(value);
    }

    pub fn u32(&mut self, value: u32) {
        self.align(4);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub fn u64(&mut self, value: u64) {
        self.align(8);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub fn bool(&mut self, value: bool) {
        self.u32(u32::from(value));
    }

    /// Writes a string or an object path.
    pub fn str(&mut self, value: &str) {
        self.u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    pub fn signature(&mut self, value: &str) {
        self.buf.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    /// Writes an array whose elements have `element_alignment` (8 for structs), filled by
    /// `elements`. The length counts the elements' bytes only, not the padding before them.
    pub fn array(&mut self, element_alignment: usize, elements: impl FnOnce(&mut Encoder)) {
        self.align(4);
        let length_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.align(element_alignment);
        let start = self.buf.len();
        elements(self);
        let length = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
    }

    /// Writes the start of a struct: structs align to 8.
    pub fn struct_start(&mut self) {
        self.align(8);
    }

    pub fn variant(&mut self, value: &Value) {
        self.signature(value.signature());
        match value {
            Value::Bool(value) => self.bool(*value),
            Value::U64(value) => self.u64(*value),
            Value::Str(value) => self.str(value),
            Value::Bytes(bytes) => self.array(1, |encoder| encoder.buf.extend_from_slice(bytes)),
        }
    }

    /// Writes an `a(sv)` property list.
    pub fn properties(&mut self, properties: &[(&str, Value)]) {
        self.array(8, |encoder| {
            for (name, value) in properties {
                encoder.struct_start();
                encoder.str(name);
                encoder.variant(value);
            }
        });
    }
}

/// A method call to send.
pub struct Call<'a> {
    pub destination: &'a str,
    pub path: &'a str,
    pub interface: &'a str,
    pub member: &'a str,
    /// Signature of `body`, empty for no arguments.
    pub signature: &'a str,
    pub body: Vec<u8>,
}

/// A connection to systemd's manager.
pub struct Connection {
    stream: UnixStream,
    serial: u32,
}

impl Connection {
    /// Connects to systemd: its private socket first, then the system bus.
    ///
    /// # Errors
    ///
    /// [`DbusError::Connect`] when neither socket accepts the connection; other errors when
    /// authentication or the bus's `Hello` fails.
    pub fn systemd() -> Result<Connection, DbusError> {
        let private = match Connection::open(Path::new(SYSTEMD_PRIVATE_SOCKET)) {
            Ok(connection) => return Ok(connection),
            Err(err) => err,
        };
        let mut connection = Connection::open(Path::new(SYSTEM_BUS_SOCKET))
            .map_err(|bus| DbusError::Connect { private, bus })?;
        // A bus needs a Hello before any other call; a peer-to-peer socket refuses it.
        connection.call(&Call {
            destination: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "Hello",
            signature: "",
            body: Vec::new(),
        })?;
        Ok(connection)
    }

    fn open(socket: &Path) -> Result<Connection, io::Error> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let mut connection = Connection { stream, serial: 0 };
        connection.authenticate().map_err(io::Error::other)?;
        Ok(connection)
    }

    /// Runs the SASL EXTERNAL exchange: a NUL byte, our UID in hex-encoded decimal, BEGIN.
    fn authenticate(&mut self) -> Result<(), DbusError> {
        let uid = nix::unistd::geteuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|byte| format!("{byte:02x}")).collect();
        self.stream
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let line = self.read_line()?;
        if !line.starts_with("OK ") {
            return Err(DbusError::Auth(line));
        }
        self.stream.write_all(b"BEGIN\r\n")?;
        Ok(())
    }

    fn read_line(&mut self) -> Result<String, DbusError> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            self.stream.read_exact(&mut byte)?;
            line.push(byte[0]);
            if line.len() > 512 {
                return Err(DbusError::Auth("over-long reply line".to_string()));
            }
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    /// Sends a method call and waits for its reply, whose values are not needed here.
    ///
    /// # Errors
    ///
    /// [`DbusError::Remote`] when the peer returns an error; I/O and protocol errors
    /// otherwise.
    pub fn call(&mut self, call: &Call<'_>) -> Result<(), DbusError> {
        let serial = self.send(call)?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if !self.readable_within(PING_INTERVAL)? {
                if Instant::now() >= deadline {
                    return Err(DbusError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no reply to {} within {} s",
                            call.member,
                            REPLY_TIMEOUT.as_secs()
                        ),
                    )));
                }
                self.send(&Call {
                    destination: call.destination,
                    path: call.path,
                    interface: "org.freedesktop.DBus.Peer",
                    member: "Ping",
                    signature: "",
                    body: Vec::new(),
                })?;
                continue;
            }
            let message = self.read_message()?;
            tracing::trace!(
                kind = message.kind,
                reply_serial = ?message.reply_serial,
                signature = %message.signature,
                "D-Bus message received"
            );
            if message.reply_serial != Some(serial) {
                continue;
            }
            return match message.kind {
                METHOD_RETURN => Ok(()),
                ERROR => Err(DbusError::Remote {
                    name: message.error_name.unwrap_or_default(),
                    message: message_text(&message.signature, &message.body),
                }),
                kind => Err(DbusError::Protocol(format!(
                    "reply of type {kind} to a method call"
                ))),
            };
        }
    }

    /// Sends a call and returns its serial.
    fn send(&mut self, call: &Call<'_>) -> Result<u32, DbusError> {
        self.serial = self.serial.wrapping_add(1).max(1);
        let serial = self.serial;
        tracing::trace!(member = call.member, serial, "D-Bus call");
        self.stream.write_all(&encode_call(call, serial)?)?;
        Ok(serial)
    }

    /// Returns true when data arrives within `timeout`.
    fn readable_within(&self, timeout: Duration) -> Result<bool, DbusError> {
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
        loop {
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(ready) => return Ok(ready > 0),
                Err(nix::errno::Errno::EINTR) => {}
                Err(err) => return Err(DbusError::Io(err.into())),
            }
        }
    }

    fn read_message(&mut self) -> Result<Message, DbusError> {
        let mut fixed = [0u8; 16];
        self.stream.read_exact(&mut fixed)?;
        if fixed[0] != b'l' {
            return Err(DbusError::Protocol(
                "big-endian messages are not supported".to_string(),
            ));
        }
        let word = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().unwrap_or([0; 4]));
        let body_length = word(4) as usize;
        let fields_length = word(12) as usize;
        let header_length = (16 + fields_length).next_multiple_of(8);
        let total = header_length + body_length;
        if total > MAX_MESSAGE_BYTES {
            return Err(DbusError::Protocol(format!("message of {total} bytes")));
        }
        let mut bytes = vec![0u8; total];
        bytes[..16].copy_from_slice(&fixed);
        self.stream.read_exact(&mut bytes[16..])?;
        parse_message(&bytes, header_length)
    }
}

struct Message {
    kind: u8,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    signature: String,
    body: Vec<u8>,
}

fn encode_call(call: &Call<'_>, serial: u32) -> Result<Vec<u8>, DbusError> {
    let body_length = u32::try_from(call.body.len())
        .map_err(|_| DbusError::Protocol("call body too large".to_string()))?;
    let mut header = Encoder::new();
    header.byte(b'l');
    header.byte(METHOD_CALL);
    header.byte(0);
    header.byte(1);
    header.u32(body_length);
    header.u32(serial);

    header.array(8, |fields| {
        let mut field = |code: u8, signature: &str, value: &str| {
            fields.struct_start();
            fields.byte(code);
            fields.signature(signature);
            if signature == "g" {
                fields.signature(value);
            } else {
                fields.str(value);
            }
        };
        field(FIELD_PATH, "o", call.path);
        field(FIELD_INTERFACE, "s", call.interface);
        field(FIELD_MEMBER, "s", call.member);
        field(FIELD_DESTINATION, "s", call.destination);
        if !call.signature.is_empty() {
            field(FIELD_SIGNATURE, "g", call.signature);
        }
    });
    // The body starts at the next 8-byte boundary.
    header.struct_start();

    let mut bytes = header.into_bytes();
    bytes.extend_from_slice(&call.body);
    Ok(bytes)
}

/// Reads values out of a message, checking every bound.
struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Decoder<'a> {
    fn align(&mut self, alignment: usize) {
        self.at = self.at.next_multiple_of(alignment);
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DbusError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(DbusError::Protocol("message ends early".to_string()));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DbusError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DbusError> {
        self.align(4);
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn str(&mut self) -> Result<String, DbusError> {
        let length = self.u32()? as usize;
        let bytes = self.take(length)?;
        self.take(1)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn signature(&mut self) -> Result<String, DbusError> {
        let length = usize::from(self.u8()?);
        let bytes = self.take(length)?;
        self.take(1)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

fn parse_message(bytes: &[u8], header_length: usize) -> Result<Message, DbusError> {
    let mut decoder = Decoder { bytes, at: 12 };
    let fields_length = decoder.u32()? as usize;
    let fields_end = 16 + fields_length;
    let mut message = Message {
        kind: bytes[1],
        reply_serial: None,
        error_name: None,
        signature: String::new(),
        body: bytes[header_length..].to_vec(),
    };
    while decoder.at < fields_end {
        decoder.align(8);
        if decoder.at >= fields_end {
            break;
        }
        let code = decoder.u8()?;
        let signature = decoder.signature()?;
        match signature.as_str() {
            "s" | "o" => {
                let value = decoder.str()?;
                if code == FIELD_ERROR_NAME {
                    message.error_name = Some(value);
                }
            }
            "u" => {
                let value = decoder.u32()?;
                if code == FIELD_REPLY_SERIAL {
                    message.reply_serial = Some(value);
                }
            }
            "g" => {
                let value = decoder.signature()?;
                if code == FIELD_SIGNATURE {
                    message.signature = value;
                }
            }
            other => {
                return Err(DbusError::Protocol(format!(
                    "header field {code} of unexpected type {other:?}"
                )));
            }
        }
    }
    Ok(message)
}

/// Returns the text of an error reply, whose body starts with a string by convention.
fn message_text(signature: &str, body: &[u8]) -> String {
    if !signature.starts_with('s') {
        return String::new();
    }
    Decoder { bytes: body, at: 0 }.str().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_marshalled_with_alignment() {
        let mut encoder = Encoder::new();
        encoder.str("a");
        encoder.properties(&[("MemoryMax", Value::U64(7))]);
        let bytes = encoder.into_bytes();
        // "a": length 1, 'a', NUL (6 bytes), pad to 8, array length, pad to 8 for the struct.
        assert_eq!(&bytes[..6], &[1, 0, 0, 0, b'a', 0]);
        let array_length = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        assert_eq!(array_length as usize, bytes.len() - 16);
        // The struct's name string starts at 16.
        assert_eq!(&bytes[16..20], &[9, 0, 0, 0]);
        assert_eq!(&bytes[20..29], b"MemoryMax");
        // Variant signature "t" after the NUL, then the u64 at the next 8-byte boundary.
        assert_eq!(&bytes[30..33], &[1, b't', 0]);
        assert_eq!(&bytes[40..48], &7u64.to_le_bytes());
    }

    #[test]
    fn empty_array_still_pads_to_its_element_alignment() {
        let mut encoder = Encoder::new();
        encoder.array(8, |_| {});
        assert_eq!(encoder.into_bytes(), vec![0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn call_round_trips_through_the_parser() {
        let mut body = Encoder::new();
        body.str("berth.slice");
        let bytes = encode_call(
            &Call {
                destination: "org.freedesktop.systemd1",
                path: "/org/freedesktop/systemd1",
                interface: "org.freedesktop.systemd1.Manager",
                member: "StopUnit",
                signature: "s",
                body: body.into_bytes(),
            },
            9,
        )
        .unwrap();
        let fields_length = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let header_length = (16 + fields_length).next_multiple_of(8);
        let message = parse_message(&bytes, header_length).unwrap();
        assert_eq!(message.kind, METHOD_CALL);
        assert_eq!(message.signature, "s");
        assert_eq!(
            message_text(&message.signature, &message.body),
            "berth.slice"
        );
        assert_eq!(
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize,
            message.body.len()
        );
    }

    #[test]
    fn truncated_message_is_an_error() {
        let mut header = Encoder::new();
        for byte in [b'l', ERROR, 0, 1] {
            header.byte(byte);
        }
        header.u32(0);
        header.u32(1);
        header.u32(40);
        let bytes = header.into_bytes();
        assert!(parse_message(&bytes, bytes.len()).is_err());
    }
}
