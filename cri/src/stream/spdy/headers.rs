//! SPDY/3 header blocks: the name/value encoding and its zlib compression.
//!
//! Each direction of a connection is one zlib stream primed with the dictionary of the SPDY/3
//! draft (section 2.6.10.1). Every header block ends with a sync flush, so a block can only be
//! decoded after all earlier blocks of the same direction.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Largest decompressed header block accepted, against zlib bombs. The streaming protocols
/// send a handful of short headers per stream.
const MAX_HEADER_BLOCK_BYTES: usize = 64 * 1024;

/// The header names and values that start the SPDY/3 dictionary, each written with a 4-byte
/// big-endian length before it.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The text that ends the SPDY/3 dictionary, written without length prefixes.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// Returns the SPDY/3 header compression dictionary (1423 bytes).
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let mut bytes = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            bytes.extend_from_slice(&(word.len() as u32).to_be_bytes());
            bytes.extend_from_slice(word.as_bytes());
        }
        bytes.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        bytes
    })
}

/// Header names and values of one stream. Names are compared without regard to case, as the
/// Go client writes them in lower case and Go servers read them canonicalized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Encodes the uncompressed block: a pair count, then each name and value with a 4-byte
    /// big-endian length.
    fn encode(&self) -> Vec<u8> {
        let mut block = Vec::new();
        block.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (name, value) in &self.0 {
            for text in [name.to_ascii_lowercase().as_str(), value.as_str()] {
                block.extend_from_slice(&(text.len() as u32).to_be_bytes());
                block.extend_from_slice(text.as_bytes());
            }
        }
        block
    }

    /// Decodes an uncompressed block. A value holding NUL bytes is several values of one name.
    fn decode(block: &[u8]) -> Result<Self, String> {
        let mut cursor = block;
        let count = take_u32(&mut cursor)?;
        let mut pairs = Vec::new();
        for _ in 0..count {
            let name = take_text(&mut cursor)?;
            let value = take_text(&mut cursor)?;
            for part in value.split('\0') {
                pairs.push((name.clone(), part.to_string()));
            }
        }
        Ok(Headers(pairs))
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Headers {
    fn from(pairs: [(&str, &str); N]) -> Self {
        Headers(
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        )
    }
}

fn take_u32(cursor: &mut &[u8]) -> Result<u32, String> {
    let Some((bytes, rest)) = cursor.split_first_chunk::<4>() else {
        return Err("header block ends inside a length".to_string());
    };
    *cursor = rest;
    Ok(u32::from_be_bytes(*bytes))
}

fn take_text(cursor: &mut &[u8]) -> Result<String, String> {
    let length = take_u32(cursor)? as usize;
    if length > cursor.len() {
        return Err(format!(
            "header of {length} bytes runs past the end of its block"
        ));
    }
    let (text, rest) = cursor.split_at(length);
    *cursor = rest;
    String::from_utf8(text.to_vec()).map_err(|_| "header is not UTF-8".to_string())
}

/// Compresses the header blocks the server sends on one connection.
pub struct HeaderCompressor {
    zlib: Compress,
}

impl HeaderCompressor {
    pub fn new() -> Self {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(dictionary())
            .expect("a fresh zlib stream accepts a dictionary");
        Self { zlib }
    }

    pub fn compress(&mut self, headers: &Headers) -> Vec<u8> {
        let block = headers.encode();
        let start = self.zlib.total_in();
        let mut out = Vec::with_capacity(block.len() + 64);
        loop {
            let consumed = (self.zlib.total_in() - start) as usize;
            self.zlib
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .expect("zlib compression into a growing buffer does not fail");
            let consumed = (self.zlib.total_in() - start) as usize;
            // The sync flush is complete once all input is in and zlib left room unused.
            if consumed == block.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(256);
        }
    }
}

/// Decompresses the header blocks the client sends on one connection.
pub struct HeaderDecompressor {
    zlib: Decompress,
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }

    /// Decompresses and decodes one header block.
    ///
    /// # Errors
    ///
    /// A message when the block is not valid zlib data for this connection, decompresses to
    /// more than 64 KiB, or is not a valid header block. The zlib stream cannot recover from
    /// such an error, so the connection must be closed.
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Headers, String> {
        let start = self.zlib.total_in();
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        loop {
            let consumed = (self.zlib.total_in() - start) as usize;
            let produced = out.len();
            let result =
                self.zlib
                    .decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync);
            match result {
                Ok(Status::StreamEnd) => {
                    return Err("the client ended its header compression stream".to_string());
                }
                Ok(_) => {}
                Err(err) if err.needs_dictionary().is_some() => {
                    self.zlib.set_dictionary(dictionary()).map_err(|err| {
                        format!("the client's header dictionary is not SPDY/3's: {err}")
                    })?;
                    continue;
                }
                Err(err) => return Err(format!("invalid compressed header block: {err}")),
            }
            let consumed = (self.zlib.total_in() - start) as usize;
            if consumed == compressed.len() && out.len() < out.capacity() {
                break;
            }
            if out.len() >= MAX_HEADER_BLOCK_BYTES {
                return Err(format!(
                    "header block decompresses to more than {MAX_HEADER_BLOCK_BYTES} bytes"
                ));
            }
            if consumed == compressed.len() && out.len() == produced {
                return Err("truncated compressed header block".to_string());
            }
            out.reserve(out.len().max(256));
        }
        Headers::decode(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_has_published_size_and_checksum() {
        let dictionary = dictionary();

        assert_eq!(dictionary.len(), 1423);
        // The zlib dictionary ID (Adler-32) that SPDY/3 peers put in their stream header.
        let mut compressor = Compress::new(Compression::default(), true);
        assert_eq!(compressor.set_dictionary(dictionary).unwrap(), 0xE3C6_A7C2);
    }

    #[test]
    fn blocks_round_trip_in_order() {
        let mut compressor = HeaderCompressor::new();
        let mut decompressor = HeaderDecompressor::new();
        let first = Headers::from([("streamType", "error"), ("port", "8080")]);
        let second = Headers::from([("streamtype", "data")]);

        let first_block = compressor.compress(&first);
        let second_block = compressor.compress(&second);

        let decoded = decompressor.decompress(&first_block).unwrap();
        assert_eq!(decoded.get("STREAMTYPE"), Some("error"));
        assert_eq!(decoded.get("port"), Some("8080"));
        assert_eq!(
            decompressor
                .decompress(&second_block)
                .unwrap()
                .get("streamType"),
            Some("data")
        );
    }

    #[test]
    fn empty_block_round_trips() {
        let mut compressor = HeaderCompressor::new();
        let mut decompressor = HeaderDecompressor::new();

        let block = compressor.compress(&Headers::default());

        assert_eq!(decompressor.decompress(&block).unwrap(), Headers::default());
    }

    #[test]
    fn nul_separated_values_are_split() {
        let mut block = Vec::new();
        block.extend_from_slice(&1u32.to_be_bytes());
        block.extend_from_slice(&1u32.to_be_bytes());
        block.extend_from_slice(b"a");
        block.extend_from_slice(&3u32.to_be_bytes());
        block.extend_from_slice(b"x\0y");

        let headers = Headers::decode(&block).unwrap();

        assert_eq!(headers.0.len(), 2);
    }

    #[test]
    fn garbage_is_rejected() {
        let mut decompressor = HeaderDecompressor::new();

        assert!(decompressor.decompress(b"not zlib at all").is_err());
    }
}
