//! The replication core between two real instances in one process: seeding under load, shipping, redo on a
//! readable secondary, byte identity, and a seeding that survives restarts of both sides.

use engine::{Instance, InstanceConfig, Session};
use hadr::{identity, seeding, shipping};
use rusqlite::types::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn open(dir: &std::path::Path, name: &str) -> Arc<Instance> {
    Instance::open(InstanceConfig {
        name: name.into(),
        data_dir: dir.to_path_buf(),
        db_options: Default::default(),
    })
    .unwrap()
}

fn count(inst: &Arc<Instance>) -> i64 {
    let mut s = Session::new(inst.clone());
    s.use_database(Some("Sales")).unwrap();
    match s.query("SELECT count(*) FROM t", &[]).unwrap().rows[0][0] {
        Value::Integer(n) => n,
        _ => -1,
    }
}

fn load(inst: &Arc<Instance>, rows: usize) {
    let mut s = Session::new(inst.clone());
    s.use_database(Some("Sales")).unwrap();
    s.begin_tran();
    for _ in 0..rows {
        s.query("INSERT INTO t(v) VALUES (randomblob(1000))", &[])
            .unwrap();
    }
    s.commit_tran().unwrap();
}

fn primary(dir: &std::path::Path) -> Arc<Instance> {
    let p = open(dir, "sqlserver1");
    p.create_database("Sales").unwrap();
    let mut s = Session::new(p.clone());
    s.use_database(Some("Sales")).unwrap();
    s.query("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)", &[])
        .unwrap();
    drop(s);
    load(&p, 2000);
    p
}

fn ship_until_caught_up(
    shipper: &mut shipping::LogShipper,
    p: &Arc<Instance>,
    target: &engine::Database,
) {
    loop {
        let batch = shipper
            .next_batch(1 << 20, Duration::from_millis(20))
            .unwrap();
        if !batch.is_empty() {
            let hardened = shipping::apply(target, &batch).unwrap();
            shipper.acknowledge(hardened);
        }
        if target.log().durable_lsn() == p.database("Sales").unwrap().log().durable_lsn() {
            return;
        }
    }
}

fn assert_identical(p: &Arc<Instance>, s: &Arc<Instance>) {
    let pdb = p.database("Sales").unwrap();
    let sdb = s.database("Sales").unwrap();
    assert_eq!(
        pdb.log().durable_lsn(),
        sdb.log().durable_lsn(),
        "compared at equal LSNs"
    );
    pdb.checkpoint().unwrap();
    sdb.checkpoint().unwrap();
    let diff = identity::first_difference(
        pdb.db_path(),
        sdb.db_path(),
        pdb.control().page_size as usize,
    )
    .unwrap();
    assert_eq!(diff, None, "replicas differ at page {diff:?}");
}

#[test]
fn seeding_under_load_then_shipping_gives_a_byte_identical_readable_secondary() {
    let pd = tempfile::tempdir().unwrap();
    let sd = tempfile::tempdir().unwrap();
    let p = primary(pd.path());
    let s = open(sd.path(), "mi1");
    let pdb = p.database("Sales").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (p, stop) = (p.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sess = Session::new(p);
            sess.use_database(Some("Sales")).unwrap();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                sess.query("INSERT INTO t(v) VALUES (randomblob(700))", &[])
                    .unwrap();
                if n % 7 == 0 {
                    sess.query(
                        "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 1)",
                        &[],
                    )
                    .unwrap();
                }
                n += 1;
            }
        })
    };

    let mut src = seeding::SeedSource::begin(&pdb, "mi1").unwrap();
    let target = s
        .seed_target(
            "Sales",
            pdb.guid,
            src.page_size(),
            pdb.epoch(),
            src.start_lsn,
        )
        .unwrap();
    assert_eq!(
        s.database("Sales").unwrap_err().number,
        927,
        "RESTORING while seeding"
    );
    let mut reports = 0;
    let (end, _) = seeding::copy_pages(&mut src, &target, 16, |_| {
        reports += 1;
        std::thread::sleep(Duration::from_millis(2));
        true
    })
    .unwrap()
    .expect("copy complete");
    assert!(
        reports > 5,
        "the copy went in chunks while the primary kept writing"
    );
    assert!(
        end > src.start_lsn,
        "the primary committed during the copy: redo must fix the fuzzy pages"
    );
    let mut shipper = shipping::LogShipper::new(&pdb, "mi1", src.start_lsn + 1).unwrap();
    src.finish().unwrap();
    ship_until_caught_up(&mut shipper, &p, &target);
    // Readable while the primary still writes, and read-only.
    assert!(count(&s) > 0);
    let mut w = Session::new(s.clone());
    w.use_database(Some("Sales")).unwrap();
    assert_eq!(
        w.query("INSERT INTO t(v) VALUES (1)", &[])
            .unwrap_err()
            .number,
        3906
    );
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    ship_until_caught_up(&mut shipper, &p, &target);
    assert_eq!(count(&s), count(&p));
    assert_identical(&p, &s);
}

#[test]
fn interrupted_seeding_resumes_after_restarts_and_the_primary_keeps_its_log() {
    let pd = tempfile::tempdir().unwrap();
    let sd = tempfile::tempdir().unwrap();
    let bak = tempfile::tempdir().unwrap();
    let p = primary(pd.path());
    let pdb = p.database("Sales").unwrap();
    engine::backup::backup_database(
        &p,
        "Sales",
        &bak.path().join("f.bak"),
        &Default::default(),
        &mut |_| {},
    )
    .unwrap();
    let s = open(sd.path(), "mi1");
    let mut src = seeding::SeedSource::begin(&pdb, "mi1").unwrap();
    let start = src.start_lsn;
    let target = s
        .seed_target("Sales", pdb.guid, src.page_size(), pdb.epoch(), start)
        .unwrap();
    let mut chunks = 0;
    let done = seeding::copy_pages(&mut src, &target, 20, |_| {
        chunks += 1;
        chunks < 4
    })
    .unwrap();
    assert!(done.is_none(), "interrupted");
    drop(src);
    drop(target);

    // The primary keeps writing, checkpoints and backs up its log: none of that may truncate what the seeding needs.
    load(&p, 500);
    pdb.checkpoint().unwrap();
    engine::backup::backup_log(
        &p,
        "Sales",
        &bak.path().join("l.trn"),
        &Default::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(pdb.log_reuse().reason, "AVAILABILITY_REPLICA");
    assert!(pdb.log().first_lsn() <= start + 1);

    // Both sides restart.
    drop(pdb);
    p.shutdown().unwrap();
    drop(p);
    s.shutdown().unwrap();
    drop(s);
    let p = open(pd.path(), "sqlserver1");
    let s = open(sd.path(), "mi1");
    assert!(
        s.suspect_reason("Sales").is_none(),
        "{:?}",
        s.suspect_reason("Sales")
    );
    let pdb = p.database("Sales").unwrap();
    assert_eq!(
        pdb.log_reuse().reason,
        "AVAILABILITY_REPLICA",
        "the hold survived the primary's restart"
    );

    let mut src = seeding::SeedSource::begin(&pdb, "mi1").unwrap();
    assert_eq!(src.start_lsn, start, "resumed, not restarted");
    let target = s
        .seed_target(
            "Sales",
            pdb.guid,
            src.page_size(),
            pdb.epoch(),
            src.start_lsn,
        )
        .unwrap();
    let resume_at = target.control().seed_next_page;
    assert!(
        resume_at > 60,
        "resumes after the pages already copied (next page {resume_at})"
    );
    let mut first = None;
    seeding::copy_pages(&mut src, &target, 20, |pr| {
        first.get_or_insert(pr.next_page);
        true
    })
    .unwrap()
    .expect("complete");
    assert!(first.unwrap() > resume_at);
    let mut shipper = shipping::LogShipper::new(&pdb, "mi1", start + 1).unwrap();
    src.finish().unwrap();
    ship_until_caught_up(&mut shipper, &p, &target);
    assert_eq!(count(&s), count(&p));
    assert_identical(&p, &s);
    // Once the replica is removed, the log is free again.
    shipper.remove().unwrap();
    assert_ne!(pdb.log_reuse().reason, "AVAILABILITY_REPLICA");
}
