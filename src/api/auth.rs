//! Auth extractors. A handler's signature says who may call it: `Admin` or `Tenant`. The tenant
//! always comes from the key, never from the request.
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::{ApiError, ErrorCode};
use crate::engine::{Engine, Principal};
use crate::tenant::TenantCtx;

pub struct Admin;

pub struct Tenant(pub TenantCtx);

async fn principal(parts: &Parts, engine: &Arc<Engine>) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let token = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    engine
        .authenticate(token)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

impl FromRequestParts<Arc<Engine>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Arc<Engine>) -> Result<Self, ApiError> {
        match principal(parts, engine).await? {
            Principal::Admin => Ok(Admin),
            Principal::Tenant(_) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "this endpoint needs the admin key",
            )),
        }
    }
}

impl FromRequestParts<Arc<Engine>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Arc<Engine>) -> Result<Self, ApiError> {
        match principal(parts, engine).await? {
            Principal::Tenant(ctx) => Ok(Tenant(ctx)),
            Principal::Admin => Err(ApiError::new(
                ErrorCode::Forbidden,
                "the admin key does not act as a tenant; use a tenant's API key",
            )),
        }
    }
}
