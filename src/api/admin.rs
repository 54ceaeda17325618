//! Keys, limits, usage and metrics: the operator's and tenant admins' endpoints.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::mpsc::error::TrySendError;

use super::auth::{Admin, KeyManager, TenantAdmin, TenantManager};
use super::dto::*;
use super::error::{ApiError, ErrorCode};
use super::{decode_json, invalid, job_dto, list_limit, tenant_path, ApiJson, ApiQuery};
use crate::domain::Role;
use crate::domain::TenantId;
use crate::engine::{CreatedKey, Engine, UsageReport};
use crate::limits::{Limits, TenantLimits};
use crate::storage::catalog::KeyRecord;

pub(crate) fn role_from(r: RoleDto) -> Role {
    match r {
        RoleDto::Reader => Role::Reader,
        RoleDto::Writer => Role::Writer,
        RoleDto::TenantAdmin => Role::TenantAdmin,
    }
}

pub(crate) fn role_dto(r: Role) -> RoleDto {
    match r {
        Role::Reader => RoleDto::Reader,
        Role::Writer => RoleDto::Writer,
        Role::TenantAdmin => RoleDto::TenantAdmin,
    }
}

pub(crate) fn created_key(k: CreatedKey) -> CreatedKeyResponse {
    CreatedKeyResponse {
        id: k.key.tenant.to_string(),
        api_key: k.token,
        key_id: k.key.id,
        role: role_dto(k.key.role),
    }
}

fn key_dto(k: KeyRecord) -> KeyDto {
    KeyDto {
        prefix: format!("tny_{}_", k.id),
        key_id: k.id,
        tenant: k.tenant.to_string(),
        role: role_dto(k.role),
        name: k.name,
        created_at: k.created_at,
    }
}

#[utoipa::path(post, path = "/v1/tenants/{id}/keys", params(("id" = String, Path)),
    request_body(content = Option<CreateKeyRequest>, description = "optional; default role reader"),
    responses((status = 201, body = CreatedKeyResponse), (status = 404, body = ErrorResponse)))]
pub(crate) async fn create_key(
    m: TenantManager,
    State(engine): State<Arc<Engine>>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedKeyResponse>), ApiError> {
    let req: CreateKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CreateKeyRequest::default()
    } else {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.to_string()))?;
        // The body is optional; JSON null is no body too.
        if v.is_null() {
            CreateKeyRequest::default()
        } else {
            decode_json(v)?
        }
    };
    let role = role_from(req.role.unwrap_or(RoleDto::Reader));
    let key = engine
        .create_key(m.tenant, role, req.name.unwrap_or_default())
        .await?;
    Ok((StatusCode::CREATED, Json(created_key(key))))
}

#[utoipa::path(get, path = "/v1/tenants/{id}/keys", params(("id" = String, Path)),
    responses((status = 200, body = KeyList), (status = 404, body = ErrorResponse)))]
pub(crate) async fn list_keys(
    m: TenantManager,
    State(engine): State<Arc<Engine>>,
) -> Result<Json<KeyList>, ApiError> {
    let keys = engine.list_keys(m.tenant).await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(key_dto).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/keys/{key_id}", params(("key_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
pub(crate) async fn revoke_key(
    KeyManager(scope): KeyManager,
    State(engine): State<Arc<Engine>>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    engine.revoke_key(scope, key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/keys/{key_id}/rotate", params(("key_id" = String, Path)),
    responses((status = 201, body = CreatedKeyResponse, description = "the new key; the old one no longer works"),
        (status = 404, body = ErrorResponse)))]
pub(crate) async fn rotate_key(
    KeyManager(scope): KeyManager,
    State(engine): State<Arc<Engine>>,
    Path(key_id): Path<String>,
) -> Result<(StatusCode, Json<CreatedKeyResponse>), ApiError> {
    let key = engine.rotate_key(scope, key_id).await?;
    Ok((StatusCode::CREATED, Json(created_key(key))))
}

fn limits_dto(o: &TenantLimits) -> LimitsDto {
    LimitsDto {
        query_per_sec: o.query_per_sec,
        query_burst: o.query_burst,
        ingest_per_sec: o.ingest_per_sec,
        ingest_burst: o.ingest_burst,
        max_documents: o.max_documents,
        max_bytes: o.max_bytes,
        max_chunks: o.max_chunks,
    }
}

fn effective_dto(l: &Limits) -> LimitsDto {
    LimitsDto {
        query_per_sec: Some(l.query_per_sec),
        query_burst: Some(l.query_burst),
        ingest_per_sec: Some(l.ingest_per_sec),
        ingest_burst: Some(l.ingest_burst),
        max_documents: Some(l.max_documents),
        max_bytes: Some(l.max_bytes),
        max_chunks: Some(l.max_chunks),
    }
}

async fn limits_response(
    engine: &Arc<Engine>,
    tenant: TenantId,
) -> Result<LimitsResponse, ApiError> {
    let (over, eff) = engine.tenant_limits(tenant.clone()).await?;
    let (documents, bytes, chunks) = engine.stored(tenant.clone()).await?;
    Ok(LimitsResponse {
        tenant: tenant.to_string(),
        overrides: limits_dto(&over),
        effective: effective_dto(&eff),
        stored: StoredDto {
            documents,
            bytes,
            chunks,
        },
    })
}

fn stored(r: &UsageReport) -> StoredDto {
    StoredDto {
        documents: r.documents,
        bytes: r.bytes,
        chunks: r.chunks,
    }
}

#[utoipa::path(get, path = "/v1/tenants/{id}/limits", params(("id" = String, Path)),
    responses((status = 200, body = LimitsResponse), (status = 404, body = ErrorResponse)))]
pub(crate) async fn get_limits(
    m: TenantManager,
    State(engine): State<Arc<Engine>>,
) -> Result<Json<LimitsResponse>, ApiError> {
    Ok(Json(limits_response(&engine, m.tenant).await?))
}

#[utoipa::path(put, path = "/v1/tenants/{id}/limits", params(("id" = String, Path)), request_body = LimitsDto,
    responses((status = 200, body = LimitsResponse), (status = 404, body = ErrorResponse)))]
pub(crate) async fn put_limits(
    _: Admin,
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LimitsDto>,
) -> Result<Json<LimitsResponse>, ApiError> {
    let tenant = tenant_path(&id)?;
    let over = TenantLimits {
        query_per_sec: req.query_per_sec,
        query_burst: req.query_burst,
        ingest_per_sec: req.ingest_per_sec,
        ingest_burst: req.ingest_burst,
        max_documents: req.max_documents,
        max_bytes: req.max_bytes,
        max_chunks: req.max_chunks,
    };
    engine.put_tenant_limits(tenant.clone(), over).await?;
    Ok(Json(limits_response(&engine, tenant).await?))
}

async fn usage_response(
    engine: &Arc<Engine>,
    tenant: TenantId,
    p: UsageParams,
) -> Result<Json<UsageResponse>, ApiError> {
    let to = p.to.unwrap_or_else(crate::usage::today);
    let from = match p.from {
        Some(f) => f,
        None => {
            let days = crate::usage::days_since_epoch(&to)
                .ok_or_else(|| invalid("to: expected YYYY-MM-DD"))?;
            crate::usage::civil_date(days - 30)
        }
    };
    if !crate::usage::is_day(&from) || !crate::usage::is_day(&to) {
        return Err(invalid("from and to must be dates as YYYY-MM-DD"));
    }
    let report = engine
        .usage(tenant.clone(), from.clone(), to.clone())
        .await?;
    Ok(Json(UsageResponse {
        tenant: tenant.to_string(),
        from,
        to,
        stored: stored(&report),
        days: report
            .days
            .into_iter()
            .map(|d| UsageDayDto {
                day: d.day,
                counters: d.counters,
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v1/usage", params(UsageParams),
    responses((status = 200, body = UsageResponse)))]
pub(crate) async fn own_usage(
    TenantAdmin(ctx): TenantAdmin,
    State(engine): State<Arc<Engine>>,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> Result<Json<UsageResponse>, ApiError> {
    usage_response(&engine, ctx.tenant().clone(), p).await
}

#[utoipa::path(get, path = "/v1/tenants/{id}/usage", params(("id" = String, Path), UsageParams),
    responses((status = 200, body = UsageResponse), (status = 404, body = ErrorResponse)))]
pub(crate) async fn tenant_usage(
    _: Admin,
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> Result<Json<UsageResponse>, ApiError> {
    usage_response(&engine, tenant_path(&id)?, p).await
}

#[utoipa::path(get, path = "/v1/queue", params(JobListParams),
    responses((status = 200, body = QueueResponse), (status = 400, body = ErrorResponse)))]
pub(crate) async fn queue(
    _: Admin,
    State(engine): State<Arc<Engine>>,
    ApiQuery(p): ApiQuery<JobListParams>,
) -> Result<Json<QueueResponse>, ApiError> {
    let (unfinished, page) = engine.queue(list_limit(p.limit)?, p.before).await?;
    let dto = |j: crate::storage::catalog::JobRecord| QueueJobDto {
        tenant: j.tenant.to_string(),
        node: j.node.clone(),
        job: job_dto(j),
    };
    Ok(Json(QueueResponse {
        unfinished: unfinished.into_iter().map(dto).collect(),
        recent: page.jobs.into_iter().map(dto).collect(),
        next_before: page.next,
    }))
}

#[utoipa::path(get, path = "/v1/stats", params(StatsParams),
    responses((status = 200, body = StatsResponse), (status = 400, body = ErrorResponse)))]
pub(crate) async fn stats(
    _: Admin,
    State(engine): State<Arc<Engine>>,
    ApiQuery(p): ApiQuery<StatsParams>,
) -> Result<Json<StatsResponse>, ApiError> {
    let minutes = p.minutes.unwrap_or(60);
    if !(1..=crate::metrics::HISTORY_MINUTES).contains(&minutes) {
        return Err(invalid(format!(
            "minutes must be between 1 and {}",
            crate::metrics::HISTORY_MINUTES
        )));
    }
    let tenants = engine
        .recent_stats(minutes)
        .into_iter()
        .map(|(tenant, ms)| TenantStatsDto {
            tenant,
            minutes: ms
                .into_iter()
                .map(|m| MinuteDto {
                    minute: m.minute,
                    requests: m.requests,
                    client_errors: m.client_errors,
                    throttled: m.throttled,
                    server_errors: m.server_errors,
                    queries: m.queries,
                    query_p50_ms: m.query_p50_ms,
                    query_p95_ms: m.query_p95_ms,
                    query_p99_ms: m.query_p99_ms,
                })
                .collect(),
        })
        .collect();
    Ok(Json(StatsResponse {
        node: engine.node_id().to_string(),
        minutes,
        tenants,
    }))
}

#[utoipa::path(get, path = "/v1/reports", responses((status = 200, body = ReportList)))]
pub(crate) async fn reports(
    _: Admin,
    State(engine): State<Arc<Engine>>,
) -> Result<Json<ReportList>, ApiError> {
    let reports = engine.reports().await?;
    Ok(Json(ReportList {
        reports: reports
            .into_iter()
            .map(|(name, bytes, modified_at)| ReportDto {
                name,
                bytes,
                modified_at,
            })
            .collect(),
    }))
}

/// A report is our own generated HTML, but it is served as if it were hostile: a sandbox
/// without scripts, nothing loaded from anywhere, never framed by another origin.
const REPORT_CSP: &str =
    "sandbox; default-src 'none'; img-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'";

#[utoipa::path(get, path = "/v1/reports/{name}", params(("name" = String, Path)),
    responses((status = 200, description = "the report page", content_type = "text/html"),
        (status = 404, body = ErrorResponse)))]
pub(crate) async fn report(
    _: Admin,
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let body = engine.report(&name).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, REPORT_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(_: Admin, State(engine): State<Arc<Engine>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        engine.render_metrics(),
    )
        .into_response()
}

/// Adapts the blocking exporter to a bounded channel: the HTTP body streams while the export
/// runs, and a client that goes away stops it at the next line.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
    write_timeout: Duration,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut chunk = Ok(Bytes::from(std::mem::take(&mut self.buf)));
        let give_up = Instant::now() + self.write_timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.tx.try_send(chunk) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "client went away",
                    ))
                }
                Err(TrySendError::Full(back)) if Instant::now() < give_up => {
                    chunk = back;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(TrySendError::Full(_)) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))
                }
            }
        }
    }
}

#[utoipa::path(get, path = "/v1/export",
    responses((status = 200, description = "the tenant's archive as NDJSON (format in ARCHITECTURE.md and src/archive.rs)",
        content_type = "application/x-ndjson")))]
pub(crate) async fn export(
    TenantAdmin(ctx): TenantAdmin,
    State(engine): State<Arc<Engine>>,
) -> Result<Response, ApiError> {
    // Each export holds a thread until its reader is done: a few at a time, and a reader that
    // stops reading is dropped, so exports cannot use up the pool queries run on.
    let permit = engine
        .exports
        .try_acquire(ctx.tenant())
        .ok_or_else(|| ApiError {
            retry_after: Some(10),
            ..ApiError::new(
                ErrorCode::RateLimited,
                "too many exports running; retry when one has finished",
            )
        })?;
    let write_timeout = Duration::from_secs(engine.config().http.write_timeout_secs.max(1));
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let span = tracing::Span::current();
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let _g = span.enter();
        let _permit = permit;
        let mut w = ChannelWriter {
            tx,
            buf: Vec::new(),
            write_timeout,
        };
        if let Err(e) = engine.export_tenant(&ctx, &mut w) {
            tracing::warn!(error = %e, "export stopped");
            // The status line has gone out: end the body with an error so the client sees a
            // broken transfer rather than a short, valid-looking archive.
            // Never wait here: a reader that stopped reading keeps the channel full.
            let _ = err_tx.try_send(Err(std::io::Error::other("export failed")));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tenantry-export.ndjson\"",
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
