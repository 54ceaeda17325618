//! The catalog on SQLite (the embedded default): one file in the data directory, WAL mode, a
//! writer connection for transactions and a read-only one for the request path.
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::*;
use crate::domain::{now, now_ms, DocId, Footprint, TenantId};
use crate::error::{EngineError, Result, UserError};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    role TEXT NOT NULL DEFAULT 'tenant_admin',
    name TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys(tenant);
CREATE TABLE IF NOT EXISTS documents (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL,
    byte_size INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    -- What the live version occupies in both legs (see `Footprint`).
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    live_version INTEGER,
    next_version INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    title TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL,
    byte_size INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    chunk_count INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
-- Deleted tenants whose data may still be in the legs.
CREATE TABLE IF NOT EXISTS tenant_drops (
    tenant TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
-- The bytes of queued and running jobs' uploads, until the job ends.
CREATE TABLE IF NOT EXISTS uploads (
    job_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    bytes BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs(tenant);
-- Chunks of (tenant, doc_id) with lo <= version < hi are garbage in both legs.
CREATE TABLE IF NOT EXISTS gc (
    tenant TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    PRIMARY KEY (tenant, doc_id, lo, hi)
);
-- A row belongs to the document version that last used it, and goes with that version's
-- garbage collection: the cache never outlives what the tenant stores.
CREATE TABLE IF NOT EXISTS embed_cache (
    tenant TEXT NOT NULL,
    hash BLOB NOT NULL,
    vector BLOB NOT NULL,
    doc_id TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS threads (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS thread_turns (
    tenant TEXT NOT NULL,
    thread TEXT NOT NULL,
    seq INTEGER NOT NULL,
    question TEXT NOT NULL,
    standalone TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    grounded INTEGER NOT NULL,
    code TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, thread, seq)
);
-- Per-tenant overrides of the configured limits (JSON, see `limits::TenantLimits`).
CREATE TABLE IF NOT EXISTS tenant_limits (
    tenant TEXT PRIMARY KEY,
    limits TEXT NOT NULL
);
-- Usage counters by UTC day. Counts only: no text of any document, query or answer.
CREATE TABLE IF NOT EXISTS usage (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    metric TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (tenant, day, metric)
) WITHOUT ROWID;
-- Generator settings (JSON) and the upstream API key, sealed with the master key.
CREATE TABLE IF NOT EXISTS tenant_config (
    tenant TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    key_nonce BLOB,
    key_ciphertext BLOB,
    key_fingerprint TEXT,
    updated_at INTEGER NOT NULL
);
"#;

/// A key row; `None` for a row whose tenant or role this build does not know.
fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<KeyRecord>> {
    let tenant = TenantId::parse(&r.get::<_, String>(1)?).ok();
    let role = crate::domain::Role::parse(&r.get::<_, String>(2)?);
    Ok(tenant.zip(role).map(|(tenant, role)| KeyRecord {
        id: r.get(0).unwrap_or_default(),
        tenant,
        role,
        name: r.get(3).unwrap_or_default(),
        created_at: r.get(4).unwrap_or_default(),
    }))
}

/// Everything a tenant occupies, in bytes, except the document `?2` (pass '' for none): each
/// live document's footprint in both legs (or its upload's size while no version is live), the
/// embedding cache, conversation turns and job records. Quotas compare against this sum, so no
/// per-chunk copy, cached vector or stored row escapes them.
pub const OCCUPIED_BYTES: &str = "SELECT
    (SELECT COALESCE(SUM(CASE WHEN status = 'ready' THEN MAX(stored_bytes, byte_size) ELSE byte_size END), 0)
       FROM documents WHERE tenant = ?1 AND id != ?2 AND status IN ('ready', 'pending'))
  + (SELECT COALESCE(SUM(length(vector) + length(hash) + length(doc_id) + 16), 0)
       FROM embed_cache WHERE tenant = ?1)
  + (SELECT COALESCE(SUM(length(question) + length(standalone) + length(answer) + length(citations) + 64), 0)
       FROM thread_turns WHERE tenant = ?1)
  + (SELECT COALESCE(SUM(length(title) + length(metadata) + COALESCE(length(error_message), 0) + 128), 0)
       FROM jobs WHERE tenant = ?1)";

/// Run `ddl` when `table` has no column `column` (a catalog made by an earlier version).
fn add_missing(c: &Connection, (table, column): (&str, &str), ddl: &str) -> rusqlite::Result<()> {
    let has: bool = c
        .prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
        ))?
        .exists([column])?;
    if !has {
        c.execute_batch(ddl)?;
    }
    Ok(())
}

fn occupied_bytes(c: &Connection, tenant: &TenantId, except: &str) -> rusqlite::Result<u64> {
    c.query_row(OCCUPIED_BYTES, params![tenant.as_str(), except], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n.max(0) as u64)
}

pub struct SqliteCatalog {
    conn: Mutex<Connection>,
    /// A second, read-only connection for the request path (key lookups, visibility checks):
    /// in WAL mode it reads the last commit without waiting for a writer's fsync.
    reader: Mutex<Connection>,
    /// Nobody else opens this file (the data directory is locked): the gates are in-process.
    gates: std::sync::Arc<LocalGates>,
}

fn doc_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DocumentRecord> {
    Ok(DocumentRecord {
        id: DocId::parse(&r.get::<_, String>(0)?).map_err(|_| rusqlite::Error::InvalidQuery)?,
        title: r.get(1)?,
        content_type: r.get(2)?,
        content_hash: r.get(3)?,
        metadata: meta_parse(&r.get::<_, String>(4)?),
        byte_size: r.get::<_, i64>(5)? as u64,
        chunk_count: r.get::<_, i64>(6)? as u64,
        live_version: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        status: DocStatus::parse(&r.get::<_, String>(8)?),
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let code: Option<String> = r.get(11)?;
    let msg: Option<String> = r.get(12)?;
    Ok(JobRecord {
        id: r.get(0)?,
        tenant: TenantId::parse(&r.get::<_, String>(1)?)
            .map_err(|_| rusqlite::Error::InvalidQuery)?,
        doc_id: DocId::parse(&r.get::<_, String>(2)?).map_err(|_| rusqlite::Error::InvalidQuery)?,
        version: r.get::<_, i64>(3)? as u64,
        status: JobStatus::parse(&r.get::<_, String>(4)?),
        title: r.get(5)?,
        content_type: r.get(6)?,
        content_hash: r.get(7)?,
        metadata: meta_parse(&r.get::<_, String>(8)?),
        byte_size: r.get::<_, i64>(9)? as u64,
        attempts: r.get::<_, i64>(10)? as u32,
        error: code.map(|c| (c, msg.unwrap_or_default())),
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        node: r.get(15)?,
        progress: progress_of(r.get(16)?, r.get(17)?, r.get(18)?),
    })
}

impl SqliteCatalog {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        // FULL: an acknowledged commit survives a crash of the process and of the machine.
        // secure_delete: a deleted tenant's text is overwritten, not left in free pages;
        // incremental auto-vacuum (new files) lets a hard delete give the space back.
        conn.execute_batch(
            "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;",
        )?;
        conn.execute_batch(SCHEMA)?;
        // Catalogs made before keys had roles: those keys could do everything in their tenant.
        add_missing(
            &conn,
            ("api_keys", "role"),
            "ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'tenant_admin';
             ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';",
        )?;
        // Catalogs made before threads had owners: those threads belong to no caller now
        // (404 for everyone; deleting the tenant removes them).
        add_missing(
            &conn,
            ("threads", "owner"),
            "ALTER TABLE threads ADD COLUMN owner TEXT NOT NULL DEFAULT '';",
        )?;
        // Catalogs made before documents had a footprint: their raw size stands in for it, and
        // their cache rows belong to no version (the next delete of the tenant removes them).
        add_missing(
            &conn,
            ("documents", "stored_bytes"),
            "ALTER TABLE documents ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
             UPDATE documents SET stored_bytes = byte_size;",
        )?;
        add_missing(
            &conn,
            ("embed_cache", "doc_id"),
            "ALTER TABLE embed_cache ADD COLUMN doc_id TEXT NOT NULL DEFAULT '';
             ALTER TABLE embed_cache ADD COLUMN version INTEGER NOT NULL DEFAULT 0;",
        )?;
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS embed_cache_owner ON embed_cache(tenant, doc_id, version);",
        )?;
        // The job queue's leases and fairness (milliseconds since the epoch).
        add_missing(
            &conn,
            ("jobs", "lease_until"),
            "ALTER TABLE jobs ADD COLUMN node TEXT;
             ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
             ALTER TABLE jobs ADD COLUMN not_before INTEGER NOT NULL DEFAULT 0;",
        )?;
        add_missing(
            &conn,
            ("jobs", "stage"),
            "ALTER TABLE jobs ADD COLUMN stage TEXT;
             ALTER TABLE jobs ADD COLUMN chunks_done INTEGER;
             ALTER TABLE jobs ADD COLUMN chunks_total INTEGER;",
        )?;
        add_missing(
            &conn,
            ("tenants", "served_at"),
            "ALTER TABLE tenants ADD COLUMN served_at INTEGER;",
        )?;
        let reader = Connection::open(path)?;
        reader.execute_batch("PRAGMA query_only=ON; PRAGMA busy_timeout=5000;")?;
        Ok(Self {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
            gates: Default::default(),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&mut conn)?)
    }
}

impl Catalog for SqliteCatalog {
    fn create_tenant(&self, tenant: &TenantId) -> Result<()> {
        let inserted = self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?1, ?2)",
                params![tenant.as_str(), now()],
            )
        })?;
        if inserted == 0 {
            return Err(UserError::Conflict(format!("tenant {tenant} already exists")).into());
        }
        Ok(())
    }

    fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT COUNT(*) FROM tenants", [], |_| Ok(())))
    }

    fn tenant_created_at(&self, tenant: &TenantId) -> Result<Option<i64>> {
        self.read(|c| {
            c.query_row(
                "SELECT created_at FROM tenants WHERE id = ?1",
                [tenant.as_str()],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn tenant_exists(&self, tenant: &TenantId) -> Result<bool> {
        Ok(self.tenant_created_at(tenant)?.is_some())
    }

    fn list_tenants(&self) -> Result<Vec<(TenantId, i64, u64)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT t.id, t.created_at, (SELECT COUNT(*) FROM documents d WHERE d.tenant = t.id AND d.status = 'ready')
                 FROM tenants t ORDER BY t.id",
            )?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)? as u64))
            })?;
            rows.filter_map(|r| match r {
                Ok((id, at, n)) => TenantId::parse(&id).ok().map(|t| Ok((t, at, n))),
                Err(e) => Some(Err(e)),
            })
            .collect()
        })
    }

    fn delete_tenant(&self, tenant: &TenantId) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM tenants WHERE id = ?1", [tenant.as_str()])?;
            for table in [
                "api_keys",
                "documents",
                "jobs",
                "uploads",
                "gc",
                "embed_cache",
                "threads",
                "thread_turns",
                "tenant_config",
                "tenant_limits",
                "usage",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE tenant = ?1"),
                    [tenant.as_str()],
                )?;
            }
            tx.execute(
                "INSERT OR IGNORE INTO tenant_drops (tenant, at) VALUES (?1, ?2)",
                params![tenant.as_str(), now()],
            )?;
            tx.commit()?;
            // Give the pages back and move the (zeroed) WAL frames into the main file.
            c.execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")?;
            Ok(n > 0)
        })
    }

    fn pending_drops(&self) -> Result<Vec<TenantId>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT tenant FROM tenant_drops ORDER BY at")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map(|v| v.iter().filter_map(|t| TenantId::parse(t).ok()).collect())
    }

    fn drop_done(&self, tenant: &TenantId) -> Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM tenant_drops WHERE tenant = ?1",
                [tenant.as_str()],
            )
        })?;
        Ok(())
    }

    fn insert_key(&self, key: &KeyRecord, hash: &[u8]) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO api_keys (id, tenant, hash, created_at, role, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key.id, key.tenant.as_str(), hash, key.created_at, key.role.as_str(), key.name],
            )
        })?;
        Ok(())
    }

    fn key(&self, key_id: &str) -> Result<Option<(KeyRecord, Vec<u8>)>> {
        let row = self.read(|c| {
            c.query_row(
                &format!("SELECT {KEY_COLS}, hash FROM api_keys WHERE id = ?1"),
                [key_id],
                |r| Ok((key_row(r)?, r.get::<_, Vec<u8>>(5)?)),
            )
            .optional()
        })?;
        Ok(row.and_then(|(k, h)| k.map(|k| (k, h))))
    }

    fn keys_of(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE tenant = ?1 ORDER BY created_at, id"
            ))?;
            let rows = st.query_map([tenant.as_str()], key_row)?;
            rows.filter_map(|r| r.transpose()).collect()
        })
    }

    fn revoke_key(&self, key_id: &str, tenant: Option<&TenantId>) -> Result<bool> {
        let n = self.with(|c| match tenant {
            Some(t) => c.execute(
                "DELETE FROM api_keys WHERE id = ?1 AND tenant = ?2",
                params![key_id, t.as_str()],
            ),
            None => c.execute("DELETE FROM api_keys WHERE id = ?1", [key_id]),
        })?;
        Ok(n > 0)
    }

    fn rotate_key(
        &self,
        old_id: &str,
        tenant: Option<&TenantId>,
        new_id: &str,
        hash: &[u8],
    ) -> Result<Option<KeyRecord>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let old = tx
                .query_row(
                    &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"),
                    [old_id],
                    key_row,
                )
                .optional()?
                .flatten()
                .filter(|k| tenant.is_none_or(|t| *t == k.tenant));
            let Some(old) = old else { return Ok(None) };
            tx.execute("DELETE FROM api_keys WHERE id = ?1", [old_id])?;
            let new = KeyRecord {
                id: new_id.to_string(),
                created_at: now(),
                ..old
            };
            tx.execute(
                "INSERT INTO api_keys (id, tenant, hash, created_at, role, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![new.id, new.tenant.as_str(), hash, new.created_at, new.role.as_str(), new.name],
            )?;
            tx.commit()?;
            Ok(Some(new))
        })
    }

    fn tenant_limits(&self, tenant: &TenantId) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT limits FROM tenant_limits WHERE tenant = ?1",
                [tenant.as_str()],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn put_tenant_limits(&self, tenant: &TenantId, json: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO tenant_limits (tenant, limits) VALUES (?1, ?2)
                 ON CONFLICT (tenant) DO UPDATE SET limits = excluded.limits",
                params![tenant.as_str(), json],
            )
        })?;
        Ok(())
    }

    fn stored_totals(&self, tenant: &TenantId) -> Result<(u64, u64, u64)> {
        self.with(|c| {
            let (docs, chunks) = c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(chunk_count), 0)
                 FROM documents WHERE tenant = ?1 AND status = 'ready'",
                [tenant.as_str()],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )?;
            Ok((docs, occupied_bytes(c, tenant, "")?, chunks))
        })
    }

    fn at_byte_quota(&self, tenant: &TenantId, max_bytes: u64) -> Result<bool> {
        self.with(|c| Ok(occupied_bytes(c, tenant, "")? >= max_bytes))
    }

    fn add_usage(&self, rows: &[(TenantId, String, String, u64)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare(
                    "INSERT INTO usage (tenant, day, metric, value) SELECT ?1, ?2, ?3, ?4
                     WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?1)
                     ON CONFLICT (tenant, day, metric) DO UPDATE SET value = value + excluded.value",
                )?;
                for (t, day, metric, v) in rows {
                    st.execute(params![t.as_str(), day, metric, *v as i64])?;
                }
            }
            tx.commit()
        })
    }

    fn usage(&self, tenant: &TenantId, from: &str, to: &str) -> Result<Vec<(String, String, u64)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT day, metric, value FROM usage WHERE tenant = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day, metric",
            )?;
            let rows = st.query_map(params![tenant.as_str(), from, to], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?;
            rows.collect()
        })
    }

    fn thread_owner(&self, tenant: &TenantId, thread: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT owner FROM threads WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), thread],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn thread(
        &self,
        tenant: &TenantId,
        owner: &str,
        thread: &str,
        last: Option<usize>,
    ) -> Result<Option<(i64, Vec<TurnRecord>)>> {
        self.with(|c| {
            let created: Option<i64> = c
                .query_row(
                    "SELECT created_at FROM threads WHERE tenant = ?1 AND id = ?2 AND owner = ?3",
                    params![tenant.as_str(), thread, owner],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(created) = created else {
                return Ok(None);
            };
            let mut stmt = c.prepare(
                "SELECT seq, question, standalone, answer, citations, grounded, code, created_at
                 FROM thread_turns WHERE tenant = ?1 AND thread = ?2 ORDER BY seq DESC LIMIT ?3",
            )?;
            let limit = last.map(|n| n as i64).unwrap_or(-1);
            let mut turns = stmt
                .query_map(params![tenant.as_str(), thread, limit], |r| {
                    Ok(TurnRecord {
                        seq: r.get::<_, i64>(0)? as u32,
                        question: r.get(1)?,
                        standalone: r.get(2)?,
                        answer: r.get(3)?,
                        citations: r.get(4)?,
                        grounded: r.get::<_, i64>(5)? != 0,
                        code: r.get(6)?,
                        created_at: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            turns.reverse();
            Ok(Some((created, turns)))
        })
    }

    fn append_turn(
        &self,
        tenant: &TenantId,
        owner: &str,
        thread: &str,
        turn: &TurnRecord,
    ) -> Result<Option<u32>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let t = now();
            let mine = tx.execute(
                "INSERT INTO threads (tenant, id, created_at, updated_at, owner) VALUES (?1, ?2, ?3, ?3, ?4)
                 ON CONFLICT (tenant, id) DO UPDATE SET updated_at = excluded.updated_at
                 WHERE threads.owner = excluded.owner",
                params![tenant.as_str(), thread, t, owner],
            )?;
            if mine == 0 {
                return Ok(None);
            }
            let seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM thread_turns WHERE tenant = ?1 AND thread = ?2",
                params![tenant.as_str(), thread],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO thread_turns
                 (tenant, thread, seq, question, standalone, answer, citations, grounded, code, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    tenant.as_str(),
                    thread,
                    seq,
                    turn.question,
                    turn.standalone,
                    turn.answer,
                    turn.citations,
                    turn.grounded as i64,
                    turn.code,
                    t
                ],
            )?;
            tx.commit()?;
            Ok(Some(seq as u32))
        })
    }

    fn delete_thread(&self, tenant: &TenantId, owner: &str, thread: &str) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM threads WHERE tenant = ?1 AND id = ?2 AND owner = ?3",
                params![tenant.as_str(), thread, owner],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM thread_turns WHERE tenant = ?1 AND thread = ?2",
                params![tenant.as_str(), thread],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn threads(&self, tenant: &TenantId, owner: &str, limit: usize) -> Result<Vec<ThreadSummary>> {
        self.read(|c| {
            c.prepare(
                "SELECT t.id, t.created_at, t.updated_at,
                        (SELECT COUNT(*) FROM thread_turns u WHERE u.tenant = t.tenant AND u.thread = t.id),
                        COALESCE((SELECT question FROM thread_turns u
                                  WHERE u.tenant = t.tenant AND u.thread = t.id ORDER BY seq LIMIT 1), '')
                 FROM threads t WHERE t.tenant = ?1 AND t.owner = ?2
                 ORDER BY t.updated_at DESC, t.id LIMIT ?3",
            )?
            .query_map(params![tenant.as_str(), owner, limit.clamp(1, 1000) as i64], |r| {
                Ok(ThreadSummary {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    updated_at: r.get(2)?,
                    turns: r.get::<_, i64>(3)? as u32,
                    first_question: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    fn tenant_config(&self, tenant: &TenantId) -> Result<Option<StoredTenantConfig>> {
        self.with(|c| {
            c.query_row(
                "SELECT settings, key_nonce, key_ciphertext, key_fingerprint, updated_at
                 FROM tenant_config WHERE tenant = ?1",
                [tenant.as_str()],
                |r| {
                    let nonce: Option<Vec<u8>> = r.get(1)?;
                    let ct: Option<Vec<u8>> = r.get(2)?;
                    Ok(StoredTenantConfig {
                        settings: r.get(0)?,
                        sealed_key: nonce.zip(ct).map(|(nonce, ciphertext)| {
                            crate::secrets::Sealed { nonce, ciphertext }
                        }),
                        key_fingerprint: r.get(3)?,
                        updated_at: r.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    fn put_tenant_config(&self, tenant: &TenantId, settings: &str, key: KeyUpdate) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO tenant_config (tenant, settings, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant) DO UPDATE SET settings = excluded.settings,
                 updated_at = excluded.updated_at",
                params![tenant.as_str(), settings, now()],
            )?;
            match key {
                KeyUpdate::Keep => {}
                KeyUpdate::Clear => {
                    tx.execute(
                        "UPDATE tenant_config SET key_nonce = NULL, key_ciphertext = NULL,
                         key_fingerprint = NULL WHERE tenant = ?1",
                        [tenant.as_str()],
                    )?;
                }
                KeyUpdate::Set {
                    sealed,
                    fingerprint,
                } => {
                    tx.execute(
                        "UPDATE tenant_config SET key_nonce = ?2, key_ciphertext = ?3,
                         key_fingerprint = ?4 WHERE tenant = ?1",
                        params![
                            tenant.as_str(),
                            sealed.nonce,
                            sealed.ciphertext,
                            fingerprint
                        ],
                    )?;
                }
            }
            tx.commit()
        })
    }

    fn accept_upload(
        &self,
        tenant: &TenantId,
        up: &NewUpload,
        quota: &Quota,
        caps: &QueueCaps,
    ) -> Result<UploadOutcome> {
        self.with(|c| {
            let tx = c.transaction()?;
            let t = now();
            let existing: Option<(Option<i64>, i64, String, String, String, String)> = tx
                .query_row(
                    "SELECT live_version, next_version, status, content_hash, title, metadata FROM documents WHERE tenant = ?1 AND id = ?2",
                    params![tenant.as_str(), up.doc_id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()?;
            let version = match &existing {
                Some((live, next, status, hash, title, meta)) => {
                    let unchanged = status == "ready"
                        && *live == Some(next - 1)
                        && *hash == up.content_hash
                        && *title == up.title
                        && meta_parse(meta) == up.metadata;
                    if unchanged {
                        insert_job(&tx, tenant, up, live.unwrap_or(0) as u64, JobStatus::Succeeded, t)?;
                        tx.commit()?;
                        return Ok(Ok(UploadOutcome::Unchanged));
                    }
                    if let Some(e) = refuse_queue(&tx, tenant, up, caps)? {
                        return Ok(Err(e));
                    }
                    if let Err(e) = check_quota(&tx, tenant, up, quota, !matches!(status.as_str(), "ready" | "pending"))? {
                        return Ok(Err(e));
                    }
                    let status = if *status == "ready" { "ready" } else { "pending" };
                    tx.execute(
                        "UPDATE documents SET next_version = next_version + 1, status = ?3, updated_at = ?4 WHERE tenant = ?1 AND id = ?2",
                        params![tenant.as_str(), up.doc_id.as_str(), status, t],
                    )?;
                    *next as u64
                }
                None => {
                    if let Some(e) = refuse_queue(&tx, tenant, up, caps)? {
                        return Ok(Err(e));
                    }
                    if let Err(e) = check_quota(&tx, tenant, up, quota, true)? {
                        return Ok(Err(e));
                    }
                    tx.execute(
                        "INSERT INTO documents (tenant, id, title, content_type, content_hash, metadata, byte_size, next_version, status, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 2, 'pending', ?8, ?8)",
                        params![tenant.as_str(), up.doc_id.as_str(), up.title, up.content_type, up.content_hash, meta_json(&up.metadata), up.byte_size as i64, t],
                    )?;
                    1
                }
            };
            place_job(&tx, tenant, up, version, t)?;
            tx.commit()?;
            Ok(Ok(UploadOutcome::Queued { version }))
        })
        .and_then(|o| o)
    }

    fn job(&self, tenant: &TenantId, job_id: &str) -> Result<Option<JobRecord>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1 AND tenant = ?2"),
                params![job_id, tenant.as_str()],
                job_row,
            )
            .optional()
        })
    }

    fn job_by_id(&self, job_id: &str) -> Result<Option<JobRecord>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"),
                [job_id],
                job_row,
            )
            .optional()
        })
    }

    fn unfinished_jobs(&self) -> Result<Vec<JobRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {JOB_COLS} FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at, rowid"
            ))?;
            let rows = st.query_map([], job_row)?;
            rows.collect()
        })
    }

    fn recent_jobs(
        &self,
        tenant: Option<&TenantId>,
        limit: usize,
        before: Option<&str>,
    ) -> Result<JobPage> {
        let limit = limit.clamp(1, 1000);
        let scope = tenant.map(|t| t.as_str());
        let rows: Option<Vec<JobRecord>> = self.read(|c| {
            let before = match before.filter(|b| !b.is_empty()) {
                None => i64::MAX,
                Some(id) => match c
                    .query_row(
                        "SELECT rowid FROM jobs WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)",
                        params![id, scope],
                        |r| r.get(0),
                    )
                    .optional()?
                {
                    Some(seq) => seq,
                    None => return Ok(None),
                },
            };
            // Two statements, so the tenant's index serves the tenant's page.
            let take = limit as i64 + 1;
            match scope {
                Some(t) => c
                    .prepare(&format!(
                        "SELECT {JOB_COLS} FROM jobs WHERE tenant = ?1 AND rowid < ?2
                         ORDER BY rowid DESC LIMIT ?3"
                    ))?
                    .query_map(params![t, before, take], job_row)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
                None => c
                    .prepare(&format!(
                        "SELECT {JOB_COLS} FROM jobs WHERE rowid < ?1 ORDER BY rowid DESC LIMIT ?2"
                    ))?
                    .query_map(params![before, take], job_row)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
            }
            .map(Some)
        })?;
        // A cursor that names no job of this scope (another tenant's included) ends the
        // listing: an empty page.
        Ok(page_of(rows.unwrap_or_default(), limit))
    }

    fn upload(&self, job_id: &str) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.query_row(
                "SELECT bytes FROM uploads WHERE job_id = ?1",
                [job_id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn queue_depth(&self) -> Result<u64> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
    }

    fn claim_job(&self, node: &str, lease: std::time::Duration) -> Result<Option<JobRecord>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let now = now_ms();
            let picked: Option<(String, String)> = tx
                .query_row(
                    "SELECT j.id, j.tenant FROM jobs j JOIN tenants t ON t.id = j.tenant
                     WHERE (j.status = 'queued' AND j.not_before <= ?1)
                        OR (j.status = 'running' AND COALESCE(j.lease_until, 0) < ?1)
                     ORDER BY t.served_at, j.rowid LIMIT 1",
                    [now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((id, tenant)) = picked else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, node = ?2,
                        lease_until = ?3, updated_at = ?4, stage = NULL, chunks_done = NULL,
                        chunks_total = NULL WHERE id = ?1",
                params![
                    id,
                    node,
                    now + lease.as_millis() as i64,
                    crate::domain::now()
                ],
            )?;
            tx.execute(
                "UPDATE tenants SET served_at = ?2 WHERE id = ?1",
                params![tenant, now],
            )?;
            let job = tx.query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"),
                [&id],
                job_row,
            )?;
            tx.commit()?;
            Ok(Some(job))
        })
    }

    fn renew_leases(
        &self,
        node: &str,
        jobs: &[String],
        lease: std::time::Duration,
    ) -> Result<usize> {
        let until = now_ms() + lease.as_millis() as i64;
        self.with(|c| {
            let tx = c.transaction()?;
            let mut n = 0;
            for id in jobs {
                n += tx.execute(
                    "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND node = ?2 AND status = 'running'",
                    params![id, node, until],
                )?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    fn release_job(&self, job_id: &str, node: &str, delay: std::time::Duration) -> Result<bool> {
        let at = now_ms() + delay.as_millis() as i64;
        let n = self.with(|c| {
            c.execute(
                "UPDATE jobs SET status = 'queued', node = NULL, lease_until = NULL, not_before = ?3,
                        updated_at = ?4
                 WHERE id = ?1 AND node = ?2 AND status = 'running'",
                params![job_id, node, at, crate::domain::now()],
            )
        })?;
        Ok(n == 1)
    }

    fn report_progress(&self, job: &JobRecord, p: &JobProgress) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET stage = ?4, chunks_done = ?5, chunks_total = ?6
                 WHERE id = ?1 AND node IS ?2 AND attempts = ?3 AND status = 'running'",
                params![
                    job.id,
                    job.node,
                    job.attempts,
                    p.stage.map(JobStage::as_str),
                    p.chunks_done as i64,
                    p.chunks_total.map(|t| t as i64)
                ],
            )
        })?;
        Ok(())
    }

    fn expire_leases(&self) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET lease_until = 0 WHERE status = 'running'",
                [],
            )
        })
    }

    fn tenant_gate(
        &self,
        tenant: &TenantId,
        exclusive: bool,
        wait: std::time::Duration,
    ) -> Result<TenantGate> {
        self.gates.acquire(tenant, exclusive, wait)
    }

    /// One process owns an SQLite catalog: it is the only node.
    fn heartbeat(&self, _node: &NodeInfo, _alive: std::time::Duration) -> Result<usize> {
        Ok(1)
    }

    fn leave(&self, _node: &str) -> Result<()> {
        Ok(())
    }

    fn commit_job(
        &self,
        job: &JobRecord,
        footprint: Footprint,
        quota: &Quota,
    ) -> Result<CommitOutcome> {
        let chunk_count = footprint.chunks;
        self.with(|c| {
            let tx = c.transaction()?;
            let t = now();
            if !holds(&tx, job)? {
                return Ok(CommitOutcome::NotHeld);
            }
            tx.execute("DELETE FROM uploads WHERE job_id = ?1", [&job.id])?;
            let other_chunks = quota
                .max_chunks
                .map(|_| {
                    tx.query_row(
                        "SELECT COALESCE(SUM(chunk_count), 0) FROM documents WHERE tenant = ?1 AND id != ?2 AND status = 'ready'",
                        params![job.tenant.as_str(), job.doc_id.as_str()],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(|n| n as u64)
                })
                .transpose()?;
            let other_bytes = quota
                .max_bytes
                .map(|_| occupied_bytes(&tx, &job.tenant, job.doc_id.as_str()))
                .transpose()?;
            if let Some((what, limit, msg)) = quota.refuse_commit(footprint, other_chunks, other_bytes) {
                fail_job_tx(&tx, job, "quota_exceeded", &msg, t)?;
                queue_gc(&tx, &job.tenant, &job.doc_id, job.version, job.version + 1)?;
                tx.commit()?;
                return Ok(CommitOutcome::QuotaExceeded { what, limit });
            }
            let n = tx.execute(
                "UPDATE documents SET live_version = ?3, status = 'ready', title = ?4, content_type = ?5, content_hash = ?6,
                        metadata = ?7, byte_size = ?8, chunk_count = ?9, updated_at = ?10, stored_bytes = ?11
                 WHERE tenant = ?1 AND id = ?2 AND status != 'deleted' AND next_version = ?3 + 1",
                params![
                    job.tenant.as_str(), job.doc_id.as_str(), job.version as i64, job.title, job.content_type,
                    job.content_hash, meta_json(&job.metadata), job.byte_size as i64, chunk_count as i64, t,
                    footprint.bytes as i64
                ],
            )?;
            let outcome = if n == 1 {
                tx.execute(
                    "UPDATE jobs SET status = 'succeeded', chunk_count = ?2, updated_at = ?3 WHERE id = ?1",
                    params![job.id, chunk_count as i64, t],
                )?;
                queue_gc(&tx, &job.tenant, &job.doc_id, 0, job.version)?;
                CommitOutcome::Committed
            } else {
                fail_job_tx(&tx, job, "superseded", "a newer upload or a delete of this document replaced this version", t)?;
                // This version's own chunks are garbage too.
                queue_gc(&tx, &job.tenant, &job.doc_id, job.version, job.version + 1)?;
                CommitOutcome::Superseded
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    fn fail_job(&self, job: &JobRecord, code: &str, message: &str) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            if !holds(&tx, job)? {
                return Ok(false);
            }
            tx.execute("DELETE FROM uploads WHERE job_id = ?1", [&job.id])?;
            fail_job_tx(&tx, job, code, message, now())?;
            queue_gc(&tx, &job.tenant, &job.doc_id, job.version, job.version + 1)?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn document(&self, tenant: &TenantId, id: &DocId) -> Result<Option<DocumentRecord>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {DOC_COLS} FROM documents WHERE tenant = ?1 AND id = ?2 AND status != 'deleted'"),
                params![tenant.as_str(), id.as_str()],
                doc_row,
            )
            .optional()
        })
    }

    fn documents(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Vec<DocumentRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {DOC_COLS} FROM documents WHERE tenant = ?1 AND status != 'deleted' AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = st.query_map(params![tenant.as_str(), after.unwrap_or(""), limit as i64], doc_row)?;
            rows.collect()
        })
    }

    fn delete_document(&self, tenant: &TenantId, id: &DocId) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            let next: Option<i64> = tx
                .query_row(
                    "SELECT next_version FROM documents WHERE tenant = ?1 AND id = ?2 AND status != 'deleted'",
                    params![tenant.as_str(), id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(next) = next else { return Ok(false) };
            tx.execute(
                "UPDATE documents SET status = 'deleted', live_version = NULL, chunk_count = 0, next_version = ?3 + 1, updated_at = ?4
                 WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id.as_str(), next, now()],
            )?;
            queue_gc(&tx, tenant, id, 0, next as u64 + 1)?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn live_documents(
        &self,
        tenant: &TenantId,
        ids: &[&str],
    ) -> Result<HashMap<String, LiveDocument>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.read(|c| {
            let marks = vec!["?"; ids.len()].join(",");
            let mut st = c.prepare_cached(&format!(
                "SELECT id, live_version, title, metadata FROM documents WHERE tenant = ? AND status = 'ready' AND id IN ({marks})"
            ))?;
            let t = tenant.as_str();
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![&t];
            args.extend(ids.iter().map(|s| s as &dyn rusqlite::ToSql));
            let rows = st.query_map(args.as_slice(), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    LiveDocument {
                        version: r.get::<_, i64>(1)? as u64,
                        title: r.get(2)?,
                        metadata: meta_parse(&r.get::<_, String>(3)?),
                    },
                ))
            })?;
            rows.collect()
        })
    }

    fn pending_gc(&self) -> Result<Vec<GcTask>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT tenant, doc_id, lo, hi FROM gc")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (t, d, lo, hi) = row?;
                if let (Ok(tenant), Ok(doc)) = (TenantId::parse(&t), DocId::parse(&d)) {
                    out.push(GcTask {
                        tenant,
                        doc,
                        versions: lo..hi,
                    });
                }
            }
            Ok(out)
        })
    }

    fn gc_done(&self, task: &GcTask) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            let args = params![
                task.tenant.as_str(),
                task.doc.as_str(),
                task.versions.start as i64,
                task.versions.end as i64
            ];
            tx.execute(
                "DELETE FROM embed_cache WHERE tenant = ?1 AND doc_id = ?2 AND version >= ?3 AND version < ?4",
                args,
            )?;
            tx.execute(
                "DELETE FROM gc WHERE tenant = ?1 AND doc_id = ?2 AND lo = ?3 AND hi = ?4",
                args,
            )?;
            tx.commit()
        })?;
        Ok(())
    }

    fn cached_vectors(
        &self,
        tenant: &TenantId,
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<f32>>> {
        self.with(|c| {
            let mut st =
                c.prepare_cached("SELECT vector FROM embed_cache WHERE tenant = ?1 AND hash = ?2")?;
            let mut out = HashMap::new();
            for h in hashes {
                let v: Option<Vec<u8>> = st
                    .query_row(params![tenant.as_str(), &h[..]], |r| r.get(0))
                    .optional()?;
                if let Some(bytes) = v {
                    out.insert(*h, floats(&bytes));
                }
            }
            Ok(out)
        })
    }

    fn cache_vectors(
        &self,
        tenant: &TenantId,
        owner: (&DocId, u64),
        items: &[([u8; 32], &[f32])],
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO embed_cache (tenant, hash, vector, doc_id, version) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (h, v) in items {
                    st.execute(params![tenant.as_str(), &h[..], vector_bytes(v), owner.0.as_str(), owner.1 as i64])?;
                }
            }
            tx.commit()
        })
    }

    fn claim_cached(
        &self,
        tenant: &TenantId,
        owner: (&DocId, u64),
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<f32>>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let mut out = HashMap::new();
            {
                let mut st = tx.prepare_cached(
                    "UPDATE embed_cache SET doc_id = ?3, version = ?4 WHERE tenant = ?1 AND hash = ?2
                     RETURNING vector",
                )?;
                for h in hashes {
                    let v: Option<Vec<u8>> = st
                        .query_row(
                            params![tenant.as_str(), &h[..], owner.0.as_str(), owner.1 as i64],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(bytes) = v {
                        out.insert(*h, floats(&bytes));
                    }
                }
            }
            tx.commit()?;
            Ok(out)
        })
    }
}

fn insert_job(
    tx: &rusqlite::Transaction<'_>,
    tenant: &TenantId,
    up: &NewUpload,
    version: u64,
    status: JobStatus,
    t: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO jobs (id, tenant, doc_id, version, status, title, content_type, content_hash, metadata, byte_size, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
        params![
            up.job_id, tenant.as_str(), up.doc_id.as_str(), version as i64, status.as_str(), up.title, up.content_type,
            up.content_hash, meta_json(&up.metadata), up.byte_size as i64, t
        ],
    )?;
    Ok(())
}

/// Insert the job of a new version: queued with its upload's bytes, or running, held by the
/// caller.
fn place_job(
    tx: &rusqlite::Transaction<'_>,
    tenant: &TenantId,
    up: &NewUpload,
    version: u64,
    t: i64,
) -> rusqlite::Result<()> {
    match &up.payload {
        Payload::Bytes(bytes) => {
            insert_job(tx, tenant, up, version, JobStatus::Queued, t)?;
            tx.execute(
                "INSERT INTO uploads (job_id, tenant, bytes) VALUES (?1, ?2, ?3)",
                params![up.job_id, tenant.as_str(), bytes],
            )?;
        }
        Payload::HeldBy { node, lease } => {
            insert_job(tx, tenant, up, version, JobStatus::Running, t)?;
            tx.execute(
                "UPDATE jobs SET attempts = 1, node = ?2, lease_until = ?3 WHERE id = ?1",
                params![up.job_id, node, now_ms() + lease.as_millis() as i64],
            )?;
        }
    }
    Ok(())
}

/// The queue cap a queued upload would break, as the error to return.
fn refuse_queue(
    tx: &rusqlite::Transaction<'_>,
    tenant: &TenantId,
    up: &NewUpload,
    caps: &QueueCaps,
) -> rusqlite::Result<Option<EngineError>> {
    if !matches!(up.payload, Payload::Bytes(_)) {
        return Ok(None);
    }
    let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| {
        tx.query_row(sql, p, |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
    };
    let mine = count(
        "SELECT COUNT(*) FROM jobs WHERE tenant = ?1 AND status IN ('queued', 'running')",
        &[&tenant.as_str()],
    )?;
    let all = count(
        "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')",
        &[],
    )?;
    Ok(caps.refuse(mine, all))
}

/// Whether the job is still `job`'s to end ([`still_held`]).
fn holds(tx: &rusqlite::Transaction<'_>, job: &JobRecord) -> rusqlite::Result<bool> {
    let row: Option<(String, Option<String>, i64)> = tx
        .query_row(
            "SELECT status, node, attempts FROM jobs WHERE id = ?1",
            [&job.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.is_some_and(|(status, node, attempts)| {
        still_held(job, &status, node.as_deref(), attempts as u32)
    }))
}

/// Refuse an upload that would take the tenant past a quota (documents, stored bytes).
fn check_quota(
    tx: &rusqlite::Transaction<'_>,
    tenant: &TenantId,
    up: &NewUpload,
    quota: &Quota,
    new_document: bool,
) -> rusqlite::Result<Result<(), crate::error::EngineError>> {
    let documents = quota
        .max_documents
        .map(|_| {
            tx.query_row(
                "SELECT COUNT(*) FROM documents WHERE tenant = ?1 AND status IN ('ready', 'pending')",
                params![tenant.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
        .transpose()?;
    let other_bytes = quota
        .max_bytes
        .map(|_| occupied_bytes(tx, tenant, up.doc_id.as_str()))
        .transpose()?;
    Ok(
        match quota.refuse_upload(new_document, up.byte_size, documents, other_bytes) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        },
    )
}

fn fail_job_tx(
    tx: &rusqlite::Transaction<'_>,
    job: &JobRecord,
    code: &str,
    message: &str,
    t: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE jobs SET status = 'failed', error_code = ?2, error_message = ?3, updated_at = ?4 WHERE id = ?1",
        params![job.id, code, message, t],
    )?;
    // A document that never had a live version shows the failure; one with a live version keeps it.
    tx.execute(
        "UPDATE documents SET status = 'failed', updated_at = ?3 WHERE tenant = ?1 AND id = ?2 AND status = 'pending' AND next_version = ?4 + 1",
        params![job.tenant.as_str(), job.doc_id.as_str(), t, job.version as i64],
    )?;
    Ok(())
}

fn queue_gc(
    tx: &rusqlite::Transaction<'_>,
    tenant: &TenantId,
    doc: &DocId,
    lo: u64,
    hi: u64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO gc (tenant, doc_id, lo, hi) VALUES (?1, ?2, ?3, ?4)",
        params![tenant.as_str(), doc.as_str(), lo as i64, hi as i64],
    )?;
    Ok(())
}
