//! Tenant export and import. The archive is NDJSON (one JSON object per line, UTF-8), in order:
//!
//! 1. `{"kind":"tenantry-export","version":1,"tenant","model","dim","exported_at"}`
//! 2. `{"kind":"config","settings":{...}}`: generator settings, never the upstream API key
//! 3. per live document: `{"kind":"document","id","title","content_type","content_hash",
//!    "metadata","byte_size","chunks"}` followed by its `chunks` lines
//!    `{"kind":"chunk","ordinal","text","page","heading_path","start","end","vector":[f32...]}`
//! 4. `{"kind":"end","documents","chunks"}`: without it the archive is truncated.
//!
//! Vectors are carried, so an import embeds nothing and scores exactly as the source did; it is
//! refused when the target's embedding model differs. Each document is imported atomically
//! (the same version commit as ingestion) and counts against the target tenant's quotas.
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::domain::{DocId, TenantCtx};
use crate::domain::{Footprint, StoredChunk};
use crate::engine::Engine;
use crate::error::{EngineError, InternalError, Result, UserError};
use crate::storage::catalog::{
    CommitOutcome, DocumentRecord, JobRecord, KeyUpdate, NewUpload, Payload, QueueCaps,
    UploadOutcome,
};
use crate::storage::lexical::LexicalStore;
use crate::storage::vector::VectorStore;

pub const FORMAT_VERSION: u32 = 1;

type Points = Vec<(StoredChunk, Vec<f32>)>;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    #[serde(rename = "tenantry-export")]
    Header {
        version: u32,
        tenant: String,
        model: String,
        dim: usize,
        exported_at: i64,
    },
    Config {
        settings: serde_json::Value,
    },
    Document {
        id: String,
        title: String,
        content_type: String,
        content_hash: String,
        metadata: serde_json::Map<String, serde_json::Value>,
        byte_size: u64,
        chunks: usize,
    },
    Chunk {
        ordinal: u32,
        text: String,
        page: Option<u32>,
        heading_path: Vec<String>,
        start: u64,
        end: u64,
        vector: Vec<f32>,
    },
    End {
        documents: usize,
        chunks: usize,
    },
}

/// What `migrate_legs` copied.
#[derive(Debug, Default, Clone, Copy)]
pub struct MigrationSummary {
    pub tenants: u64,
    /// Tenants a previous run had already copied.
    pub skipped_tenants: u64,
    pub documents: u64,
    pub chunks: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub documents: usize,
    pub chunks: usize,
    /// Import only: documents already present with the same content.
    pub unchanged: usize,
}

fn write_line(out: &mut dyn Write, line: &Line) -> Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(|e| InternalError::Other(e.to_string()))?;
    out.write_all(b"\n")?;
    Ok(())
}

fn bad(msg: impl Into<String>) -> EngineError {
    UserError::Invalid(format!("archive: {}", msg.into())).into()
}

impl Engine {
    /// Write the tenant's archive to `out`. Blocking. A write error (client gone) stops it.
    /// Copy every tenant's live versions from this engine's legs into other legs (a Qdrant
    /// cluster), chunk by chunk as `export_tenant` reads them, keeping the catalog (tenants,
    /// keys, documents, versions) as it is: `tenantry migrate --to qdrant`. Idempotent (point
    /// ids are deterministic, so a rerun overwrites what an interrupted run wrote) and resumable:
    /// a tenant is recorded in `progress` once all of it is copied, and skipped by later runs.
    pub fn migrate_legs(
        &self,
        vectors: &dyn VectorStore,
        lexical: &dyn LexicalStore,
        progress: &std::path::Path,
    ) -> Result<MigrationSummary> {
        let done: std::collections::HashSet<String> = std::fs::read_to_string(progress)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let mut summary = MigrationSummary::default();
        for (tenant, _, _) in self.catalog.list_tenants()? {
            if done.contains(tenant.as_str()) {
                summary.skipped_tenants += 1;
                continue;
            }
            let ctx = TenantCtx::operator(tenant.clone());
            self.each_live_version(&ctx, |d, version, mut points| {
                for (c, _) in &mut points {
                    // The legs keep per-document fields once, in the catalog; the target needs
                    // them to build its filter terms and BM25 weights.
                    c.title.clone_from(&d.title);
                    c.metadata.clone_from(&d.metadata);
                }
                let chunks: Vec<StoredChunk> = points.iter().map(|(c, _)| c.clone()).collect();
                vectors.delete_versions(&ctx, &d.id, version..version + 1)?;
                vectors.upsert(&ctx, &points)?;
                lexical.add(&ctx, &chunks)?;
                summary.documents += 1;
                summary.chunks += chunks.len() as u64;
                Ok(())
            })?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(progress)?;
            writeln!(f, "{tenant}")?;
            f.sync_all()?;
            summary.tenants += 1;
        }
        Ok(summary)
    }

    /// Every document of the tenant with a live version, in id order, with that version's
    /// chunks and vectors as the dense leg holds them: what an export writes and a migration
    /// copies.
    fn each_live_version(
        &self,
        ctx: &TenantCtx,
        mut f: impl FnMut(DocumentRecord, u64, Vec<(StoredChunk, Vec<f32>)>) -> Result<()>,
    ) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            let page = self
                .catalog
                .documents(ctx.tenant(), 200, after.as_deref())?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.id.to_string());
            for d in page {
                let Some(version) = d.live_version else {
                    continue;
                };
                let chunks = self.vectors.chunks(ctx, &d.id, version)?;
                f(d, version, chunks)?;
            }
        }
    }

    pub fn export_tenant(&self, ctx: &TenantCtx, out: &mut dyn Write) -> Result<ArchiveSummary> {
        let tenant = ctx.tenant();
        if !self.catalog.tenant_exists(tenant)? {
            return Err(UserError::NotFound("tenant").into());
        }
        write_line(
            out,
            &Line::Header {
                version: FORMAT_VERSION,
                tenant: tenant.to_string(),
                model: self.embedder.model_id().to_string(),
                dim: self.embedder.dim(),
                exported_at: crate::domain::now(),
            },
        )?;
        if let Some(c) = self.catalog.tenant_config(tenant)? {
            let settings = serde_json::from_str(&c.settings)
                .map_err(|e| InternalError::Other(format!("stored settings: {e}")))?;
            write_line(out, &Line::Config { settings })?;
        }
        let mut summary = ArchiveSummary::default();
        self.each_live_version(ctx, |d, _, chunks| {
            write_line(
                out,
                &Line::Document {
                    id: d.id.to_string(),
                    title: d.title,
                    content_type: d.content_type,
                    content_hash: d.content_hash,
                    metadata: d.metadata,
                    byte_size: d.byte_size,
                    chunks: chunks.len(),
                },
            )?;
            for (c, vector) in chunks {
                write_line(
                    out,
                    &Line::Chunk {
                        ordinal: c.ordinal,
                        text: c.text,
                        page: c.page,
                        heading_path: c.heading_path,
                        start: c.start,
                        end: c.end,
                        vector,
                    },
                )?;
                summary.chunks += 1;
            }
            summary.documents += 1;
            Ok(())
        })?;
        write_line(
            out,
            &Line::End {
                documents: summary.documents,
                chunks: summary.chunks,
            },
        )?;
        out.flush()?;
        Ok(summary)
    }

    /// Restore an archive into the tenant (which must exist). Blocking. Documents are committed
    /// one by one; on an error, those before it stay imported and a re-run skips them.
    pub fn import_tenant(
        &self,
        ctx: &TenantCtx,
        input: &mut dyn BufRead,
    ) -> Result<ArchiveSummary> {
        let tenant = ctx.tenant();
        if !self.catalog.tenant_exists(tenant)? {
            return Err(UserError::NotFound("tenant").into());
        }
        let limits = self.governor.load_limits(tenant)?;
        let mut lines = input.lines().enumerate().map(|(i, l)| {
            let l = l.map_err(EngineError::from)?;
            serde_json::from_str::<Line>(&l).map_err(|e| bad(format!("line {}: {e}", i + 1)))
        });
        match lines.next().transpose()? {
            Some(Line::Header {
                version,
                model,
                dim,
                ..
            }) => {
                if version != FORMAT_VERSION {
                    return Err(bad(format!(
                        "format version {version}; this build reads {FORMAT_VERSION}"
                    )));
                }
                if model != self.embedder.model_id() || dim != self.embedder.dim() {
                    return Err(bad(format!(
                        "made with embedding model {model} ({dim} dimensions); this deployment uses {} ({})",
                        self.embedder.model_id(),
                        self.embedder.dim()
                    )));
                }
            }
            _ => return Err(bad("the first line must be the tenantry-export header")),
        }
        let mut summary = ArchiveSummary::default();
        // The document being read: its upload record, announced chunk count, chunks so far.
        let mut pending: Option<(NewUpload, usize, Points)> = None;
        loop {
            let line = lines.next().transpose()?;
            // A document is complete when its announced chunks have all arrived.
            if let Some((up, n, chunks)) = pending.take() {
                match line {
                    Some(Line::Chunk { .. }) if chunks.len() < n => pending = Some((up, n, chunks)),
                    _ if chunks.len() == n => {
                        summary.chunks += chunks.len();
                        if self.import_document(ctx, &up, chunks, &limits)? {
                            summary.documents += 1;
                        } else {
                            summary.unchanged += 1;
                        }
                    }
                    _ => {
                        return Err(bad(format!(
                            "document {}: wrong number of chunks",
                            up.doc_id
                        )))
                    }
                }
            }
            match line {
                None => return Err(bad("truncated: no end line")),
                Some(Line::End { documents, chunks }) => {
                    if documents != summary.documents + summary.unchanged
                        || chunks != summary.chunks
                    {
                        return Err(bad("the end line's counts do not match the archive"));
                    }
                    return Ok(summary);
                }
                Some(Line::Header { .. }) => return Err(bad("a second header")),
                Some(Line::Config { settings }) => {
                    let mut s: crate::answer::settings::GeneratorSettings =
                        serde_json::from_value(settings)
                            .map_err(|e| bad(format!("config: {e}")))?;
                    s.validate()?;
                    // An archive is written by a tenant: nothing in it is the admin's word, and
                    // a stored key never follows a URL it was not given for.
                    let current = self.config_view(tenant)?.settings;
                    let same_url = s.keeps_url_of(&current);
                    let trusted = s.inherited_trust(&current);
                    if let Some(o) = s.openai.as_mut() {
                        o.set_by_admin = trusted;
                    }
                    let json = serde_json::to_string(&s)
                        .map_err(|e| InternalError::Other(e.to_string()))?;
                    let key = if same_url {
                        KeyUpdate::Keep
                    } else {
                        KeyUpdate::Clear
                    };
                    self.catalog.put_tenant_config(tenant, &json, key)?;
                }
                Some(Line::Document {
                    id,
                    title,
                    content_type,
                    content_hash,
                    metadata,
                    byte_size,
                    chunks,
                }) => {
                    let doc_id = DocId::parse(&id).map_err(|e| bad(e.to_string()))?;
                    let up = NewUpload {
                        job_id: uuid::Uuid::new_v4().to_string(),
                        doc_id,
                        title,
                        content_type,
                        content_hash,
                        metadata,
                        byte_size,
                        payload: Payload::HeldBy {
                            node: self.node_id().to_string(),
                            lease: self.lease(),
                        },
                    };
                    pending = Some((up, chunks, Vec::with_capacity(chunks)));
                }
                Some(Line::Chunk {
                    ordinal,
                    text,
                    page,
                    heading_path,
                    start,
                    end,
                    vector,
                }) => {
                    let Some((up, _, chunks)) = pending.as_mut() else {
                        return Err(bad("a chunk outside a document"));
                    };
                    if vector.len() != self.embedder.dim() {
                        return Err(bad("a chunk vector has the wrong dimension"));
                    }
                    let chunk = StoredChunk {
                        doc_id: up.doc_id.clone(),
                        version: 0,
                        ordinal,
                        title: up.title.clone(),
                        text,
                        content_type: up.content_type.clone(),
                        page,
                        heading_path,
                        metadata: up.metadata.clone(),
                        start,
                        end,
                    };
                    chunks.push((chunk, vector));
                }
            }
        }
    }

    /// One document through the same version protocol as ingestion; false if unchanged.
    fn import_document(
        &self,
        ctx: &TenantCtx,
        up: &NewUpload,
        chunks: Points,
        limits: &crate::limits::Limits,
    ) -> Result<bool> {
        // As an ingestion job: never writing into a tenant being deleted.
        let _gate = self
            .catalog
            .tenant_gate(ctx.tenant(), false, self.gate_wait())?;
        let caps = QueueCaps {
            per_tenant: usize::MAX,
            total: usize::MAX,
        };
        let version = match self
            .catalog
            .accept_upload(ctx.tenant(), up, &limits.quota(), &caps)?
        {
            UploadOutcome::Unchanged => return Ok(false),
            UploadOutcome::Queued { version } => version,
        };
        let job = self
            .catalog
            .job_by_id(&up.job_id)?
            .ok_or_else(|| InternalError::Other("import job vanished".into()))?;
        // The heartbeat renews its lease while it runs.
        self.held().insert(job.id.clone());
        let result = self.import_version(ctx, &job, version, chunks, limits);
        self.held().remove(&job.id);
        result
    }

    fn import_version(
        &self,
        ctx: &TenantCtx,
        job: &JobRecord,
        version: u64,
        mut chunks: Points,
        limits: &crate::limits::Limits,
    ) -> Result<bool> {
        let up = job;
        for (c, _) in &mut chunks {
            c.version = version;
        }
        let stored: Vec<StoredChunk> = chunks.iter().map(|(c, _)| c.clone()).collect();
        let written = self
            .vectors
            .upsert(ctx, &chunks)
            .map_err(EngineError::from)
            .and_then(|_| self.lexical.add(ctx, &stored));
        if let Err(e) = written {
            self.catalog
                .fail_job(job, "internal_error", "import failed; see server logs")?;
            self.run_gc()?;
            return Err(e);
        }
        let footprint = Footprint::of(&stored, self.embedder.dim());
        let outcome = self.catalog.commit_job(job, footprint, &limits.quota())?;
        self.run_gc()?;
        match outcome {
            CommitOutcome::Committed => Ok(true),
            CommitOutcome::QuotaExceeded { what, limit } => {
                Err(UserError::QuotaExceeded { what, limit }.into())
            }
            CommitOutcome::Superseded | CommitOutcome::NotHeld => Err(UserError::Conflict(
                format!("document {} changed while it was imported", up.doc_id),
            )
            .into()),
        }
    }
}
