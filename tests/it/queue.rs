//! The job queue of the catalog seam, one suite on both catalogs (SQLite and a real
//! PostgreSQL): tenants take turns, a claimed job is nobody else's while its lease runs (and
//! its node's heartbeat renews it), an expired lease hands the job to another node with the
//! attempt counted, and a released job waits out its delay.
use std::time::Duration;

use tenantry::domain::{DocId, Footprint, TenantId};
use tenantry::storage::catalog::{
    Catalog, CommitOutcome, NewUpload, NodeInfo, Payload, PostgresCatalog, QueueCaps, Quota,
    SqliteCatalog, UploadOutcome,
};

const NO_CAPS: QueueCaps = QueueCaps {
    per_tenant: 1000,
    total: 1000,
};

fn new_upload(doc: &str) -> NewUpload {
    NewUpload {
        job_id: uuid::Uuid::new_v4().to_string(),
        doc_id: DocId::parse(doc).unwrap(),
        title: doc.into(),
        content_type: "text/plain".into(),
        content_hash: format!("hash-{doc}"),
        metadata: Default::default(),
        byte_size: 10,
        payload: Payload::Bytes(format!("bytes of {doc}").into_bytes()),
    }
}

fn upload(c: &dyn Catalog, tenant: &TenantId, doc: &str) -> String {
    let up = new_upload(doc);
    let job_id = up.job_id.clone();
    let outcome = c
        .accept_upload(tenant, &up, &Quota::default(), &NO_CAPS)
        .unwrap();
    assert!(
        matches!(outcome, UploadOutcome::Queued { .. }),
        "{outcome:?}"
    );
    job_id
}

fn suite(c: &dyn Catalog) {
    let (a, b) = (
        TenantId::parse("qa").unwrap(),
        TenantId::parse("qb").unwrap(),
    );
    c.create_tenant(&a).unwrap();
    c.create_tenant(&b).unwrap();
    let a1 = upload(c, &a, "a1");
    let a2 = upload(c, &a, "a2");
    let a3 = upload(c, &a, "a3");
    let b1 = upload(c, &b, "b1");
    let lease = Duration::from_secs(30);

    // Turns: a's first job, then b's (a was just served), then a's others in order.
    let order: Vec<String> = (0..4)
        .map(|_| c.claim_job("n1", lease).unwrap().unwrap().id)
        .collect();
    assert_eq!(order, vec![a1.clone(), b1.clone(), a2.clone(), a3.clone()]);
    assert!(c.claim_job("n2", lease).unwrap().is_none(), "all leased");
    let job = c.job_by_id(&a1).unwrap().unwrap();
    assert_eq!(job.attempts, 1, "the attempt is counted at the claim");

    // Released with a delay: not before it passes, then claimable again.
    assert!(c
        .release_job(&b1, "n1", Duration::from_millis(400))
        .unwrap());
    assert!(
        !c.release_job(&b1, "n1", Duration::ZERO).unwrap(),
        "n1 no longer holds it"
    );
    assert!(c.claim_job("n2", lease).unwrap().is_none());
    std::thread::sleep(Duration::from_millis(500));
    let again = c.claim_job("n2", lease).unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (b1.as_str(), 2));

    // A short lease that its node renews stays; one it does not renew expires, and another
    // node takes the job over with the attempt counted.
    let c1 = upload(c, &a, "c1");
    let c2 = upload(c, &b, "c2");
    let short = Duration::from_millis(300);
    let first = c.claim_job("n3", short).unwrap().unwrap().id;
    let second = c.claim_job("n3", short).unwrap().unwrap().id;
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    let mut want = vec![c1.clone(), c2.clone()];
    want.sort();
    assert_eq!(both, want);
    assert_eq!(
        c.renew_leases("n3", std::slice::from_ref(&first), lease)
            .unwrap(),
        1
    );
    assert_eq!(
        c.renew_leases("other", std::slice::from_ref(&second), lease)
            .unwrap(),
        0,
        "only the holder renews"
    );
    std::thread::sleep(Duration::from_millis(400));
    let taken = c.claim_job("n4", lease).unwrap().unwrap();
    assert_eq!((taken.id.as_str(), taken.attempts), (second.as_str(), 2));
    assert!(
        c.claim_job("n4", lease).unwrap().is_none(),
        "the renewed one stays"
    );
    assert!(
        !c.release_job(&second, "n3", Duration::ZERO).unwrap(),
        "the node that lost its lease cannot hand the job back"
    );

    // The node that lost the job cannot end it; the holder can, and the upload goes with it.
    assert!(c.upload(&second).unwrap().unwrap().starts_with(b"bytes of"));
    let mut lost = taken.clone();
    lost.node = Some("n3".into());
    let footprint = Footprint {
        chunks: 1,
        bytes: 100,
    };
    assert_eq!(
        c.commit_job(&lost, footprint, &Quota::default()).unwrap(),
        CommitOutcome::NotHeld
    );
    assert!(!c.fail_job(&lost, "x", "y").unwrap());
    assert_eq!(
        c.commit_job(&taken, footprint, &Quota::default()).unwrap(),
        CommitOutcome::Committed
    );
    assert!(
        c.upload(&second).unwrap().is_none(),
        "an ended job's upload is gone"
    );
    assert!(!c.fail_job(&taken, "x", "y").unwrap(), "ended already");
}

/// Queue caps are checked where the job is queued: per tenant (429) and in all (503).
fn caps(c: &dyn Catalog) {
    let t = TenantId::parse("qcaps").unwrap();
    let u = TenantId::parse("qcaps2").unwrap();
    c.create_tenant(&t).unwrap();
    c.create_tenant(&u).unwrap();
    let before = c.queue_depth().unwrap();
    let caps = QueueCaps {
        per_tenant: 2,
        total: before as usize + 3,
    };
    let up2 = |tenant: &TenantId, doc: &str| {
        c.accept_upload(tenant, &new_upload(doc), &Quota::default(), &caps)
    };
    up2(&t, "d1").unwrap();
    up2(&t, "d2").unwrap();
    let e = up2(&t, "d3").unwrap_err();
    assert!(e.to_string().contains("too many queued documents"), "{e}");
    up2(&u, "e1").unwrap();
    let e = up2(&u, "e2").unwrap_err();
    assert!(e.to_string().contains("ingestion queue full"), "{e}");
    assert_eq!(c.queue_depth().unwrap(), before + 3);
    // Deleting the tenant takes its queued jobs and uploads with it.
    let job = c.claim_job("n", Duration::from_secs(30)).unwrap().unwrap();
    c.delete_tenant(&t).unwrap();
    c.delete_tenant(&u).unwrap();
    assert!(c.upload(&job.id).unwrap().is_none());
    assert_eq!(c.queue_depth().unwrap(), before);
    // The legs still hold their data until some node empties them and says so.
    let drops = c.pending_drops().unwrap();
    assert!(drops.contains(&t) && drops.contains(&u), "{drops:?}");
    c.drop_done(&t).unwrap();
    c.drop_done(&u).unwrap();
    assert!(c.pending_drops().unwrap().is_empty());
}

/// Tenant gates: jobs share one, a delete excludes them, on every node of the catalog.
fn gates(c: &dyn Catalog) {
    let t = TenantId::parse("qgate").unwrap();
    let short = Duration::from_millis(200);
    let a = c.tenant_gate(&t, false, short).unwrap();
    let b = c.tenant_gate(&t, false, short).unwrap();
    let e = c.tenant_gate(&t, true, short).err().expect("jobs hold it");
    assert!(e.to_string().contains("busy"), "{e}");
    drop(a);
    assert!(c.tenant_gate(&t, true, short).is_err());
    drop(b);
    let x = c.tenant_gate(&t, true, short).unwrap();
    assert!(c.tenant_gate(&t, false, short).is_err(), "deleting");
    assert!(
        c.tenant_gate(&TenantId::parse("qother").unwrap(), true, short)
            .is_ok(),
        "another tenant's gate is its own"
    );
    drop(x);
    drop(c.tenant_gate(&t, false, short).unwrap());
}

#[test]
fn the_job_queue_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let c = SqliteCatalog::open(&dir.path().join("catalog.sqlite3")).unwrap();
    suite(&c);
    caps(&c);
    gates(&c);
    let node = NodeInfo {
        id: "only".into(),
        addr: "127.0.0.1:1".into(),
        started_at: 0,
    };
    assert_eq!(c.heartbeat(&node, Duration::from_secs(6)).unwrap(), 1);
}

#[test]
fn the_job_queue_on_postgres() {
    let pg = crate::pg::Postgres::start();
    let mut cfg = tenantry::config::Config::defaults().postgres;
    cfg.url = tenantry::secrets::Secret::new(pg.url.clone());
    let c = PostgresCatalog::connect(&cfg).unwrap();
    suite(&c);
    caps(&c);
    gates(&c);
    // Gates hold across connections (nodes): a second catalog on the same database waits.
    let other = PostgresCatalog::connect(&cfg).unwrap();
    let t = TenantId::parse("qgate2").unwrap();
    let held = c.tenant_gate(&t, false, Duration::from_secs(1)).unwrap();
    assert!(other
        .tenant_gate(&t, true, Duration::from_millis(200))
        .is_err());
    drop(held);
    drop(other.tenant_gate(&t, true, Duration::from_secs(1)).unwrap());
    // Nodes: each heartbeat counts the nodes alive; a node that leaves no longer counts.
    let node = |id: &str| NodeInfo {
        id: id.into(),
        addr: "127.0.0.1:1".into(),
        started_at: 0,
    };
    let alive = Duration::from_secs(6);
    assert_eq!(c.heartbeat(&node("n1"), alive).unwrap(), 1);
    assert_eq!(other.heartbeat(&node("n2"), alive).unwrap(), 2);
    other.leave("n2").unwrap();
    assert_eq!(c.heartbeat(&node("n1"), alive).unwrap(), 1);
}
