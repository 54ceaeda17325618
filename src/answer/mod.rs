//! Grounded answers: retrieval, an evidence gate, context packing, a generator, and grounding
//! checks on whatever the generator wrote. Knows nothing of HTTP; the API layer turns an
//! [`Answer`] into JSON or a Server-Sent Events stream.
pub mod extractive;
pub mod grounding;
pub mod openai;
pub mod settings;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::extractive::{content_terms, overlap, sentences, Extractive};
use self::grounding::MarkerFilter;
use self::openai::OpenAi;
use crate::domain::ChunkFilter;
use crate::domain::{FusionOverrides, Mode};
use crate::domain::{TenantCtx, ThreadId};
use crate::egress;
use crate::engine::Engine;
use crate::error::{InternalError, Result, UserError};
use crate::query::{Hit, Query};
use crate::runtime::blocking;
use crate::storage::catalog::{ThreadSummary, TurnRecord};
use crate::usage::Metric;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the answer says when the knowledge base holds no sufficient evidence.
pub const NOT_FOUND_TEXT: &str = "Not found in this knowledge base.";

/// Share of the question's content words the best retrieved chunk must contain for the
/// lexical route through the evidence gate (see `config/default.toml`, `min_evidence_with_terms`).
const EVIDENCE_TERM_COVERAGE: f32 = 0.75;

/// Token counts of other models' tokenizers differ from the embedding model's, which is what
/// we can count with: packing leaves this share of the budget unused.
const TOKEN_MARGIN: f32 = 0.10;

/// One retrieved chunk handed to a generator, numbered the way the answer cites it.
#[derive(Debug, Clone)]
pub struct ContextChunk {
    pub n: usize,
    pub title: String,
    pub page: Option<u32>,
    pub heading: Option<String>,
    pub text: String,
    /// Index into the retrieved hits.
    pub chunk_index: usize,
}

#[derive(Debug, Clone)]
pub struct GenerationInput {
    /// The self-contained question retrieval ran.
    pub question: String,
    pub question_vector: Vec<f32>,
    pub context: Vec<ContextChunk>,
}

/// A generator's raw output. `quotes` are `(n, sentence, score)` when the generator knows what
/// it quoted (extractive); the engine finds quotes for the others.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub text: String,
    pub quotes: Vec<(usize, String, f32)>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GenerationError {
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("upstream timeout: {0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

/// The seam between retrieval and an answer's text (extractive vs an LLM).
///
/// Contract: write an answer to `input.question` from `input.context` only, marking what each
/// sentence relies on with `[n]` (the chunk's `n`); send text to `emit` as it is produced, each
/// piece once and in order, and return the whole text. A generator may also return exactly
/// `NOT_FOUND` when the context does not answer. Nothing a generator writes is trusted: the
/// engine removes markers that point at nothing and decides whether the answer is grounded.
/// Dropping the future cancels the generation (and any upstream request).
pub trait Generator: Send + Sync {
    fn generate<'a>(
        &'a self,
        input: &'a GenerationInput,
        emit: &'a mut (dyn FnMut(&str) + Send),
    ) -> BoxFuture<'a, Result<Generated, GenerationError>>;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    #[default]
    Extractive,
    Openai,
}

impl GeneratorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Extractive => "extractive",
            Self::Openai => "openai",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AnswerRequest {
    pub question: String,
    pub top_k: Option<usize>,
    pub mode: Mode,
    pub filter: ChunkFilter,
    pub thread: Option<ThreadId>,
    pub generator: Option<GeneratorKind>,
    pub model: Option<String>,
}

/// Why an answer is not grounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerCode {
    /// Retrieval found nothing close enough to the question (or the LLM said so).
    NoEvidence,
    /// The generator wrote claims without valid citations.
    Ungrounded,
    /// The generator failed; the retrieved citations are still returned.
    UpstreamError,
    UpstreamTimeout,
}

impl AnswerCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoEvidence => "no_evidence",
            Self::Ungrounded => "ungrounded",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::NoEvidence,
            Self::Ungrounded,
            Self::UpstreamError,
            Self::UpstreamTimeout,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// A citation as answers and threads store it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    pub n: usize,
    pub chunk_id: String,
    pub document_id: String,
    pub title: String,
    pub page: Option<u32>,
    pub heading: Option<String>,
    /// A sentence of the chunk, verbatim.
    pub quote: String,
}

#[derive(Debug, Clone, Default)]
pub struct ContextStats {
    pub chunks: usize,
    /// Retrieved chunks left out whole because they did not fit the budget.
    pub dropped: usize,
    pub tokens: usize,
    pub budget: usize,
}

#[derive(Debug, Clone, Default)]
pub struct AnswerTimings {
    pub retrieve_ms: f64,
    pub generate_ms: f64,
    pub first_text_ms: Option<f64>,
    pub total_ms: f64,
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub citations: Vec<Citation>,
    pub grounded: bool,
    pub code: Option<AnswerCode>,
    pub thread: Option<ThreadId>,
    pub standalone_question: String,
    pub generator: GeneratorKind,
    pub model: Option<String>,
    pub evidence: Option<f32>,
    pub context: ContextStats,
    pub timings: AnswerTimings,
}

/// One turn of a thread, as `GET /v1/threads/{id}` shows it.
#[derive(Debug, Clone)]
pub struct Turn {
    pub question: String,
    pub standalone_question: String,
    pub answer: String,
    pub citations: Vec<Citation>,
    pub grounded: bool,
    pub code: Option<AnswerCode>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Thread {
    pub id: ThreadId,
    pub created_at: i64,
    pub turns: Vec<Turn>,
}

enum Resolved {
    Extractive,
    OpenAi(Box<OpenAi>),
}

/// Retrieval done, generation not started: everything that can fail with a client error has
/// been checked, so a stream can start.
pub struct PreparedAnswer {
    engine: Arc<Engine>,
    ctx: TenantCtx,
    question: String,
    standalone: String,
    thread: Option<ThreadId>,
    hits: Vec<Hit>,
    input: GenerationInput,
    evidence: Option<f32>,
    enough_evidence: bool,
    kind: GeneratorKind,
    generator: Resolved,
    model: Option<String>,
    stats: ContextStats,
    started: Instant,
    retrieve_ms: f64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Words that point back into a conversation ("and what about *it*?").
const REFERRING: &[&str] = &[
    "it", "its", "this", "that", "these", "those", "they", "them", "their", "there", "he", "she",
    "him", "her", "his", "one", "ones", "same", "also", "else", "above", "former", "latter",
];

/// The deterministic follow-up rewrite (used when no LLM is configured, or it fails): a question
/// that refers back, or names at most two things, is asked together with the previous
/// self-contained question, so retrieval sees what "it" was.
pub fn standalone_fallback(question: &str, previous: Option<&str>) -> String {
    let Some(prev) = previous else {
        return question.to_string();
    };
    let refers = question
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .any(|w| REFERRING.contains(&w.to_lowercase().as_str()));
    if !refers && content_terms(question).len() > 2 {
        return question.to_string();
    }
    let budget = crate::domain::MAX_QUERY_CHARS.saturating_sub(question.chars().count() + 1);
    let prev: String = {
        let chars: Vec<char> = prev.chars().collect();
        chars[chars.len().saturating_sub(budget)..].iter().collect()
    };
    format!("{prev} {question}")
}

impl Engine {
    /// Validate, resolve the generator, make the question self-contained, retrieve and pack the
    /// context. Client errors surface here, before any answer text exists.
    pub async fn prepare_answer(
        self: &Arc<Self>,
        ctx: &TenantCtx,
        req: AnswerRequest,
        stream: bool,
    ) -> Result<PreparedAnswer> {
        let started = Instant::now();
        let cfg = &self.config.answer;
        let top_k = req.top_k.unwrap_or(cfg.top_k);
        if req.model.is_some() && req.generator == Some(GeneratorKind::Extractive) {
            return Err(
                UserError::Invalid("model applies to the openai generator only".into()).into(),
            );
        }
        let me = self.clone();
        let (c, thread) = (ctx.clone(), req.thread.clone());
        let turns = cfg.thread_turns;
        let requested = req.generator;
        let (view, kind, history, key) = blocking(move || {
            let view = me.config_view(c.tenant())?;
            let history = match &thread {
                Some(t) => {
                    // A thread belongs to the key or token that started it; to anyone else in
                    // the tenant it does not exist (its questions would leak through the
                    // follow-up rewrite otherwise).
                    let owner = me.catalog.thread_owner(c.tenant(), t.as_str())?;
                    if owner.is_some_and(|o| o != c.subject()) {
                        return Err(UserError::NotFound("thread").into());
                    }
                    // Stored turns count towards the byte quota; a tenant at it gets answers
                    // without a thread, not a thread that grows past it.
                    if let Some(max) = me.governor.load_limits(c.tenant())?.quota().max_bytes {
                        if me.catalog.at_byte_quota(c.tenant(), max)? {
                            return Err(UserError::QuotaExceeded {
                                what: "bytes",
                                limit: max,
                            }
                            .into());
                        }
                    }
                    me.catalog
                        .thread(c.tenant(), c.subject(), t.as_str(), Some(turns))?
                        .map(|(_, turns)| turns)
                        .unwrap_or_default()
                }
                None => Vec::new(),
            };
            // Only an LLM answer needs the key: a master-key problem must not break the others.
            let kind = requested.unwrap_or(view.settings.default_generator);
            let key = match kind {
                GeneratorKind::Openai => me.upstream_key(c.tenant())?,
                GeneratorKind::Extractive => None,
            };
            Ok((view, kind, history, key))
        })
        .await?;
        let (generator, model, budget) = match kind {
            GeneratorKind::Extractive => (Resolved::Extractive, None, cfg.context_tokens),
            GeneratorKind::Openai => {
                let o = view
                    .settings
                    .openai
                    .as_ref()
                    .ok_or(UserError::GeneratorNotConfigured)?;
                let model = req
                    .model
                    .clone()
                    .or_else(|| o.default_model.clone())
                    .or_else(|| o.allowed_models.first().cloned())
                    .ok_or(UserError::GeneratorNotConfigured)?;
                if !o.allows(&model) {
                    return Err(UserError::ModelNotAllowed(model).into());
                }
                // A tenant_admin's URL goes out only to public addresses, checked again now
                // (the name may resolve elsewhere than when it was set).
                let trusted = o.set_by_admin
                    || egress::allow_listed_str(&o.base_url, &self.config.answer.allowed_base_urls);
                if !trusted && !egress::literal_is_public(&o.base_url) {
                    return Err(UserError::Forbidden(
                        "this tenant's openai.base_url is not a public address".into(),
                    )
                    .into());
                }
                let client = OpenAi {
                    http: if trusted {
                        self.http.clone()
                    } else {
                        self.http_public.clone()
                    },
                    base_url: o.base_url.clone(),
                    model: model.clone(),
                    api_key: key,
                    max_tokens: cfg.max_answer_tokens,
                    timeout: Duration::from_secs(cfg.timeout_secs),
                    idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
                    retries: cfg.retries,
                    stream,
                    max_response_bytes: cfg.max_response_bytes,
                };
                let budget = o.context_tokens.unwrap_or(cfg.context_tokens);
                (Resolved::OpenAi(Box::new(client)), Some(model), budget)
            }
        };

        let previous: Vec<String> = history.iter().map(|t| t.standalone.clone()).collect();
        let fallback = || standalone_fallback(&req.question, previous.last().map(String::as_str));
        let standalone = match &generator {
            Resolved::OpenAi(o) if !previous.is_empty() => {
                match o.rewrite(&previous, &req.question).await {
                    Ok(q) => q,
                    Err(e) => {
                        tracing::warn!(tenant = %ctx.tenant(), error = %e, "follow-up rewrite failed; using the deterministic one");
                        fallback()
                    }
                }
            }
            // With no history the fallback is the question itself.
            _ => fallback(),
        };

        // BM25-only answers still need the dense leg's cosine for the evidence gate: the dense
        // leg runs with weight 0, which leaves the BM25 order unchanged.
        let (mode, fusion) = match req.mode {
            Mode::Bm25 => (
                Mode::Hybrid,
                FusionOverrides {
                    method: Some(crate::domain::FusionMethod::Rrf),
                    dense_weight: Some(0.0),
                    bm25_weight: Some(1.0),
                    ..Default::default()
                },
            ),
            m => (m, FusionOverrides::default()),
        };
        let out = self
            .query(
                ctx,
                Query {
                    text: standalone.clone(),
                    top_k,
                    mode,
                    filter: req.filter,
                    fusion,
                },
            )
            .await?;
        let evidence = out.best_dense;
        // Two routes through the gate: a close dense match, or a weaker one whose chunk contains
        // (nearly) every content word of the question. The second rescues chunks that cover
        // several topics (meeting notes, long sections), whose cosine is diluted.
        let terms = content_terms(&standalone);
        let coverage = out
            .hits
            .iter()
            .map(|h| {
                let heading = h.chunk.heading_path.join(" ");
                overlap(
                    &terms,
                    &format!("{} {heading} {}", h.chunk.title, h.chunk.text),
                )
            })
            .fold(0.0f32, f32::max);
        let enough_evidence = !out.hits.is_empty()
            && evidence.is_some_and(|e| {
                e >= cfg.min_evidence
                    || (e >= cfg.min_evidence_with_terms && coverage >= EVIDENCE_TERM_COVERAGE)
            });

        let overhead =
            self.count_tokens(openai::SYSTEM_PROMPT) + self.count_tokens(&standalone) + 64;
        let (context, stats) = self.pack(&out.hits, budget, overhead);
        Ok(PreparedAnswer {
            engine: self.clone(),
            ctx: ctx.clone(),
            question: req.question,
            standalone: standalone.clone(),
            thread: req.thread,
            input: GenerationInput {
                question: standalone,
                question_vector: out.query_vector.unwrap_or_default(),
                context,
            },
            hits: out.hits,
            evidence,
            enough_evidence,
            kind,
            generator,
            model,
            stats,
            started,
            retrieve_ms: ms(started),
        })
    }

    /// Whole chunks in rank order while they fit the budget; a chunk that does not fit is
    /// left out entirely (and counted), never cut.
    fn pack(
        &self,
        hits: &[Hit],
        budget: usize,
        overhead: usize,
    ) -> (Vec<ContextChunk>, ContextStats) {
        let usable = ((budget as f32) * (1.0 - TOKEN_MARGIN)) as usize;
        let mut stats = ContextStats {
            budget,
            tokens: overhead,
            ..Default::default()
        };
        let mut out = Vec::new();
        for (i, h) in hits.iter().enumerate() {
            // Tag, title and attributes cost tokens too.
            let cost = self.count_tokens(&h.chunk.text) + self.count_tokens(&h.chunk.title) + 16;
            if stats.tokens + cost > usable {
                stats.dropped += 1;
                continue;
            }
            stats.tokens += cost;
            out.push(ContextChunk {
                n: out.len() + 1,
                title: h.chunk.title.clone(),
                page: h.chunk.page,
                heading: (!h.chunk.heading_path.is_empty())
                    .then(|| h.chunk.heading_path.join(" > ")),
                text: h.chunk.text.clone(),
                chunk_index: i,
            });
        }
        stats.chunks = out.len();
        (out, stats)
    }

    /// The caller's own threads (a thread belongs to the key or token subject that began it).
    pub async fn threads(
        self: &Arc<Self>,
        ctx: &TenantCtx,
        limit: usize,
    ) -> Result<Vec<ThreadSummary>> {
        let (me, c) = (self.clone(), ctx.clone());
        blocking(move || me.catalog.threads(c.tenant(), c.subject(), limit)).await
    }

    /// A tenant's thread, oldest turn first.
    pub async fn thread(self: &Arc<Self>, ctx: &TenantCtx, id: ThreadId) -> Result<Thread> {
        let (me, c) = (self.clone(), ctx.clone());
        blocking(move || {
            let (created_at, turns) = me
                .catalog
                .thread(c.tenant(), c.subject(), id.as_str(), None)?
                .ok_or(UserError::NotFound("thread"))?;
            let turns = turns
                .into_iter()
                .map(|t| {
                    Ok(Turn {
                        citations: serde_json::from_str(&t.citations)
                            .map_err(|e| InternalError::Other(format!("stored citations: {e}")))?,
                        code: t.code.as_deref().and_then(AnswerCode::parse),
                        question: t.question,
                        standalone_question: t.standalone,
                        answer: t.answer,
                        grounded: t.grounded,
                        created_at: t.created_at,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Thread {
                id,
                created_at,
                turns,
            })
        })
        .await
    }

    pub async fn delete_thread(self: &Arc<Self>, ctx: &TenantCtx, id: ThreadId) -> Result<()> {
        let (me, c) = (self.clone(), ctx.clone());
        blocking(move || {
            if me
                .catalog
                .delete_thread(c.tenant(), c.subject(), id.as_str())?
            {
                Ok(())
            } else {
                Err(UserError::NotFound("thread").into())
            }
        })
        .await
    }
}

impl PreparedAnswer {
    pub fn generator(&self) -> GeneratorKind {
        self.kind
    }

    /// Generate, enforce grounding, and record the turn in the thread. `emit` receives the
    /// answer's text as it is produced, already cleaned: the pieces add up to `Answer::text`.
    pub async fn run(self, emit: &mut (dyn FnMut(&str) + Send)) -> Result<Answer> {
        let gen_started = Instant::now();
        let mut first_text: Option<f64> = None;
        let mut emitted = String::new();
        let mut send = |piece: &str, emitted: &mut String| {
            if !piece.is_empty() {
                first_text.get_or_insert_with(|| ms(self.started));
                emitted.push_str(piece);
                emit(piece);
            }
        };

        let (text, citations, code) = if !self.enough_evidence || self.input.context.is_empty() {
            send(NOT_FOUND_TEXT, &mut emitted);
            (
                NOT_FOUND_TEXT.to_string(),
                Vec::new(),
                Some(AnswerCode::NoEvidence),
            )
        } else {
            let n = self.input.context.len();
            let mut filter = MarkerFilter::new(n);
            // The extractive generator cites every sentence itself; LLM output is checked.
            let mut attributor = match self.generator {
                Resolved::OpenAi(_) => Some(grounding::Attributor::new(
                    self.input
                        .context
                        .iter()
                        .map(|c| {
                            let heading = c.heading.as_deref().unwrap_or("");
                            (
                                c.n,
                                content_terms(&format!("{} {heading} {}", c.title, c.text)),
                            )
                        })
                        .collect(),
                )),
                Resolved::Extractive => None,
            };
            let result = {
                let mut sink = |p: &str| {
                    let mut out = filter.push(p);
                    if let Some(a) = attributor.as_mut() {
                        out = a.push(&out);
                    }
                    send(&out, &mut emitted);
                };
                match &self.generator {
                    Resolved::Extractive => {
                        let g = Extractive {
                            retriever: self.engine.retriever.clone(),
                            ctx: self.ctx.clone(),
                        };
                        g.generate(&self.input, &mut sink).await
                    }
                    Resolved::OpenAi(o) => o.generate(&self.input, &mut sink).await,
                }
            };
            match result {
                Ok(generated) => {
                    let mut tail = filter.finish();
                    if let Some(a) = attributor.as_mut() {
                        tail = a.push(&tail);
                        tail.push_str(&a.finish());
                    }
                    send(&tail, &mut emitted);
                    if filter.is_not_found() {
                        send(NOT_FOUND_TEXT, &mut emitted);
                        (
                            NOT_FOUND_TEXT.to_string(),
                            Vec::new(),
                            Some(AnswerCode::NoEvidence),
                        )
                    } else {
                        let text = emitted.clone();
                        let (citations, uncited) = self.citations(&text, &generated);
                        let code =
                            (citations.is_empty() || uncited > 0).then_some(AnswerCode::Ungrounded);
                        (text, citations, code)
                    }
                }
                Err(e) => {
                    let code = match &e {
                        GenerationError::Timeout(_) => AnswerCode::UpstreamTimeout,
                        GenerationError::Upstream(_) => AnswerCode::UpstreamError,
                        GenerationError::Internal(m) => {
                            return Err(InternalError::Other(m.clone()).into())
                        }
                    };
                    // Details go to the log only: they may name the upstream host.
                    tracing::warn!(tenant = %self.ctx.tenant(), error = %e, "answer generation failed");
                    (String::new(), self.retrieved_citations(), Some(code))
                }
            }
        };
        let generate_ms = ms(gen_started);
        let grounded = code.is_none();
        let meter = &self.engine.governor.meter;
        meter.add(self.ctx.tenant(), Metric::Answers, 1);
        if matches!(self.generator, Resolved::OpenAi(_)) && !emitted.is_empty() {
            // The prompt was counted when it was packed; only the completion is new.
            let (e, answer) = (self.engine.clone(), emitted.clone());
            let completion = blocking(move || Ok(e.count_tokens(&answer))).await?;
            let tokens = self.stats.tokens + completion;
            meter.add(self.ctx.tenant(), Metric::GeneratorTokens, tokens as u64);
        }
        if let Some(thread) = &self.thread {
            let turn = TurnRecord {
                seq: 0,
                question: self.question.clone(),
                standalone: self.standalone.clone(),
                answer: text.clone(),
                citations: serde_json::to_string(&citations)
                    .map_err(|e| InternalError::Other(e.to_string()))?,
                grounded,
                code: code.map(|c| c.as_str().to_string()),
                created_at: 0,
            };
            let (e, c, t) = (self.engine.clone(), self.ctx.clone(), thread.clone());
            blocking(move || {
                e.catalog
                    .append_turn(c.tenant(), c.subject(), t.as_str(), &turn)?
                    .ok_or_else(|| UserError::NotFound("thread").into())
            })
            .await?;
        }
        Ok(Answer {
            text,
            citations,
            grounded,
            code,
            thread: self.thread,
            standalone_question: self.standalone,
            generator: self.kind,
            model: self.model,
            evidence: self.evidence,
            context: self.stats,
            timings: AnswerTimings {
                retrieve_ms: self.retrieve_ms,
                generate_ms,
                first_text_ms: first_text,
                total_ms: ms(self.started),
            },
        })
    }

    fn citation(&self, n: usize, quote: String) -> Citation {
        let c = &self.input.context[n - 1];
        let chunk = &self.hits[c.chunk_index].chunk;
        Citation {
            n,
            chunk_id: chunk.chunk_id(),
            document_id: chunk.doc_id.to_string(),
            title: chunk.title.clone(),
            page: chunk.page,
            heading: c.heading.clone(),
            quote,
        }
    }

    /// The chunk sentence that shares most content words with `text` (the first on ties).
    fn best_sentence(&self, n: usize, text: &str) -> String {
        let terms = content_terms(text);
        let chunk = &self.input.context[n - 1].text;
        let mut best: Option<(f32, &str)> = None;
        for (_, s) in sentences(chunk) {
            let score = overlap(&terms, s);
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, s));
            }
        }
        best.map(|(_, s)| s.to_string()).unwrap_or_default()
    }

    /// Citations of the (cleaned) answer, sorted by number, and how many claims cite nothing.
    fn citations(&self, text: &str, generated: &Generated) -> (Vec<Citation>, usize) {
        let covered = grounding::coverage(text);
        // An answer that states nothing counts as one uncited claim: it is not grounded.
        let uncited =
            grounding::uncited_claims(&covered) + usize::from(!grounding::has_claims(&covered));
        let cited: BTreeSet<usize> = grounding::markers(text).into_iter().collect();
        // The answer sentences that rely on each chunk: what its quote should support.
        let mut support: BTreeMap<usize, String> = BTreeMap::new();
        for s in &covered {
            for n in &s.cited {
                let e = support.entry(*n).or_default();
                e.push(' ');
                e.push_str(&s.text);
            }
        }
        let citations = cited
            .into_iter()
            .map(|n| {
                let quote = generated
                    .quotes
                    .iter()
                    .filter(|(q, _, _)| *q == n)
                    .max_by(|a, b| a.2.total_cmp(&b.2))
                    .map(|(_, s, _)| s.clone())
                    .unwrap_or_else(|| {
                        self.best_sentence(n, support.get(&n).map(String::as_str).unwrap_or(""))
                    });
                self.citation(n, quote)
            })
            .collect();
        (citations, uncited)
    }

    /// Every context chunk as a citation, quoting its sentence closest to the question: what a
    /// failed generation still returns.
    fn retrieved_citations(&self) -> Vec<Citation> {
        (1..=self.input.context.len())
            .map(|n| self.citation(n, self.best_sentence(n, &self.input.question)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_ups_take_the_previous_question_along() {
        let prev = Some("How do I install the Linux kernel?");
        assert_eq!(
            standalone_fallback("And how do I remove it?", prev),
            "How do I install the Linux kernel? And how do I remove it?"
        );
        assert_eq!(
            standalone_fallback("What is the default PostgreSQL port number?", prev),
            "What is the default PostgreSQL port number?"
        );
        assert_eq!(standalone_fallback("Why?", None), "Why?");
    }
}
