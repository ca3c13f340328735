//! Payload compression: standard zstd frames, with one reusable context per thread.

use std::cell::RefCell;

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

/// Decompress a stored payload to exactly `raw_len` bytes; `Err` names what is wrong.
pub fn decompress(stored: &[u8], flags: u8, raw_len: usize) -> Result<Vec<u8>, String> {
    if flags & FLAG_ZSTD == 0 {
        return Ok(stored.to_vec());
    }
    // The frame's own content size must match before anything is allocated: a crafted
    // frame whose header claims gigabytes must not get them (found by review of the
    // fuzz targets).
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(n)) if n == raw_len as u64 => {}
        Ok(Some(n)) => return Err(format!("zstd frame holds {n} bytes, header says {raw_len}")),
        Ok(None) | Err(_) => return Err("zstd frame without a valid content size".to_string()),
    }
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        let d = slot.as_mut().ok_or("no zstd decompressor")?;
        let out = d.decompress(stored, raw_len).map_err(|e| format!("zstd frame does not decode: {e}"))?;
        if out.len() == raw_len {
            Ok(out)
        } else {
            Err(format!("zstd frame decodes to {} bytes, header says {raw_len}", out.len()))
        }
    })
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
        assert!(err.contains("header says"), "{err}");
    }
}
