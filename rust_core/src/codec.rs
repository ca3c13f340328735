//! Payload compression: standard zstd frames, with one reusable context per thread.
//! Decompression reads file bytes: no indexing or arithmetic here can panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::arithmetic_side_effects))]

use std::cell::RefCell;

use std::io::Read;

use crate::format::FLAG_ZSTD;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// A payload ready to be framed: the stored bytes and the record flags.
pub struct Stored {
    /// Bytes to put in the frame.
    pub bytes: Vec<u8>,
    /// `FLAG_ZSTD` when `bytes` is a zstd frame.
    pub flags: u8,
}

/// Compress `raw` at `level` if it is at least `min_len` bytes and compression shrinks it.
pub fn compress(raw: &[u8], level: i32, min_len: usize) -> Stored {
    if raw.len() >= min_len {
        let packed = COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().map(|(l, _)| *l) != Some(level) {
                *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
            }
            slot.as_mut().and_then(|(_, c)| c.compress(raw).ok())
        });
        if let Some(bytes) = packed.filter(|p| p.len() < raw.len()) {
            return Stored { bytes, flags: FLAG_ZSTD };
        }
    }
    Stored { bytes: raw.to_vec(), flags: 0 }
}

/// Why a stored payload does not give its bytes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecompressError {
    /// The payload is damaged: it is not a frame that decodes to `raw_len` bytes.
    Invalid(String),
    /// Memory for this many bytes could not be had (an address-space limit, say).
    OutOfMemory(usize),
}

/// An empty buffer with room for exactly `len` bytes, or `OutOfMemory`: a record's
/// declared size must be an error when it cannot be had, never an abort.
pub fn buffer(len: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|_| DecompressError::OutOfMemory(len))?;
    Ok(out)
}

/// Check that a zstd frame's own content size is `raw_len` before anything is allocated:
/// a crafted frame whose header claims gigabytes must not get them (found by review of
/// the fuzz targets).
fn check_content_size(stored: &[u8], raw_len: usize) -> Result<(), DecompressError> {
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(n)) if n == raw_len as u64 => Ok(()),
        Ok(Some(n)) => Err(DecompressError::Invalid(format!("zstd frame holds {n} bytes, header says {raw_len}"))),
        Ok(None) | Err(_) => Err(DecompressError::Invalid("zstd frame without a valid content size".to_string())),
    }
}

/// Decompress a stored payload to exactly `raw_len` bytes, into a buffer of that size
/// that is never grown: a frame that would decode to more is damage.
pub fn decompress(stored: &[u8], flags: u8, raw_len: usize) -> Result<Vec<u8>, DecompressError> {
    if flags & FLAG_ZSTD == 0 {
        let mut out = buffer(stored.len())?;
        out.extend_from_slice(stored);
        return Ok(out);
    }
    check_content_size(stored, raw_len)?;
    let mut out = buffer(raw_len)?;
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| DecompressError::Invalid(e.to_string()))?);
        }
        let d = slot.as_mut().ok_or_else(|| DecompressError::Invalid("no zstd decompressor".into()))?;
        // Output goes into `out`'s spare capacity (exactly raw_len), never reallocated.
        d.decompress_to_buffer(stored, &mut out)
            .map_err(|e| DecompressError::Invalid(format!("zstd frame does not decode: {e}")))?;
        if out.len() == raw_len {
            Ok(out)
        } else {
            Err(DecompressError::Invalid(format!("zstd frame decodes to {} bytes, header says {raw_len}", out.len())))
        }
    })
}

/// The first `n` bytes of a stored payload of `raw_len` bytes (all of it if shorter),
/// decompressing only that prefix with zstd's streaming decoder.
pub fn decompress_head(stored: &[u8], flags: u8, raw_len: usize, n: usize) -> Result<Vec<u8>, DecompressError> {
    let want = n.min(raw_len);
    if flags & FLAG_ZSTD == 0 {
        let head = stored.get(..want).ok_or_else(|| DecompressError::Invalid("raw payload cut short".into()))?;
        let mut out = buffer(want)?;
        out.extend_from_slice(head);
        return Ok(out);
    }
    check_content_size(stored, raw_len)?;
    let mut out = buffer(want)?;
    let decoder = zstd::stream::read::Decoder::with_buffer(stored)
        .map_err(|e| DecompressError::Invalid(format!("zstd decoder: {e}")))?
        .single_frame();
    decoder
        .take(want as u64)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Invalid(format!("zstd frame does not decode: {e}")))?;
    if out.len() == want {
        Ok(out)
    } else {
        Err(DecompressError::Invalid(format!("zstd frame ends after {} bytes, header says {raw_len}", out.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_or_incompressible_payloads_stay_raw() {
        assert_eq!(compress(b"tiny", 3, 64).flags, 0);
        let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let s = compress(&noise, 3, 64);
        assert!(s.flags == 0 || s.bytes.len() < noise.len());
    }

    #[test]
    fn compressible_payloads_round_trip_as_zstd_frames() {
        let raw = b"abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc".repeat(10);
        let s = compress(&raw, 3, 64);
        assert_eq!(s.flags, FLAG_ZSTD);
        assert_eq!(&s.bytes[..4], &[0x28, 0xB5, 0x2F, 0xFD], "zstd frame magic");
        assert_eq!(decompress(&s.bytes, s.flags, raw.len()).as_deref(), Ok(raw.as_slice()));
        assert!(decompress(&s.bytes, s.flags, raw.len() + 1).is_err());
        assert!(decompress(&s.bytes[..10], s.flags, raw.len()).is_err());
    }

    #[test]
    fn a_frame_whose_size_disagrees_with_raw_len_is_refused_before_any_allocation() {
        let raw = vec![7u8; 10_000];
        let s = compress(&raw, 3, 64);
        // A raw_len of 4 GiB - 1 (what a crafted header may say) is refused, not allocated.
        let err = decompress(&s.bytes, s.flags, u32::MAX as usize).expect_err("refused");
        assert!(matches!(&err, DecompressError::Invalid(why) if why.contains("header says")), "{err:?}");
    }

    #[test]
    fn a_frame_followed_by_more_output_than_raw_len_is_refused_not_grown_into() {
        let raw = vec![7u8; 1000];
        let (a, b) = (compress(&raw, 3, 64), compress(&raw, 3, 64));
        let two = [a.bytes.as_slice(), b.bytes.as_slice()].concat();
        let err = decompress(&two, FLAG_ZSTD, raw.len()).expect_err("a second frame is damage");
        assert!(matches!(err, DecompressError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn a_head_is_the_prefix_of_the_payload_decompressed_alone() {
        let raw: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let s = compress(&raw, 3, 64);
        assert_eq!(s.flags, FLAG_ZSTD);
        assert_eq!(decompress_head(&s.bytes, s.flags, raw.len(), 8).as_deref(), Ok(&raw[..8]));
        assert_eq!(decompress_head(&s.bytes, s.flags, raw.len(), 1 << 20).as_deref(), Ok(raw.as_slice()));
        assert_eq!(decompress_head(b"abc", 0, 3, 2).as_deref(), Ok(&b"ab"[..]));
        assert_eq!(decompress_head(b"abc", 0, 3, 9).as_deref(), Ok(&b"abc"[..]));
        // The frame's own size must agree with raw_len here too, and a frame cut short
        // before the head is damage.
        assert!(matches!(decompress_head(&s.bytes, s.flags, 7, 8), Err(DecompressError::Invalid(_))));
        let cut = s.bytes.get(..20).expect("20 bytes");
        assert!(matches!(decompress_head(cut, s.flags, raw.len(), 40_000), Err(DecompressError::Invalid(_))));
    }

    #[test]
    fn a_buffer_that_cannot_be_had_is_out_of_memory_not_an_abort() {
        assert_eq!(buffer(usize::MAX), Err(DecompressError::OutOfMemory(usize::MAX)));
        assert!(matches!(decompress(&[1, 2, 3], 0, 3), Ok(v) if v == [1, 2, 3]));
    }
}
