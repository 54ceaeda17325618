//! Auth extractors. A handler's signature says who may call it — `Admin`, `Reader`, `Writer`,
//! `TenantAdmin`, `TenantManager` or `KeyManager` — so an endpoint without a check does not
//! compile (it would have no tenant to pass to the engine). The tenant always comes from the
//! credential, never from the request.
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::extract::{FromRequestParts, Path};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::{ApiError, ErrorCode};
use crate::auth::AuthError;
use crate::domain::{Principal, Role};
use crate::domain::{TenantCtx, TenantId};
use crate::engine::Engine;

/// Filled by the extractors with the caller's tenant, for the request's logs, metrics and
/// usage (see `api::observe`).
#[derive(Clone, Default)]
pub struct TenantSlot(pub Arc<OnceLock<TenantId>>);

async fn principal(parts: &Parts, engine: &Arc<Engine>) -> Result<Principal, ApiError> {
    let token = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::from(AuthError::Missing))?;
    let p = engine.authenticate(token).await??;
    if let Principal::Tenant(ctx, _) = &p {
        if let Some(slot) = parts.extensions.get::<TenantSlot>() {
            let _ = slot.0.set(ctx.tenant().clone());
        }
        tracing::Span::current().record("tenant", ctx.tenant().as_str());
    }
    Ok(p)
}

/// The caller's own tenant, if its role is at least `min`.
async fn tenant_role(
    parts: &Parts,
    engine: &Arc<Engine>,
    min: Role,
) -> Result<TenantCtx, ApiError> {
    match principal(parts, engine).await? {
        Principal::Tenant(ctx, role) if role >= min => Ok(ctx),
        Principal::Tenant(_, role) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this endpoint needs the {min} role; this credential is {role}"),
        )),
        Principal::Admin => Err(ApiError::new(
            ErrorCode::Forbidden,
            "the admin key does not act as a tenant; use a tenant's credential",
        )),
    }
}

/// The deployment admin.
pub struct Admin;

/// Query and answer; read documents, jobs and threads.
pub struct Reader(pub TenantCtx);

/// Ingest and delete documents.
pub struct Writer(pub TenantCtx);

/// The tenant's own usage and export.
pub struct TenantAdmin(pub TenantCtx);

/// `/v1/tenants/{id}/...`: the admin, or the `tenant_admin` of tenant `{id}`. Any other
/// tenant's credential gets 404, whether or not `{id}` exists, so nothing can be inferred.
pub struct TenantManager {
    pub tenant: TenantId,
    pub by_admin: bool,
}

/// Keys by id: the admin (any key) or a `tenant_admin` (its own tenant's keys only).
pub struct KeyManager(pub Option<TenantCtx>);

/// Any valid credential, for the one endpoint that only says whose it is.
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<Engine>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Arc<Engine>) -> Result<Self, ApiError> {
        principal(parts, engine).await.map(Caller)
    }
}

impl FromRequestParts<Arc<Engine>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Arc<Engine>) -> Result<Self, ApiError> {
        match principal(parts, engine).await? {
            Principal::Admin => Ok(Admin),
            Principal::Tenant(..) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "this endpoint needs the admin key",
            )),
        }
    }
}

macro_rules! role_extractor {
    ($name:ident, $role:expr) => {
        impl FromRequestParts<Arc<Engine>> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                engine: &Arc<Engine>,
            ) -> Result<Self, ApiError> {
                tenant_role(parts, engine, $role).await.map($name)
            }
        }
    };
}

role_extractor!(Reader, Role::Reader);
role_extractor!(Writer, Role::Writer);
role_extractor!(TenantAdmin, Role::TenantAdmin);

impl FromRequestParts<Arc<Engine>> for TenantManager {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Arc<Engine>) -> Result<Self, ApiError> {
        let principal = principal(parts, engine).await?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, engine)
            .await
            .map_err(|_| ApiError::not_found("tenant"))?;
        let tenant = params
            .get("id")
            .and_then(|id| TenantId::parse(id).ok())
            .ok_or_else(|| ApiError::not_found("tenant"))?;
        match principal {
            Principal::Admin => Ok(Self {
                tenant,
                by_admin: true,
            }),
            Principal::Tenant(ctx, _) if *ctx.tenant() != tenant => {
                Err(ApiError::not_found("tenant"))
            }
            Principal::Tenant(_, Role::TenantAdmin) => Ok(Self {
                tenant,
                by_admin: false,
            }),
            Principal::Tenant(_, role) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this endpoint needs the tenant_admin role; this credential is {role}"),
            )),
        }
    }
}

impl FromRequestParts<Arc<Engine>> for KeyManager {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Arc<Engine>) -> Result<Self, ApiError> {
        match principal(parts, engine).await? {
            Principal::Admin => Ok(Self(None)),
            Principal::Tenant(ctx, Role::TenantAdmin) => Ok(Self(Some(ctx))),
            Principal::Tenant(_, role) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("managing keys needs the tenant_admin role; this credential is {role}"),
            )),
        }
    }
}
