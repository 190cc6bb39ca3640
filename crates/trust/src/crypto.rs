//! Key protection primitives (ring): PBKDF2-HMAC-SHA256 and AES-256-GCM with purpose-bound AAD.

use crate::error::{Result, TrustError};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::num::NonZeroU32;
use zeroize::Zeroizing;

/// OWASP's 2023 figure for PBKDF2-HMAC-SHA256; stored per row so it can be raised later.
pub const PBKDF2_ITERATIONS: u32 = 600_000;

pub type Key32 = Zeroizing<[u8; 32]>;

pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| TrustError::internal("system random generator failed"))?;
    Ok(b)
}

pub fn random_key() -> Result<Key32> {
    Ok(Zeroizing::new(random_bytes::<32>()?))
}

pub fn derive_key(password: &str, salt: &[u8], iterations: u32) -> Key32 {
    let mut out = Zeroizing::new([0u8; 32]);
    let iters = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iters,
        salt,
        password.as_bytes(),
        &mut out[..],
    );
    out
}

/// nonce || ciphertext || tag. The AAD names what the blob protects so blobs cannot be swapped.
pub fn seal(key: &[u8; 32], aad: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
    let k = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| TrustError::internal("bad AES key"))?,
    );
    let nonce_bytes = random_bytes::<NONCE_LEN>()?;
    let mut buf = Zeroizing::new(plaintext.to_vec());
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce_bytes),
        Aad::from(aad.as_bytes()),
        &mut *buf,
    )
    .map_err(|_| TrustError::internal("encryption failed"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// None when the key is wrong or the blob was altered.
pub fn open(key: &[u8; 32], aad: &str, blob: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if blob.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return None;
    }
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let (n, ct) = blob.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(n).ok()?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let len = k
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
        .ok()?
        .len();
    buf.truncate(len);
    Some(buf)
}

pub fn sha1(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .to_vec()
}

pub fn hex_upper(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02X}");
            s
        })
}

/// A GUID-formatted string from 16 random bytes (key_guid).
pub fn new_guid() -> Result<String> {
    let b = random_bytes::<16>()?;
    let h = hex_upper(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_aad_binding() {
        let k = random_key().unwrap();
        let blob = seal(&k, "a", b"secret").unwrap();
        assert_eq!(&open(&k, "a", &blob).unwrap()[..], b"secret");
        assert!(open(&k, "b", &blob).is_none());
        let k2 = random_key().unwrap();
        assert!(open(&k2, "a", &blob).is_none());
        assert!(open(&k, "a", &blob[..5]).is_none());
    }
}
