//! The lexical leg on tantivy (the embedded default): one index per tenant, so term statistics
//! are the tenant's own. Indexes open lazily and close after an idle period.
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED,
    STRING,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use super::LexicalStore;
use crate::domain::{ChunkFilter, LegHit, StoredChunk};
use crate::domain::{DocId, TenantCtx, TenantId};
use crate::error::{InternalError, Result};

use super::analysis::{analyzer, ANALYZER};

#[derive(Clone, Copy)]
struct Fields {
    doc_id: Field,
    version: Field,
    ordinal: Field,
    title: Field,
    text: Field,
    content_type: Field,
    meta: Field,
    /// Written by earlier versions only (the catalog keeps a document's metadata once); kept
    /// in the schema so that their indexes still open.
    #[allow(dead_code)]
    meta_json: Field,
    page: Field,
    heading: Field,
    start: Field,
    end: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let analysed = TextOptions::default().set_stored().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let f = Fields {
        doc_id: b.add_text_field("doc_id", STRING | STORED),
        version: b.add_u64_field("version", INDEXED | STORED | FAST),
        ordinal: b.add_u64_field("ordinal", STORED),
        title: b.add_text_field("title", analysed.clone()),
        text: b.add_text_field("text", analysed),
        content_type: b.add_text_field("content_type", STRING | STORED),
        meta: b.add_text_field("meta", STRING),
        meta_json: b.add_text_field("meta_json", STORED),
        page: b.add_u64_field("page", STORED),
        heading: b.add_text_field("heading", STORED),
        start: b.add_u64_field("start", STORED),
        end: b.add_u64_field("end", STORED),
    };
    (b.build(), f)
}

struct TenantIndex {
    index: Index,
    reader: IndexReader,
    /// Serialises writers: tantivy allows one per index.
    writing: Mutex<()>,
    fields: Fields,
    last_used: Mutex<Instant>,
}

impl TenantIndex {
    fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let mmap = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| InternalError::Other(e.to_string()))?;
        let index = Index::open_or_create(mmap, schema)?;
        index.tokenizers().register(ANALYZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            reader,
            writing: Mutex::new(()),
            fields,
            last_used: Mutex::new(Instant::now()),
        })
    }

    /// Run `f` with a writer, commit, wait for the merges it triggered, and make the change
    /// visible to searches. The writer lives only for this call: with thousands of tenants, a
    /// writer kept open per tenant would hold a thread and an indexing arena each.
    fn write(&self, f: impl FnOnce(&IndexWriter, &Fields) -> Result<()>) -> Result<()> {
        let _one_writer = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        // 15 MB is tantivy's floor per indexing thread; one thread per writer.
        let mut writer: IndexWriter = self.index.writer_with_num_threads(1, 15_000_000)?;
        if let Err(e) = f(&writer, &self.fields) {
            writer.rollback()?;
            return Err(e);
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }
}

pub struct TantivyLexicalStore {
    root: PathBuf,
    open: Mutex<HashMap<TenantId, Arc<TenantIndex>>>,
    idle: Duration,
}

impl TantivyLexicalStore {
    pub fn new(root: PathBuf, idle: Duration) -> Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            open: Mutex::new(HashMap::new()),
            idle,
        })
    }

    fn dir(&self, tenant: &TenantId) -> PathBuf {
        self.root.join(tenant.as_str())
    }

    /// The tenant's index, opened on first use. `create: false` returns `None` for a tenant
    /// that never indexed anything (so reads never create directories).
    fn get(&self, tenant: &TenantId, create: bool) -> Result<Option<Arc<TenantIndex>>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ix) = open.get(tenant) {
            *ix.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            return Ok(Some(ix.clone()));
        }
        let dir = self.dir(tenant);
        if !create && !dir.join("meta.json").exists() {
            return Ok(None);
        }
        let ix = Arc::new(TenantIndex::open(&dir)?);
        open.insert(tenant.clone(), ix.clone());
        Ok(Some(ix))
    }

    fn filter_query(f: &Fields, filter: &ChunkFilter) -> Vec<(Occur, Box<dyn Query>)> {
        let term = |field: Field, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, v),
                IndexRecordOption::Basic,
            ))
        };
        let any = |field: Field, vals: Vec<&str>| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(
                vals.into_iter()
                    .map(|v| (Occur::Should, term(field, v)))
                    .collect(),
            ))
        };
        let mut out: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !filter.doc_ids.is_empty() {
            out.push((
                Occur::Must,
                any(
                    f.doc_id,
                    filter.doc_ids.iter().map(|d| d.as_str()).collect(),
                ),
            ));
        }
        if !filter.content_types.is_empty() {
            out.push((
                Occur::Must,
                any(
                    f.content_type,
                    filter.content_types.iter().map(String::as_str).collect(),
                ),
            ));
        }
        for m in &filter.metadata {
            out.push((Occur::Must, term(f.meta, m)));
        }
        // Filters restrict; they must not add to the BM25 score.
        out.into_iter()
            .map(|(o, q)| (o, Box::new(ConstScoreQuery::new(q, 0.0)) as Box<dyn Query>))
            .collect()
    }

    fn parse(ix: &TenantIndex, query: &str) -> Box<dyn Query> {
        let mut parser = QueryParser::for_index(&ix.index, vec![ix.fields.text, ix.fields.title]);
        parser.set_field_boost(ix.fields.title, 0.5);
        // Lenient: user text is words, not query syntax; never a 400 for a stray quote.
        parser.parse_query_lenient(query).0
    }
}

impl LexicalStore for TantivyLexicalStore {
    fn add(&self, ctx: &TenantCtx, chunks: &[StoredChunk]) -> Result<()> {
        let ix = self.get(ctx.tenant(), true)?.expect("created");
        ix.write(|w, f| {
            for c in chunks {
                let mut d = doc!(
                    f.doc_id => c.doc_id.as_str(),
                    f.version => c.version,
                    f.ordinal => c.ordinal as u64,
                    f.title => c.title.as_str(),
                    f.text => c.text.as_str(),
                    f.content_type => c.content_type.as_str(),
                    f.heading => serde_json::to_string(&c.heading_path).unwrap_or_default(),
                    f.start => c.start,
                    f.end => c.end,
                );
                if let Some(p) = c.page {
                    d.add_u64(f.page, p as u64);
                }
                for t in c.metadata_terms() {
                    d.add_text(f.meta, t);
                }
                w.add_document(d)?;
            }
            Ok(())
        })
    }

    fn delete_versions(&self, ctx: &TenantCtx, doc: &DocId, versions: Range<u64>) -> Result<()> {
        let Some(ix) = self.get(ctx.tenant(), false)? else {
            return Ok(());
        };
        ix.write(|w, f| {
            let q = BooleanQuery::new(vec![
                (
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_text(f.doc_id, doc.as_str()),
                        IndexRecordOption::Basic,
                    )) as Box<dyn Query>,
                ),
                (
                    Occur::Must,
                    Box::new(RangeQuery::new(
                        std::ops::Bound::Included(Term::from_field_u64(f.version, versions.start)),
                        std::ops::Bound::Excluded(Term::from_field_u64(f.version, versions.end)),
                    )),
                ),
            ]);
            w.delete_query(Box::new(q))?;
            Ok(())
        })
    }

    fn drop_tenant(&self, tenant: &TenantId) -> Result<()> {
        // The directory goes while the map is locked: a query that raced the delete either
        // opened the index before (and holds a handle to files about to vanish) or finds no
        // directory after, never recreates one for a deleted tenant.
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        drop(open.remove(tenant));
        let dir = self.dir(tenant);
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    fn close_idle(&self) -> usize {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let before = open.len();
        let idle = self.idle;
        // An index in use elsewhere (Arc held) stays open.
        open.retain(|_, ix| {
            Arc::strong_count(ix) > 1
                || ix
                    .last_used
                    .lock()
                    .map(|t| t.elapsed() < idle)
                    .unwrap_or(true)
        });
        before - open.len()
    }

    fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn search(
        &self,
        ctx: &TenantCtx,
        query: &str,
        filter: &ChunkFilter,
        limit: usize,
    ) -> Result<Vec<LegHit>> {
        let Some(ix) = self.get(ctx.tenant(), false)? else {
            return Ok(vec![]);
        };
        let text_q = Self::parse(&ix, query);
        let mut clauses = vec![(Occur::Must, text_q)];
        clauses.extend(Self::filter_query(&ix.fields, filter));
        let q = BooleanQuery::new(clauses);
        let searcher = ix.reader.searcher();
        let top = searcher.search(&q, &TopDocs::with_limit(limit.max(1)))?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            out.push(LegHit {
                chunk: to_chunk(&d, &ix.fields),
                score,
            });
        }
        Ok(out)
    }

    fn snippets(
        &self,
        ctx: &TenantCtx,
        query: &str,
        texts: &[&str],
    ) -> Result<Vec<Option<String>>> {
        let Some(ix) = self.get(ctx.tenant(), false)? else {
            return Ok(vec![None; texts.len()]);
        };
        let q = Self::parse(&ix, query);
        let searcher = ix.reader.searcher();
        let mut gen = SnippetGenerator::create(&searcher, &*q, ix.fields.text)?;
        gen.set_max_num_chars(240);
        Ok(texts
            .iter()
            .map(|t| {
                let s = gen.snippet(t);
                (!s.highlighted().is_empty()).then(|| s.to_html())
            })
            .collect())
    }
}

fn to_chunk(d: &TantivyDocument, f: &Fields) -> StoredChunk {
    let s = |field: Field| {
        d.get_first(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let u = |field: Field| d.get_first(field).and_then(|v| v.as_u64());
    StoredChunk {
        doc_id: DocId::parse(&s(f.doc_id)).unwrap_or_else(|_| DocId::generate()),
        version: u(f.version).unwrap_or(0),
        ordinal: u(f.ordinal).unwrap_or(0) as u32,
        title: String::new(),
        text: s(f.text),
        content_type: s(f.content_type),
        page: u(f.page).map(|p| p as u32),
        heading_path: serde_json::from_str(&s(f.heading)).unwrap_or_default(),
        metadata: Default::default(),
        start: u(f.start).unwrap_or(0),
        end: u(f.end).unwrap_or(0),
    }
}
