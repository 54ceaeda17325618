//! HTTP API (axum). Thin: parse and validate wire types, call the engine, convert back.
mod admin;
mod answer;
pub mod auth;
mod console;
pub mod dto;
pub mod error;
mod observe;
pub mod serve;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use utoipa::OpenApi;

use self::auth::{Admin, Reader, Writer};
use self::dto::*;
use self::error::{ApiError, ErrorCode};
use crate::domain::{scalar, term, ChunkFilter};
use crate::domain::{DocId, Principal, TenantId};
use crate::domain::{FusionMethod, FusionOverrides, Mode};
use crate::engine::{Engine, Upload};
use crate::limits::Class;
use crate::storage::catalog::{DocumentRecord, JobRecord};

/// JSON body whose rejections use the error catalogue.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) => decode_json(v).map(Self),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

/// Every request body is a JSON object (serde would also read a struct from an array), and a
/// number written with a zero fraction (`5.0`) is the integer JSON Schema says it is.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    mut v: serde_json::Value,
) -> Result<T, ApiError> {
    if !v.is_object() {
        return Err(ApiError::new(
            ErrorCode::UnprocessableEntity,
            "the request body must be a JSON object",
        ));
    }
    integral_numbers(&mut v);
    serde_json::from_value(v).map_err(|e| {
        ApiError::new(
            ErrorCode::UnprocessableEntity,
            format!("Failed to deserialize the JSON body into the target type: {e}"),
        )
    })
}

fn integral_numbers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 {
                if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                    *n = (f as u64).into();
                } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                    *n = (f as i64).into();
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Query string whose rejections use the error catalogue (400 `invalid_request`, JSON body).
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|r| ApiError::new(ErrorCode::InvalidRequest, r.body_text()))
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let msg = r.body_text();
    match r {
        JsonRejection::JsonDataError(_) => ApiError::new(ErrorCode::UnprocessableEntity, msg),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(ErrorCode::InvalidJson, msg),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        _ => ApiError::new(ErrorCode::InvalidRequest, msg),
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        "request body is larger than the configured limit (max_body_bytes)",
    )
}

pub fn router(engine: Arc<Engine>) -> Router {
    let limit = engine.config().max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{id}", delete(delete_tenant))
        .route(
            "/v1/tenants/{id}/keys",
            post(admin::create_key).get(admin::list_keys),
        )
        .route(
            "/v1/tenants/{id}/limits",
            get(admin::get_limits).put(admin::put_limits),
        )
        .route("/v1/tenants/{id}/usage", get(admin::tenant_usage))
        .route("/v1/usage", get(admin::own_usage))
        .route("/v1/whoami", get(whoami))
        .route("/v1/export", get(admin::export))
        .route("/metrics", get(admin::metrics))
        .route(
            "/v1/tenants/{id}/config",
            get(answer::get_config).merge(put(answer::put_config)),
        )
        .route("/v1/keys/{key_id}", delete(admin::revoke_key))
        .route("/v1/keys/{key_id}/rotate", post(admin::rotate_key))
        .route("/v1/documents", post(submit_document).get(list_documents))
        .route(
            "/v1/documents/{id}",
            get(get_document).delete(delete_document),
        )
        .route("/v1/documents/{id}/chunks", get(document_chunks))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/queue", get(admin::queue))
        .route("/v1/stats", get(admin::stats))
        .route("/v1/reports", get(admin::reports))
        .route("/v1/reports/{name}", get(admin::report))
        .route("/v1/threads", get(answer::list_threads))
        .route("/v1/query", post(query))
        .route("/v1/answer", post(answer::answer))
        .route(
            "/v1/threads/{id}",
            get(answer::get_thread).delete(answer::delete_thread),
        )
        .merge(if engine.config().console.enabled {
            console::routes()
        } else {
            Router::new()
        })
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(limit))
        // A body that trickles in slower than this is cut off (the handler sees an error).
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            std::time::Duration::from_secs(engine.config().http.body_timeout_secs.max(1)),
        ))
        .layer(axum::middleware::from_fn_with_state(
            engine.clone(),
            observe::observe,
        ))
        .with_state(engine)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tenantry", description = "Multi-tenant RAG retrieval engine. The tenant of every request is the API key's tenant."),
    paths(healthz, readyz, create_tenant, list_tenants, delete_tenant, admin::create_key, admin::list_keys,
          admin::revoke_key, admin::rotate_key, admin::get_limits, admin::put_limits, admin::own_usage,
          admin::tenant_usage, admin::metrics, whoami, admin::export, submit_document,
          list_documents, get_document, delete_document, document_chunks, list_jobs, get_job, admin::queue, admin::stats,
          admin::reports, admin::report,
          query, answer::answer, answer::list_threads, answer::get_thread,
          answer::delete_thread, answer::get_config, answer::put_config),
    components(schemas(ErrorResponse, ErrorBody, CreateTenantRequest, CreatedKeyResponse, TenantDto, TenantList,
        JsonDocumentRequest, SubmitResponse, JobDto, DocumentDto, DocumentList, QueryRequest, FilterDto, FusionDto,
        ModeDto, FusionMethodDto, QueryResponse, QueryResultDto, TimingsDto, StatusResponse, GeneratorDto,
        AnswerRequestDto, CitationDto, AnswerContextDto, AnswerTimingsDto, AnswerResponse, TurnDto, ThreadDto,
        OpenAiConfigRequest, TenantConfigRequest, OpenAiConfigDto, TenantConfigResponse, RoleDto, CreateKeyRequest,
        KeyDto, KeyList, LimitsDto, StoredDto, LimitsResponse, UsageDayDto, UsageResponse,
        AnswerStreamEvent, AnswerEventKind, MultipartDocumentRequest, WhoAmIResponse, JobList, QueueJobDto,
        QueueResponse, MinuteDto, TenantStatsDto, StatsResponse, ThreadSummaryDto, ThreadList, ReportDto, ReportList, DocumentChunkDto, DocumentChunks)),
    modifiers(&BearerAuth, &ErrorResponses),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error responses every operation can give, added where a handler's annotation does not
/// list them, so that the document names every status the server sends (client generators and
/// gateways trust it). Which ones apply follows from how the router works: every credentialed
/// operation can answer 401/403/500/503, paths with an id 404, bodies 400/413/415/422, and the
/// rate-limited routes 429.
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorResponse")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if matches!(path.as_str(), "/healthz" | "/readyz" | "/openapi.json") {
                continue;
            }
            let ops = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op.as_mut() else { continue };
                let has_body = op.request_body.is_some();
                let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let mut add = |code: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(description));
                };
                add(
                    "401",
                    "no credential, or an unknown, revoked or invalid one (the code says which)",
                );
                add("403", "the credential's role may not do this");
                add(
                    "500",
                    "internal error (generic message; details in the server log)",
                );
                add(
                    "503",
                    "shutting down or temporarily unavailable (Retry-After)",
                );
                if path.contains('{') {
                    add(
                        "404",
                        "not found (a resource of another tenant answers the same)",
                    );
                }
                if has_body || has_params {
                    add("400", "invalid request (the code says which)");
                }
                if has_body {
                    add("413", "the body is larger than max_body_bytes");
                    add(
                        "415",
                        "the body is not of a content type this operation takes",
                    );
                    add("422", "well-formed JSON of the wrong shape");
                }
                let limited = matches!(
                    (method, path.as_str()),
                    ("post", "/v1/query" | "/v1/answer" | "/v1/documents") | ("get", "/v1/export")
                );
                if limited {
                    add("429", "rate limited or too many running (Retry-After)");
                }
            }
        }
    }
}

/// The OpenAPI document, as committed in `schemas/openapi.json`.
pub fn openapi_json_string() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .expect("openapi serialises");
    s.push('\n');
    s
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_json_string(),
    )
        .into_response()
}

/// Whose credential this is: the admin, or a tenant with its role.
#[utoipa::path(get, path = "/v1/whoami", responses((status = 200, body = WhoAmIResponse), (status = 401, body = ErrorResponse)))]
async fn whoami(auth::Caller(p): auth::Caller) -> Json<WhoAmIResponse> {
    Json(match p {
        Principal::Admin => WhoAmIResponse {
            kind: "admin".into(),
            tenant: None,
            role: None,
        },
        Principal::Tenant(ctx, role) => WhoAmIResponse {
            kind: "tenant".into(),
            tenant: Some(ctx.tenant().to_string()),
            role: Some(admin::role_dto(role)),
        },
    })
}

#[utoipa::path(get, path = "/healthz", security(), responses((status = 200, body = StatusResponse)))]
async fn healthz() -> Json<StatusResponse> {
    Json(StatusResponse {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", security(), responses((status = 200, body = StatusResponse), (status = 503, body = ErrorResponse)))]
async fn readyz(State(engine): State<Arc<Engine>>) -> Result<Json<StatusResponse>, ApiError> {
    match engine.readiness().await {
        Ok(()) => Ok(Json(StatusResponse {
            status: "ready".into(),
        })),
        Err(reason) => Err(ApiError {
            retry_after: Some(5),
            ..ApiError::new(ErrorCode::Unavailable, reason)
        }),
    }
}

// ---- admin ----

#[utoipa::path(post, path = "/v1/tenants", request_body = CreateTenantRequest,
    responses((status = 201, body = CreatedKeyResponse), (status = 409, body = ErrorResponse)))]
async fn create_tenant(
    _: Admin,
    State(engine): State<Arc<Engine>>,
    ApiJson(req): ApiJson<CreateTenantRequest>,
) -> Result<(StatusCode, Json<CreatedKeyResponse>), ApiError> {
    let id =
        TenantId::parse(&req.id).map_err(|e| ApiError::from(crate::error::EngineError::from(e)))?;
    let key = engine.create_tenant(id).await?;
    Ok((StatusCode::CREATED, Json(admin::created_key(key))))
}

#[utoipa::path(get, path = "/v1/tenants", responses((status = 200, body = TenantList)))]
async fn list_tenants(
    _: Admin,
    State(engine): State<Arc<Engine>>,
) -> Result<Json<TenantList>, ApiError> {
    let tenants = engine.list_tenants().await?;
    Ok(Json(TenantList {
        tenants: tenants
            .into_iter()
            .map(|(id, created_at, documents)| TenantDto {
                id: id.to_string(),
                created_at,
                documents,
            })
            .collect(),
    }))
}

pub(crate) fn tenant_path(id: &str) -> Result<TenantId, ApiError> {
    // An id that cannot exist is simply not found.
    TenantId::parse(id).map_err(|_| ApiError::not_found("tenant"))
}

#[utoipa::path(delete, path = "/v1/tenants/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
async fn delete_tenant(
    _: Admin,
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    engine.delete_tenant(tenant_path(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- documents ----

fn doc_dto(d: DocumentRecord) -> DocumentDto {
    DocumentDto {
        id: d.id.to_string(),
        title: d.title,
        content_type: d.content_type,
        content_hash: d.content_hash,
        status: d.status.as_str().to_string(),
        version: d.live_version,
        chunk_count: d.chunk_count,
        byte_size: d.byte_size,
        metadata: d.metadata,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

pub(crate) fn job_dto(j: JobRecord) -> JobDto {
    JobDto {
        id: j.id,
        document_id: j.doc_id.to_string(),
        status: j.status.as_str().to_string(),
        attempts: j.attempts,
        stage: (j.status == crate::storage::catalog::JobStatus::Running)
            .then_some(j.progress.stage)
            .flatten()
            .map(|s| s.as_str().to_string()),
        chunks_done: j.progress.chunks_done,
        chunks_total: j.progress.chunks_total,
        error: j.error.map(|(code, message)| ErrorBody { code, message }),
        created_at: j.created_at,
        updated_at: j.updated_at,
    }
}

fn doc_path(id: &str) -> Result<DocId, ApiError> {
    DocId::parse(id).map_err(|_| ApiError::not_found("document"))
}

pub(crate) fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, msg)
}

fn parse_doc_id(id: Option<String>) -> Result<Option<DocId>, ApiError> {
    id.map(|s| DocId::parse(&s).map_err(|e| invalid(e.to_string())))
        .transpose()
}

async fn upload_from_multipart(mut mp: Multipart) -> Result<Upload, ApiError> {
    let mut up = Upload::default();
    let mut have_file = false;
    let field_err = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            invalid(format!("multipart: {}", e.body_text()))
        }
    };
    while let Some(field) = mp.next_field().await.map_err(field_err)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                up.file_name = field.file_name().map(str::to_string);
                up.declared_type = up.declared_type.take().or_else(|| field.content_type().map(str::to_string));
                up.bytes = field.bytes().await.map_err(field_err)?.to_vec();
                have_file = true;
            }
            "id" | "title" | "metadata" | "content_type" => {
                let v = field.text().await.map_err(field_err)?;
                match name.as_str() {
                    "id" => up.doc_id = parse_doc_id(Some(v))?,
                    "title" => up.title = Some(v),
                    "content_type" => up.declared_type = Some(v),
                    // JSON null is no metadata, as in a JSON upload.
                    _ if v.trim() == "null" => up.metadata = Default::default(),
                    _ => {
                        up.metadata = serde_json::from_str(&v)
                            .map_err(|e| invalid(format!("metadata must be a JSON object: {e}")))?
                    }
                }
            }
            other => return Err(invalid(format!("unknown multipart field {other:?} (expected file, id, title, metadata, content_type)"))),
        }
    }
    if !have_file {
        return Err(invalid("multipart upload needs a `file` field"));
    }
    Ok(up)
}

#[utoipa::path(post, path = "/v1/documents", params(SubmitParams),
    request_body(content(
        (JsonDocumentRequest = "application/json"),
        (MultipartDocumentRequest = "multipart/form-data")
    )),
    responses(
        (status = 202, body = SubmitResponse, description = "accepted; poll the job"),
        (status = 200, body = DocumentDto, description = "with wait=true: the ingested document"),
        (status = 413, body = ErrorResponse), (status = 415, body = ErrorResponse),
        (status = 422, body = ErrorResponse, description = "with wait=true: the document could not be ingested (code says why)"),
        (status = 429, body = ErrorResponse), (status = 503, body = ErrorResponse)))]
async fn submit_document(
    Writer(ctx): Writer,
    State(engine): State<Arc<Engine>>,
    ApiQuery(params): ApiQuery<SubmitParams>,
    req: Request,
) -> Result<Response, ApiError> {
    engine.admit(&ctx, Class::Ingest).await?;
    // The body-timeout layer restarts its clock at every frame, so a body that trickles in a
    // byte at a time never trips it: the whole upload also has one deadline.
    let deadline = std::time::Duration::from_secs(engine.config().http.body_timeout_secs.max(1));
    let upload = tokio::time::timeout(deadline, read_upload(req))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "the request body did not arrive within http.body_timeout_secs",
            )
        })??;
    let submitted = engine.submit(&ctx, upload).await?;
    if !params.wait {
        let body = SubmitResponse {
            document_id: submitted.doc_id.to_string(),
            job_id: submitted.job_id,
        };
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let job = engine
        .wait_job(
            &ctx,
            &submitted.job_id,
            std::time::Duration::from_secs(engine.config().http.max_wait_secs),
        )
        .await?;
    match (job.status, job.error) {
        (crate::storage::catalog::JobStatus::Succeeded, _) => {
            let doc = engine.document(&ctx, &submitted.doc_id).await?;
            Ok(Json(doc_dto(doc)).into_response())
        }
        (crate::storage::catalog::JobStatus::Failed, Some((code, message))) => {
            Err(ApiError::new(ErrorCode::from_job_code(&code), message))
        }
        _ => {
            let body = SubmitResponse {
                document_id: submitted.doc_id.to_string(),
                job_id: submitted.job_id,
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
    }
}

/// The document of a `POST /v1/documents`, from a multipart or a JSON body.
async fn read_upload(req: Request) -> Result<Upload, ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let upload = if ct.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| invalid(e.body_text()))?;
        upload_from_multipart(mp).await?
    } else if ct.starts_with("application/json") {
        let ApiJson(body) = ApiJson::<JsonDocumentRequest>::from_request(req, &()).await?;
        Upload {
            doc_id: parse_doc_id(body.id)?,
            title: body.title,
            declared_type: Some(body.content_type.unwrap_or_else(|| "text/plain".into())),
            file_name: None,
            metadata: body.metadata.unwrap_or_default(),
            bytes: body.text.into_bytes(),
        }
    } else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send application/json or multipart/form-data",
        ));
    };
    Ok(upload)
}

#[utoipa::path(get, path = "/v1/documents", params(ListParams), responses((status = 200, body = DocumentList)))]
async fn list_documents(
    Reader(ctx): Reader,
    State(engine): State<Arc<Engine>>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<DocumentList>, ApiError> {
    let limit = list_limit(p.limit)?;
    let docs = engine.documents(&ctx, limit, p.after).await?;
    let next_after = (docs.len() == limit)
        .then(|| docs.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(Json(DocumentList {
        documents: docs.into_iter().map(doc_dto).collect(),
        next_after,
    }))
}

#[utoipa::path(get, path = "/v1/documents/{id}", params(("id" = String, Path)),
    responses((status = 200, body = DocumentDto), (status = 404, body = ErrorResponse)))]
async fn get_document(
    Reader(ctx): Reader,
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Json<DocumentDto>, ApiError> {
    Ok(Json(doc_dto(engine.document(&ctx, &doc_path(&id)?).await?)))
}

#[utoipa::path(delete, path = "/v1/documents/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
async fn delete_document(
    Writer(ctx): Writer,
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    engine.delete_document(&ctx, &doc_path(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/documents/{id}/chunks", params(("id" = String, Path), ChunkPageParams),
    responses((status = 200, body = DocumentChunks), (status = 404, body = ErrorResponse)))]
async fn document_chunks(
    Reader(ctx): Reader,
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<ChunkPageParams>,
) -> Result<Json<DocumentChunks>, ApiError> {
    engine.admit(&ctx, Class::Query).await?;
    let limit = page_limit(p.limit, 200)?;
    let offset = p.offset.unwrap_or(0);
    let (doc, total, chunks) = engine
        .document_chunks(&ctx, &doc_path(&id)?, offset, limit)
        .await?;
    Ok(Json(DocumentChunks {
        document_id: doc.id.to_string(),
        title: doc.title,
        content_type: doc.content_type,
        version: doc.live_version,
        total,
        offset,
        chunks: chunks
            .into_iter()
            .map(|c| DocumentChunkDto {
                chunk_id: c.chunk_id(),
                ordinal: c.ordinal,
                page: c.page,
                heading_path: c.heading_path,
                text: c.text,
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v1/jobs", params(JobListParams),
    responses((status = 200, body = JobList), (status = 400, body = ErrorResponse)))]
async fn list_jobs(
    Reader(ctx): Reader,
    State(engine): State<Arc<Engine>>,
    ApiQuery(p): ApiQuery<JobListParams>,
) -> Result<Json<JobList>, ApiError> {
    let page = engine.jobs(&ctx, list_limit(p.limit)?, p.before).await?;
    Ok(Json(JobList {
        jobs: page.jobs.into_iter().map(job_dto).collect(),
        next_before: page.next,
    }))
}

/// A page size from `?limit=`: 1..=1000, default 100.
pub(crate) fn list_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    page_limit(limit, 100)
}

fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("limit must be between 1 and 1000"));
    }
    Ok(limit)
}

#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path)),
    responses((status = 200, body = JobDto), (status = 404, body = ErrorResponse)))]
async fn get_job(
    Reader(ctx): Reader,
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Json<JobDto>, ApiError> {
    Ok(Json(job_dto(engine.job(&ctx, &id).await?)))
}

// ---- query ----

pub(crate) fn mode_from(m: ModeDto) -> Mode {
    match m {
        ModeDto::Hybrid => Mode::Hybrid,
        ModeDto::Dense => Mode::Dense,
        ModeDto::Bm25 => Mode::Bm25,
    }
}

/// A JSON number as the f32 fusion works in: a positive value stays positive (5e-324 would
/// round to 0, which `rrf_k` may not be) and a huge one finite.
fn positive_f32(v: f64) -> f32 {
    if v > 0.0 {
        (v as f32).clamp(f32::MIN_POSITIVE, f32::MAX)
    } else {
        v as f32
    }
}

pub(crate) fn filter_from(f: FilterDto) -> Result<ChunkFilter, ApiError> {
    let mut metadata = Vec::new();
    for (k, v) in f.metadata {
        let s = scalar(&v).ok_or_else(|| {
            invalid(format!(
                "filter.metadata.{k}: value must be a string, number or boolean"
            ))
        })?;
        metadata.push(term(&k, &s));
    }
    Ok(ChunkFilter {
        doc_ids: f
            .document_ids
            .iter()
            .map(|d| DocId::parse(d).map_err(|e| invalid(e.to_string())))
            .collect::<Result<_, _>>()?,
        content_types: f.content_types,
        metadata,
    })
}

#[utoipa::path(post, path = "/v1/query", request_body = QueryRequest,
    responses((status = 200, body = QueryResponse), (status = 400, body = ErrorResponse)))]
async fn query(
    Reader(ctx): Reader,
    State(engine): State<Arc<Engine>>,
    ApiJson(req): ApiJson<QueryRequest>,
) -> Result<Json<QueryResponse>, ApiError> {
    engine.admit(&ctx, Class::Query).await?;
    let fusion = req.fusion.unwrap_or_default();
    let q = crate::query::Query {
        text: req.query,
        top_k: req.top_k.unwrap_or(10),
        mode: mode_from(req.mode.unwrap_or_default()),
        filter: filter_from(req.filter.unwrap_or_default())?,
        fusion: FusionOverrides {
            method: fusion.method.map(|m| match m {
                FusionMethodDto::Rrf => FusionMethod::Rrf,
                FusionMethodDto::Dbsf => FusionMethod::Dbsf,
                FusionMethodDto::Convex => FusionMethod::Convex,
            }),
            rrf_k: fusion.rrf_k.map(positive_f32),
            dense_weight: fusion.dense_weight.map(positive_f32),
            bm25_weight: fusion.bm25_weight.map(positive_f32),
            candidates_per_leg: fusion.candidates_per_leg,
            opening_weight: fusion.opening_weight.map(|w| w as f32),
        },
    };
    let out = engine.query(&ctx, q).await?;
    let t = out.timings;
    Ok(Json(QueryResponse {
        results: out
            .hits
            .into_iter()
            .map(|h| QueryResultDto {
                chunk_id: h.chunk.chunk_id(),
                document_id: h.chunk.doc_id.to_string(),
                title: h.chunk.title,
                page: h.chunk.page,
                heading_path: h.chunk.heading_path,
                text: h.chunk.text,
                snippet: h.snippet,
                score: h.score,
                dense_rank: h.dense_rank,
                bm25_rank: h.bm25_rank,
                content_type: h.chunk.content_type,
                metadata: h.chunk.metadata,
            })
            .collect(),
        timings_ms: TimingsDto {
            embed: t.embed_ms,
            dense: t.dense_ms,
            bm25: t.bm25_ms,
            fuse: t.fuse_ms,
            total: t.total_ms,
        },
    }))
}
