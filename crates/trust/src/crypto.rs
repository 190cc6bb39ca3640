//! Key protection primitives: Argon2id to derive keys from passwords, AES-256-GCM (ring) with
//! purpose-bound AAD for everything stored.

use crate::error::{Result, TrustError};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// KDF identifier stored beside every password-derived blob, so parameters can be raised later
/// without breaking old rows. 1 = Argon2id v19, m = 19 MiB, t = 2, p = 1 (OWASP's baseline).
pub const KDF_ARGON2ID_V1: u32 = 1;

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

pub fn derive_key(password: &str, salt: &[u8], kdf: u32) -> Result<Key32> {
    if kdf != KDF_ARGON2ID_V1 {
        return Err(TrustError::internal(format!(
            "unknown key derivation function {kdf}"
        )));
    }
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32))
        .map_err(|e| TrustError::internal(format!("argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(password.as_bytes(), salt, &mut out[..])
        .map_err(|e| TrustError::internal(format!("key derivation failed: {e}")))?;
    Ok(out)
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
