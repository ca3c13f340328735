//! Record framing: pure encode/decode, no I/O.
//!
//! ```text
//! // Format (all integers little endian), RECORD_HEADER_LEN = 40 bytes of header:
//! // { crc32c u32 | body_len u32 | offset u64 | seq u64 | timestamp_us i64
//! //   | kind u8 | flags u8 | stream_len u16 | raw_len u32
//! //   | stream [stream_len] | payload [body_len - 32 - stream_len] }
//! // body_len counts every byte after the body_len field.
//! // crc32c covers every byte after the crc field (body_len .. end of payload).
//! // flags bit 0 (FLAG_ZSTD): payload is one standard zstd frame that decompresses
//! // to raw_len bytes; otherwise payload is raw_len raw bytes.
//! ```

use crate::format::{FLAG_ZSTD, MAX_PAYLOAD, MAX_STREAM_LEN, RECORD_HEADER_LEN};

/// Bytes of the body counted by `body_len` before the stream id.
const BODY_FIXED: usize = RECORD_HEADER_LEN - 8;

/// The decoded header of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Global offset of the record in the store (segment files are named by the first).
    pub offset: u64,
    /// Sequence number within its stream.
    pub seq: u64,
    /// Microseconds since the Unix epoch.
    pub timestamp_us: i64,
    /// Record kind.
    pub kind: u8,
    /// Flags (`FLAG_ZSTD`).
    pub flags: u8,
    /// Length of the payload once decompressed.
    pub raw_len: u32,
}

/// A record decoded from bytes, borrowing the stream id and the stored payload.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The header fields.
    pub header: Header,
    /// The stream id.
    pub stream: &'a str,
    /// The payload as stored (a zstd frame when `FLAG_ZSTD` is set).
    pub payload: &'a [u8],
    /// Total length of the frame in bytes.
    pub len: usize,
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the frame needs: a torn write, or the end of the data.
    Truncated {
        /// Bytes the frame would need, when the header says (None if not even that).
        needed: Option<usize>,
    },
    /// The bytes are there but wrong.
    Invalid(String),
}

/// Encode a record, appending it to `out`. Returns the frame length.
///
/// The caller has validated `stream` and sized `payload` (the core never encodes
/// a record it could not decode).
pub fn encode(out: &mut Vec<u8>, header: &Header, stream: &str, payload: &[u8]) -> usize {
    let body_len = BODY_FIXED + stream.len() + payload.len();
    let start = out.len();
    out.reserve(8 + body_len);
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&header.offset.to_le_bytes());
    out.extend_from_slice(&header.seq.to_le_bytes());
    out.extend_from_slice(&header.timestamp_us.to_le_bytes());
    out.push(header.kind);
    out.push(header.flags);
    out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    out.extend_from_slice(&header.raw_len.to_le_bytes());
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    8 + body_len
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The frame length the first 8 bytes of `buf` announce, if they are there and the
/// length is possible. Used to step over damaged records.
pub fn announced_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 8 {
        return None;
    }
    let body = u32_at(buf, 4) as usize;
    if !(BODY_FIXED + 1..=BODY_FIXED + MAX_STREAM_LEN + MAX_PAYLOAD).contains(&body) {
        return None;
    }
    Some(8 + body)
}

/// The global offset field of a frame starting at `buf`, if present (no validation).
pub fn offset_field(buf: &[u8]) -> Option<u64> {
    (buf.len() >= 16).then(|| u64_at(buf, 8))
}

/// Decode the frame at the start of `buf`, checking length, CRC and every field.
pub fn decode(buf: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if buf.len() < RECORD_HEADER_LEN {
        let needed = (buf.len() >= 8).then(|| 8 + u32_at(buf, 4) as usize);
        return Err(DecodeError::Truncated { needed });
    }
    let Some(len) = announced_len(buf) else {
        return Err(DecodeError::Invalid(format!("impossible record length {}", u32_at(buf, 4))));
    };
    if buf.len() < len {
        return Err(DecodeError::Truncated { needed: Some(len) });
    }
    let crc = u32_at(buf, 0);
    if crc32c::crc32c(&buf[4..len]) != crc {
        return Err(DecodeError::Invalid("checksum mismatch".into()));
    }
    let kind = buf[32];
    let flags = buf[33];
    let stream_len = u16_at(buf, 34) as usize;
    let raw_len = u32_at(buf, 36);
    if kind == 0 {
        return Err(DecodeError::Invalid("record kind 0".into()));
    }
    if flags & !FLAG_ZSTD != 0 {
        return Err(DecodeError::Invalid(format!("unknown flags {flags:#x}")));
    }
    if stream_len == 0 || stream_len > MAX_STREAM_LEN || RECORD_HEADER_LEN + stream_len > len {
        return Err(DecodeError::Invalid(format!("bad stream id length {stream_len}")));
    }
    let stream = std::str::from_utf8(&buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + stream_len])
        .map_err(|_| DecodeError::Invalid("stream id is not UTF-8".into()))?;
    let payload = &buf[RECORD_HEADER_LEN + stream_len..len];
    if flags & FLAG_ZSTD == 0 && payload.len() != raw_len as usize {
        return Err(DecodeError::Invalid("raw payload length mismatch".into()));
    }
    let header = Header {
        offset: u64_at(buf, 8),
        seq: u64_at(buf, 16),
        timestamp_us: u64_at(buf, 24) as i64,
        kind,
        flags,
        raw_len,
    };
    Ok(Frame { header, stream, payload, len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(seq: u64, raw_len: u32, flags: u8) -> Header {
        Header { offset: 7, seq, timestamp_us: 1_700_000_000_000_000, kind: 2, flags, raw_len }
    }

    #[test]
    fn header_length_matches_layout() {
        let mut out = Vec::new();
        let n = encode(&mut out, &header(1, 0, 0), "s", b"");
        assert_eq!(n, RECORD_HEADER_LEN + 1);
        assert_eq!(out.len(), n);
    }

    #[test]
    fn a_flipped_bit_is_detected() {
        let mut out = Vec::new();
        encode(&mut out, &header(1, 5, 0), "stream", b"hello");
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            stream in "[a-z0-9/_-]{1,64}",
            payload in proptest::collection::vec(any::<u8>(), 0..2048),
            seq in any::<u64>(),
            ts in any::<i64>(),
            kind in 1u8..=255,
        ) {
            let h = Header { offset: seq / 3, seq, timestamp_us: ts, kind, flags: 0, raw_len: payload.len() as u32 };
            let mut out = Vec::new();
            let n = encode(&mut out, &h, &stream, &payload);
            let f = decode(&out).expect("valid frame");
            prop_assert_eq!(f.len, n);
            prop_assert_eq!(&f.header, &h);
            prop_assert_eq!(f.stream, stream.as_str());
            prop_assert_eq!(f.payload, payload.as_slice());
        }

        #[test]
        fn truncation_at_every_offset_is_reported_never_misread(
            stream in "[a-z]{1,16}",
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let h = header(3, payload.len() as u32, 0);
            let mut out = Vec::new();
            let n = encode(&mut out, &h, &stream, &payload);
            for cut in 0..n {
                match decode(&out[..cut]) {
                    Err(DecodeError::Truncated { .. }) => {}
                    other => prop_assert!(false, "cut at {} gave {:?}", cut, other),
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = announced_len(&bytes);
        }
    }
}
