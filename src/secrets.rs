//! Upstream API keys at rest: XChaCha20-Poly1305 under the deployment's master key
//! (`TENANTRY_MASTER_KEY`, 32 bytes as 64 hex characters). The tenant id is the associated data,
//! so a ciphertext copied into another tenant's row does not decrypt. Plaintext keys never leave
//! this module except into the outgoing `Authorization` header; callers see a fingerprint.
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::TenantId;

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("TENANTRY_MASTER_KEY is not set: the server cannot store upstream API keys")]
    NoMasterKey,
    #[error("TENANTRY_MASTER_KEY must be 64 hex characters (32 bytes)")]
    BadMasterKey,
    #[error("a stored API key does not decrypt (was the master key changed?)")]
    Undecryptable,
}

/// Encrypted API key as stored: nonce and ciphertext (with its tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

pub struct MasterKey(Option<XChaCha20Poly1305>);

impl MasterKey {
    /// From the configured hex string; empty means "no key" (storing API keys is then refused).
    pub fn from_hex(hex_key: &Secret) -> Result<Self, SecretError> {
        if hex_key.is_empty() {
            return Ok(Self(None));
        }
        let bytes = hex::decode(hex_key.expose().trim()).map_err(|_| SecretError::BadMasterKey)?;
        let cipher =
            XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SecretError::BadMasterKey)?;
        Ok(Self(Some(cipher)))
    }

    fn cipher(&self) -> Result<&XChaCha20Poly1305, SecretError> {
        self.0.as_ref().ok_or(SecretError::NoMasterKey)
    }

    pub fn seal(&self, tenant: &TenantId, plaintext: &str) -> Result<Sealed, SecretError> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()?
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad(tenant),
                },
            )
            .map_err(|_| SecretError::Undecryptable)?;
        Ok(Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    pub fn open(&self, tenant: &TenantId, sealed: &Sealed) -> Result<Secret, SecretError> {
        if sealed.nonce.len() != 24 {
            return Err(SecretError::Undecryptable);
        }
        let plain = self
            .cipher()?
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad(tenant),
                },
            )
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| SecretError::Undecryptable)
    }
}

fn aad(tenant: &TenantId) -> Vec<u8> {
    format!("tenantry/upstream-api-key/v1/{tenant}").into_bytes()
}

/// What endpoints show instead of a key: enough to tell two keys apart, nothing to use.
pub fn fingerprint(plaintext: &str) -> String {
    let digest = Sha256::digest(plaintext.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_hex(&Secret::new("11".repeat(32))).unwrap()
    }

    #[test]
    fn round_trip_is_bound_to_the_tenant() {
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let sealed = key().seal(&a, "sk-live-123").unwrap();
        assert!(!sealed
            .ciphertext
            .windows(b"sk-live".len())
            .any(|w| w == b"sk-live"));
        assert_eq!(key().open(&a, &sealed).unwrap().expose(), "sk-live-123");
        assert_eq!(key().open(&b, &sealed), Err(SecretError::Undecryptable));
        let other = MasterKey::from_hex(&Secret::new("22".repeat(32))).unwrap();
        assert_eq!(other.open(&a, &sealed), Err(SecretError::Undecryptable));
    }

    #[test]
    fn missing_or_malformed_master_key() {
        let none = MasterKey::from_hex(&Secret::default()).unwrap();
        let t = TenantId::parse("a").unwrap();
        assert_eq!(none.seal(&t, "x"), Err(SecretError::NoMasterKey));
        assert!(MasterKey::from_hex(&Secret::new("abc")).is_err());
        assert_eq!(format!("{:?}", Secret::new("sk-1")), "Secret(<redacted>)");
    }
}
