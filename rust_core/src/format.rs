//! On-disk constants, file names, the segment header and the index file.
//! `docs/FORMAT.md` describes the same bytes; `tests/format_doc.rs` checks it against
//! these constants.

use crate::record::{u32_at, u64_at};

/// Format version written in every segment and index header.
pub const FORMAT_VERSION: u32 = 1;
/// First bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"PYASEG\r\n";
/// First bytes of every index file.
pub const INDEX_MAGIC: &[u8; 8] = b"PYAIDX\r\n";
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes of a record header (before the stream id).
pub const RECORD_HEADER_LEN: usize = 40;
/// Longest stream id, in UTF-8 bytes.
pub const MAX_STREAM_LEN: usize = 255;
/// Largest payload accepted by `append` (after compression, and before).
pub const MAX_PAYLOAD: usize = 1 << 30;
/// Record flag: the payload is a zstd frame.
pub const FLAG_ZSTD: u8 = 0x01;
/// Record flag: a `MAC_LEN`-byte HMAC-SHA256 tag follows the payload (keyed stores).
pub const FLAG_MAC: u8 = 0x02;
/// Record flag: more records of the same write (one `append_many` batch) follow.
/// A segment whose last record has it ends in a cut batch, dropped at open.
pub const FLAG_BATCH_MORE: u8 = 0x04;
/// Bytes of a record's HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;
/// Shortest authentication key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Record kind of tombstones (written by prune/delete_stream, never by users).
pub const KIND_TOMBSTONE: u8 = 4;
/// The first record kind kept for future formats (7-127: refused on append).
pub const FIRST_RESERVED_KIND: u8 = 7;
/// The first record kind free for applications (`Kind.user(0)`; 128-255).
pub const FIRST_USER_KIND: u8 = 128;
/// Tombstone target meaning "every kind" (delete_stream).
pub const TOMBSTONE_ALL_KINDS: u8 = 0;
/// Bytes of a tombstone payload: `{ target_kind u8 | upto_seq u64 }`.
pub const TOMBSTONE_LEN: usize = 9;
/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";
/// Segment file suffix.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Index file suffix.
pub const INDEX_SUFFIX: &str = ".idx";
/// Bytes of an index entry: `{ seq u64 | pos u64 | len u32 | kind u8 }`.
pub const INDEX_ENTRY_LEN: usize = 21;
/// Bytes of the fixed index header.
pub const INDEX_HEADER_LEN: usize = 56;
/// Name of the manifest: which segments are live, so a deleted one is noticed.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// First bytes of the manifest.
pub const MANIFEST_MAGIC: &[u8; 8] = b"PYAMAN\r\n";
/// Bytes of the manifest header (before the list of sealed segments).
pub const MANIFEST_HEADER_LEN: usize = 32;

/// File name of the segment whose first record has global offset `base`.
pub fn segment_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

/// File name of the index of segment `base`.
pub fn index_name(base: u64) -> String {
    format!("{base:020}{INDEX_SUFFIX}")
}

/// The base offset in a segment or index file name with `suffix`, if it is one.
pub fn parse_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

// Format: segment header, SEGMENT_HEADER_LEN = 32 bytes
// { magic [8] | version u32 | key_id u32 | base_offset u64 | created_us i64 }
// key_id: 0 = written without a key; otherwise the id of the key (`AuthKey::id`) whose
// tags every record of the segment carries.
// No CRC: every field is checked (magic, version, key id against the store's key,
// base against the file name).

/// Offset of the key id in the segment header.
pub const KEY_ID_AT: u64 = 12;

/// Encode a segment header.
pub fn encode_segment_header(base: u64, created_us: i64, key_id: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&key_id.to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    h[24..32].copy_from_slice(&created_us.to_le_bytes());
    h
}

/// What is wrong with a header.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Too short or wrong magic.
    Invalid(String),
    /// A version this build does not read.
    Version(u32),
}

/// Decode a segment header and return its base offset and key id.
pub fn decode_segment_header(h: &[u8]) -> Result<(u64, u32), HeaderError> {
    if h.len() < SEGMENT_HEADER_LEN {
        return Err(HeaderError::Invalid(format!("segment header is {} bytes", h.len())));
    }
    if &h[..8] != SEGMENT_MAGIC {
        return Err(HeaderError::Invalid("bad segment magic".into()));
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok((u64_at(h, 16), u32_at(h, 12)))
}

// Format: manifest, MANIFEST_FILE, rewritten atomically (tmp, fsync, rename, directory
// fsync) after every roll and before compaction unlinks a segment
// { magic [8] | version u32 | sealed_count u32 | active_base u64 | crc32c u32 | reserved u32 (0) }
// then sealed_count x { base u64 }, ascending. The CRC covers bytes 0..24 and the bases.

/// The live segments, as of the last roll or compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Base offset of the active segment.
    pub active: u64,
    /// Base offsets of the sealed segments, ascending.
    pub sealed: Vec<u64>,
}

fn manifest_crc(head: &[u8], bases: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(head), bases)
}

/// Encode a manifest.
pub fn encode_manifest(m: &Manifest) -> Vec<u8> {
    let mut out = Vec::with_capacity(MANIFEST_HEADER_LEN + 8 * m.sealed.len());
    out.extend_from_slice(MANIFEST_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(m.sealed.len() as u32).to_le_bytes());
    out.extend_from_slice(&m.active.to_le_bytes());
    let bases: Vec<u8> = m.sealed.iter().flat_map(|b| b.to_le_bytes()).collect();
    out.extend_from_slice(&manifest_crc(&out, &bases).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&bases);
    out
}

/// Decode a manifest; any damage (length, magic, checksum, order) is `Invalid`.
pub fn decode_manifest(b: &[u8]) -> Result<Manifest, HeaderError> {
    if b.len() < MANIFEST_HEADER_LEN || &b[..8] != MANIFEST_MAGIC {
        return Err(HeaderError::Invalid("bad manifest header".into()));
    }
    let version = u32_at(b, 8);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let count = u32_at(b, 12) as usize;
    let bases = &b[MANIFEST_HEADER_LEN..];
    if count.checked_mul(8) != Some(bases.len()) {
        return Err(HeaderError::Invalid(format!("manifest lists {count} segments in {} bytes", bases.len())));
    }
    if manifest_crc(&b[..24], bases) != u32_at(b, 24) {
        return Err(HeaderError::Invalid("manifest checksum mismatch".into()));
    }
    let active = u64_at(b, 16);
    let sealed: Vec<u64> = bases.chunks_exact(8).map(|c| u64_at(c, 0)).collect();
    if sealed.windows(2).any(|w| w[0] >= w[1]) || sealed.last().is_some_and(|&l| l >= active) {
        return Err(HeaderError::Invalid("manifest segments out of order".into()));
    }
    Ok(Manifest { active, sealed })
}

/// One index entry: where a record of a stream lies in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number in the stream.
    pub seq: u64,
    /// Byte position of the frame in the segment file.
    pub pos: u64,
    /// Frame length.
    pub len: u32,
    /// Record kind.
    pub kind: u8,
}

impl Entry {
    /// True when the frame it points at lies inside a segment of `seg_len` bytes, after
    /// the header. Index entries are checked with it before any read trusts them.
    pub fn within(&self, seg_len: u64) -> bool {
        self.pos >= SEGMENT_HEADER_LEN as u64
            && u64::from(self.len) > RECORD_HEADER_LEN as u64
            && self.pos.checked_add(u64::from(self.len)).is_some_and(|end| end <= seg_len)
    }
}

/// What a sealed segment holds of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamSummary {
    /// The stream id.
    pub stream: String,
    /// Highest sequence number seen in the segment (tombstones included).
    pub last_seq: u64,
    /// Highest sequence number among the entries (tombstones excluded).
    pub max_entry_seq: u64,
    /// Position of this stream's entries in the index file.
    pub entries_at: u64,
    /// How many entries.
    pub entries: u32,
    /// CRC32C of the entries block.
    pub entries_crc: u32,
    /// The newest entry of each kind in this segment.
    pub latest: Vec<Entry>,
    /// Tombstones in this segment: `(target kind, upto seq)`.
    pub tombstones: Vec<(u8, u64)>,
}

/// The summary part of an index file: all that opening the store reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexSummary {
    /// Base offset of the segment.
    pub base: u64,
    /// Length of the segment file when sealed.
    pub segment_len: u64,
    /// Records in the segment.
    pub records: u64,
    /// Per-stream summaries.
    pub streams: Vec<StreamSummary>,
}

// Format: index file
// { magic [8] | version u32 | reserved u32 | base u64 | segment_len u64 | records u64
//   | summary_len u64 | summary_crc u32 | header_crc u32 }            (INDEX_HEADER_LEN = 56)
// header_crc covers the 52 bytes before it; summary_crc covers the summary.
// summary: { n_streams u32 | stream summary * n_streams }
// stream summary: { stream_len u16 | stream | last_seq u64 | max_entry_seq u64
//   | entries_at u64 | entries u32 | entries_crc u32
//   | n_latest u8 | { kind u8 | seq u64 | pos u64 | len u32 } * n_latest
//   | n_tombstones u8 | { target_kind u8 | upto u64 } * n_tombstones }
// then the entries blocks, one per stream, each sorted by seq:
//   { seq u64 | pos u64 | len u32 | kind u8 } * entries        (INDEX_ENTRY_LEN = 21)

fn put_entry(out: &mut Vec<u8>, e: &Entry) {
    out.extend_from_slice(&e.seq.to_le_bytes());
    out.extend_from_slice(&e.pos.to_le_bytes());
    out.extend_from_slice(&e.len.to_le_bytes());
    out.push(e.kind);
}

/// Encode an index file from the summary (whose `entries_*` fields are filled in
/// here) and each stream's entries, in the same order as `summary.streams`.
pub fn encode_index(summary: &mut IndexSummary, entries: &[Vec<Entry>]) -> Vec<u8> {
    // Entries blocks go after the summary, whose size does not depend on their positions.
    let mut summary_len = 4usize;
    for s in &summary.streams {
        summary_len += 2 + s.stream.len() + 8 + 8 + 8 + 4 + 4 + 1 + s.latest.len() * 21 + 1 + s.tombstones.len() * 9;
    }
    let mut blocks = Vec::new();
    let mut at = (INDEX_HEADER_LEN + summary_len) as u64;
    for (s, es) in summary.streams.iter_mut().zip(entries) {
        let start = blocks.len();
        for e in es {
            put_entry(&mut blocks, e);
        }
        s.entries_at = at;
        s.entries = es.len() as u32;
        s.entries_crc = crc32c::crc32c(&blocks[start..]);
        at += (es.len() * INDEX_ENTRY_LEN) as u64;
    }
    let mut sum = Vec::with_capacity(summary_len);
    sum.extend_from_slice(&(summary.streams.len() as u32).to_le_bytes());
    for s in &summary.streams {
        sum.extend_from_slice(&(s.stream.len() as u16).to_le_bytes());
        sum.extend_from_slice(s.stream.as_bytes());
        sum.extend_from_slice(&s.last_seq.to_le_bytes());
        sum.extend_from_slice(&s.max_entry_seq.to_le_bytes());
        sum.extend_from_slice(&s.entries_at.to_le_bytes());
        sum.extend_from_slice(&s.entries.to_le_bytes());
        sum.extend_from_slice(&s.entries_crc.to_le_bytes());
        sum.push(s.latest.len() as u8);
        for e in &s.latest {
            sum.push(e.kind);
            sum.extend_from_slice(&e.seq.to_le_bytes());
            sum.extend_from_slice(&e.pos.to_le_bytes());
            sum.extend_from_slice(&e.len.to_le_bytes());
        }
        sum.push(s.tombstones.len() as u8);
        for (kind, upto) in &s.tombstones {
            sum.push(*kind);
            sum.extend_from_slice(&upto.to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + sum.len() + blocks.len());
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&summary.base.to_le_bytes());
    out.extend_from_slice(&summary.segment_len.to_le_bytes());
    out.extend_from_slice(&summary.records.to_le_bytes());
    out.extend_from_slice(&(sum.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&sum).to_le_bytes());
    let hcrc = crc32c::crc32c(&out);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(&sum);
    out.extend_from_slice(&blocks);
    out
}

/// Read the fixed index header; returns `(base, segment_len, records, summary_len, summary_crc)`.
pub fn decode_index_header(h: &[u8]) -> Result<(u64, u64, u64, u64, u32), HeaderError> {
    if h.len() < INDEX_HEADER_LEN {
        return Err(HeaderError::Invalid("index header too short".into()));
    }
    if &h[..8] != INDEX_MAGIC {
        return Err(HeaderError::Invalid("bad index magic".into()));
    }
    if crc32c::crc32c(&h[..52]) != u32_at(h, 52) {
        return Err(HeaderError::Invalid("index header checksum mismatch".into()));
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok((u64_at(h, 16), u64_at(h, 24), u64_at(h, 32), u64_at(h, 40), u32_at(h, 48)))
}

/// A bounds-checked little-endian reader: every read of index bytes goes through it.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32_at(s, 0))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| u64_at(s, 0))
    }
}

/// Decode the summary bytes (already CRC-checked by the caller).
pub fn decode_summary(base: u64, segment_len: u64, records: u64, b: &[u8]) -> Option<IndexSummary> {
    let mut c = Cursor { b, at: 0 };
    let n = c.u32()? as usize;
    let mut streams = Vec::with_capacity(n.min(b.len() / 30));
    for _ in 0..n {
        let slen = c.u16()? as usize;
        let stream = std::str::from_utf8(c.take(slen)?).ok()?.to_owned();
        let last_seq = c.u64()?;
        let max_entry_seq = c.u64()?;
        let entries_at = c.u64()?;
        let entries = c.u32()?;
        let entries_crc = c.u32()?;
        let nl = c.u8()? as usize;
        let mut latest = Vec::with_capacity(nl);
        for _ in 0..nl {
            let kind = c.u8()?;
            let seq = c.u64()?;
            let pos = c.u64()?;
            let len = c.u32()?;
            latest.push(Entry { seq, pos, len, kind });
        }
        let nt = c.u8()? as usize;
        let mut tombstones = Vec::with_capacity(nt);
        for _ in 0..nt {
            tombstones.push((c.u8()?, c.u64()?));
        }
        streams.push(StreamSummary {
            stream,
            last_seq,
            max_entry_seq,
            entries_at,
            entries,
            entries_crc,
            latest,
            tombstones,
        });
    }
    (c.at == b.len()).then_some(IndexSummary { base, segment_len, records, streams })
}

/// Decode an entries block (already CRC-checked by the caller).
pub fn decode_entries(b: &[u8]) -> Vec<Entry> {
    b.chunks_exact(INDEX_ENTRY_LEN)
        .map(|e| Entry { seq: u64_at(e, 0), pos: u64_at(e, 8), len: u32_at(e, 16), kind: e[20] })
        .collect()
}

/// Encode a tombstone payload.
pub fn encode_tombstone(target_kind: u8, upto: u64) -> [u8; TOMBSTONE_LEN] {
    let mut p = [0u8; TOMBSTONE_LEN];
    p[0] = target_kind;
    p[1..].copy_from_slice(&upto.to_le_bytes());
    p
}

/// Decode a tombstone payload.
pub fn decode_tombstone(p: &[u8]) -> Option<(u8, u64)> {
    (p.len() == TOMBSTONE_LEN).then(|| (p[0], u64_at(p, 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_any_damaged_byte_is_invalid() {
        let m = Manifest { active: 900, sealed: vec![0, 300, 600] };
        let b = encode_manifest(&m);
        assert_eq!(b.len(), MANIFEST_HEADER_LEN + 24);
        assert_eq!(decode_manifest(&b), Ok(m));
        for i in 0..b.len() {
            if (28..32).contains(&i) {
                continue; // reserved
            }
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            assert!(decode_manifest(&bad).is_err(), "byte {i}");
        }
        for cut in 0..b.len() {
            assert!(decode_manifest(&b[..cut]).is_err(), "cut at {cut}");
        }
        let unordered = encode_manifest(&Manifest { active: 5, sealed: vec![3, 1] });
        assert!(decode_manifest(&unordered).is_err());
    }

    #[test]
    fn names_round_trip_and_sort_by_offset() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert_eq!(parse_name(&segment_name(42), SEGMENT_SUFFIX), Some(42));
        assert_eq!(parse_name("42.seg", SEGMENT_SUFFIX), None);
        assert!(segment_name(9) < segment_name(10));
    }

    #[test]
    fn segment_header_round_trip_and_version_check() {
        let h = encode_segment_header(77, 5, 0xabcd);
        assert_eq!(decode_segment_header(&h), Ok((77, 0xabcd)));
        let mut future = h;
        future[8] = 9;
        assert_eq!(decode_segment_header(&future), Err(HeaderError::Version(9)));
    }

    #[test]
    fn index_round_trip() {
        let e = |seq, kind| Entry { seq, pos: seq * 100, len: 50, kind };
        let mut s = IndexSummary {
            base: 10,
            segment_len: 999,
            records: 3,
            streams: vec![
                StreamSummary {
                    stream: "a".into(),
                    last_seq: 2,
                    max_entry_seq: 2,
                    latest: vec![e(2, 1)],
                    ..Default::default()
                },
                StreamSummary {
                    stream: "bb".into(),
                    last_seq: 9,
                    max_entry_seq: 1,
                    tombstones: vec![(0, 9)],
                    ..Default::default()
                },
            ],
        };
        let entries = vec![vec![e(1, 2), e(2, 1)], vec![e(1, 2)]];
        let bytes = encode_index(&mut s, &entries);
        let (base, seg_len, records, sum_len, sum_crc) = decode_index_header(&bytes).expect("header");
        assert_eq!((base, seg_len, records), (10, 999, 3));
        let sum = &bytes[INDEX_HEADER_LEN..INDEX_HEADER_LEN + sum_len as usize];
        assert_eq!(crc32c::crc32c(sum), sum_crc);
        let decoded = decode_summary(base, seg_len, records, sum).expect("summary");
        assert_eq!(decoded, s);
        for (ss, es) in decoded.streams.iter().zip(&entries) {
            let at = ss.entries_at as usize;
            let block = &bytes[at..at + ss.entries as usize * INDEX_ENTRY_LEN];
            assert_eq!(crc32c::crc32c(block), ss.entries_crc);
            assert_eq!(&decode_entries(block), es);
        }
    }
}
