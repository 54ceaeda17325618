//! API keys: `tny_<key id>_<secret>`. The key id is public (it names the key for revocation);
//! only a SHA-256 of the secret is stored. Secrets are 256 random bits, so a fast hash is enough.
use rand::RngCore;
use sha2::{Digest, Sha256};

pub struct NewKey {
    pub key_id: String,
    /// The whole bearer token; shown once, never stored.
    pub token: String,
    pub hash: Vec<u8>,
}

pub fn generate() -> NewKey {
    let mut rng = rand::thread_rng();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret = hex::encode(secret);
    NewKey {
        token: format!("tny_{key_id}_{secret}"),
        hash: hash(&secret),
        key_id,
    }
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Split a bearer token into (key id, secret).
pub fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("tny_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64).then_some((id, secret))
}

/// Comparison whose time does not depend on where the inputs differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let k = generate();
        let (id, secret) = split(&k.token).unwrap();
        assert_eq!(id, k.key_id);
        assert!(ct_eq(&hash(secret), &k.hash));
        assert!(!ct_eq(&hash("other"), &k.hash));
        assert!(split("tny_short_x").is_none());
    }
}
