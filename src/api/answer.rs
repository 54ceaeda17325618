//! `/v1/answer` (JSON or Server-Sent Events), `/v1/threads/{id}` and the admin's
//! `/v1/tenants/{id}/config`.
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::{Reader, TenantManager};
use super::dto::*;
use super::error::{ApiError, ErrorCode};
use super::{filter_from, invalid, list_limit, mode_from, ApiJson, ApiQuery};
use crate::answer::settings::{ApiKeyChange, GeneratorSettings, OpenAiSettings, TenantConfigView};
use crate::answer::{Answer, AnswerCode, AnswerRequest, Citation, GeneratorKind, Thread};
use crate::domain::{TenantId, ThreadId};
use crate::engine::Engine;
use crate::limits::Class;

fn generator_dto(g: GeneratorKind) -> GeneratorDto {
    match g {
        GeneratorKind::Extractive => GeneratorDto::Extractive,
        GeneratorKind::Openai => GeneratorDto::Openai,
    }
}

fn generator_kind(g: GeneratorDto) -> GeneratorKind {
    match g {
        GeneratorDto::Extractive => GeneratorKind::Extractive,
        GeneratorDto::Openai => GeneratorKind::Openai,
    }
}

fn citation_dto(c: Citation) -> CitationDto {
    CitationDto {
        n: c.n,
        chunk_id: c.chunk_id,
        document_id: c.document_id,
        title: c.title,
        page: c.page,
        heading: c.heading,
        quote: c.quote,
    }
}

/// The HTTP status of an answer: generation failures are the upstream's (502/504), everything
/// else (including no_evidence) is a successful answer.
fn error_code(code: Option<AnswerCode>) -> Option<ErrorCode> {
    match code? {
        AnswerCode::UpstreamError => Some(ErrorCode::UpstreamError),
        AnswerCode::UpstreamTimeout => Some(ErrorCode::UpstreamTimeout),
        AnswerCode::NoEvidence | AnswerCode::Ungrounded => None,
    }
}

fn answer_dto(a: Answer) -> (StatusCode, AnswerResponse) {
    let failed = error_code(a.code);
    let status = failed.map(ErrorCode::status).unwrap_or(StatusCode::OK);
    let body = AnswerResponse {
        answer: a.text,
        citations: a.citations.into_iter().map(citation_dto).collect(),
        grounded: a.grounded,
        code: a.code.map(|c| c.as_str().to_string()),
        error: failed.map(|c| ErrorBody {
            code: c.as_str().to_string(),
            message: "the answer generator failed; the retrieved citations are included".into(),
        }),
        thread_id: a.thread.map(|t| t.to_string()),
        standalone_question: a.standalone_question,
        generator: generator_dto(a.generator),
        model: a.model,
        evidence: a.evidence,
        context: AnswerContextDto {
            chunks: a.context.chunks,
            dropped: a.context.dropped,
            tokens: a.context.tokens,
            budget: a.context.budget,
        },
        timings_ms: AnswerTimingsDto {
            retrieve: a.timings.retrieve_ms,
            generate: a.timings.generate_ms,
            first_text: a.timings.first_text_ms,
            total: a.timings.total_ms,
        },
    };
    (status, body)
}

fn wants_stream(req: &AnswerRequestDto, headers: &HeaderMap) -> bool {
    req.stream.unwrap_or_else(|| {
        headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"))
    })
}

#[utoipa::path(post, path = "/v1/answer", request_body = AnswerRequestDto,
    responses(
        (status = 200, description = "an answer; `grounded: false` with code no_evidence when the knowledge base has no sufficient evidence. With stream: text/event-stream of `text` events ({\"text\"}) and one final `done` event whose data is this same body",
            content((AnswerResponse = "application/json"), (AnswerStreamEvent = "text/event-stream"))),
        (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse, description = "model_not_allowed"),
        (status = 409, body = ErrorResponse, description = "generator_not_configured"),
        (status = 502, body = AnswerResponse, description = "upstream_error: the generator failed; citations are the retrieved chunks"),
        (status = 504, body = AnswerResponse, description = "upstream_timeout")))]
pub(super) async fn answer(
    Reader(ctx): Reader,
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AnswerRequestDto>,
) -> Result<Response, ApiError> {
    engine.admit(&ctx, Class::Query).await?;
    let stream = wants_stream(&req, &headers);
    let thread = req
        .thread_id
        .as_deref()
        .map(ThreadId::parse)
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    let request = AnswerRequest {
        question: req.question,
        top_k: req.top_k,
        mode: mode_from(req.mode.unwrap_or_default()),
        filter: filter_from(req.filter.unwrap_or_default())?,
        thread,
        generator: req.generator.map(generator_kind),
        model: req.model,
    };
    // Client errors (bad request, unknown model, no evidence check yet) happen here, so they
    // are ordinary HTTP errors even when a stream was asked for.
    let prepared = engine.prepare_answer(&ctx, request, stream).await?;
    if !stream {
        let (status, body) = answer_dto(prepared.run(&mut |_| {}).await?);
        return Ok((status, Json(body)).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    tokio::spawn(async move {
        let text_tx = tx.clone();
        let mut emit = |piece: &str| {
            let data = serde_json::json!({ "text": piece }).to_string();
            let _ = text_tx.send(Event::default().event("text").data(data));
        };
        tokio::select! {
            result = prepared.run(&mut emit) => {
                let event = match result {
                    Ok(a) => {
                        let (_, body) = answer_dto(a);
                        Event::default().event("done").data(serde_json::to_string(&body).unwrap_or_default())
                    }
                    Err(e) => {
                        let e = ApiError::from(e);
                        let body = ErrorResponse { error: ErrorBody { code: e.code.as_str().into(), message: "internal error".into() } };
                        Event::default().event("error").data(serde_json::to_string(&body).unwrap_or_default())
                    }
                };
                let _ = tx.send(event);
            }
            // The client went away: dropping `run` drops the upstream request with it.
            _ = tx.closed() => {}
        }
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn thread_path(id: &str) -> Result<ThreadId, ApiError> {
    ThreadId::parse(id).map_err(|_| ApiError::not_found("thread"))
}

fn thread_dto(t: Thread) -> ThreadDto {
    ThreadDto {
        id: t.id.to_string(),
        created_at: t.created_at,
        turns: t
            .turns
            .into_iter()
            .map(|turn| TurnDto {
                question: turn.question,
                standalone_question: turn.standalone_question,
                answer: turn.answer,
                citations: turn.citations.into_iter().map(citation_dto).collect(),
                grounded: turn.grounded,
                code: turn.code.map(|c| c.as_str().to_string()),
                created_at: turn.created_at,
            })
            .collect(),
    }
}

#[utoipa::path(get, path = "/v1/threads", params(ThreadListParams),
    responses((status = 200, body = ThreadList), (status = 400, body = ErrorResponse)))]
pub(super) async fn list_threads(
    Reader(ctx): Reader,
    State(engine): State<Arc<Engine>>,
    ApiQuery(p): ApiQuery<ThreadListParams>,
) -> Result<Json<ThreadList>, ApiError> {
    let threads = engine.threads(&ctx, list_limit(p.limit)?).await?;
    Ok(Json(ThreadList {
        threads: threads
            .into_iter()
            .map(|t| ThreadSummaryDto {
                id: t.id,
                created_at: t.created_at,
                updated_at: t.updated_at,
                turns: t.turns,
                first_question: t.first_question,
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v1/threads/{id}", params(("id" = String, Path)),
    responses((status = 200, body = ThreadDto), (status = 404, body = ErrorResponse)))]
pub(super) async fn get_thread(
    Reader(ctx): Reader,
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Json<ThreadDto>, ApiError> {
    Ok(Json(thread_dto(
        engine.thread(&ctx, thread_path(&id)?).await?,
    )))
}

#[utoipa::path(delete, path = "/v1/threads/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
pub(super) async fn delete_thread(
    Reader(ctx): Reader,
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    engine.delete_thread(&ctx, thread_path(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn config_dto(tenant: &TenantId, v: TenantConfigView) -> TenantConfigResponse {
    TenantConfigResponse {
        tenant: tenant.to_string(),
        default_generator: generator_dto(v.settings.default_generator),
        openai: v.settings.openai.map(|o| OpenAiConfigDto {
            base_url: o.base_url,
            allowed_models: o.allowed_models,
            default_model: o.default_model,
            context_tokens: o.context_tokens,
            api_key_fingerprint: v.api_key_fingerprint.clone(),
        }),
        updated_at: v.updated_at,
    }
}

#[utoipa::path(get, path = "/v1/tenants/{id}/config", params(("id" = String, Path)),
    responses((status = 200, body = TenantConfigResponse), (status = 404, body = ErrorResponse)))]
pub(super) async fn get_config(
    m: TenantManager,
    State(engine): State<Arc<Engine>>,
) -> Result<Json<TenantConfigResponse>, ApiError> {
    let tenant = m.tenant;
    let view = engine.tenant_config(tenant.clone()).await?;
    Ok(Json(config_dto(&tenant, view)))
}

#[utoipa::path(put, path = "/v1/tenants/{id}/config", params(("id" = String, Path)),
    request_body = TenantConfigRequest,
    responses((status = 200, body = TenantConfigResponse), (status = 400, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse, description = "an api_key was sent but the server has no TENANTRY_MASTER_KEY")))]
pub(super) async fn put_config(
    m: TenantManager,
    State(engine): State<Arc<Engine>>,
    ApiJson(req): ApiJson<TenantConfigRequest>,
) -> Result<Json<TenantConfigResponse>, ApiError> {
    let tenant = m.tenant;
    let (openai, key) = match req.openai {
        None => (None, ApiKeyChange::Clear),
        Some(o) => (
            Some(OpenAiSettings {
                base_url: o.base_url,
                allowed_models: o.allowed_models,
                default_model: o.default_model,
                context_tokens: o.context_tokens,
                set_by_admin: m.by_admin,
            }),
            match o.api_key {
                None => ApiKeyChange::Keep,
                Some(None) => ApiKeyChange::Clear,
                Some(Some(secret)) => ApiKeyChange::Set(secret),
            },
        ),
    };
    let settings = GeneratorSettings {
        default_generator: req
            .default_generator
            .map(generator_kind)
            .unwrap_or_default(),
        openai,
    };
    let view = engine
        .put_tenant_config(tenant.clone(), settings, key, m.by_admin)
        .await?;
    Ok(Json(config_dto(&tenant, view)))
}
