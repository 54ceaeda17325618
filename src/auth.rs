//! Who is calling: roles, principals, and the JWT verifier (HS256 with a shared secret, RS256 and
//! ES256 with public keys from a JWKS file). API keys themselves live in `keys` and the catalog.
use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::JwtConfig;
pub use crate::domain::Principal;
use crate::domain::{Role, TenantId};

/// Why a credential was refused; each maps to one 401 code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing or invalid API key (Authorization: Bearer <key>)")]
    Missing,
    #[error("invalid or revoked API key")]
    InvalidKey,
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
}

/// Verifies JWTs against the configured secret and key set. Algorithms are pinned per key: an
/// HS256 token is checked only against the shared secret and an RS256/ES256 token only against
/// a JWKS key of that type, so neither `none` nor HS/RS confusion can pass.
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    jwks: Vec<(Jwk, DecodingKey)>,
    audience: Option<String>,
    issuer: Option<String>,
    tenant_claim: String,
    role_claim: String,
    leeway_secs: u64,
}

impl JwtVerifier {
    /// `None` when JWTs are not configured (no secret, no JWKS file).
    pub fn from_config(c: &JwtConfig) -> Result<Option<Self>, String> {
        let secret = c.hs256_secret.expose();
        if secret.is_empty() && c.jwks_file.as_os_str().is_empty() {
            return Ok(None);
        }
        if !secret.is_empty() && secret.len() < 32 {
            return Err("jwt.hs256_secret must be at least 32 bytes".into());
        }
        let jwks = if c.jwks_file.as_os_str().is_empty() {
            Vec::new()
        } else {
            load_jwks(&c.jwks_file)?
        };
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Ok(Some(Self {
            hs256: (!secret.is_empty()).then(|| DecodingKey::from_secret(secret.as_bytes())),
            jwks,
            audience: opt(&c.audience),
            issuer: opt(&c.issuer),
            tenant_claim: c.tenant_claim.clone(),
            role_claim: c.role_claim.clone(),
            leeway_secs: c.leeway_secs,
        }))
    }

    /// The tenant and role a token grants. The tenant's existence is checked by the caller.
    /// The token's tenant, role, issue time (`iat`, seconds) and subject (`sub`, or empty).
    pub fn verify(&self, token: &str) -> Result<(TenantId, Role, i64, String), AuthError> {
        // Unknown algorithm names (including "none") fail to parse here.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::InvalidToken("malformed token or unsupported algorithm"))?;
        let key = match header.alg {
            Algorithm::HS256 => self
                .hs256
                .as_ref()
                .ok_or(AuthError::InvalidToken("algorithm not accepted"))?,
            Algorithm::RS256 | Algorithm::ES256 => self
                .jwks_key(header.alg, header.kid.as_deref())
                .ok_or(AuthError::InvalidToken("no matching key"))?,
            _ => return Err(AuthError::InvalidToken("algorithm not accepted")),
        };
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.leeway_secs;
        v.validate_nbf = true;
        // iat: a token must not outlive its tenant (see Engine::authenticate).
        v.set_required_spec_claims(&["exp", "iat"]);
        match &self.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
        }
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, &v)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    ErrorKind::InvalidAudience => AuthError::InvalidToken("wrong audience"),
                    ErrorKind::InvalidIssuer => AuthError::InvalidToken("wrong issuer"),
                    ErrorKind::MissingRequiredClaim(_) => AuthError::InvalidToken("missing claim"),
                    ErrorKind::InvalidAlgorithm => {
                        AuthError::InvalidToken("algorithm not accepted")
                    }
                    _ => AuthError::InvalidToken("bad signature or encoding"),
                })?;
        let claims = data.claims;
        let tenant = claims
            .get(&self.tenant_claim)
            .and_then(|v| v.as_str())
            .and_then(|s| TenantId::parse(s).ok())
            .ok_or(AuthError::InvalidToken("missing or invalid tenant claim"))?;
        // The deployment admin is the admin key only: a token grants tenant roles.
        let role = claims
            .get(&self.role_claim)
            .and_then(|v| v.as_str())
            .and_then(Role::parse)
            .ok_or(AuthError::InvalidToken(
                "role claim must be tenant_admin, writer or reader",
            ))?;
        let issued_at = claims
            .get("iat")
            .and_then(|v| v.as_i64())
            .ok_or(AuthError::InvalidToken("missing or invalid iat claim"))?;
        // A token from the future would outlive a tenant deleted before that time.
        if issued_at > crate::domain::now() + self.leeway_secs as i64 {
            return Err(AuthError::InvalidToken("iat is in the future"));
        }
        let subject = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect();
        Ok((tenant, role, issued_at, subject))
    }

    fn jwks_key(&self, alg: Algorithm, kid: Option<&str>) -> Option<&DecodingKey> {
        let fits = |jwk: &Jwk| {
            let type_ok = matches!(
                (&jwk.algorithm, alg),
                (AlgorithmParameters::RSA(_), Algorithm::RS256)
                    | (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256)
            );
            let alg_ok = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok())
                .is_none_or(|a| a == alg);
            type_ok && alg_ok
        };
        let mut candidates = self.jwks.iter().filter(|(j, _)| fits(j));
        match kid {
            Some(kid) => candidates
                .find(|(j, _)| j.common.key_id.as_deref() == Some(kid))
                .map(|(_, k)| k),
            // Without a kid the key must be unambiguous.
            None => match (candidates.next(), candidates.next()) {
                (Some((_, k)), None) => Some(k),
                _ => None,
            },
        }
    }
}

fn load_jwks(path: &Path) -> Result<Vec<(Jwk, DecodingKey)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("jwt.jwks_file {}: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|e| format!("jwt.jwks_file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for jwk in set.keys {
        if !matches!(
            jwk.algorithm,
            AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)
        ) {
            // Symmetric keys in a public key set would reopen HS/RS confusion.
            return Err("jwt.jwks_file: only RSA and EC public keys are accepted".into());
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("jwt.jwks_file: {e}"))?;
        out.push((jwk, key));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Reader < Role::Writer && Role::Writer < Role::TenantAdmin);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
