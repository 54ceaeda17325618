//! Tenant identity as types. A [`TenantCtx`] is the only way into tenant-scoped engine calls; the
//! HTTP layer makes one from an authenticated key, the CLI from an operator's explicit flag.
use std::fmt;

use crate::error::UserError;

/// A validated tenant id: 1-64 chars of `[a-z0-9_-]`, starting with a letter or digit.
/// Safe to use in file names and as a payload value; never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, UserError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && s.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(UserError::Invalid(
                "tenant id must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit".into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Proof that the caller acts for one tenant. Engine functions that touch tenant data take it as
/// their first parameter; there is no `Option<TenantCtx>` and no tenant-by-string entry point.
/// It also names who acts (the subject): resources that belong to one caller rather than to the
/// whole tenant (threads) are keyed by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCtx {
    tenant: TenantId,
    subject: String,
}

impl TenantCtx {
    /// Made by the auth layer from a verified API key (`key:<key id>`) or JWT (`jwt:<sub>`).
    pub(crate) fn authenticated(tenant: TenantId, subject: String) -> Self {
        Self { tenant, subject }
    }

    /// The engine's own work for a tenant (ingestion jobs, garbage collection).
    pub(crate) fn system(tenant: TenantId) -> Self {
        Self {
            tenant,
            subject: "system".into(),
        }
    }

    /// For the local operator (CLI on the data directory, tests, benches): whoever can read the
    /// data directory already owns every tenant.
    pub fn operator(tenant: TenantId) -> Self {
        Self {
            tenant,
            subject: "operator".into(),
        }
    }

    /// Who acts: `key:<id>`, `jwt:<sub>`, `operator` or `system`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
}

/// A document id chosen by the tenant (or generated): 1-256 printable chars, no control chars.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId(String);

impl DocId {
    pub fn parse(s: &str) -> Result<Self, UserError> {
        // No '%': an id goes into URLs, where a client that does not encode it would send an
        // escape sequence the server decodes into another id.
        if s.is_empty() || s.chars().count() > 256 || s.chars().any(|c| c.is_control() || c == '%')
        {
            return Err(UserError::Invalid(
                "document id must be 1-256 characters with no control characters and no '%'".into(),
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A conversation thread id, chosen by the client or generated: 1-128 characters of
/// `[A-Za-z0-9_.-]`. Scoped by tenant like everything else: two tenants may use the same id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThreadId(String);

impl ThreadId {
    pub fn parse(s: &str) -> Result<Self, UserError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(UserError::Invalid(
                "thread_id must be 1-128 characters of A-Z, a-z, 0-9, '_', '-' or '.'".into(),
            ))
        }
    }

    pub fn generate() -> Self {
        Self(format!("thr_{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_validated() {
        assert!(TenantId::parse("acme-2").is_ok());
        for bad in ["", "Acme", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
