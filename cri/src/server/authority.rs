//! Repairs the HTTP/2 `:authority` of requests from clients that send a unix socket path there.
//!
//! kubelet 1.28 and other grpc-go clients from before grpc-go's switch to `localhost`, and
//! Python's grpcio with its default settings, put the socket path (`/run/berth/berth.sock`) into
//! `:authority`. hyper's h2 server rejects such a request as a malformed authority and resets
//! the stream with PROTOCOL_ERROR before any handler runs. This module sits between the socket
//! and the h2 server: it decodes each request header block with HPACK, replaces an authority
//! that is not a valid URI authority with `localhost`, and encodes the block again.
//!
//! Re-encoding uses only literals without indexing, so the server's HPACK dynamic table stays
//! empty and consistent, while the decoder here mirrors the client's table. Frames other than
//! HEADERS and CONTINUATION pass through unchanged, and the server-to-client direction is a
//! plain copy.

use std::io;

use bytes::{BufMut, BytesMut};
use loona_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE of the h2 server, which Berth leaves at the protocol default.
const MAX_FRAME_SIZE: usize = 16_384;
/// Largest header block accepted from a client before the connection is dropped.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Authority sent instead of a value that h2 would reject.
const FALLBACK_AUTHORITY: &[u8] = b"localhost";

/// Connects `client` to a new in-memory stream, returned for the gRPC server to serve, with
/// request headers repaired on the way. The copying tasks end when either side closes.
pub fn repair_authority<S>(client: S) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (server_side, proxy_side) = tokio::io::duplex(256 * 1024);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut proxy_read, mut proxy_write) = tokio::io::split(proxy_side);

    tokio::spawn(async move {
        let upstream = async {
            let result = rewrite_requests(&mut client_read, &mut proxy_write).await;
            let _ = proxy_write.shutdown().await;
            result
        };
        let downstream = async {
            let result = tokio::io::copy(&mut proxy_read, &mut client_write).await;
            let _ = client_write.shutdown().await;
            result.map(|_| ())
        };
        let (up, down) = tokio::join!(upstream, downstream);
        for result in [up, down] {
            if let Err(err) = result
                && err.kind() != io::ErrorKind::BrokenPipe
                && err.kind() != io::ErrorKind::ConnectionReset
            {
                tracing::debug!(error = %err, "CRI connection closed with an error");
            }
        }
    });
    server_side
}

/// Copies the client-to-server half of a connection, re-encoding request header blocks.
async fn rewrite_requests<R, W>(client: &mut R, server: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; PREFACE.len()];
    if let Err(err) = client.read_exact(&mut preface).await {
        return if err.kind() == io::ErrorKind::UnexpectedEof {
            Ok(())
        } else {
            Err(err)
        };
    }
    server.write_all(&preface).await?;
    if preface != PREFACE {
        // Not HTTP/2 with prior knowledge: pass it on unchanged for the server to reject.
        tokio::io::copy(client, server).await?;
        return Ok(());
    }

    let mut rewriter = HeaderRewriter::default();
    let mut header = [0u8; 9];
    loop {
        match client.read_exact(&mut header).await {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err),
        }
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let kind = header[3];
        let flags = header[4];
        let stream_id =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        client.read_exact(&mut payload).await?;

        let output = match kind {
            FRAME_HEADERS => rewriter.headers(flags, stream_id, &payload)?,
            FRAME_CONTINUATION => rewriter.continuation(flags, stream_id, &payload)?,
            _ => {
                if rewriter.pending.is_some() {
                    return Err(protocol_error(
                        "a header block was interrupted by another frame",
                    ));
                }
                server.write_all(&header).await?;
                server.write_all(&payload).await?;
                continue;
            }
        };
        if let Some(frames) = output {
            server.write_all(&frames).await?;
        }
    }
}

/// A header block whose CONTINUATION frames are still arriving.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

#[derive(Default)]
struct HeaderRewriter {
    decoder: Decoder<'static>,
    pending: Option<PendingBlock>,
}

impl HeaderRewriter {
    fn headers(
        &mut self,
        flags: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> io::Result<Option<Vec<u8>>> {
        if self.pending.is_some() {
            return Err(protocol_error(
                "HEADERS arrived before the previous block ended",
            ));
        }
        let mut start = 0;
        let mut end = payload.len();
        if flags & FLAG_PADDED != 0 {
            let pad = *payload
                .first()
                .ok_or_else(|| protocol_error("empty padded HEADERS"))?
                as usize;
            start = 1;
            end = end
                .checked_sub(pad)
                .filter(|end| *end >= start)
                .ok_or_else(|| protocol_error("HEADERS padding exceeds the frame"))?;
        }
        let mut priority = None;
        if flags & FLAG_PRIORITY != 0 {
            let fields: [u8; 5] = payload
                .get(start..start + 5)
                .and_then(|slice| slice.try_into().ok())
                .ok_or_else(|| protocol_error("HEADERS priority fields are cut short"))?;
            priority = Some(fields);
            start += 5;
        }
        if start > end {
            return Err(protocol_error("HEADERS fields exceed the frame"));
        }
        self.pending = Some(PendingBlock {
            stream_id,
            end_stream: flags & FLAG_END_STREAM != 0,
            priority,
            block: payload[start..end].to_vec(),
        });
        if flags & FLAG_END_HEADERS != 0 {
            return self.finish().map(Some);
        }
        Ok(None)
    }

    fn continuation(
        &mut self,
        flags: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> io::Result<Option<Vec<u8>>> {
        let pending = self
            .pending
            .as_mut()
            .filter(|pending| pending.stream_id == stream_id)
            .ok_or_else(|| protocol_error("CONTINUATION without a header block on its stream"))?;
        if pending.block.len() + payload.len() > MAX_HEADER_BLOCK {
            return Err(protocol_error("header block is too large"));
        }
        pending.block.extend_from_slice(payload);
        if flags & FLAG_END_HEADERS != 0 {
            return self.finish().map(Some);
        }
        Ok(None)
    }

    /// Decodes the complete block, repairs the authority and returns the frames to send.
    fn finish(&mut self) -> io::Result<Vec<u8>> {
        let pending = self
            .pending
            .take()
            .expect("finish is called with a pending block");
        let headers = self
            .decoder
            .decode(&pending.block)
            .map_err(|err| protocol_error(&format!("invalid HPACK header block: {err}")))?;

        let mut block = Vec::with_capacity(pending.block.len() + 64);
        for (name, value) in &headers {
            let value = if name == b":authority" && !is_valid_authority(value) {
                FALLBACK_AUTHORITY
            } else {
                value.as_slice()
            };
            encode_literal(&mut block, name, value);
        }
        Ok(frame_block(&pending, &block))
    }
}

fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// Encodes a header as a literal without indexing with a literal name (RFC 7541, 6.2.2).
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    for text in [name, value] {
        loona_hpack::encoder::encode_integer_into(text.len(), 7, 0, out)
            .expect("writing to a Vec cannot fail");
        out.extend_from_slice(text);
    }
}

/// Splits a header block into a HEADERS frame and as many CONTINUATION frames as it needs.
fn frame_block(pending: &PendingBlock, block: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(block.len() + 32);
    let first_room = MAX_FRAME_SIZE - if pending.priority.is_some() { 5 } else { 0 };
    let first_len = block.len().min(first_room);
    let (first, mut rest) = block.split_at(first_len);

    let mut flags = 0;
    if pending.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if pending.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    let priority_len = pending.priority.map_or(0, |_| 5);
    put_frame_header(
        &mut out,
        first.len() + priority_len,
        FRAME_HEADERS,
        flags,
        pending.stream_id,
    );
    if let Some(priority) = pending.priority {
        out.put_slice(&priority);
    }
    out.put_slice(first);

    while !rest.is_empty() {
        let len = rest.len().min(MAX_FRAME_SIZE);
        let (chunk, tail) = rest.split_at(len);
        let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        put_frame_header(
            &mut out,
            chunk.len(),
            FRAME_CONTINUATION,
            flags,
            pending.stream_id,
        );
        out.put_slice(chunk);
        rest = tail;
    }
    out.to_vec()
}

fn put_frame_header(out: &mut BytesMut, length: usize, kind: u8, flags: u8, stream_id: u32) {
    let length = length as u32;
    out.put_slice(&length.to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id);
}

fn protocol_error(message: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 protocol error: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_request(encoder: &mut loona_hpack::Encoder<'_>, authority: &[u8]) -> Vec<u8> {
        encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/runtime.v1.RuntimeService/Version"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
            (b"x-berth-trace", b"abc"),
        ])
    }

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame_header(&mut out, payload.len(), kind, flags, stream_id);
        out.put_slice(payload);
        out.to_vec()
    }

    /// Runs bytes through the rewriter and returns the decoded headers of each HEADERS block.
    async fn rewrite(input: Vec<u8>) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut output = Vec::new();
        rewrite_requests(&mut input.as_slice(), &mut output)
            .await
            .unwrap();
        assert_eq!(&output[..PREFACE.len()], PREFACE);
        let mut decoder = Decoder::new();
        let mut rest = &output[PREFACE.len()..];
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        while !rest.is_empty() {
            let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let payload = &rest[9..9 + length];
            if kind == FRAME_HEADERS || kind == FRAME_CONTINUATION {
                block.extend_from_slice(payload);
                if flags & FLAG_END_HEADERS != 0 {
                    blocks.push(decoder.decode(&block).unwrap());
                    block.clear();
                }
            }
            rest = &rest[9 + length..];
        }
        blocks
    }

    fn authority_of(headers: &[(Vec<u8>, Vec<u8>)]) -> &[u8] {
        &headers
            .iter()
            .find(|(name, _)| name == b":authority")
            .unwrap()
            .1
    }

    #[tokio::test]
    async fn socket_path_authority_becomes_localhost() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS,
            1,
            &encode_request(&mut encoder, b"/run/berth/berth.sock"),
        ));

        let blocks = rewrite(input).await;

        assert_eq!(authority_of(&blocks[0]), b"localhost");
        assert_eq!(blocks[0].len(), 6, "every other header is kept");
    }

    #[tokio::test]
    async fn valid_authority_is_kept() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS,
            1,
            &encode_request(&mut encoder, b"localhost:1234"),
        ));

        let blocks = rewrite(input).await;

        assert_eq!(authority_of(&blocks[0]), b"localhost:1234");
    }

    #[tokio::test]
    async fn dynamic_table_references_survive_across_blocks() {
        // The second block refers to entries the first one added to the client's table.
        let mut encoder = loona_hpack::Encoder::new();
        let first = encode_request(&mut encoder, b"/tmp/a.sock");
        let second = encode_request(&mut encoder, b"/tmp/a.sock");
        assert!(
            second.len() < first.len(),
            "the encoder should index repeated headers"
        );
        let mut input = PREFACE.to_vec();
        input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &first));
        input.extend(frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            3,
            &second,
        ));

        let blocks = rewrite(input).await;

        assert_eq!(blocks.len(), 2);
        assert_eq!(authority_of(&blocks[1]), b"localhost");
        let trace = blocks[1]
            .iter()
            .find(|(name, _)| name == b"x-berth-trace")
            .unwrap();
        assert_eq!(trace.1, b"abc");
    }

    #[tokio::test]
    async fn continuation_and_padding_are_handled() {
        let mut encoder = loona_hpack::Encoder::new();
        let block = encode_request(&mut encoder, b"/tmp/b.sock");
        let (head, tail) = block.split_at(10);
        let mut padded = vec![3u8];
        padded.extend_from_slice(head);
        padded.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(FRAME_HEADERS, FLAG_PADDED, 1, &padded));
        input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, tail));

        let blocks = rewrite(input).await;

        assert_eq!(authority_of(&blocks[0]), b"localhost");
    }

    #[tokio::test]
    async fn other_frames_pass_unchanged() {
        let data = frame(0x0, FLAG_END_STREAM, 1, b"\x00\x00\x00\x00\x00");
        let mut input = PREFACE.to_vec();
        input.extend(&data);
        let mut output = Vec::new();

        rewrite_requests(&mut input.as_slice(), &mut output)
            .await
            .unwrap();

        assert_eq!(&output[PREFACE.len()..], data.as_slice());
    }

    #[test]
    fn large_block_is_split_into_continuations() {
        let pending = PendingBlock {
            stream_id: 5,
            end_stream: false,
            priority: None,
            block: Vec::new(),
        };
        let block = vec![0u8; MAX_FRAME_SIZE + 100];
        let frames = frame_block(&pending, &block);
        assert_eq!(frames.len(), block.len() + 18);
        assert_eq!(frames[3], FRAME_HEADERS);
        assert_eq!(frames[4] & FLAG_END_HEADERS, 0);
        let second = 9 + MAX_FRAME_SIZE;
        assert_eq!(frames[second + 3], FRAME_CONTINUATION);
        assert_eq!(frames[second + 4], FLAG_END_HEADERS);
    }
}
