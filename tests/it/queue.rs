//! The job queue of the catalog seam, one suite on both catalogs (SQLite and a real
//! PostgreSQL): tenants take turns, a claimed job is nobody else's while its lease runs (and
//! its node's heartbeat renews it), an expired lease hands the job to another node with the
//! attempt counted, and a released job waits out its delay.
use std::time::Duration;

use tenantry::domain::{DocId, TenantId};
use tenantry::storage::catalog::{
    Catalog, NewUpload, PostgresCatalog, Quota, SqliteCatalog, UploadOutcome,
};

fn upload(c: &dyn Catalog, tenant: &TenantId, doc: &str) -> String {
    let job_id = uuid::Uuid::new_v4().to_string();
    let up = NewUpload {
        job_id: job_id.clone(),
        doc_id: DocId::parse(doc).unwrap(),
        title: doc.into(),
        content_type: "text/plain".into(),
        content_hash: format!("hash-{doc}"),
        metadata: Default::default(),
        byte_size: 10,
    };
    let outcome = c.accept_upload(tenant, &up, &Quota::default()).unwrap();
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
}

#[test]
fn the_job_queue_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let c = SqliteCatalog::open(&dir.path().join("catalog.sqlite3")).unwrap();
    suite(&c);
}

#[test]
fn the_job_queue_on_postgres() {
    let pg = crate::pg::Postgres::start();
    let mut cfg = tenantry::config::Config::defaults().postgres;
    cfg.url = tenantry::secrets::Secret::new(pg.url.clone());
    let c = PostgresCatalog::connect(&cfg).unwrap();
    suite(&c);
}
