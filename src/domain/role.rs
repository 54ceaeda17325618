//! Who may do what: the roles a tenant credential carries.
use std::fmt;

use super::TenantCtx;

/// A tenant-scoped role. Ordered: each role may do everything the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Query and answer.
    Reader,
    /// Also ingest and delete documents.
    Writer,
    /// Also the tenant's configuration, keys, usage and export.
    TenantAdmin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Reader, Role::Writer, Role::TenantAdmin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Writer => "writer",
            Self::TenantAdmin => "tenant_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a bearer credential belongs to. The deployment admin is not a tenant and has no
/// `TenantCtx`: it manages tenants but never reads their documents.
#[derive(Debug, Clone)]
pub enum Principal {
    Admin,
    Tenant(TenantCtx, Role),
}
