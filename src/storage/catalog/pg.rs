//! The catalog on PostgreSQL: one database every node of a deployment shares.
//!
//! Isolation: READ COMMITTED (PostgreSQL's default) everywhere. The transactions that check a
//! quota and then write (`accept_upload`, `commit_job`) first take the tenant's row with
//! `FOR NO KEY UPDATE`, so two nodes checking the same tenant's quota run one after the other
//! and cannot both pass; they also conflict with `delete_tenant`, which deletes that row. A
//! document's version counter is read and bumped under the same lock. Everything else is one
//! statement, or a transaction whose rows are keyed by what it writes (a thread's turns are
//! serialised by the upsert of the thread's row).
//!
//! Schema changes are numbered migrations, applied at start inside one transaction under an
//! advisory lock, so nodes starting together apply each exactly once; a node refuses a database
//! whose schema is newer than it knows.
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{GenericClient, NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;

use super::*;
use crate::config::PostgresConfig;
use crate::domain::{now, DocId, Footprint, TenantId};
use crate::error::{EngineError, InternalError, Result, UserError};

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// Ids are compared and paginated byte-wise (`COLLATE "C"`), as in SQLite, whatever the
/// database's locale.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE tenants (
    id TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL,
    hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT ''
);
CREATE INDEX api_keys_tenant ON api_keys(tenant);
CREATE TABLE documents (
    tenant TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    title TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL,
    byte_size BIGINT NOT NULL,
    chunk_count BIGINT NOT NULL DEFAULT 0,
    stored_bytes BIGINT NOT NULL DEFAULT 0,
    live_version BIGINT,
    next_version BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE jobs (
    id TEXT COLLATE "C" PRIMARY KEY,
    seq BIGSERIAL NOT NULL,
    tenant TEXT COLLATE "C" NOT NULL,
    doc_id TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    status TEXT NOT NULL,
    title TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL,
    byte_size BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    chunk_count BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_unfinished ON jobs(status, seq) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_tenant ON jobs(tenant);
CREATE TABLE gc (
    tenant TEXT COLLATE "C" NOT NULL,
    doc_id TEXT COLLATE "C" NOT NULL,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL,
    PRIMARY KEY (tenant, doc_id, lo, hi)
);
CREATE TABLE embed_cache (
    tenant TEXT COLLATE "C" NOT NULL,
    hash BYTEA NOT NULL,
    vector BYTEA NOT NULL,
    doc_id TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (tenant, hash)
);
CREATE INDEX embed_cache_owner ON embed_cache(tenant, doc_id, version);
CREATE TABLE threads (
    tenant TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE thread_turns (
    tenant TEXT COLLATE "C" NOT NULL,
    thread TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    question TEXT NOT NULL,
    standalone TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    grounded BOOLEAN NOT NULL,
    code TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, thread, seq)
);
CREATE TABLE tenant_limits (
    tenant TEXT COLLATE "C" PRIMARY KEY,
    limits TEXT NOT NULL
);
CREATE TABLE usage (
    tenant TEXT COLLATE "C" NOT NULL,
    day TEXT COLLATE "C" NOT NULL,
    metric TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (tenant, day, metric)
);
CREATE TABLE tenant_config (
    tenant TEXT COLLATE "C" PRIMARY KEY,
    settings TEXT NOT NULL,
    key_nonce BYTEA,
    key_ciphertext BYTEA,
    key_fingerprint TEXT,
    updated_at BIGINT NOT NULL
);
"#,
    ),
    (2, QUEUE_COLUMNS),
    (3, UPLOADS_AND_NODES),
    (
        4,
        "ALTER TABLE jobs ADD COLUMN stage TEXT;
         ALTER TABLE jobs ADD COLUMN chunks_done BIGINT;
         ALTER TABLE jobs ADD COLUMN chunks_total BIGINT;",
    ),
    (
        5,
        "CREATE INDEX jobs_recent ON jobs(seq);
         CREATE INDEX jobs_tenant_recent ON jobs(tenant, seq);",
    ),
];

/// Every table of the catalog, in the order `import_sqlite` copies them.
const COPIED_TABLES: &[&str] = &[
    "tenants",
    "api_keys",
    "documents",
    "jobs",
    "gc",
    "embed_cache",
    "threads",
    "thread_turns",
    "tenant_limits",
    "usage",
    "tenant_config",
];

/// One SQLite value as the PostgreSQL column type `ty` (information_schema's name) takes it.
fn sqlite_value(v: rusqlite::types::ValueRef<'_>, ty: &str) -> Box<dyn ToSql + Sync> {
    use rusqlite::types::ValueRef as V;
    let int = match v {
        V::Integer(i) => Some(i),
        V::Real(f) => Some(f as i64),
        _ => None,
    };
    let bytes = match v {
        V::Text(b) | V::Blob(b) => Some(b.to_vec()),
        _ => None,
    };
    match ty {
        "bigint" => Box::new(int),
        "integer" => Box::new(int.map(|i| i as i32)),
        "boolean" => Box::new(int.map(|i| i != 0)),
        "bytea" => Box::new(bytes),
        _ => Box::new(bytes.map(|b| String::from_utf8_lossy(&b).into_owned())),
    }
}

/// Version 2: the shared job queue. Times in milliseconds since the epoch.
const QUEUE_COLUMNS: &str = "
ALTER TABLE jobs ADD COLUMN node TEXT;
ALTER TABLE jobs ADD COLUMN lease_until BIGINT;
ALTER TABLE jobs ADD COLUMN not_before BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN served_at BIGINT;
";

/// Version 3: uploads every node can read, and the nodes' heartbeats.
const UPLOADS_AND_NODES: &str = r#"
CREATE TABLE uploads (
    job_id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL,
    bytes BYTEA NOT NULL
);
CREATE INDEX uploads_tenant ON uploads(tenant);
CREATE TABLE tenant_drops (
    tenant TEXT COLLATE "C" PRIMARY KEY,
    at BIGINT NOT NULL
);
CREATE TABLE nodes (
    id TEXT COLLATE "C" PRIMARY KEY,
    addr TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
"#;

/// The database's clock in milliseconds: leases, delays and heartbeats are compared on one
/// clock, whatever the nodes' clocks say.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::BIGINT";

/// First key of the tenant gates' advisory locks (the second is `hashtext(tenant)`; two
/// tenants with the same hash only wait for each other, never share data).
const GATE_SPACE: i32 = 0x746e_7479;

/// A tenant gate: an advisory lock held by the session of one pooled connection, which the
/// gate keeps until it is dropped. A node that dies closes its sessions, which releases them.
struct PgGate {
    conn: Option<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>>,
    tenant: String,
    exclusive: bool,
}

impl Drop for PgGate {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let unlock = if self.exclusive {
            "SELECT pg_advisory_unlock($1, hashtext($2))"
        } else {
            "SELECT pg_advisory_unlock_shared($1, hashtext($2))"
        };
        if let Err(e) = conn.execute(unlock, &[&GATE_SPACE, &self.tenant]) {
            // A broken session has released its locks already.
            tracing::warn!(error = %e, "releasing a tenant gate failed");
        }
    }
}

/// `pg_advisory_xact_lock` key of the migration transaction ("tenantry" in ASCII).
const MIGRATION_LOCK: i64 = 0x7465_6e61_6e74_7279;

/// The same sum as the SQLite catalog's [`super::OCCUPIED_BYTES`], in bytes ($1 tenant, $2 the
/// document to leave out, '' for none).
const OCCUPIED_BYTES_PG: &str = "SELECT (
    (SELECT COALESCE(SUM(CASE WHEN status = 'ready' THEN GREATEST(stored_bytes, byte_size) ELSE byte_size END), 0)
       FROM documents WHERE tenant = $1 AND id <> $2 AND status IN ('ready', 'pending'))
  + (SELECT COALESCE(SUM(octet_length(vector) + octet_length(hash) + octet_length(doc_id) + 16), 0)
       FROM embed_cache WHERE tenant = $1)
  + (SELECT COALESCE(SUM(octet_length(question) + octet_length(standalone) + octet_length(answer) + octet_length(citations) + 64), 0)
       FROM thread_turns WHERE tenant = $1)
  + (SELECT COALESCE(SUM(octet_length(title) + octet_length(metadata) + COALESCE(octet_length(error_message), 0) + 128), 0)
       FROM jobs WHERE tenant = $1))::BIGINT";

/// Connection-level trouble (the server restarting, a network cut, a failover) is the
/// deployment's temporary state, not a bug: 503 with `Retry-After`, like a Qdrant outage.
fn pg_err(e: postgres::Error) -> EngineError {
    let transient = match e.as_db_error() {
        // Not from the server: a closed connection or an I/O error is the network's; anything
        // else (a type mismatch) is a bug.
        None => {
            e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
        }
        Some(db) => {
            let code = db.code().code();
            // 08: connection exception; 57P0x: shutdown, cannot connect now; 40001/40P01:
            // serialisation failure, deadlock; 53300: too many connections.
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
                || code == "53300"
        }
    };
    // The cause holds the useful part ("error serializing parameter 2": of which type).
    let detail = match std::error::Error::source(&e) {
        Some(cause) => format!("catalog (postgres): {e}: {cause}"),
        None => format!("catalog (postgres): {e}"),
    };
    if transient {
        InternalError::StorageUnavailable(detail).into()
    } else {
        InternalError::Other(detail).into()
    }
}

fn corrupt(what: &str) -> EngineError {
    InternalError::Other(format!("catalog (postgres): unreadable {what}")).into()
}

/// r2d2 logs a failed connection attempt at error level through `log`; here it is a warning
/// of ours (the server being down is the deployment's state, and requests say 503).
#[derive(Debug)]
struct LogConnectError;

impl r2d2::HandleError<postgres::Error> for LogConnectError {
    fn handle_error(&self, error: postgres::Error) {
        tracing::warn!(error = %error, "catalog (postgres): connecting failed");
    }
}

pub struct PostgresCatalog {
    /// `None` only while dropping.
    pool: Option<Pool>,
}

impl Drop for PostgresCatalog {
    fn drop(&mut self) {
        // A postgres::Client closes its connection with a `block_on` of its own, which panics
        // on a thread that drives async tasks (an engine dropped inside a runtime): close the
        // connections on a plain thread.
        if let Some(pool) = self.pool.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::spawn(move || drop(pool)).join();
            }
        }
    }
}

impl PostgresCatalog {
    /// Connect, and bring the schema up to date. Fails (with the reason, never the URL) when
    /// the server cannot be reached within `connect_timeout_secs`.
    pub fn connect(cfg: &PostgresConfig) -> Result<Self> {
        let mut pg: postgres::Config = cfg
            .url
            .expose()
            .parse()
            .map_err(|e| InternalError::Other(format!("postgres.url: {e}")))?;
        pg.connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("tenantry")
            .options(&format!(
                "-c statement_timeout={}s -c lock_timeout={}s -c idle_in_transaction_session_timeout={}s",
                cfg.statement_timeout_secs,
                cfg.statement_timeout_secs,
                cfg.statement_timeout_secs * 2
            ));
        let manager = PostgresConnectionManager::new(pg, NoTls);
        let pool = r2d2::Pool::builder()
            .error_handler(Box::new(LogConnectError))
            .max_size(cfg.pool_size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .build(manager)
            .map_err(|e| {
                InternalError::StorageUnavailable(format!("catalog (postgres): connect: {e}"))
            })?;
        let me = Self { pool: Some(pool) };
        me.migrate()?;
        Ok(me)
    }

    fn migrate(&self) -> Result<()> {
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS tenantry_schema (
                    version INTEGER PRIMARY KEY,
                    applied_at BIGINT NOT NULL
                )",
            )?;
            let current: i32 = tx
                .query_one("SELECT COALESCE(MAX(version), 0) FROM tenantry_schema", &[])?
                .get(0);
            if current > latest {
                return Ok(Err(InternalError::Other(format!(
                    "the catalog's schema is version {current}, newer than this build knows ({latest}): upgrade tenantry"
                ))
                .into()));
            }
            for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
                tx.batch_execute(sql)?;
                tx.execute(
                    "INSERT INTO tenantry_schema (version, applied_at) VALUES ($1, $2)",
                    &[version, &now()],
                )?;
                tracing::info!(version, "catalog: schema migration applied");
            }
            tx.commit()?;
            Ok(Ok(()))
        })?
    }

    /// A connection of the pool, or 503 when none comes within the connect timeout.
    fn conn(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>> {
        let pool = self.pool.as_ref().ok_or_else(|| {
            EngineError::from(InternalError::StorageUnavailable(
                "catalog (postgres): closed".into(),
            ))
        })?;
        pool.get().map_err(|e| {
            EngineError::from(InternalError::StorageUnavailable(format!(
                "catalog (postgres): no connection: {e}"
            )))
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut conn = self.conn()?;
        f(&mut conn).map_err(pg_err)
    }

    /// Copy an SQLite catalog (of an embedded data directory) into this one, in one
    /// transaction, table by table; rows already here (same key) are left as they are, so a
    /// second run copies nothing. Refused while the SQLite catalog has unfinished jobs: their
    /// uploads are files of that data directory. Returns (table, rows copied).
    pub fn import_sqlite(&self, path: &Path) -> Result<Vec<(String, u64)>> {
        // Opening it brings an older catalog's schema up to date first.
        drop(super::SqliteCatalog::open(path)?);
        let src = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let unfinished: i64 = src.query_row(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')",
            [],
            |r| r.get(0),
        )?;
        if unfinished > 0 {
            return Err(UserError::Conflict(format!(
                "{unfinished} ingestion jobs are unfinished in {}: start tenantry serve on it until they are done, then copy",
                path.display()
            ))
            .into());
        }
        let mut copied = vec![];
        self.with(|c| {
            let mut tx = c.transaction()?;
            for table in COPIED_TABLES {
                let cols: Vec<(String, String)> = tx
                    .query(
                        "SELECT column_name, data_type FROM information_schema.columns
                         WHERE table_schema = current_schema() AND table_name = $1
                           AND COALESCE(column_default, '') NOT LIKE 'nextval(%'
                         ORDER BY ordinal_position",
                        &[table],
                    )?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
                let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
                let insert = tx.prepare(&format!(
                    "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
                    names.join(", "),
                    marks.join(", ")
                ))?;
                // rowid order: jobs keep their submission order (their `seq`).
                let order = if *table == "jobs" {
                    " ORDER BY rowid"
                } else {
                    ""
                };
                let mut st = match src
                    .prepare(&format!("SELECT {} FROM {table}{order}", names.join(", ")))
                {
                    Ok(st) => st,
                    Err(e) => return Ok(Err(EngineError::from(e))),
                };
                let mut rows = match st.query([]) {
                    Ok(rows) => rows,
                    Err(e) => return Ok(Err(EngineError::from(e))),
                };
                let mut n = 0u64;
                loop {
                    let row = match rows.next() {
                        Ok(Some(row)) => row,
                        Ok(None) => break,
                        Err(e) => return Ok(Err(EngineError::from(e))),
                    };
                    let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(cols.len());
                    for (i, (_, ty)) in cols.iter().enumerate() {
                        let v = row.get_ref(i).map_err(EngineError::from);
                        let v = match v {
                            Ok(v) => v,
                            Err(e) => return Ok(Err(e)),
                        };
                        values.push(sqlite_value(v, ty));
                    }
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        values.iter().map(|b| b.as_ref()).collect();
                    n += tx.execute(&insert, &refs)?;
                }
                copied.push((table.to_string(), n));
            }
            tx.commit()?;
            Ok(Ok(()))
        })??;
        Ok(copied)
    }

    /// Remove every row of every table (tests: a fresh catalog on a shared server).
    pub fn truncate_all(&self) -> Result<()> {
        self.with(|c| {
            c.batch_execute(
                "TRUNCATE tenants, api_keys, documents, jobs, gc, embed_cache, threads, thread_turns,
                 tenant_limits, usage, tenant_config",
            )
        })
    }
}

/// A key row; `None` for a row whose tenant or role this build does not know.
fn key_row(r: &Row) -> Option<KeyRecord> {
    let tenant = TenantId::parse(r.get::<_, &str>(1)).ok()?;
    let role = crate::domain::Role::parse(r.get::<_, &str>(2))?;
    Some(KeyRecord {
        id: r.get(0),
        tenant,
        role,
        name: r.get(3),
        created_at: r.get(4),
    })
}

fn doc_row(r: &Row) -> Result<DocumentRecord> {
    Ok(DocumentRecord {
        id: DocId::parse(r.get::<_, &str>(0)).map_err(|_| corrupt("document id"))?,
        title: r.get(1),
        content_type: r.get(2),
        content_hash: r.get(3),
        metadata: meta_parse(r.get(4)),
        byte_size: r.get::<_, i64>(5) as u64,
        chunk_count: r.get::<_, i64>(6) as u64,
        live_version: r.get::<_, Option<i64>>(7).map(|v| v as u64),
        status: DocStatus::parse(r.get(8)),
        created_at: r.get(9),
        updated_at: r.get(10),
    })
}

fn job_row(r: &Row) -> Result<JobRecord> {
    let code: Option<String> = r.get(11);
    let msg: Option<String> = r.get(12);
    Ok(JobRecord {
        id: r.get(0),
        tenant: TenantId::parse(r.get::<_, &str>(1)).map_err(|_| corrupt("job tenant"))?,
        doc_id: DocId::parse(r.get::<_, &str>(2)).map_err(|_| corrupt("job document id"))?,
        version: r.get::<_, i64>(3) as u64,
        status: JobStatus::parse(r.get(4)),
        title: r.get(5),
        content_type: r.get(6),
        content_hash: r.get(7),
        metadata: meta_parse(r.get(8)),
        byte_size: r.get::<_, i64>(9) as u64,
        attempts: r.get::<_, i32>(10) as u32,
        error: code.map(|c| (c, msg.unwrap_or_default())),
        created_at: r.get(13),
        node: r.get(15),
        progress: progress_of(r.get(16), r.get(17), r.get(18)),
        updated_at: r.get(14),
    })
}

fn occupied_bytes(
    c: &mut impl GenericClient,
    tenant: &TenantId,
    except: &str,
) -> std::result::Result<u64, postgres::Error> {
    let n: i64 = c
        .query_one(OCCUPIED_BYTES_PG, &[&tenant.as_str(), &except])?
        .get(0);
    Ok(n.max(0) as u64)
}

/// Serialises the quota-checking transactions of one tenant (see the module comment); false
/// when the tenant does not exist (any more).
fn lock_tenant(
    tx: &mut postgres::Transaction<'_>,
    tenant: &TenantId,
) -> std::result::Result<bool, postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE",
            &[&tenant.as_str()],
        )?
        .is_some())
}

fn hash_of(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

impl Catalog for PostgresCatalog {
    fn create_tenant(&self, tenant: &TenantId) -> Result<()> {
        let inserted = self.with(|c| {
            c.execute(
                "INSERT INTO tenants (id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&tenant.as_str(), &now()],
            )
        })?;
        if inserted == 0 {
            return Err(UserError::Conflict(format!("tenant {tenant} already exists")).into());
        }
        Ok(())
    }

    fn ping(&self) -> Result<()> {
        self.with(|c| {
            c.query_one("SELECT COUNT(*) FROM tenantry_schema", &[])
                .map(|_| ())
        })
    }

    fn tenant_created_at(&self, tenant: &TenantId) -> Result<Option<i64>> {
        self.with(|c| {
            c.query_opt(
                "SELECT created_at FROM tenants WHERE id = $1",
                &[&tenant.as_str()],
            )
            .map(|r| r.map(|r| r.get(0)))
        })
    }

    fn tenant_exists(&self, tenant: &TenantId) -> Result<bool> {
        Ok(self.tenant_created_at(tenant)?.is_some())
    }

    fn list_tenants(&self) -> Result<Vec<(TenantId, i64, u64)>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT t.id, t.created_at,
                        (SELECT COUNT(*) FROM documents d WHERE d.tenant = t.id AND d.status = 'ready')
                 FROM tenants t ORDER BY t.id",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                TenantId::parse(r.get::<_, &str>(0))
                    .ok()
                    .map(|t| (t, r.get::<_, i64>(1), r.get::<_, i64>(2) as u64))
            })
            .collect())
    }

    fn delete_tenant(&self, tenant: &TenantId) -> Result<bool> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute("DELETE FROM tenants WHERE id = $1", &[&tenant.as_str()])?;
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
                    &format!("DELETE FROM {table} WHERE tenant = $1"),
                    &[&tenant.as_str()],
                )?;
            }
            tx.execute(
                "INSERT INTO tenant_drops (tenant, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&tenant.as_str(), &now()],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn pending_drops(&self) -> Result<Vec<TenantId>> {
        let rows = self.with(|c| c.query("SELECT tenant FROM tenant_drops ORDER BY at", &[]))?;
        Ok(rows
            .iter()
            .filter_map(|r| TenantId::parse(r.get::<_, &str>(0)).ok())
            .collect())
    }

    fn drop_done(&self, tenant: &TenantId) -> Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM tenant_drops WHERE tenant = $1",
                &[&tenant.as_str()],
            )
        })?;
        Ok(())
    }

    fn insert_key(&self, key: &KeyRecord, hash: &[u8]) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO api_keys (id, tenant, hash, created_at, role, name) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&key.id, &key.tenant.as_str(), &hash, &key.created_at, &key.role.as_str(), &key.name],
            )
        })?;
        Ok(())
    }

    fn key(&self, key_id: &str) -> Result<Option<(KeyRecord, Vec<u8>)>> {
        let row = self.with(|c| {
            c.query_opt(
                &format!("SELECT {KEY_COLS}, hash FROM api_keys WHERE id = $1"),
                &[&key_id],
            )
        })?;
        Ok(row.and_then(|r| key_row(&r).map(|k| (k, r.get::<_, Vec<u8>>(5)))))
    }

    fn keys_of(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>> {
        let rows = self.with(|c| {
            c.query(
                &format!(
                    "SELECT {KEY_COLS} FROM api_keys WHERE tenant = $1 ORDER BY created_at, id"
                ),
                &[&tenant.as_str()],
            )
        })?;
        Ok(rows.iter().filter_map(key_row).collect())
    }

    fn revoke_key(&self, key_id: &str, tenant: Option<&TenantId>) -> Result<bool> {
        let n = self.with(|c| match tenant {
            Some(t) => c.execute(
                "DELETE FROM api_keys WHERE id = $1 AND tenant = $2",
                &[&key_id, &t.as_str()],
            ),
            None => c.execute("DELETE FROM api_keys WHERE id = $1", &[&key_id]),
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
            let mut tx = c.transaction()?;
            // DELETE .. RETURNING: of two nodes rotating the same key, one gets the row.
            let old = tx
                .query_opt(
                    &format!("DELETE FROM api_keys WHERE id = $1 RETURNING {KEY_COLS}"),
                    &[&old_id],
                )?
                .and_then(|r| key_row(&r))
                .filter(|k| tenant.is_none_or(|t| *t == k.tenant));
            let Some(old) = old else {
                // Not ours (or gone): the delete is undone.
                return Ok(None);
            };
            let new = KeyRecord {
                id: new_id.to_string(),
                created_at: now(),
                ..old
            };
            tx.execute(
                "INSERT INTO api_keys (id, tenant, hash, created_at, role, name) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&new.id, &new.tenant.as_str(), &hash, &new.created_at, &new.role.as_str(), &new.name],
            )?;
            tx.commit()?;
            Ok(Some(new))
        })
    }

    fn tenant_limits(&self, tenant: &TenantId) -> Result<Option<String>> {
        self.with(|c| {
            c.query_opt(
                "SELECT limits FROM tenant_limits WHERE tenant = $1",
                &[&tenant.as_str()],
            )
            .map(|r| r.map(|r| r.get(0)))
        })
    }

    fn put_tenant_limits(&self, tenant: &TenantId, json: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO tenant_limits (tenant, limits) VALUES ($1, $2)
                 ON CONFLICT (tenant) DO UPDATE SET limits = excluded.limits",
                &[&tenant.as_str(), &json],
            )
        })?;
        Ok(())
    }

    fn stored_totals(&self, tenant: &TenantId) -> Result<(u64, u64, u64)> {
        self.with(|c| {
            let r = c.query_one(
                "SELECT COUNT(*), COALESCE(SUM(chunk_count), 0)::BIGINT
                 FROM documents WHERE tenant = $1 AND status = 'ready'",
                &[&tenant.as_str()],
            )?;
            let bytes = occupied_bytes(c, tenant, "")?;
            Ok((r.get::<_, i64>(0) as u64, bytes, r.get::<_, i64>(1) as u64))
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
            let mut tx = c.transaction()?;
            let st = tx.prepare(
                "INSERT INTO usage (tenant, day, metric, value)
                 SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BIGINT WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1::TEXT)
                 ON CONFLICT (tenant, day, metric) DO UPDATE SET value = usage.value + excluded.value",
            )?;
            for (t, day, metric, v) in rows {
                tx.execute(&st, &[&t.as_str(), day, metric, &(*v as i64)])?;
            }
            tx.commit()
        })
    }

    fn usage(&self, tenant: &TenantId, from: &str, to: &str) -> Result<Vec<(String, String, u64)>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT day, metric, value FROM usage WHERE tenant = $1 AND day >= $2 AND day <= $3
                 ORDER BY day, metric",
                &[&tenant.as_str(), &from, &to],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64))
            .collect())
    }

    fn thread_owner(&self, tenant: &TenantId, thread: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_opt(
                "SELECT owner FROM threads WHERE tenant = $1 AND id = $2",
                &[&tenant.as_str(), &thread],
            )
            .map(|r| r.map(|r| r.get(0)))
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
            let mut tx = c.transaction()?;
            let Some(created) = tx.query_opt(
                "SELECT created_at FROM threads WHERE tenant = $1 AND id = $2 AND owner = $3",
                &[&tenant.as_str(), &thread, &owner],
            )?
            else {
                return Ok(None);
            };
            let limit = last.map(|n| n as i64);
            let mut turns: Vec<TurnRecord> = tx
                .query(
                    "SELECT seq, question, standalone, answer, citations, grounded, code, created_at
                     FROM thread_turns WHERE tenant = $1 AND thread = $2 ORDER BY seq DESC LIMIT $3",
                    &[&tenant.as_str(), &thread, &limit],
                )?
                .iter()
                .map(|r| TurnRecord {
                    seq: r.get::<_, i64>(0) as u32,
                    question: r.get(1),
                    standalone: r.get(2),
                    answer: r.get(3),
                    citations: r.get(4),
                    grounded: r.get(5),
                    code: r.get(6),
                    created_at: r.get(7),
                })
                .collect();
            tx.commit()?;
            turns.reverse();
            Ok(Some((created.get(0), turns)))
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
            let mut tx = c.transaction()?;
            let t = now();
            // The upsert locks the thread's row: appends to one thread run one at a time.
            let mine = tx.execute(
                "INSERT INTO threads (tenant, id, created_at, updated_at, owner) VALUES ($1, $2, $3, $3, $4)
                 ON CONFLICT (tenant, id) DO UPDATE SET updated_at = excluded.updated_at
                 WHERE threads.owner = excluded.owner",
                &[&tenant.as_str(), &thread, &t, &owner],
            )?;
            if mine == 0 {
                return Ok(None);
            }
            let seq: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM thread_turns WHERE tenant = $1 AND thread = $2",
                    &[&tenant.as_str(), &thread],
                )?
                .get(0);
            tx.execute(
                "INSERT INTO thread_turns
                 (tenant, thread, seq, question, standalone, answer, citations, grounded, code, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &tenant.as_str(),
                    &thread,
                    &seq,
                    &turn.question,
                    &turn.standalone,
                    &turn.answer,
                    &turn.citations,
                    &turn.grounded,
                    &turn.code,
                    &t,
                ],
            )?;
            tx.commit()?;
            Ok(Some(seq as u32))
        })
    }

    fn threads(&self, tenant: &TenantId, owner: &str, limit: usize) -> Result<Vec<ThreadSummary>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT t.id, t.created_at, t.updated_at,
                        (SELECT COUNT(*) FROM thread_turns u WHERE u.tenant = t.tenant AND u.thread = t.id),
                        COALESCE((SELECT question FROM thread_turns u
                                  WHERE u.tenant = t.tenant AND u.thread = t.id ORDER BY seq LIMIT 1), '')
                 FROM threads t WHERE t.tenant = $1 AND t.owner = $2
                 ORDER BY t.updated_at DESC, t.id LIMIT $3",
                &[&tenant.as_str(), &owner, &(limit.clamp(1, 1000) as i64)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| ThreadSummary {
                id: r.get(0),
                created_at: r.get(1),
                updated_at: r.get(2),
                turns: r.get::<_, i64>(3) as u32,
                first_question: r.get(4),
            })
            .collect())
    }

    fn delete_thread(&self, tenant: &TenantId, owner: &str, thread: &str) -> Result<bool> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM threads WHERE tenant = $1 AND id = $2 AND owner = $3",
                &[&tenant.as_str(), &thread, &owner],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM thread_turns WHERE tenant = $1 AND thread = $2",
                &[&tenant.as_str(), &thread],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn tenant_config(&self, tenant: &TenantId) -> Result<Option<StoredTenantConfig>> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT settings, key_nonce, key_ciphertext, key_fingerprint, updated_at
                 FROM tenant_config WHERE tenant = $1",
                &[&tenant.as_str()],
            )
        })?;
        Ok(row.map(|r| {
            let nonce: Option<Vec<u8>> = r.get(1);
            let ct: Option<Vec<u8>> = r.get(2);
            StoredTenantConfig {
                settings: r.get(0),
                sealed_key: nonce
                    .zip(ct)
                    .map(|(nonce, ciphertext)| crate::secrets::Sealed { nonce, ciphertext }),
                key_fingerprint: r.get(3),
                updated_at: r.get(4),
            }
        }))
    }

    fn put_tenant_config(&self, tenant: &TenantId, settings: &str, key: KeyUpdate) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO tenant_config (tenant, settings, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant) DO UPDATE SET settings = excluded.settings,
                 updated_at = excluded.updated_at",
                &[&tenant.as_str(), &settings, &now()],
            )?;
            match key {
                KeyUpdate::Keep => {}
                KeyUpdate::Clear => {
                    tx.execute(
                        "UPDATE tenant_config SET key_nonce = NULL, key_ciphertext = NULL,
                         key_fingerprint = NULL WHERE tenant = $1",
                        &[&tenant.as_str()],
                    )?;
                }
                KeyUpdate::Set {
                    sealed,
                    fingerprint,
                } => {
                    tx.execute(
                        "UPDATE tenant_config SET key_nonce = $2, key_ciphertext = $3,
                         key_fingerprint = $4 WHERE tenant = $1",
                        &[
                            &tenant.as_str(),
                            &sealed.nonce,
                            &sealed.ciphertext,
                            &fingerprint,
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
            let mut tx = c.transaction()?;
            if !lock_tenant(&mut tx, tenant)? {
                return Ok(Err(UserError::NotFound("tenant").into()));
            }
            let t = now();
            let existing = tx.query_opt(
                "SELECT live_version, next_version, status, content_hash, title, metadata
                 FROM documents WHERE tenant = $1 AND id = $2",
                &[&tenant.as_str(), &up.doc_id.as_str()],
            )?;
            let version = match existing {
                Some(r) => {
                    let live: Option<i64> = r.get(0);
                    let next: i64 = r.get(1);
                    let status: &str = r.get(2);
                    let unchanged = status == "ready"
                        && live == Some(next - 1)
                        && r.get::<_, &str>(3) == up.content_hash
                        && r.get::<_, &str>(4) == up.title
                        && meta_parse(r.get(5)) == up.metadata;
                    if unchanged {
                        insert_job(&mut tx, tenant, up, live.unwrap_or(0) as u64, JobStatus::Succeeded, t)?;
                        tx.commit()?;
                        return Ok(Ok(UploadOutcome::Unchanged));
                    }
                    let counts_as_new = !matches!(status, "ready" | "pending");
                    if let Some(e) = refuse_queue(&mut tx, tenant, up, caps)? {
                        return Ok(Err(e));
                    }
                    if let Err(e) = check_quota(&mut tx, tenant, up, quota, counts_as_new)? {
                        return Ok(Err(e));
                    }
                    let status = if status == "ready" { "ready" } else { "pending" };
                    tx.execute(
                        "UPDATE documents SET next_version = next_version + 1, status = $3, updated_at = $4
                         WHERE tenant = $1 AND id = $2",
                        &[&tenant.as_str(), &up.doc_id.as_str(), &status, &t],
                    )?;
                    next as u64
                }
                None => {
                    if let Some(e) = refuse_queue(&mut tx, tenant, up, caps)? {
                        return Ok(Err(e));
                    }
                    if let Err(e) = check_quota(&mut tx, tenant, up, quota, true)? {
                        return Ok(Err(e));
                    }
                    tx.execute(
                        "INSERT INTO documents (tenant, id, title, content_type, content_hash, metadata, byte_size,
                                                next_version, status, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 2, 'pending', $8, $8)",
                        &[
                            &tenant.as_str(),
                            &up.doc_id.as_str(),
                            &up.title,
                            &up.content_type,
                            &up.content_hash,
                            &meta_json(&up.metadata),
                            &(up.byte_size as i64),
                            &t,
                        ],
                    )?;
                    1
                }
            };
            place_job(&mut tx, tenant, up, version, t)?;
            tx.commit()?;
            Ok(Ok(UploadOutcome::Queued { version }))
        })?
    }

    fn job(&self, tenant: &TenantId, job_id: &str) -> Result<Option<JobRecord>> {
        let row = self.with(|c| {
            c.query_opt(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1 AND tenant = $2"),
                &[&job_id, &tenant.as_str()],
            )
        })?;
        row.map(|r| job_row(&r)).transpose()
    }

    fn recent_jobs(
        &self,
        tenant: Option<&TenantId>,
        limit: usize,
        before: Option<&str>,
    ) -> Result<JobPage> {
        let limit = limit.clamp(1, 1000);
        let scope = tenant.map(|t| t.as_str());
        let take = limit as i64 + 1;
        let rows = self.with(|c| {
            let before: i64 = match before.filter(|b| !b.is_empty()) {
                None => i64::MAX,
                Some(id) => match c.query_opt(
                    "SELECT seq FROM jobs WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)",
                    &[&id, &scope],
                )? {
                    Some(r) => r.get(0),
                    None => return Ok(None),
                },
            };
            // Two statements, so the tenant's index serves the tenant's page.
            match scope {
                Some(t) => c.query(
                    &format!(
                        "SELECT {JOB_COLS} FROM jobs WHERE tenant = $1 AND seq < $2
                         ORDER BY seq DESC LIMIT $3"
                    ),
                    &[&t, &before, &take],
                ),
                None => c.query(
                    &format!(
                        "SELECT {JOB_COLS} FROM jobs WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
                    ),
                    &[&before, &take],
                ),
            }
            .map(Some)
        })?;
        // A cursor that names no job of this scope (another tenant's included) ends the
        // listing: an empty page.
        let rows = rows
            .unwrap_or_default()
            .iter()
            .map(job_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_of(rows, limit))
    }

    fn job_by_id(&self, job_id: &str) -> Result<Option<JobRecord>> {
        let row = self.with(|c| {
            c.query_opt(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"),
                &[&job_id],
            )
        })?;
        row.map(|r| job_row(&r)).transpose()
    }

    fn unfinished_jobs(&self) -> Result<Vec<JobRecord>> {
        let rows = self.with(|c| {
            c.query(
                &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq"
                ),
                &[],
            )
        })?;
        rows.iter().map(job_row).collect()
    }

    fn upload(&self, job_id: &str) -> Result<Option<Vec<u8>>> {
        let row =
            self.with(|c| c.query_opt("SELECT bytes FROM uploads WHERE job_id = $1", &[&job_id]))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn queue_depth(&self) -> Result<u64> {
        self.with(|c| {
            c.query_one(
                "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) as u64)
        })
    }

    fn claim_job(&self, node: &str, lease: Duration) -> Result<Option<JobRecord>> {
        let row = self.with(|c| {
            let mut tx = c.transaction()?;
            let now: i64 = tx.query_one(&format!("SELECT {NOW_MS}"), &[])?.get(0);
            let Some(picked) = tx.query_opt(
                "SELECT j.id, j.tenant FROM jobs j JOIN tenants t ON t.id = j.tenant
                 WHERE (j.status = 'queued' AND j.not_before <= $1)
                    OR (j.status = 'running' AND COALESCE(j.lease_until, 0) < $1)
                 ORDER BY t.served_at NULLS FIRST, j.seq
                 LIMIT 1 FOR UPDATE OF j SKIP LOCKED",
                &[&now],
            )?
            else {
                return Ok(None);
            };
            let (id, tenant): (String, String) = (picked.get(0), picked.get(1));
            let row = tx.query_one(
                &format!(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, node = $2,
                            lease_until = $3, updated_at = $4, stage = NULL, chunks_done = NULL,
                            chunks_total = NULL
                     WHERE id = $1 RETURNING {JOB_COLS}"
                ),
                &[
                    &id,
                    &node,
                    &(now + lease.as_millis() as i64),
                    &crate::domain::now(),
                ],
            )?;
            // The tenant's turn, if its row is free: waiting for it here (the job row locked)
            // would invert the order of commit_job and delete_tenant (tenant, then job) and
            // deadlock with them. A turn missed is a fairness hiccup, not a wrong result.
            if tx
                .query_opt(
                    "SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED",
                    &[&tenant],
                )?
                .is_some()
            {
                tx.execute(
                    "UPDATE tenants SET served_at = $2 WHERE id = $1",
                    &[&tenant, &now],
                )?;
            }
            tx.commit()?;
            Ok(Some(row))
        })?;
        row.map(|r| job_row(&r)).transpose()
    }

    fn renew_leases(&self, node: &str, jobs: &[String], lease: Duration) -> Result<usize> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let lease = lease.as_millis() as i64;
        let n = self.with(|c| {
            c.execute(
                &format!(
                    "UPDATE jobs SET lease_until = {NOW_MS} + $3
                     WHERE id = ANY($1) AND node = $2 AND status = 'running'"
                ),
                &[&jobs, &node, &lease],
            )
        })?;
        Ok(n as usize)
    }

    fn release_job(&self, job_id: &str, node: &str, delay: Duration) -> Result<bool> {
        let delay = delay.as_millis() as i64;
        let n = self.with(|c| {
            c.execute(
                &format!(
                    "UPDATE jobs SET status = 'queued', node = NULL, lease_until = NULL,
                            not_before = {NOW_MS} + $3, updated_at = $4
                     WHERE id = $1 AND node = $2 AND status = 'running'"
                ),
                &[&job_id, &node, &delay, &now()],
            )
        })?;
        Ok(n == 1)
    }

    fn report_progress(&self, job: &JobRecord, p: &JobProgress) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET stage = $4, chunks_done = $5, chunks_total = $6
                 WHERE id = $1 AND node IS NOT DISTINCT FROM $2 AND attempts = $3 AND status = 'running'",
                &[
                    &job.id,
                    &job.node,
                    &(job.attempts as i32),
                    &p.stage.map(JobStage::as_str),
                    &(p.chunks_done as i64),
                    &p.chunks_total.map(|t| t as i64),
                ],
            )
        })?;
        Ok(())
    }

    fn expire_leases(&self) -> Result<usize> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE jobs SET lease_until = 0 WHERE status = 'running'",
                &[],
            )
        })?;
        Ok(n as usize)
    }

    fn tenant_gate(
        &self,
        tenant: &TenantId,
        exclusive: bool,
        wait: Duration,
    ) -> Result<TenantGate> {
        let mut conn = self.conn()?;
        // Tried, not waited for on the server: a wait there would run into the statement
        // timeout, and would hold the connection without a deadline of ours.
        let try_lock = if exclusive {
            "SELECT pg_try_advisory_lock($1, hashtext($2))"
        } else {
            "SELECT pg_try_advisory_lock_shared($1, hashtext($2))"
        };
        let deadline = std::time::Instant::now() + wait;
        loop {
            let got: bool = conn
                .query_one(try_lock, &[&GATE_SPACE, &tenant.as_str()])
                .map_err(pg_err)?
                .get(0);
            if got {
                return Ok(TenantGate {
                    _held: Box::new(PgGate {
                        conn: Some(conn),
                        tenant: tenant.as_str().to_string(),
                        exclusive,
                    }),
                });
            }
            if std::time::Instant::now() >= deadline {
                return Err(tenant_busy());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn heartbeat(&self, node: &NodeInfo, alive: Duration) -> Result<usize> {
        self.with(|c| {
            let now: i64 = c.query_one(&format!("SELECT {NOW_MS}"), &[])?.get(0);
            c.execute(
                "INSERT INTO nodes (id, addr, started_at, heartbeat_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, addr = EXCLUDED.addr",
                &[&node.id, &node.addr, &node.started_at, &now],
            )?;
            // Nodes silent for a long time are gone: forget them.
            c.execute(
                "DELETE FROM nodes WHERE heartbeat_at < $1",
                &[&(now - 3_600_000)],
            )?;
            c.query_one(
                "SELECT COUNT(*) FROM nodes WHERE heartbeat_at >= $1",
                &[&(now - alive.as_millis() as i64)],
            )
            .map(|r| r.get::<_, i64>(0).max(1) as usize)
        })
    }

    fn leave(&self, node: &str) -> Result<()> {
        self.with(|c| c.execute("DELETE FROM nodes WHERE id = $1", &[&node]))?;
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
            let mut tx = c.transaction()?;
            let t = now();
            if !lock_tenant(&mut tx, &job.tenant)? {
                // The tenant was deleted while the job ran: nothing of it may be recorded.
                return Ok(CommitOutcome::NotHeld);
            }
            if !holds(&mut tx, job)? {
                return Ok(CommitOutcome::NotHeld);
            }
            tx.execute("DELETE FROM uploads WHERE job_id = $1", &[&job.id])?;
            let other_chunks = quota
                .max_chunks
                .map(|_| {
                    tx.query_one(
                        "SELECT COALESCE(SUM(chunk_count), 0)::BIGINT FROM documents
                         WHERE tenant = $1 AND id <> $2 AND status = 'ready'",
                        &[&job.tenant.as_str(), &job.doc_id.as_str()],
                    )
                    .map(|r| r.get::<_, i64>(0) as u64)
                })
                .transpose()?;
            let other_bytes = quota
                .max_bytes
                .map(|_| occupied_bytes(&mut tx, &job.tenant, job.doc_id.as_str()))
                .transpose()?;
            if let Some((what, limit, msg)) = quota.refuse_commit(footprint, other_chunks, other_bytes) {
                fail_job_tx(&mut tx, job, "quota_exceeded", &msg, t)?;
                queue_gc(&mut tx, &job.tenant, &job.doc_id, job.version, job.version + 1)?;
                tx.commit()?;
                return Ok(CommitOutcome::QuotaExceeded { what, limit });
            }
            let n = tx.execute(
                "UPDATE documents SET live_version = $3, status = 'ready', title = $4, content_type = $5,
                        content_hash = $6, metadata = $7, byte_size = $8, chunk_count = $9, updated_at = $10,
                        stored_bytes = $11
                 WHERE tenant = $1 AND id = $2 AND status <> 'deleted' AND next_version = $3::BIGINT + 1",
                &[
                    &job.tenant.as_str(),
                    &job.doc_id.as_str(),
                    &(job.version as i64),
                    &job.title,
                    &job.content_type,
                    &job.content_hash,
                    &meta_json(&job.metadata),
                    &(job.byte_size as i64),
                    &(chunk_count as i64),
                    &t,
                    &(footprint.bytes as i64),
                ],
            )?;
            let outcome = if n == 1 {
                tx.execute(
                    "UPDATE jobs SET status = 'succeeded', chunk_count = $2, updated_at = $3 WHERE id = $1",
                    &[&job.id, &(chunk_count as i64), &t],
                )?;
                queue_gc(&mut tx, &job.tenant, &job.doc_id, 0, job.version)?;
                CommitOutcome::Committed
            } else {
                fail_job_tx(
                    &mut tx,
                    job,
                    "superseded",
                    "a newer upload or a delete of this document replaced this version",
                    t,
                )?;
                queue_gc(&mut tx, &job.tenant, &job.doc_id, job.version, job.version + 1)?;
                CommitOutcome::Superseded
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    fn fail_job(&self, job: &JobRecord, code: &str, message: &str) -> Result<bool> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            if !holds(&mut tx, job)? {
                return Ok(false);
            }
            tx.execute("DELETE FROM uploads WHERE job_id = $1", &[&job.id])?;
            fail_job_tx(&mut tx, job, code, message, now())?;
            queue_gc(
                &mut tx,
                &job.tenant,
                &job.doc_id,
                job.version,
                job.version + 1,
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn document(&self, tenant: &TenantId, id: &DocId) -> Result<Option<DocumentRecord>> {
        let row = self.with(|c| {
            c.query_opt(
                &format!(
                    "SELECT {DOC_COLS} FROM documents WHERE tenant = $1 AND id = $2 AND status <> 'deleted'"
                ),
                &[&tenant.as_str(), &id.as_str()],
            )
        })?;
        row.map(|r| doc_row(&r)).transpose()
    }

    fn documents(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Vec<DocumentRecord>> {
        let rows = self.with(|c| {
            c.query(
                &format!(
                    "SELECT {DOC_COLS} FROM documents WHERE tenant = $1 AND status <> 'deleted' AND id > $2
                     ORDER BY id LIMIT $3"
                ),
                &[&tenant.as_str(), &after.unwrap_or(""), &(limit as i64)],
            )
        })?;
        rows.iter().map(doc_row).collect()
    }

    fn delete_document(&self, tenant: &TenantId, id: &DocId) -> Result<bool> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let Some(r) = tx.query_opt(
                "SELECT next_version FROM documents WHERE tenant = $1 AND id = $2 AND status <> 'deleted'
                 FOR UPDATE",
                &[&tenant.as_str(), &id.as_str()],
            )?
            else {
                return Ok(false);
            };
            let next: i64 = r.get(0);
            tx.execute(
                "UPDATE documents SET status = 'deleted', live_version = NULL, chunk_count = 0,
                        next_version = $3::BIGINT + 1, updated_at = $4
                 WHERE tenant = $1 AND id = $2",
                &[&tenant.as_str(), &id.as_str(), &next, &now()],
            )?;
            queue_gc(&mut tx, tenant, id, 0, next as u64 + 1)?;
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
        let rows = self.with(|c| {
            c.query(
                "SELECT id, live_version, title, metadata FROM documents
                 WHERE tenant = $1 AND status = 'ready' AND id = ANY($2)",
                &[&tenant.as_str(), &ids],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    LiveDocument {
                        version: r.get::<_, i64>(1) as u64,
                        title: r.get(2),
                        metadata: meta_parse(r.get(3)),
                    },
                )
            })
            .collect())
    }

    fn pending_gc(&self) -> Result<Vec<GcTask>> {
        let rows = self.with(|c| c.query("SELECT tenant, doc_id, lo, hi FROM gc", &[]))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let tenant = TenantId::parse(r.get::<_, &str>(0)).ok()?;
                let doc = DocId::parse(r.get::<_, &str>(1)).ok()?;
                Some(GcTask {
                    tenant,
                    doc,
                    versions: r.get::<_, i64>(2) as u64..r.get::<_, i64>(3) as u64,
                })
            })
            .collect())
    }

    fn gc_done(&self, task: &GcTask) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let (lo, hi) = (task.versions.start as i64, task.versions.end as i64);
            let args: [&(dyn ToSql + Sync); 4] =
                [&task.tenant.as_str(), &task.doc.as_str(), &lo, &hi];
            tx.execute(
                "DELETE FROM embed_cache WHERE tenant = $1 AND doc_id = $2 AND version >= $3 AND version < $4",
                &args,
            )?;
            tx.execute(
                "DELETE FROM gc WHERE tenant = $1 AND doc_id = $2 AND lo = $3 AND hi = $4",
                &args,
            )?;
            tx.commit()
        })
    }

    fn cached_vectors(
        &self,
        tenant: &TenantId,
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<f32>>> {
        if hashes.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
        let rows = self.with(|c| {
            c.query(
                "SELECT hash, vector FROM embed_cache WHERE tenant = $1 AND hash = ANY($2)",
                &[&tenant.as_str(), &keys],
            )
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((hash_of(r.get(0))?, floats(r.get(1)))))
            .collect())
    }

    fn cache_vectors(
        &self,
        tenant: &TenantId,
        owner: (&DocId, u64),
        items: &[([u8; 32], &[f32])],
    ) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let hashes: Vec<&[u8]> = items.iter().map(|(h, _)| &h[..]).collect();
        let vectors: Vec<Vec<u8>> = items.iter().map(|(_, v)| vector_bytes(v)).collect();
        self.with(|c| {
            c.execute(
                "INSERT INTO embed_cache (tenant, hash, vector, doc_id, version)
                 SELECT $1::TEXT, h, v, $4::TEXT, $5::BIGINT FROM UNNEST($2::BYTEA[], $3::BYTEA[]) AS u(h, v)
                 ON CONFLICT (tenant, hash) DO UPDATE
                 SET vector = excluded.vector, doc_id = excluded.doc_id, version = excluded.version",
                &[
                    &tenant.as_str(),
                    &hashes,
                    &vectors,
                    &owner.0.as_str(),
                    &(owner.1 as i64),
                ],
            )
        })?;
        Ok(())
    }

    fn claim_cached(
        &self,
        tenant: &TenantId,
        owner: (&DocId, u64),
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<f32>>> {
        if hashes.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
        let rows = self.with(|c| {
            c.query(
                "UPDATE embed_cache SET doc_id = $3, version = $4 WHERE tenant = $1 AND hash = ANY($2)
                 RETURNING hash, vector",
                &[
                    &tenant.as_str(),
                    &keys,
                    &owner.0.as_str(),
                    &(owner.1 as i64),
                ],
            )
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((hash_of(r.get(0))?, floats(r.get(1)))))
            .collect())
    }
}

fn insert_job(
    tx: &mut postgres::Transaction<'_>,
    tenant: &TenantId,
    up: &NewUpload,
    version: u64,
    status: JobStatus,
    t: i64,
) -> std::result::Result<(), postgres::Error> {
    tx.execute(
        "INSERT INTO jobs (id, tenant, doc_id, version, status, title, content_type, content_hash, metadata,
                           byte_size, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
        &[
            &up.job_id,
            &tenant.as_str(),
            &up.doc_id.as_str(),
            &(version as i64),
            &status.as_str(),
            &up.title,
            &up.content_type,
            &up.content_hash,
            &meta_json(&up.metadata),
            &(up.byte_size as i64),
            &t,
        ],
    )?;
    Ok(())
}

/// Insert the job of a new version: queued with its upload's bytes, or running, held by the
/// caller.
fn place_job(
    tx: &mut postgres::Transaction<'_>,
    tenant: &TenantId,
    up: &NewUpload,
    version: u64,
    t: i64,
) -> std::result::Result<(), postgres::Error> {
    match &up.payload {
        Payload::Bytes(bytes) => {
            insert_job(tx, tenant, up, version, JobStatus::Queued, t)?;
            tx.execute(
                "INSERT INTO uploads (job_id, tenant, bytes) VALUES ($1, $2, $3)",
                &[&up.job_id, &tenant.as_str(), bytes],
            )?;
        }
        Payload::HeldBy { node, lease } => {
            insert_job(tx, tenant, up, version, JobStatus::Running, t)?;
            tx.execute(
                &format!(
                    "UPDATE jobs SET attempts = 1, node = $2, lease_until = {NOW_MS} + $3 WHERE id = $1"
                ),
                &[&up.job_id, node, &(lease.as_millis() as i64)],
            )?;
        }
    }
    Ok(())
}

/// The queue cap a queued upload would break, as the error to return. The tenant's row is
/// locked by the caller, so its count cannot race; the deployment-wide count may overshoot by
/// the uploads committing at the same moment.
fn refuse_queue(
    tx: &mut postgres::Transaction<'_>,
    tenant: &TenantId,
    up: &NewUpload,
    caps: &QueueCaps,
) -> std::result::Result<Option<EngineError>, postgres::Error> {
    if !matches!(up.payload, Payload::Bytes(_)) {
        return Ok(None);
    }
    let mine: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM jobs WHERE tenant = $1 AND status IN ('queued', 'running')",
            &[&tenant.as_str()],
        )?
        .get(0);
    let all: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')",
            &[],
        )?
        .get(0);
    Ok(caps.refuse(mine as u64, all as u64))
}

/// Whether the job is still `job`'s to end ([`still_held`]). Locks the job's row until the
/// transaction ends.
fn holds(
    tx: &mut postgres::Transaction<'_>,
    job: &JobRecord,
) -> std::result::Result<bool, postgres::Error> {
    let row = tx.query_opt(
        "SELECT status, node, attempts FROM jobs WHERE id = $1 FOR UPDATE",
        &[&job.id],
    )?;
    Ok(row.is_some_and(|r| still_held(job, r.get(0), r.get(1), r.get::<_, i32>(2) as u32)))
}

/// Refuse an upload that would take the tenant past a quota (documents, stored bytes).
fn check_quota(
    tx: &mut postgres::Transaction<'_>,
    tenant: &TenantId,
    up: &NewUpload,
    quota: &Quota,
    new_document: bool,
) -> std::result::Result<Result<()>, postgres::Error> {
    let documents = quota
        .max_documents
        .map(|_| {
            tx.query_one(
                "SELECT COUNT(*) FROM documents WHERE tenant = $1 AND status IN ('ready', 'pending')",
                &[&tenant.as_str()],
            )
            .map(|r| r.get::<_, i64>(0) as u64)
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
    tx: &mut postgres::Transaction<'_>,
    job: &JobRecord,
    code: &str,
    message: &str,
    t: i64,
) -> std::result::Result<(), postgres::Error> {
    tx.execute(
        "UPDATE jobs SET status = 'failed', error_code = $2, error_message = $3, updated_at = $4 WHERE id = $1",
        &[&job.id, &code, &message, &t],
    )?;
    // A document that never had a live version shows the failure; one with a live version keeps it.
    tx.execute(
        "UPDATE documents SET status = 'failed', updated_at = $3
         WHERE tenant = $1 AND id = $2 AND status = 'pending' AND next_version = $4::BIGINT + 1",
        &[
            &job.tenant.as_str(),
            &job.doc_id.as_str(),
            &t,
            &(job.version as i64),
        ],
    )?;
    Ok(())
}

fn queue_gc(
    tx: &mut postgres::Transaction<'_>,
    tenant: &TenantId,
    doc: &DocId,
    lo: u64,
    hi: u64,
) -> std::result::Result<(), postgres::Error> {
    tx.execute(
        "INSERT INTO gc (tenant, doc_id, lo, hi) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[&tenant.as_str(), &doc.as_str(), &(lo as i64), &(hi as i64)],
    )?;
    Ok(())
}
