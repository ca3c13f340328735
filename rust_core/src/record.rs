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
//! // flags bit 1 (FLAG_MAC): the payload is followed by a tag [MAC_LEN], the
//! // HMAC-SHA256 of every byte from body_len to the end of the payload; body_len
//! // counts the tag and the crc covers it.
//! // flags bit 2 (FLAG_BATCH_MORE): more records of the same write follow; the
//! // last record of a batch (and a record written alone) has it clear.
//! ```

use crate::auth::AuthKey;
use crate::format::{FLAG_BATCH_MORE, FLAG_MAC, FLAG_ZSTD, MAC_LEN, MAX_PAYLOAD, MAX_STREAM_LEN, RECORD_HEADER_LEN};

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
    /// Flags (`FLAG_ZSTD`, `FLAG_MAC`).
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
    /// The frame is intact (its CRC matches) but its MAC does not check out with the
    /// key in use, or it has none where a key requires one, or has one and no key was
    /// given: tampering (or the wrong key), never a torn write.
    Unauthenticated(String),
}

/// Encode a record, appending it to `out`. Returns the frame length. With a `key`
/// the frame gets `FLAG_MAC` and a tag; without one, `FLAG_MAC` is cleared.
///
/// The caller has validated `stream` and sized `payload` (the core never encodes
/// a record it could not decode).
pub fn encode(out: &mut Vec<u8>, header: &Header, stream: &str, payload: &[u8], key: Option<&AuthKey>) -> usize {
    let tag_len = if key.is_some() { MAC_LEN } else { 0 };
    let flags = (header.flags & !FLAG_MAC) | if key.is_some() { FLAG_MAC } else { 0 };
    let body_len = BODY_FIXED + stream.len() + payload.len() + tag_len;
    let start = out.len();
    out.reserve(8 + body_len);
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&header.offset.to_le_bytes());
    out.extend_from_slice(&header.seq.to_le_bytes());
    out.extend_from_slice(&header.timestamp_us.to_le_bytes());
    out.push(header.kind);
    out.push(flags);
    out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    out.extend_from_slice(&header.raw_len.to_le_bytes());
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(payload);
    if let Some(k) = key {
        let tag = k.tag(&out[start + 4..]);
        out.extend_from_slice(&tag);
    }
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
    if !(BODY_FIXED + 1..=BODY_FIXED + MAX_STREAM_LEN + MAX_PAYLOAD + MAC_LEN).contains(&body) {
        return None;
    }
    Some(8 + body)
}

/// The global offset field of a frame starting at `buf`, if present (no validation).
pub fn offset_field(buf: &[u8]) -> Option<u64> {
    (buf.len() >= 16).then(|| u64_at(buf, 8))
}

/// Decode the frame at the start of `buf`, checking length, CRC, the MAC and every field.
///
/// With a `key`, a frame must carry a tag that checks out (checked right after the CRC,
/// before any other field is trusted); without one, a frame must carry no tag.
pub fn decode<'a>(buf: &'a [u8], key: Option<&AuthKey>) -> Result<Frame<'a>, DecodeError> {
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
    let tag_at = if flags & FLAG_MAC == 0 { len } else { len - MAC_LEN };
    match (key, flags & FLAG_MAC != 0) {
        (Some(k), true) => {
            if !k.verify(&buf[4..tag_at], &buf[tag_at..len]) {
                return Err(DecodeError::Unauthenticated(
                    "MAC mismatch: the record was altered, or written with another key".into(),
                ));
            }
        }
        (Some(_), false) => {
            return Err(DecodeError::Unauthenticated("record carries no MAC but the store has a key".into()))
        }
        (None, true) => {
            return Err(DecodeError::Unauthenticated("record carries a MAC; open the store with its auth_key".into()))
        }
        (None, false) => {}
    }
    let stream_len = u16_at(buf, 34) as usize;
    let raw_len = u32_at(buf, 36);
    if kind == 0 {
        return Err(DecodeError::Invalid("record kind 0".into()));
    }
    if flags & !(FLAG_ZSTD | FLAG_MAC | FLAG_BATCH_MORE) != 0 {
        return Err(DecodeError::Invalid(format!("unknown flags {flags:#x}")));
    }
    if stream_len == 0 || stream_len > MAX_STREAM_LEN || RECORD_HEADER_LEN + stream_len > tag_at {
        return Err(DecodeError::Invalid(format!("bad stream id length {stream_len}")));
    }
    let stream = std::str::from_utf8(&buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + stream_len])
        .map_err(|_| DecodeError::Invalid("stream id is not UTF-8".into()))?;
    let payload = &buf[RECORD_HEADER_LEN + stream_len..tag_at];
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

    fn key() -> AuthKey {
        AuthKey::new(b"a test key of 32 bytes, not one!").expect("key")
    }

    /// Set the CRC of a frame again after an edit, as an attacker would.
    fn recrc(frame: &mut [u8]) {
        let crc = crc32c::crc32c(&frame[4..]);
        frame[..4].copy_from_slice(&crc.to_le_bytes());
    }

    fn header(seq: u64, raw_len: u32, flags: u8) -> Header {
        Header { offset: 7, seq, timestamp_us: 1_700_000_000_000_000, kind: 2, flags, raw_len }
    }

    #[test]
    fn header_length_matches_layout() {
        let mut out = Vec::new();
        let n = encode(&mut out, &header(1, 0, 0), "s", b"", None);
        assert_eq!(n, RECORD_HEADER_LEN + 1);
        assert_eq!(out.len(), n);
    }

    #[test]
    fn a_flipped_bit_is_detected() {
        let mut out = Vec::new();
        encode(&mut out, &header(1, 5, 0), "stream", b"hello", None);
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, None).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn a_keyed_frame_round_trips_and_carries_flag_mac_and_a_tag() {
        let mut out = Vec::new();
        let n = encode(&mut out, &header(1, 5, 0), "stream", b"hello", Some(&key()));
        assert_eq!(n, RECORD_HEADER_LEN + 6 + 5 + MAC_LEN);
        let f = decode(&out, Some(&key())).expect("valid");
        assert_eq!((f.stream, f.payload, f.len), ("stream", &b"hello"[..], n));
        assert_eq!(f.header.flags, FLAG_MAC);
    }

    #[test]
    fn every_byte_altered_with_the_crc_fixed_is_unauthenticated_never_accepted() {
        let mut out = Vec::new();
        encode(&mut out, &header(1, 5, 0), "stream", b"hello", Some(&key()));
        for i in 4..out.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = out.clone();
                bad[i] ^= mask;
                recrc(&mut bad);
                match decode(&bad, Some(&key())) {
                    Err(DecodeError::Unauthenticated(_)) => {}
                    // The body length (bytes 4..8) decides where the frame ends: a changed
                    // one is an impossible or cut-short frame before any MAC is computed.
                    Err(DecodeError::Invalid(_) | DecodeError::Truncated { .. }) if i < 8 => {}
                    other => panic!("byte {i} ^ {mask:#x} gave {other:?}"),
                }
            }
        }
    }

    #[test]
    fn wrong_key_stripped_tag_and_missing_key_are_unauthenticated() {
        let mut keyed = Vec::new();
        encode(&mut keyed, &header(1, 5, 0), "stream", b"hello", Some(&key()));
        let other = AuthKey::new(b"another key, also long enough...").expect("key");
        assert!(matches!(decode(&keyed, Some(&other)), Err(DecodeError::Unauthenticated(_))));
        assert!(matches!(decode(&keyed, None), Err(DecodeError::Unauthenticated(_))));
        // Strip the tag and the flag, fix the length and the CRC: a plain, valid frame...
        let mut stripped = keyed[..keyed.len() - MAC_LEN].to_vec();
        stripped[33] &= !FLAG_MAC;
        let body = (stripped.len() - 8) as u32;
        stripped[4..8].copy_from_slice(&body.to_le_bytes());
        recrc(&mut stripped);
        assert!(decode(&stripped, None).is_ok());
        // ...that a keyed reader refuses.
        assert!(matches!(decode(&stripped, Some(&key())), Err(DecodeError::Unauthenticated(_))));
    }

    proptest! {
        #[test]
        fn keyed_frames_survive_any_single_edit_only_as_errors(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            at in any::<prop::sample::Index>(),
            mask in 1u8..=255,
            fix_crc in any::<bool>(),
        ) {
            let mut out = Vec::new();
            encode(&mut out, &header(9, payload.len() as u32, 0), "s/1", &payload, Some(&key()));
            let i = at.index(out.len());
            out[i] ^= mask;
            if fix_crc && i >= 4 {
                recrc(&mut out);
            }
            prop_assert!(decode(&out, Some(&key())).is_err());
        }

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
            let n = encode(&mut out, &h, &stream, &payload, None);
            let f = decode(&out, None).expect("valid frame");
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
            let n = encode(&mut out, &h, &stream, &payload, None);
            for cut in 0..n {
                match decode(&out[..cut], None) {
                    Err(DecodeError::Truncated { .. }) => {}
                    other => prop_assert!(false, "cut at {} gave {:?}", cut, other),
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, None);
            let _ = decode(&bytes, Some(&key()));
            let _ = announced_len(&bytes);
        }
    }
}
