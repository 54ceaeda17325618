//! Documents and ingestion jobs: submission, the job pipeline (sandboxed parse and chunk,
//! cached embedding, both legs, version commit), garbage collection and document deletes.
use std::sync::Arc;

use super::*;

/// A document as submitted by a tenant.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    pub doc_id: Option<DocId>,
    pub title: Option<String>,
    pub declared_type: Option<String>,
    pub file_name: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Submitted {
    pub doc_id: DocId,
    pub job_id: String,
}

fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn too_large(field: impl Into<String>, size: usize, limit: usize) -> Result<(), UserError> {
    if size > limit {
        return Err(UserError::FieldTooLarge {
            field: field.into(),
            size,
            limit,
        });
    }
    Ok(())
}

fn validate_metadata(
    m: &serde_json::Map<String, serde_json::Value>,
    limits: &crate::config::IngestConfig,
) -> Result<(), UserError> {
    if m.len() > 64 {
        return Err(UserError::Invalid(
            "metadata may have at most 64 keys".into(),
        ));
    }
    for (k, v) in m {
        let key_ok = !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !key_ok {
            return Err(UserError::Invalid(format!(
                "metadata key {k:?}: use 1-64 characters of A-Z, a-z, 0-9, '_', '-', '.'"
            )));
        }
        let scalar_or_list = match v {
            serde_json::Value::Array(items) => {
                items.len() <= 64 && items.iter().all(|i| crate::domain::scalar(i).is_some())
            }
            other => crate::domain::scalar(other).is_some() || other.is_null(),
        };
        if !scalar_or_list {
            return Err(UserError::Invalid(format!(
                "metadata {k:?}: values must be strings, numbers, booleans or lists of at most 64 of them"
            )));
        }
        let strings = match v {
            serde_json::Value::Array(items) => items.iter().collect::<Vec<_>>(),
            other => vec![other],
        };
        for s in strings.iter().filter_map(|s| s.as_str()) {
            too_large(
                format!("metadata value of {k:?}"),
                s.len(),
                limits.max_metadata_value_bytes,
            )?;
        }
    }
    let total = serde_json::to_string(m).map_or(usize::MAX, |s| s.len());
    too_large("metadata", total, limits.max_metadata_bytes)?;
    // Every chunk carries the filter terms (a list repeats its key per item): bound them too.
    let terms: usize = crate::domain::metadata_terms(m)
        .iter()
        .map(String::len)
        .sum();
    too_large("metadata filter terms", terms, MAX_FILTER_TERM_BYTES)
}

/// Bytes of `key=value` filter terms each chunk of a document indexes in both legs (terms over
/// 64 bytes count as their 33-byte hash).
pub const MAX_FILTER_TERM_BYTES: usize = 2048;

impl Engine {
    // ---- documents and jobs (tenant) ----

    /// Validate and durably accept a document; its job runs in the background.
    pub async fn submit(self: &Arc<Self>, ctx: &TenantCtx, upload: Upload) -> Result<Submitted> {
        if !self.is_ready() {
            return Err(EngineError::Unavailable {
                reason: "shutting down",
                retry_after_secs: 5,
            });
        }
        validate_metadata(&upload.metadata, &self.config.ingest)?;
        if upload.bytes.is_empty() {
            return Err(UserError::Document {
                code: tenantry_ingest::IngestErrorCode::EmptyDocument,
                message: "document is empty".into(),
            }
            .into());
        }
        let content_type = match detect(
            upload.declared_type.as_deref(),
            upload.file_name.as_deref(),
            &upload.bytes,
        ) {
            Ok(t) => t,
            Err(IngestError::Unsupported(what)) => {
                return Err(UserError::UnsupportedMediaType(what).into())
            }
            // Claims to be a PDF but is not one: accepted, and its job fails with pdf_corrupt.
            Err(_) => ContentType::Pdf,
        };
        let doc_id = upload.doc_id.clone().unwrap_or_else(DocId::generate);
        let title = upload
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| upload.file_name.clone())
            .unwrap_or_else(|| doc_id.to_string());
        too_large("title", title.len(), self.config.ingest.max_title_bytes)?;
        let job_id = uuid::Uuid::new_v4().to_string();
        let new = NewUpload {
            job_id: job_id.clone(),
            doc_id: doc_id.clone(),
            title,
            content_type: content_type.mime().to_string(),
            content_hash: content_hash(&upload.bytes),
            metadata: upload.metadata,
            byte_size: upload.bytes.len() as u64,
            // In the catalog before the job is acknowledged: a crash cannot lose it, and any
            // node can run it.
            payload: Payload::Bytes(upload.bytes),
        };
        let caps = QueueCaps {
            per_tenant: self.config.ingest.tenant_queue_max,
            total: self.config.ingest.queue_capacity,
        };
        let quota = self.limits(ctx.tenant()).await?.quota();
        let (me, ctx2) = (self.clone(), ctx.clone());
        let outcome =
            blocking(move || me.catalog.accept_upload(ctx2.tenant(), &new, &quota, &caps)).await?;
        if let UploadOutcome::Queued { .. } = outcome {
            self.wake.notify();
        }
        Ok(Submitted { doc_id, job_id })
    }

    pub(super) fn notify(&self, job_id: &str) {
        let waiters = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(job_id);
        for w in waiters.into_iter().flatten() {
            let _ = w.send(());
        }
    }

    /// Wait until the job is final (or `timeout` passes) and return it.
    pub async fn wait_job(
        self: &Arc<Self>,
        ctx: &TenantCtx,
        job_id: &str,
        timeout: Duration,
    ) -> Result<JobRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Whatever way this returns (or is cancelled), it leaves no waiter behind: a job run
        // by another node is never notified here.
        let _prune = PruneWaiters(self, job_id);
        // This node's workers wake waiters when a job ends here; a job another node runs is
        // seen by looking again every quarter second.
        loop {
            let (tx, rx) = oneshot::channel();
            {
                let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
                let mine = waiters.entry(job_id.to_string()).or_default();
                mine.retain(|w| !w.is_closed());
                mine.push(tx);
            }
            let job = self.job(ctx, job_id).await?;
            if job.status.is_final() {
                self.notify(job_id);
                return Ok(job);
            }
            let look_again =
                (tokio::time::Instant::now() + Duration::from_millis(250)).min(deadline);
            if tokio::time::timeout_at(look_again, rx).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return self.job(ctx, job_id).await;
            }
        }
    }

    pub async fn job(self: &Arc<Self>, ctx: &TenantCtx, job_id: &str) -> Result<JobRecord> {
        let (me, ctx, id) = (self.clone(), ctx.clone(), job_id.to_string());
        blocking(move || {
            me.catalog
                .job(ctx.tenant(), &id)?
                .ok_or_else(|| UserError::NotFound("job").into())
        })
        .await
    }

    /// Chunks `offset..offset + limit` of the document's live version in reading order, and how
    /// many it has. A document without a live version has none.
    pub async fn document_chunks(
        self: &Arc<Self>,
        ctx: &TenantCtx,
        id: &DocId,
        offset: usize,
        limit: usize,
    ) -> Result<(DocumentRecord, usize, Vec<StoredChunk>)> {
        let (me, ctx, id) = (self.clone(), ctx.clone(), id.clone());
        blocking(move || {
            let doc = me
                .catalog
                .document(ctx.tenant(), &id)?
                .ok_or(UserError::NotFound("document"))?;
            let Some(version) = doc.live_version else {
                return Ok((doc, 0, vec![]));
            };
            // Only the page's points are read, by their derived ids: the cost of a request is
            // `limit` points, whatever the document's size.
            let total = doc.chunk_count as usize;
            let end = offset.saturating_add(limit).min(total);
            let keys: Vec<crate::domain::ChunkKey> = (offset.min(end)..end)
                .map(|o| (id.clone(), version, o as u32))
                .collect();
            let page = me
                .vectors
                .stored_chunks(&ctx, &keys)?
                .into_iter()
                .flatten()
                .collect();
            Ok((doc, total, page))
        })
        .await
    }

    /// The tenant's jobs, newest first.
    pub async fn jobs(
        self: &Arc<Self>,
        ctx: &TenantCtx,
        limit: usize,
        before: Option<String>,
    ) -> Result<JobPage> {
        let (me, ctx) = (self.clone(), ctx.clone());
        blocking(move || {
            me.catalog
                .recent_jobs(Some(ctx.tenant()), limit, before.as_deref())
        })
        .await
    }

    /// The operator's view of the queue: every tenant's unfinished jobs, oldest first, and
    /// every tenant's jobs newest first. Only the admin credential reaches this.
    pub async fn queue(
        self: &Arc<Self>,
        limit: usize,
        before: Option<String>,
    ) -> Result<(Vec<JobRecord>, JobPage)> {
        let me = self.clone();
        blocking(move || {
            Ok((
                me.catalog.unfinished_jobs()?,
                me.catalog.recent_jobs(None, limit, before.as_deref())?,
            ))
        })
        .await
    }

    pub async fn document(self: &Arc<Self>, ctx: &TenantCtx, id: &DocId) -> Result<DocumentRecord> {
        let (me, ctx, id) = (self.clone(), ctx.clone(), id.clone());
        blocking(move || {
            me.catalog
                .document(ctx.tenant(), &id)?
                .ok_or_else(|| UserError::NotFound("document").into())
        })
        .await
    }

    pub async fn documents(
        self: &Arc<Self>,
        ctx: &TenantCtx,
        limit: usize,
        after: Option<String>,
    ) -> Result<Vec<DocumentRecord>> {
        let (me, ctx) = (self.clone(), ctx.clone());
        blocking(move || me.catalog.documents(ctx.tenant(), limit, after.as_deref())).await
    }

    /// Hide the document at once; its chunks leave both legs right after.
    pub async fn delete_document(self: &Arc<Self>, ctx: &TenantCtx, id: &DocId) -> Result<()> {
        let (me, ctx, id) = (self.clone(), ctx.clone(), id.clone());
        blocking(move || {
            if !me.catalog.delete_document(ctx.tenant(), &id)? {
                return Err(UserError::NotFound("document").into());
            }
            me.run_gc()
        })
        .await
    }

    /// Remove chunks of replaced, deleted or failed versions from both legs.
    pub(crate) fn run_gc(&self) -> Result<()> {
        for task in self.catalog.pending_gc()? {
            let ctx = TenantCtx::system(task.tenant.clone());
            self.lexical
                .delete_versions(&ctx, &task.doc, task.versions.clone())?;
            self.vectors
                .delete_versions(&ctx, &task.doc, task.versions.clone())?;
            self.catalog.gc_done(&task)?;
        }
        Ok(())
    }

    /// Run a job this node claimed, holding its lease (renewed by the heartbeat) until it
    /// ends here: done, failed, or handed back to the queue. Blocking.
    pub(super) fn run_claimed(&self, job: JobRecord) {
        self.held().insert(job.id.clone());
        let id = job.id.clone();
        if let Err(e) = self.run_job(job) {
            // The catalog did not take the outcome (it is unreachable): hand the job back so
            // that it runs again, here or elsewhere, once the catalog answers; if even that
            // fails, its lease expires.
            tracing::error!(job_id = %id, error = %e, "ingestion job could not finish");
            let _ = self
                .catalog
                .release_job(&id, &self.node.id, STORAGE_RETRY_DELAY);
        }
        self.held().remove(&id);
        self.notify(&id);
    }

    /// Run one claimed ingestion job to its end. Every failure becomes the job's error; a
    /// panic anywhere in the pipeline is caught here.
    fn run_job(&self, job: JobRecord) -> Result<()> {
        if job.attempts > MAX_ATTEMPTS {
            if self.catalog.fail_job(
                &job,
                "interrupted",
                "ingestion was interrupted too many times",
            )? {
                self.governor.metrics.job("failed");
            }
            let _ = std::fs::remove_file(self.legacy_blobs.join(&job.id));
            return self.run_gc();
        }
        // Shared with the tenant's other jobs, exclusive with its deletion, on every node: a
        // job never writes into a tenant that is being, or has been, deleted.
        let _gate = self
            .catalog
            .tenant_gate(&job.tenant, false, self.gate_wait())?;
        // Read again under the gate: a delete that came first removed the row, and a node
        // that held the job before its lease expired may have finished it.
        match self.catalog.job_by_id(&job.id)? {
            Some(now)
                if !now.status.is_final()
                    && now.node == job.node
                    && now.attempts == job.attempts => {}
            Some(_) => return Ok(()),
            None => {
                let _ = std::fs::remove_file(self.legacy_blobs.join(&job.id));
                return Ok(());
            }
        }
        let job_id = job.id.as_str();
        let span = tracing::info_span!("job", job_id, tenant = %job.tenant, node = %self.node.id);
        let _entered = span.enter();
        if job.attempts > 1 {
            tracing::info!(attempts = job.attempts, "running a job again");
        }
        let Some(bytes) = self.upload_bytes(&job)? else {
            self.governor.metrics.job("failed");
            self.catalog.fail_job(
                &job,
                "interrupted",
                "ingestion was interrupted and its upload is gone",
            )?;
            return self.run_gc();
        };
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.index_version(&job, &bytes)));
        match outcome {
            Ok(Ok(footprint)) => {
                let n = footprint.chunks;
                let quota = self.governor.load_limits(&job.tenant)?.quota();
                let committed = self.catalog.commit_job(&job, footprint, &quota)?;
                match committed {
                    CommitOutcome::Committed => {
                        self.governor.metrics.job("succeeded");
                        self.governor
                            .meter
                            .add(&job.tenant, Metric::DocumentsIngested, 1);
                        self.governor
                            .meter
                            .add(&job.tenant, Metric::ChunksIngested, n);
                    }
                    CommitOutcome::Superseded => self.governor.metrics.job("superseded"),
                    CommitOutcome::QuotaExceeded { .. } => {
                        self.governor.metrics.job("quota_exceeded")
                    }
                    // Handed back while it ran (a drain): what it wrote stays invisible and
                    // the new holder writes the version again. Its tenant deleted: the delete
                    // waited for this job's gate, unless the gate's session was lost (the
                    // database restarted); then what it wrote after the removal goes here.
                    CommitOutcome::NotHeld => {
                        self.governor.metrics.job("not_held");
                        if !self.catalog.tenant_exists(&job.tenant)? {
                            let ctx = TenantCtx::system(job.tenant.clone());
                            let v = job.version..job.version + 1;
                            self.lexical.delete_versions(&ctx, &job.doc_id, v.clone())?;
                            self.vectors.delete_versions(&ctx, &job.doc_id, v)?;
                        }
                    }
                }
                tracing::debug!(
                    chunks = n,
                    ms = started.elapsed().as_millis() as u64,
                    outcome = ?committed,
                    "ingestion job done"
                );
            }
            Ok(Err(JobError::Document(e))) => {
                self.governor.metrics.job("failed");
                tracing::info!(code = e.code().as_str(), "document rejected");
                self.catalog
                    .fail_job(&job, e.code().as_str(), &e.to_string())?;
            }
            Ok(Err(JobError::Engine(EngineError::Internal(
                InternalError::StorageUnavailable(detail),
            )))) if job.attempts < MAX_ATTEMPTS => {
                // Storage did not answer (a node restarting, an election): nothing of this
                // version is visible, so the job goes back to the queue, its upload kept, and
                // runs again after a growing delay, here or on another node.
                let delay = STORAGE_RETRY_DELAY * (1 << (job.attempts.min(4) - 1));
                tracing::warn!(attempts = job.attempts, delay_secs = delay.as_secs(), error = %detail, "storage unavailable; job requeued");
                self.governor.metrics.job("requeued");
                self.catalog.release_job(&job.id, &self.node.id, delay)?;
                return Ok(());
            }
            Ok(Err(JobError::Engine(e))) => {
                self.governor.metrics.job("failed");
                tracing::error!(error = %e, "ingestion job failed");
                self.catalog.fail_job(
                    &job,
                    "internal_error",
                    "internal error while indexing; see server logs",
                )?;
            }
            Err(_) => {
                self.governor.metrics.job("failed");
                tracing::error!("ingestion job panicked");
                self.catalog.fail_job(
                    &job,
                    "internal_error",
                    "internal error while indexing; see server logs",
                )?;
            }
        }
        let _ = std::fs::remove_file(self.legacy_blobs.join(job_id));
        self.run_gc()
    }

    /// The job's uploaded bytes: in the catalog, or a file of this data directory for a job
    /// an older version accepted.
    fn upload_bytes(&self, job: &JobRecord) -> Result<Option<Vec<u8>>> {
        if let Some(bytes) = self.catalog.upload(&job.id)? {
            return Ok(Some(bytes));
        }
        match std::fs::read(self.legacy_blobs.join(&job.id)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Parse, chunk, embed (through the cache) and write one version to both legs. The version
    /// stays invisible until the catalog commits it.
    fn index_version(&self, job: &JobRecord, bytes: &[u8]) -> Result<Footprint, JobError> {
        let deadline = Instant::now() + Duration::from_secs(self.config.ingest.job_timeout_secs);
        // Progress is for people watching: a catalog hiccup while reporting it is not the
        // job's failure.
        let report = |stage: JobStage, chunks_done: u64, chunks_total: Option<u64>| {
            let p = JobProgress {
                stage: Some(stage),
                chunks_done,
                chunks_total,
            };
            if let Err(e) = self.catalog.report_progress(job, &p) {
                tracing::debug!(error = %e, "job progress not recorded");
            }
        };
        report(JobStage::Parsing, 0, None);
        let ct = ContentType::from_mime(&job.content_type).unwrap_or(ContentType::Text);
        let (chunks, contextual) = self.contextual_chunks(bytes, ct, &job.title)?;
        let ctx = TenantCtx::system(job.tenant.clone());
        let texts: Vec<&str> = contextual.iter().map(String::as_str).collect();
        let total = texts.len() as u64;
        report(JobStage::Embedding, 0, Some(total));
        let vectors = self.embed_cached(
            &ctx,
            (&job.doc_id, job.version),
            &texts,
            deadline,
            &|done| report(JobStage::Embedding, done, Some(total)),
        )?;
        report(JobStage::Indexing, total, Some(total));
        let stored: Vec<StoredChunk> = chunks
            .iter()
            .map(|c| StoredChunk {
                doc_id: job.doc_id.clone(),
                version: job.version,
                ordinal: c.ordinal,
                title: job.title.clone(),
                text: c.text.clone(),
                content_type: job.content_type.clone(),
                page: c.page,
                heading_path: c.heading_path.clone(),
                metadata: job.metadata.clone(),
                start: c.start as u64,
                end: c.end as u64,
            })
            .collect();
        // A retried job may have written part of this version before: start clean.
        let v = job.version..job.version + 1;
        self.lexical.delete_versions(&ctx, &job.doc_id, v.clone())?;
        self.vectors
            .delete_versions(&ctx, &job.doc_id, v)
            .map_err(EngineError::from)?;
        let points: Vec<(StoredChunk, Vec<f32>)> = stored.iter().cloned().zip(vectors).collect();
        self.vectors
            .upsert(&ctx, &points)
            .map_err(EngineError::from)?;
        self.lexical.add(&ctx, &stored)?;
        Ok(Footprint::of(&stored, self.embedder.dim()))
    }

    /// Parse and chunk a document in the sandboxed worker; also returns the text the dense leg
    /// embeds for each chunk (`tenantry_ingest::chunk::embedding_text`).
    pub(crate) fn contextual_chunks(
        &self,
        bytes: &[u8],
        ct: ContentType,
        title: &str,
    ) -> Result<(Vec<tenantry_ingest::chunk::Chunk>, Vec<String>), JobError> {
        let parsed = self.sandbox.run(bytes, ct, title)?;
        Ok((parsed.chunks, parsed.contextual))
    }

    /// Benchmark loading only (`tenantry bench`, in-process, on its own data directory): embeddings
    /// missing from a tenant's cache are looked up in `source`'s cache before the model is run.
    /// The server never calls this: sharing a cache across tenants would let one tenant learn
    /// from timing what another has stored.
    pub fn seed_embeddings_from(&self, source: Option<TenantId>) {
        *self
            .embedding_seed
            .write()
            .unwrap_or_else(|p| p.into_inner()) = source;
    }

    /// Embed with the tenant's cache: unchanged text is never embedded twice.
    pub(crate) fn embed_cached(
        &self,
        ctx: &TenantCtx,
        owner: (&DocId, u64),
        texts: &[&str],
        deadline: Instant,
        progress: &dyn Fn(u64),
    ) -> Result<Vec<Vec<f32>>, JobError> {
        let model = self.embedder.model_id().as_bytes();
        let hashes: Vec<[u8; 32]> = texts
            .iter()
            .map(|t| {
                let mut h = Sha256::new();
                h.update(model);
                h.update([0]);
                h.update(t.as_bytes());
                h.finalize().into()
            })
            .collect();
        let mut cached = self.catalog.claim_cached(ctx.tenant(), owner, &hashes)?;
        let seed = self
            .embedding_seed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(seed) = seed {
            let unseen: Vec<[u8; 32]> = hashes
                .iter()
                .filter(|h| !cached.contains_key(*h))
                .copied()
                .collect();
            cached.extend(self.catalog.cached_vectors(&seed, &unseen)?);
        }
        let missing: Vec<usize> = (0..texts.len())
            .filter(|i| !cached.contains_key(&hashes[*i]))
            .collect();
        let mut done = (texts.len() - missing.len()) as u64;
        if done > 0 {
            progress(done);
        }
        for batch in missing.chunks(32) {
            // Checked between batches: a job overruns its budget by one batch at most.
            if Instant::now() >= deadline {
                return Err(IngestError::JobTimeout(self.config.ingest.job_timeout_secs).into());
            }
            let inputs: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
            self.embedded_texts
                .fetch_add(inputs.len() as u64, Ordering::Relaxed);
            let tokens: usize = inputs.iter().map(|t| self.count_tokens(t)).sum();
            self.governor
                .meter
                .add(ctx.tenant(), Metric::EmbeddingTokens, tokens as u64);
            let started = Instant::now();
            let out = self
                .embedder
                .embed(Lane::Ingest, &inputs)
                .map_err(|e| EngineError::from(InternalError::Embedding(e.to_string())))?;
            self.governor.metrics.embed_batch(started.elapsed());
            let items: Vec<([u8; 32], &[f32])> = batch
                .iter()
                .zip(&out)
                .map(|(&i, v)| (hashes[i], v.as_slice()))
                .collect();
            self.catalog.cache_vectors(ctx.tenant(), owner, &items)?;
            for (&i, v) in batch.iter().zip(out) {
                cached.insert(hashes[i], v);
            }
            done += batch.len() as u64;
            progress(done);
        }
        Ok(hashes
            .iter()
            .map(|h| cached.get(h).cloned().unwrap_or_default())
            .collect())
    }
}

/// Drops the closed waiters of a job (their `wait_job` ended) when dropped.
struct PruneWaiters<'a>(&'a Engine, &'a str);

impl Drop for PruneWaiters<'_> {
    fn drop(&mut self) {
        let mut waiters = self.0.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = waiters.get_mut(self.1) {
            w.retain(|w| !w.is_closed());
            if w.is_empty() {
                waiters.remove(self.1);
            }
        }
    }
}

/// The first delay of a job that storage did not answer; it doubles with each attempt, up to
/// 8 times this.
const STORAGE_RETRY_DELAY: Duration = Duration::from_secs(2);

pub(crate) enum JobError {
    Document(IngestError),
    Engine(EngineError),
}

impl From<IngestError> for JobError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Embedding(m) => Self::Engine(InternalError::Embedding(m).into()),
            other => Self::Document(other),
        }
    }
}

impl From<EngineError> for JobError {
    fn from(e: EngineError) -> Self {
        Self::Engine(e)
    }
}
