//! Wire types (JSON). Engine types never cross the HTTP boundary; handlers convert.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::ToSchema;

/// A metadata value filters match: a string, a number or a boolean.
fn scalar_schema() -> OneOfBuilder {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
}

/// Upload metadata as the server checks it: at most 64 keys of 1-64 characters of A-Z, a-z,
/// 0-9, '_', '-', '.'; each value a scalar, null or a list of at most 64 scalars. (The byte caps
/// are configuration: `ingest.max_metadata_*`.)
fn upload_metadata_schema() -> Schema {
    let list = ArrayBuilder::new()
        .items(scalar_schema())
        .max_items(Some(64));
    let value = scalar_schema()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(list);
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9_.-]{1,64}$")),
        ))
        .max_properties(Some(64))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::OneOf(
            value.build(),
        )))))
        .build()
        .into()
}

/// A document id: 1-256 characters, no control characters, no '%' (`DocId::parse`).
const DOC_ID_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f%]{1,256}$";
/// A model name: 1-200 characters, no control characters (`GeneratorSettings::validate`).
const MODEL_NAME_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,200}$";

fn string_matching(pattern: &str, nullable: bool) -> ObjectBuilder {
    let kind = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(kind)
        .pattern(Some(pattern))
}

const UPLOAD_ID: &str = "Document id; generated when absent. Re-using an id replaces that \
    document. 1-256 characters, no control characters, no '%'.";

fn upload_id_schema() -> Schema {
    string_matching(DOC_ID_PATTERN, false)
        .description(Some(UPLOAD_ID))
        .build()
        .into()
}

fn optional_upload_id_schema() -> Schema {
    string_matching(DOC_ID_PATTERN, true)
        .description(Some(UPLOAD_ID))
        .build()
        .into()
}

fn optional_model_name_schema() -> Schema {
    string_matching(MODEL_NAME_PATTERN, true).build().into()
}

fn doc_ids_schema() -> Schema {
    ArrayBuilder::new()
        .items(string_matching(DOC_ID_PATTERN, false))
        .build()
        .into()
}

fn model_names_schema() -> Schema {
    ArrayBuilder::new()
        .items(string_matching(MODEL_NAME_PATTERN, false))
        .min_items(Some(1))
        .max_items(Some(64))
        .build()
        .into()
}

/// The multipart form of `POST /v1/documents` (for the API document only).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct MultipartDocumentRequest {
    /// The document (PDF, Markdown, HTML or text; the type is detected from its bytes, name and
    /// declared type).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    #[serde(default)]
    #[schema(schema_with = upload_id_schema)]
    pub id: String,
    #[serde(default)]
    pub title: String,
    /// Metadata as a JSON object, sent as JSON text (same rules as the JSON upload's
    /// `metadata`).
    #[serde(default)]
    #[schema(schema_with = upload_metadata_schema)]
    pub metadata: String,
    /// Overrides the type detected from the bytes and the file name (parameters such as
    /// `; charset=utf-8` are ignored).
    #[serde(default)]
    #[schema(schema_with = any_content_type_schema)]
    pub content_type: String,
}

/// The declared content types the server takes (`ContentType::DECLARED`), those of text only
/// (a JSON upload; nullable, absent meaning text/plain) or all (a multipart upload).
fn content_type_schema(text_only: bool) -> Schema {
    use tenantry_ingest::ContentType;
    let mut values: Vec<serde_json::Value> = ContentType::DECLARED
        .iter()
        .filter(|(_, t)| !text_only || *t != ContentType::Pdf)
        .map(|(m, _)| serde_json::json!(m))
        .collect();
    let mut kinds = vec![Type::String];
    if text_only {
        values.push(serde_json::Value::Null);
        kinds.push(Type::Null);
    }
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter(kinds))
        .enum_values(Some(values))
        .build()
        .into()
}

fn text_content_type_schema() -> Schema {
    content_type_schema(true)
}

fn any_content_type_schema() -> Schema {
    content_type_schema(false)
}

/// Filter metadata: key = scalar value.
fn filter_metadata_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::OneOf(
            scalar_schema().build(),
        )))))
        .build()
        .into()
}

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
    /// 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
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
    #[schema(minimum = 0)]
    pub query_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 1000000)]
    pub query_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub ingest_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 1000000)]
    pub ingest_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9223372036854775807_u64)]
    pub max_documents: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9223372036854775807_u64)]
    pub max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9223372036854775807_u64)]
    pub max_chunks: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StoredDto {
    pub documents: u64,
    /// What `max_bytes` is checked against: live documents' footprint in both legs, the
    /// embedding cache, conversation turns and job records.
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
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// First day (UTC, `YYYY-MM-DD`); default 30 days before `to`.
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last day (UTC, `YYYY-MM-DD`); default today.
    #[param(format = Date)]
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

/// Whose credential this is (what the console shows follows it; the API enforces it).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmIResponse {
    /// `admin` (the deployment's operator) or `tenant`.
    pub kind: String,
    /// The credential's tenant (absent for the admin).
    pub tenant: Option<String>,
    pub role: Option<RoleDto>,
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
    #[schema(schema_with = optional_upload_id_schema)]
    pub id: Option<String>,
    pub title: Option<String>,
    /// Not only whitespace.
    #[schema(pattern = r"\S")]
    pub text: String,
    /// text/plain (default), text/markdown or text/html.
    #[schema(schema_with = text_content_type_schema)]
    pub content_type: Option<String>,
    #[schema(schema_with = upload_metadata_schema)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    pub document_id: String,
    pub job_id: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
    /// Runs started so far, counted when each starts: a run that storage ended, or whose
    /// node died, is followed by another, on any node.
    pub attempts: u32,
    /// While running: `parsing` (the sandboxed worker parses and chunks the document),
    /// `embedding`, `indexing` (both legs, then the version commit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Chunks embedded (or found in the tenant's embedding cache) so far.
    pub chunks_done: u64,
    /// Chunks the document makes; known once it is parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// A previous page's `next_before`: jobs submitted before that page's last. A value that
    /// names none of the caller's jobs gives an empty page.
    pub before: Option<String>,
}

/// Jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// A job in the operator's queue view: the job and its tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueJobDto {
    pub tenant: String,
    /// The node running it, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(flatten)]
    pub job: JobDto,
}

/// The whole deployment's ingestion queue (operator only).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueResponse {
    /// Queued and running jobs, oldest first.
    pub unfinished: Vec<QueueJobDto>,
    /// Every tenant's jobs, newest first (finished ones included).
    pub recent: Vec<QueueJobDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Minutes of history, 1..=180, default 60.
    #[param(minimum = 1, maximum = 180)]
    pub minutes: Option<u64>,
}

/// One tenant's requests in one minute on this node.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MinuteDto {
    /// Start of the minute, Unix seconds.
    pub minute: u64,
    pub requests: u64,
    /// 4xx answers other than 429.
    pub client_errors: u64,
    /// 429 answers: the tenant's rate limit or queue refused the request (retry after the
    /// header's delay).
    pub throttled: u64,
    /// 5xx answers, 503 included (draining, load shedding, storage not answering).
    pub server_errors: u64,
    /// Answered `POST /v1/query` requests, and their latency quantiles in ms.
    pub queries: u64,
    /// Each quantile is the upper bound of its histogram bucket (buckets 20% apart), so it
    /// is at most 20% above the exact value, never below (up to 72 s; beyond, it reads 72 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_p95_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_p99_ms: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantStatsDto {
    /// The tenant id; `_other` past `metrics.max_tenant_labels`; empty when
    /// `metrics.per_tenant` is off (every tenant together).
    pub tenant: String,
    /// Minutes with requests, oldest first.
    pub minutes: Vec<MinuteDto>,
}

/// Per-tenant request rates, errors and query latency over the last minutes, from this
/// node's own metrics (each node keeps its own; ask each node in a cluster).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsResponse {
    pub node: String,
    pub minutes: u64,
    pub tenants: Vec<TenantStatsDto>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChunkPageParams {
    /// The first chunk (0-based ordinal in reading order), default 0.
    pub offset: Option<usize>,
    /// 1..=1000, default 200.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentChunkDto {
    pub chunk_id: String,
    /// Position in the document's reading order (0-based).
    pub ordinal: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heading_path: Vec<String>,
    pub text: String,
}

/// A page of a document's live version, chunk by chunk in reading order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentChunks {
    pub document_id: String,
    pub title: String,
    pub content_type: String,
    /// The live version the chunks belong to (absent: none is live).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Chunks of the version in all.
    pub total: usize,
    pub offset: usize,
    pub chunks: Vec<DocumentChunkDto>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportDto {
    /// The file name in `console.reports_dir`.
    pub name: String,
    pub bytes: u64,
    /// Unix seconds.
    pub modified_at: i64,
}

/// Bench and eval reports (`--report FILE.html`) in `console.reports_dir`, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportList {
    pub reports: Vec<ReportDto>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThreadListParams {
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ThreadSummaryDto {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub turns: u32,
    /// The thread's first question, as asked.
    pub first_question: String,
}

/// The caller's threads, most recently updated first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ThreadList {
    pub threads: Vec<ThreadSummaryDto>,
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
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
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
    #[schema(schema_with = doc_ids_schema)]
    pub document_ids: Vec<String>,
    /// Any of these MIME types (application/pdf, text/markdown, text/html, text/plain).
    #[serde(default)]
    pub content_types: Vec<String>,
    /// All of these metadata key = value pairs (string, number or boolean values).
    #[serde(default)]
    #[schema(schema_with = filter_metadata_schema)]
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
    #[schema(exclusive_minimum = 0)]
    pub rrf_k: Option<f64>,
    #[schema(minimum = 0)]
    pub dense_weight: Option<f64>,
    #[schema(minimum = 0)]
    pub bm25_weight: Option<f64>,
    /// Candidates fetched from each leg before fusion (default 50).
    #[schema(minimum = 1, maximum = 1000)]
    pub candidates_per_leg: Option<usize>,
    /// Dense leg: weight of each chunk's document opening in its score, 0 to 1 (default 0.5;
    /// 0 scores the chunk alone).
    #[schema(minimum = 0, maximum = 1)]
    pub opening_weight: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// At most 4096 characters, not only whitespace.
    #[schema(min_length = 1, max_length = 4096, pattern = r"\S")]
    pub query: String,
    /// 1..=100, default 10.
    #[schema(minimum = 1, maximum = 100)]
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
    /// At most 4096 characters, not only whitespace.
    #[schema(min_length = 1, max_length = 4096, pattern = r"\S")]
    pub question: String,
    /// Chunks retrieved as context: 1..=100, default 5.
    #[schema(minimum = 1, maximum = 100)]
    pub top_k: Option<usize>,
    pub mode: Option<ModeDto>,
    pub filter: Option<FilterDto>,
    /// Continue (or start) this conversation: 1-128 characters of A-Z, a-z, 0-9, '_', '-', '.'.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,128}$")]
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
    /// Up to and including /v1, e.g. http://127.0.0.1:8088/v1: http or https, a host name or
    /// an IPv4 address, an optional port and path; no user info, query or fragment. (The server
    /// also takes bracketed IPv6 literals.)
    #[schema(
        max_length = 2048,
        pattern = r"^https?://(([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*|((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9]))(:[0-9]{1,4})?(/[A-Za-z0-9_~-]+)*/?$"
    )]
    pub base_url: String,
    /// 1-64 model names of 1-200 characters (the default model is allowed too).
    #[schema(schema_with = model_names_schema)]
    pub allowed_models: Vec<String>,
    #[schema(schema_with = optional_model_name_schema)]
    pub default_model: Option<String>,
    /// Context budget for retrieved chunks, in tokens (default from the server config).
    #[schema(minimum = 256, maximum = 1000000)]
    pub context_tokens: Option<usize>,
    /// Upstream API key: stored encrypted, never returned. Absent keeps the stored key, null
    /// clears it.
    #[serde(default, deserialize_with = "tri_state")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 4096)]
    pub api_key: Option<Option<crate::secrets::Secret>>,
}

/// One Server-Sent Event of a streamed answer (`stream: true`), as the API document states it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AnswerStreamEvent {
    pub event: AnswerEventKind,
    /// JSON: `{"text"}` for `text`, the whole `AnswerResponse` for `done`, an `ErrorResponse`
    /// for `error`.
    pub data: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum AnswerEventKind {
    Text,
    Done,
    Error,
}

#[derive(Deserialize)]
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

/// Written by hand: the rule "an `openai` default needs an `openai` section" is part of the
/// document, as a `oneOf` of the two shapes the server takes.
impl utoipa::PartialSchema for TenantConfigRequest {
    fn schema() -> RefOr<Schema> {
        let openai = || RefOr::Ref(Ref::from_schema_name("OpenAiConfigRequest"));
        let extractive = ObjectBuilder::new()
            .property(
                "default_generator",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .enum_values(Some([
                        serde_json::json!("extractive"),
                        serde_json::Value::Null,
                    ]))
                    .description(Some("Default: extractive.")),
            )
            .property(
                "openai",
                OneOfBuilder::new()
                    .item(openai())
                    .item(ObjectBuilder::new().schema_type(Type::Null)),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let llm = ObjectBuilder::new()
            .property(
                "default_generator",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["openai"])),
            )
            .required("default_generator")
            .property("openai", openai())
            .required("openai")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        OneOfBuilder::new()
            .item(extractive)
            .item(llm)
            .description(Some(
                "The tenant's generators. Absent or null `openai`: no LLM endpoint (and any \
                 stored key is removed); `default_generator: openai` needs an `openai` section.",
            ))
            .into()
    }
}

impl ToSchema for TenantConfigRequest {}
