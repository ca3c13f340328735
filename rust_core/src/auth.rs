//! Authenticated segments: the HMAC-SHA256 key of a store and the tags it makes.
//!
//! A key turns every record into `{ ... | payload | tag [MAC_LEN] }` (flag `FLAG_MAC`)
//! and every segment header carries the key's id (never the key). See docs/FORMAT.md,
//! "Authenticated segments".

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{CoreError, Result};
use crate::format::{MAC_LEN, MIN_KEY_LEN};

type HmacSha256 = Hmac<Sha256>;

/// What the key id is the MAC of (a different message than any record's MAC input,
/// whose first four bytes are a body length of at most ~1 GiB).
const KEY_ID_MESSAGE: &[u8] = b"pyactors segment key id";

/// A store's authentication key, kept only as the keyed HMAC state (its inner and outer
/// pads), so the key bytes themselves are not held. `Debug` shows the public key id only.
#[derive(Clone)]
pub struct AuthKey {
    mac: HmacSha256,
    id: u32,
}

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthKey(id={:#010x})", self.id)
    }
}

impl AuthKey {
    /// A key of at least `MIN_KEY_LEN` bytes.
    pub fn new(key: &[u8]) -> Result<Self> {
        if key.len() < MIN_KEY_LEN {
            return Err(CoreError::InvalidArgument(format!(
                "auth_key must be at least {MIN_KEY_LEN} bytes, got {}",
                key.len()
            )));
        }
        let mac = HmacSha256::new_from_slice(key)
            .map_err(|e| CoreError::InvalidArgument(format!("auth_key is not usable: {e}")))?;
        let mut m = mac.clone();
        m.update(KEY_ID_MESSAGE);
        let full = m.finalize().into_bytes();
        let id = u32::from_le_bytes([full[0], full[1], full[2], full[3]]).max(1);
        Ok(Self { mac, id })
    }

    /// The key id written in segment headers: the first 4 bytes of the MAC of a fixed
    /// message, never 0 (0 means "no key"). It tells keys apart for error messages; it is
    /// not what makes records trustworthy (the per-record tags are).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The tag of `message`.
    pub fn tag(&self, message: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.mac.clone();
        m.update(message);
        m.finalize().into_bytes().into()
    }

    /// True when `tag` is the tag of `message` (constant-time comparison).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut m = self.mac.clone();
        m.update(message);
        m.verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused_and_ids_differ_per_key() {
        assert!(matches!(AuthKey::new(&[7u8; MIN_KEY_LEN - 1]), Err(CoreError::InvalidArgument(_))));
        let a = AuthKey::new(&[1u8; 32]).expect("key");
        let b = AuthKey::new(&[2u8; 32]).expect("key");
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id(), 0);
        assert!(!format!("{a:?}").contains("1, 1"), "Debug never shows key bytes");
    }

    #[test]
    fn tags_verify_only_with_the_same_key_and_message() {
        let a = AuthKey::new(b"0123456789abcdef").expect("key");
        let b = AuthKey::new(b"0123456789abcdeF").expect("key");
        let t = a.tag(b"message");
        assert!(a.verify(b"message", &t));
        assert!(!a.verify(b"messagE", &t));
        assert!(!b.verify(b"message", &t));
        assert!(!a.verify(b"message", &t[..31]));
    }
}
