//! SPDY/3.1 frames: the 8-byte frame header, the control frames the streaming protocols use,
//! and data frames.
//!
//! ```text
//! control: |1| version (15) | type (16) | flags (8) | length (24) | payload
//! data:    |0| stream ID (31)           | flags (8) | length (24) | payload
//! ```

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

pub const VERSION: u16 = 3;
/// FLAG_FIN of SYN_STREAM, SYN_REPLY, HEADERS and data frames: the sender will send no more.
pub const FLAG_FIN: u8 = 0x01;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes of the SPDY/3 draft, section 2.6.3.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// GOAWAY status OK.
pub const GOAWAY_OK: u32 = 0;

/// Largest frame payload accepted. The 24-bit length field allows 16 MiB, and the Go client
/// sends data frames of at most 32 KiB, so this only bounds a client that misbehaves.
const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// A frame read from the client. Header blocks are still compressed.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        flags: u8,
        header_block: Vec<u8>,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// SYN_REPLY, SETTINGS, HEADERS, WINDOW_UPDATE and unknown control frames, which a server
    /// of these protocols does not act on.
    Ignored {
        kind: u16,
    },
}

/// Reads one frame.
///
/// # Errors
///
/// I/O errors, and `InvalidData` for a version other than 3, a payload over 1 MiB, or a
/// control frame too short for its type.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Frame> {
    let mut head = [0u8; 8];
    reader.read_exact(&mut head).await?;
    let flags = head[4];
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if length > MAX_PAYLOAD_BYTES {
        return Err(invalid(format!(
            "frame of {length} bytes is larger than {MAX_PAYLOAD_BYTES}"
        )));
    }
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;

    if head[0] & 0x80 == 0 {
        let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7FFF_FFFF;
        return Ok(Frame::Data {
            stream_id,
            flags,
            data: payload,
        });
    }
    let version = u16::from_be_bytes([head[0] & 0x7F, head[1]]);
    if version != VERSION {
        return Err(invalid(format!(
            "SPDY version {version} is not supported; expected 3"
        )));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    match kind {
        TYPE_SYN_STREAM => {
            // stream ID (4), associated-to stream ID (4), priority and unused bits (1), slot (1)
            require(&payload, 10, "SYN_STREAM")?;
            Ok(Frame::SynStream {
                stream_id: read_u31(&payload[0..4]),
                flags,
                header_block: payload[10..].to_vec(),
            })
        }
        TYPE_RST_STREAM => {
            require(&payload, 8, "RST_STREAM")?;
            Ok(Frame::RstStream {
                stream_id: read_u31(&payload[0..4]),
                status: u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]),
            })
        }
        TYPE_PING => {
            require(&payload, 4, "PING")?;
            Ok(Frame::Ping {
                id: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
            })
        }
        TYPE_GOAWAY => Ok(Frame::GoAway),
        TYPE_SYN_REPLY | TYPE_SETTINGS | TYPE_HEADERS | TYPE_WINDOW_UPDATE => {
            Ok(Frame::Ignored { kind })
        }
        // SPDY/3 section 2.2.1: unknown control frame types are ignored.
        _ => Ok(Frame::Ignored { kind }),
    }
}

fn require(payload: &[u8], bytes: usize, kind: &str) -> io::Result<()> {
    if payload.len() < bytes {
        return Err(invalid(format!(
            "{kind} frame of {} bytes is shorter than {bytes}",
            payload.len()
        )));
    }
    Ok(())
}

fn read_u31(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & 0x7FFF_FFFF
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

/// Encodes a SYN_REPLY for a client's stream, with an already compressed header block.
pub fn syn_reply(stream_id: u32, header_block: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + header_block.len());
    payload.extend_from_slice(&(stream_id & 0x7FFF_FFFF).to_be_bytes());
    payload.extend_from_slice(header_block);
    control_frame(TYPE_SYN_REPLY, 0, &payload)
}

pub fn rst_stream(stream_id: u32, status: u32) -> Vec<u8> {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&(stream_id & 0x7FFF_FFFF).to_be_bytes());
    payload[4..].copy_from_slice(&status.to_be_bytes());
    control_frame(TYPE_RST_STREAM, 0, &payload)
}

pub fn ping(id: u32) -> Vec<u8> {
    control_frame(TYPE_PING, 0, &id.to_be_bytes())
}

pub fn goaway(last_good_stream_id: u32, status: u32) -> Vec<u8> {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&(last_good_stream_id & 0x7FFF_FFFF).to_be_bytes());
    payload[4..].copy_from_slice(&status.to_be_bytes());
    control_frame(TYPE_GOAWAY, 0, &payload)
}

/// Encodes a data frame with `flags` 0 or [`FLAG_FIN`].
pub fn data(stream_id: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(stream_id & 0x7FFF_FFFF).to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_frame_round_trips() {
        let bytes = data(5, FLAG_FIN, b"hello");

        let frame = read_frame(&mut &bytes[..]).await.unwrap();

        assert_eq!(
            frame,
            Frame::Data {
                stream_id: 5,
                flags: FLAG_FIN,
                data: b"hello".to_vec()
            }
        );
    }

    #[tokio::test]
    async fn syn_stream_is_parsed() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&3u32.to_be_bytes());
        payload.extend_from_slice(&0u32.to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
        payload.extend_from_slice(b"block");
        let bytes = control_frame(TYPE_SYN_STREAM, FLAG_FIN, &payload);

        let frame = read_frame(&mut &bytes[..]).await.unwrap();

        assert_eq!(
            frame,
            Frame::SynStream {
                stream_id: 3,
                flags: FLAG_FIN,
                header_block: b"block".to_vec()
            }
        );
    }

    #[tokio::test]
    async fn ping_and_goaway_are_parsed() {
        assert_eq!(
            read_frame(&mut &ping(7)[..]).await.unwrap(),
            Frame::Ping { id: 7 }
        );
        assert_eq!(
            read_frame(&mut &goaway(1, GOAWAY_OK)[..]).await.unwrap(),
            Frame::GoAway
        );
    }

    #[tokio::test]
    async fn other_versions_are_rejected() {
        let mut bytes = ping(1);
        bytes[1] = 2;

        let err = read_frame(&mut &bytes[..]).await.unwrap_err();

        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn truncated_syn_stream_is_rejected() {
        let bytes = control_frame(TYPE_SYN_STREAM, 0, &[0, 0, 0, 1]);

        assert!(read_frame(&mut &bytes[..]).await.is_err());
    }
}
