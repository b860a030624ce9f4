//! A single-task SPDY/3.1 client: opens streams the way client-go does, and reads frames in
//! order. Header blocks in both directions go through zlib with the SPDY/3 dictionary, so the
//! tests also check the server's header compression.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{HttpResponse, READ_TIMEOUT, StreamUrl, request};

const FLAG_FIN: u8 = 0x01;

/// A frame from the server, with header blocks decompressed.
#[derive(Debug, PartialEq, Eq)]
pub enum SpdyFrame {
    SynReply {
        stream_id: u32,
        headers: Vec<(String, String)>,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    Other {
        kind: u16,
    },
}

pub struct SpdyClient {
    stream: TcpStream,
    compressor: Compress,
    decompressor: Decompress,
    next_stream_id: u32,
    /// The protocol the server chose from the offered ones.
    pub protocol: String,
}

impl SpdyClient {
    /// Upgrades a streaming URL to SPDY/3.1, offering `protocols` in
    /// `X-Stream-Protocol-Version`.
    pub async fn connect(url: &StreamUrl, protocols: &[&str]) -> Result<SpdyClient, HttpResponse> {
        let mut headers = vec![("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];
        for protocol in protocols {
            headers.push(("X-Stream-Protocol-Version", protocol));
        }
        let (stream, response) = request(url, "POST", &headers).await?;
        let protocol = response
            .header("x-stream-protocol-version")
            .expect("101 response names the chosen protocol")
            .to_string();
        let mut compressor = Compress::new(Compression::default(), true);
        compressor
            .set_dictionary(&dictionary())
            .expect("set dictionary");
        Ok(SpdyClient {
            stream,
            compressor,
            decompressor: Decompress::new(true),
            next_stream_id: 1,
            protocol,
        })
    }

    /// Opens a stream with `headers` and returns its ID.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let stream_id = self.next_stream_id;
        self.next_stream_id += 2;
        let block = self.compress(headers);
        let mut payload = Vec::new();
        payload.extend_from_slice(&stream_id.to_be_bytes());
        payload.extend_from_slice(&0u32.to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
        payload.extend_from_slice(&block);
        self.send_control(1, 0, &payload).await;
        stream_id
    }

    pub async fn send(&mut self, stream_id: u32, data: &[u8], fin: bool) {
        let mut frame = Vec::new();
        frame.extend_from_slice(&stream_id.to_be_bytes());
        frame.push(if fin { FLAG_FIN } else { 0 });
        frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(data);
        self.stream
            .write_all(&frame)
            .await
            .expect("send data frame");
    }

    pub async fn ping(&mut self, id: u32) {
        self.send_control(6, 0, &id.to_be_bytes()).await;
    }

    async fn send_control(&mut self, kind: u16, flags: u8, payload: &[u8]) {
        let mut frame = Vec::new();
        frame.extend_from_slice(&0x8003u16.to_be_bytes());
        frame.extend_from_slice(&kind.to_be_bytes());
        frame.push(flags);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(payload);
        self.stream
            .write_all(&frame)
            .await
            .expect("send control frame");
    }

    /// Returns the next frame, or `None` when the server closed the connection.
    pub async fn next_frame(&mut self) -> Option<SpdyFrame> {
        tokio::time::timeout(READ_TIMEOUT, self.read_frame())
            .await
            .expect("a SPDY frame within the timeout")
    }

    async fn read_frame(&mut self) -> Option<SpdyFrame> {
        let mut head = [0u8; 8];
        self.stream.read_exact(&mut head).await.ok()?;
        let flags = head[4];
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; length];
        self.stream.read_exact(&mut payload).await.ok()?;
        let word = |at: usize| {
            u32::from_be_bytes([
                payload[at],
                payload[at + 1],
                payload[at + 2],
                payload[at + 3],
            ])
        };
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Some(SpdyFrame::Data {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            });
        }
        assert_eq!(
            u16::from_be_bytes([head[0] & 0x7F, head[1]]),
            3,
            "server frame version"
        );
        let kind = u16::from_be_bytes([head[2], head[3]]);
        Some(match kind {
            2 => SpdyFrame::SynReply {
                stream_id: word(0) & 0x7FFF_FFFF,
                headers: self.decompress(&payload[4..]),
            },
            3 => SpdyFrame::RstStream {
                stream_id: word(0) & 0x7FFF_FFFF,
                status: word(4),
            },
            6 => SpdyFrame::Ping { id: word(0) },
            7 => SpdyFrame::GoAway,
            kind => SpdyFrame::Other { kind },
        })
    }

    fn compress(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        block.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            for text in [name.to_ascii_lowercase().as_str(), *value] {
                block.extend_from_slice(&(text.len() as u32).to_be_bytes());
                block.extend_from_slice(text.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(block.len() + 1024);
        self.compressor
            .compress_vec(&block, &mut out, FlushCompress::Sync)
            .expect("compress headers");
        out
    }

    fn decompress(&mut self, compressed: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(64 * 1024);
        let before = self.decompressor.total_in();
        while ((self.decompressor.total_in() - before) as usize) < compressed.len() {
            let consumed = (self.decompressor.total_in() - before) as usize;
            match self.decompressor.decompress_vec(
                &compressed[consumed..],
                &mut out,
                FlushDecompress::Sync,
            ) {
                Ok(_) => {}
                Err(err) if err.needs_dictionary().is_some() => {
                    self.decompressor
                        .set_dictionary(&dictionary())
                        .expect("the server uses the SPDY/3 dictionary");
                }
                Err(err) => panic!("the server sent an invalid header block: {err}"),
            }
        }
        let mut cursor = &out[..];
        let take = |cursor: &mut &[u8]| -> Vec<u8> {
            let length = u32::from_be_bytes(cursor[..4].try_into().unwrap()) as usize;
            let value = cursor[4..4 + length].to_vec();
            *cursor = &cursor[4 + length..];
            value
        };
        let count = u32::from_be_bytes(cursor[..4].try_into().unwrap());
        cursor = &cursor[4..];
        (0..count)
            .map(|_| {
                let name = String::from_utf8(take(&mut cursor)).unwrap();
                let value = String::from_utf8(take(&mut cursor)).unwrap();
                (name, value)
            })
            .collect()
    }
}

/// Returns the SPDY/3 header dictionary: 65 length-prefixed header words, then a run of
/// status codes, dates and media types (SPDY/3 draft, section 2.6.10.1).
fn dictionary() -> Vec<u8> {
    let words = "options head post put delete trace accept accept-charset accept-encoding \
        accept-language accept-ranges age allow authorization cache-control connection content-base \
        content-encoding content-language content-length content-location content-md5 content-range \
        content-type date etag expect expires from host if-match if-modified-since if-none-match \
        if-range if-unmodified-since last-modified location max-forwards pragma proxy-authenticate \
        proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade \
        user-agent vary via warning www-authenticate method get status 200_OK version HTTP/1.1 url \
        public set-cookie keep-alive origin";
    let mut bytes = Vec::new();
    for word in words.split_whitespace() {
        let word = word.replace('_', " ");
        bytes.extend_from_slice(&(word.len() as u32).to_be_bytes());
        bytes.extend_from_slice(word.as_bytes());
    }
    bytes.extend_from_slice(
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized\
403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable\
Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,\
text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    assert_eq!(bytes.len(), 1423, "SPDY/3 dictionary size");
    bytes
}
