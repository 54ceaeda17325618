//! Wire types (JSON). Engine types never cross the HTTP boundary; handlers convert.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code from the error catalogue.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// 1-64 characters of a-z, 0-9, '_' or '-'.
    pub id: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKeyResponse {
    /// Tenant id.
    pub id: String,
    /// Bearer token for this tenant. Returned once; only a hash is stored.
    pub api_key: String,
    /// Public id of the key, for revocation.
    pub key_id: String,
    pub role: RoleDto,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoleDto {
    /// Query, answer; read documents, jobs, threads.
    Reader,
    /// Also ingest and delete documents.
    Writer,
    /// Also the tenant's keys, configuration, usage and export.
    TenantAdmin,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// Default `reader`.
    pub role: Option<RoleDto>,
    /// A label for the key (shown in listings).
    pub name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyDto {
    pub key_id: String,
    /// The public start of the bearer token (`tny_<key_id>_`); the secret is never shown again.
    pub prefix: String,
    pub tenant: String,
    pub role: RoleDto,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyDto>,
}

/// Per-tenant limits; absent fields keep the deployment default. 0 = unlimited.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_documents: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_chunks: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StoredDto {
    pub documents: u64,
    pub bytes: u64,
    pub chunks: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LimitsResponse {
    pub tenant: String,
    /// What was set for this tenant.
    pub overrides: LimitsDto,
    /// What is in force (defaults filled in); 0 = unlimited.
    pub effective: LimitsDto,
    pub stored: StoredDto,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UsageParams {
    /// First day (UTC, `YYYY-MM-DD`); default 30 days before `to`.
    pub from: Option<String>,
    /// Last day (UTC, `YYYY-MM-DD`); default today.
    pub to: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageDayDto {
    pub day: String,
    /// queries, answers, documents_ingested, chunks_ingested, embedding_tokens,
    /// generator_tokens, and `errors.<code>` for each error code returned.
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageResponse {
    pub tenant: String,
    pub from: String,
    pub to: String,
    pub days: Vec<UsageDayDto>,
    /// What the tenant stores now.
    pub stored: StoredDto,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantDto {
    pub id: String,
    pub created_at: i64,
    pub documents: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantDto>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonDocumentRequest {
    /// Document id; generated when absent. Re-using an id replaces that document.
    pub id: Option<String>,
    pub title: Option<String>,
    pub text: String,
    /// text/plain (default), text/markdown or text/html.
    pub content_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    pub document_id: String,
    pub job_id: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SubmitParams {
    /// Answer only when the job ends: 200 with the document, or the job's error.
    #[serde(default)]
    pub wait: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobDto {
    pub id: String,
    pub document_id: String,
    /// queued | running | succeeded | failed
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentDto {
    pub id: String,
    pub title: String,
    pub content_type: String,
    /// SHA-256 of the uploaded bytes.
    pub content_hash: String,
    /// pending | ready | failed
    pub status: String,
    /// Live version (absent until the first successful job).
    pub version: Option<u64>,
    pub chunk_count: u64,
    pub byte_size: u64,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentList {
    pub documents: Vec<DocumentDto>,
    /// Pass as `after` to get the next page.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// 1..=1000, default 100.
    pub limit: Option<usize>,
    /// Return documents with ids after this one.
    pub after: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModeDto {
    #[default]
    Hybrid,
    Dense,
    Bm25,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterDto {
    /// Any of these documents.
    #[serde(default)]
    pub document_ids: Vec<String>,
    /// Any of these MIME types (application/pdf, text/markdown, text/html, text/plain).
    #[serde(default)]
    pub content_types: Vec<String>,
    /// All of these metadata key = value pairs (string, number or boolean values).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FusionMethodDto {
    Rrf,
    Dbsf,
    Convex,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FusionDto {
    /// rrf | dbsf | convex (default from config: rrf).
    pub method: Option<FusionMethodDto>,
    /// RRF constant (default 1: each leg's top ranks weigh most).
    pub rrf_k: Option<f32>,
    pub dense_weight: Option<f32>,
    pub bm25_weight: Option<f32>,
    /// Candidates fetched from each leg before fusion (default 50).
    pub candidates_per_leg: Option<usize>,
    /// Dense leg: weight of each chunk's document opening in its score, 0 to 1 (default 0.5;
    /// 0 scores the chunk alone).
    pub opening_weight: Option<f32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub query: String,
    /// 1..=100, default 10.
    pub top_k: Option<usize>,
    pub mode: Option<ModeDto>,
    pub filter: Option<FilterDto>,
    pub fusion: Option<FusionDto>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryResultDto {
    pub chunk_id: String,
    pub document_id: String,
    pub title: String,
    /// 1-based physical page (PDFs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Enclosing headings, outermost first (Markdown, HTML).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub heading_path: Vec<String>,
    pub text: String,
    /// HTML-escaped text with matched terms in <b>.
    pub snippet: String,
    /// hybrid: the fused score; dense: cosine in document context (see `fusion.opening_weight`);
    /// bm25: the BM25 score.
    pub score: f32,
    pub dense_rank: Option<usize>,
    pub bm25_rank: Option<usize>,
    pub content_type: String,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TimingsDto {
    pub embed: f64,
    pub dense: f64,
    pub bm25: f64,
    pub fuse: f64,
    pub total: f64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    pub results: Vec<QueryResultDto>,
    pub timings_ms: TimingsDto,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    pub status: String,
}

// ---- answers, threads, tenant configuration ----

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorDto {
    /// Quotes the best-supporting sentences of the retrieved chunks; offline, deterministic.
    Extractive,
    /// The tenant's OpenAI-compatible endpoint (see PUT /v1/tenants/{id}/config).
    Openai,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequestDto {
    pub question: String,
    /// Chunks retrieved as context: 1..=100, default 5.
    pub top_k: Option<usize>,
    pub mode: Option<ModeDto>,
    pub filter: Option<FilterDto>,
    /// Continue (or start) this conversation: 1-128 characters of A-Z, a-z, 0-9, '_', '-', '.'.
    pub thread_id: Option<String>,
    /// Default: the tenant's configured default generator (extractive unless set).
    pub generator: Option<GeneratorDto>,
    /// openai only: a model on the tenant's allow-list (default: its default model).
    pub model: Option<String>,
    /// Server-Sent Events instead of one JSON body (also with `Accept: text/event-stream`).
    pub stream: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CitationDto {
    /// The number used by the `[n]` markers in the answer.
    pub n: usize,
    pub chunk_id: String,
    pub document_id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Enclosing headings joined with " > ".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// A sentence of the chunk, verbatim.
    pub quote: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AnswerContextDto {
    /// Retrieved chunks given to the generator.
    pub chunks: usize,
    /// Retrieved chunks left out whole because they did not fit the token budget.
    pub dropped: usize,
    pub tokens: usize,
    pub budget: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AnswerTimingsDto {
    pub retrieve: f64,
    pub generate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_text: Option<f64>,
    pub total: f64,
}

/// The answer; also the `data` of the final `done` event of a stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AnswerResponse {
    /// With `[n]` citation markers; "Not found in this knowledge base." for no_evidence; empty
    /// when generation failed.
    pub answer: String,
    /// Only chunks the answer cites (all retrieved chunks when generation failed).
    pub citations: Vec<CitationDto>,
    /// True only if every claim is covered by a valid citation.
    pub grounded: bool,
    /// Why the answer is not grounded: no_evidence | ungrounded | upstream_error | upstream_timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Set with status 502/504 (generation failed), in the error catalogue's form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The self-contained question retrieval ran (differs from `question` in threads).
    pub standalone_question: String,
    pub generator: GeneratorDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Cosine similarity of the best retrieved chunk (the evidence gate's input).
    pub evidence: Option<f32>,
    pub context: AnswerContextDto,
    pub timings_ms: AnswerTimingsDto,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TurnDto {
    pub question: String,
    pub standalone_question: String,
    pub answer: String,
    pub citations: Vec<CitationDto>,
    pub grounded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ThreadDto {
    pub id: String,
    pub created_at: i64,
    pub turns: Vec<TurnDto>,
}

/// Absent: keep; null: clear; a value: set.
fn tri_state<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfigRequest {
    /// Up to and including /v1, e.g. http://127.0.0.1:8088/v1.
    pub base_url: String,
    pub allowed_models: Vec<String>,
    pub default_model: Option<String>,
    /// Context budget for retrieved chunks, in tokens (default from the server config).
    pub context_tokens: Option<usize>,
    /// Upstream API key: stored encrypted, never returned. Absent keeps the stored key, null
    /// clears it.
    #[serde(default, deserialize_with = "tri_state")]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Option<crate::secrets::Secret>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantConfigRequest {
    /// Default: extractive.
    pub default_generator: Option<GeneratorDto>,
    /// Absent or null: no LLM endpoint (and any stored key is removed).
    pub openai: Option<OpenAiConfigRequest>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OpenAiConfigDto {
    pub base_url: String,
    pub allowed_models: Vec<String>,
    pub default_model: Option<String>,
    pub context_tokens: Option<usize>,
    /// `sha256:` and 16 hex digits of the stored key's hash; null when none is stored.
    pub api_key_fingerprint: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantConfigResponse {
    pub tenant: String,
    pub default_generator: GeneratorDto,
    pub openai: Option<OpenAiConfigDto>,
    pub updated_at: Option<i64>,
}
