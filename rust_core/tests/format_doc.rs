//! docs/FORMAT.md's constants table must match the code.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use pyactors_core::format as f;

fn table() -> Vec<(String, String)> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md")).expect("docs/FORMAT.md");
    let section = doc.split("## Constants").nth(1).expect("constants section");
    let section = section.split("\n## ").next().expect("section end");
    section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| name") && !l.starts_with("|---"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].to_string(), cells[2].to_string())
        })
        .collect()
}

fn bytes(cell: &str) -> Vec<u8> {
    let hex = cell.split('`').nth(1).expect("hex in backticks");
    hex.split_whitespace().map(|h| u8::from_str_radix(h, 16).expect("hex byte")).collect()
}

#[test]
fn every_documented_constant_matches_the_code() {
    let rows = table();
    assert_eq!(rows.len(), 21, "the table lists every format constant");
    for (name, value) in rows {
        let num = || value.parse::<u64>().expect("number");
        match name.as_str() {
            "FORMAT_VERSION" => assert_eq!(num(), u64::from(f::FORMAT_VERSION)),
            "SEGMENT_MAGIC" => assert_eq!(bytes(&value), f::SEGMENT_MAGIC.to_vec()),
            "INDEX_MAGIC" => assert_eq!(bytes(&value), f::INDEX_MAGIC.to_vec()),
            "MANIFEST_MAGIC" => assert_eq!(bytes(&value), f::MANIFEST_MAGIC.to_vec()),
            "MANIFEST_HEADER_LEN" => assert_eq!(num(), f::MANIFEST_HEADER_LEN as u64),
            "SEGMENT_HEADER_LEN" => assert_eq!(num(), f::SEGMENT_HEADER_LEN as u64),
            "RECORD_HEADER_LEN" => assert_eq!(num(), f::RECORD_HEADER_LEN as u64),
            "INDEX_HEADER_LEN" => assert_eq!(num(), f::INDEX_HEADER_LEN as u64),
            "INDEX_ENTRY_LEN" => assert_eq!(num(), f::INDEX_ENTRY_LEN as u64),
            "MAX_STREAM_LEN" => assert_eq!(num(), f::MAX_STREAM_LEN as u64),
            "FLAG_ZSTD" => assert_eq!(num(), u64::from(f::FLAG_ZSTD)),
            "FLAG_MAC" => assert_eq!(num(), u64::from(f::FLAG_MAC)),
            "FLAG_BATCH_MORE" => assert_eq!(num(), u64::from(f::FLAG_BATCH_MORE)),
            "MAC_LEN" => assert_eq!(num(), f::MAC_LEN as u64),
            "MIN_KEY_LEN" => assert_eq!(num(), f::MIN_KEY_LEN as u64),
            "KEY_ID_AT" => assert_eq!(num(), f::KEY_ID_AT),
            "KIND_TOMBSTONE" => assert_eq!(num(), u64::from(f::KIND_TOMBSTONE)),
            "FIRST_RESERVED_KIND" => assert_eq!(num(), u64::from(f::FIRST_RESERVED_KIND)),
            "FIRST_USER_KIND" => assert_eq!(num(), u64::from(f::FIRST_USER_KIND)),
            "TOMBSTONE_ALL_KINDS" => assert_eq!(num(), u64::from(f::TOMBSTONE_ALL_KINDS)),
            "TOMBSTONE_LEN" => assert_eq!(num(), f::TOMBSTONE_LEN as u64),
            other => panic!("unknown constant {other} in docs/FORMAT.md"),
        }
    }
}

#[test]
fn documented_record_layout_matches_an_encoded_record() {
    let h = pyactors_core::record::Header {
        offset: 0x0102,
        seq: 0x0304,
        timestamp_us: 0x0506,
        kind: 2,
        flags: 0,
        raw_len: 3,
    };
    let mut out = Vec::new();
    pyactors_core::record::encode(&mut out, &h, "ab", b"xyz", None);
    assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize, 32 + 2 + 3);
    assert_eq!(u64::from_le_bytes(out[8..16].try_into().unwrap()), 0x0102);
    assert_eq!(u64::from_le_bytes(out[16..24].try_into().unwrap()), 0x0304);
    assert_eq!(i64::from_le_bytes(out[24..32].try_into().unwrap()), 0x0506);
    assert_eq!((out[32], out[33]), (2, 0));
    assert_eq!(u16::from_le_bytes(out[34..36].try_into().unwrap()), 2);
    assert_eq!(u32::from_le_bytes(out[36..40].try_into().unwrap()), 3);
    assert_eq!(&out[40..42], b"ab");
    assert_eq!(&out[42..], b"xyz");
    assert_eq!(u32::from_le_bytes(out[0..4].try_into().unwrap()), crc32c::crc32c(&out[4..]));
}

#[test]
fn documented_segment_header_layout_matches_the_code() {
    let h = f::encode_segment_header(77, 99, 0x0a0b_0c0d);
    assert_eq!(&h[0..8], f::SEGMENT_MAGIC);
    assert_eq!(u32::from_le_bytes(h[8..12].try_into().unwrap()), f::FORMAT_VERSION);
    assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 0x0a0b_0c0d);
    assert_eq!(u64::from_le_bytes(h[16..24].try_into().unwrap()), 77);
    assert_eq!(i64::from_le_bytes(h[24..32].try_into().unwrap()), 99);
}

#[test]
fn documented_authenticated_record_layout_matches_an_encoded_record() {
    let key = pyactors_core::AuthKey::new(b"sixteen byte key").unwrap();
    let h = pyactors_core::record::Header { offset: 1, seq: 2, timestamp_us: 3, kind: 2, flags: 0, raw_len: 3 };
    let mut out = Vec::new();
    pyactors_core::record::encode(&mut out, &h, "ab", b"xyz", Some(&key));
    let end = 40 + 2 + 3;
    assert_eq!(out.len(), end + f::MAC_LEN);
    assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize, 32 + 2 + 3 + f::MAC_LEN);
    assert_eq!(out[33], f::FLAG_MAC);
    assert_eq!(&out[end..], &key.tag(&out[4..end]));
    assert_eq!(u32::from_le_bytes(out[0..4].try_into().unwrap()), crc32c::crc32c(&out[4..]));
}
