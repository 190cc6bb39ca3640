mod common;
use common::*;
use engine::session::Isolation;
use engine::DbOptions;
use std::time::Duration;

#[test]
fn create_write_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let inst = open(dir.path());
        inst.create_database("Sales").unwrap();
        let mut s = session(&inst, "sales");
        exec(&mut s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
        for i in 0..50 {
            let o = s
                .query(&format!("INSERT INTO t(v) VALUES ('row {i}')"), &[])
                .unwrap();
            assert!(o.rows.is_empty());
        }
        assert_eq!(scalar_i64(&mut s, "SELECT count(*) FROM t"), 50);
        let db = inst.database("SALES").unwrap();
        assert_eq!(
            db.log().durable_lsn(),
            51,
            "one block per committed transaction"
        );
        assert_eq!(inst.create_database("sales").unwrap_err().number, 1801);
        drop(s);
        inst.shutdown().unwrap();
    }
    let inst = open(dir.path());
    let mut s = session(&inst, "Sales");
    assert_eq!(scalar_i64(&mut s, "SELECT count(*) FROM t"), 50);
    exec(&mut s, "INSERT INTO t(v) VALUES ('after reopen')");
    assert_eq!(inst.database("sales").unwrap().log().durable_lsn(), 52);
}

#[test]
fn data_directory_is_locked_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let inst = open(dir.path());
    let err = engine::Instance::open(engine::InstanceConfig {
        name: "x".into(),
        data_dir: dir.path().to_path_buf(),
        db_options: DbOptions::default(),
    })
    .err()
    .expect("second open must fail");
    assert!(
        err.message.contains("in use by another milink process"),
        "{err}"
    );
    drop(inst);
    std::fs::write(
        dir.path().join("milink.json"),
        br#"{"format_version": 99, "name": "x"}"#,
    )
    .unwrap();
    let err = engine::Instance::open(engine::InstanceConfig {
        name: "x".into(),
        data_dir: dir.path().to_path_buf(),
        db_options: DbOptions::default(),
    })
    .err()
    .unwrap();
    assert!(err.message.contains("incompatible milink version"), "{err}");
}

#[test]
fn explicit_transactions_commit_once_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let inst = open(dir.path());
    inst.create_database("d").unwrap();
    let mut s = session(&inst, "d");
    exec(&mut s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INT)");
    let log = inst.database("d").unwrap().log().clone();
    let before = log.durable_lsn();
    s.begin_tran();
    for i in 0..10 {
        exec(&mut s, &format!("INSERT INTO t(v) VALUES ({i})"));
    }
    assert_eq!(
        scalar_i64(&mut s, "SELECT count(*) FROM t"),
        10,
        "a transaction sees its own writes"
    );
    let mut other = session(&inst, "d");
    assert_eq!(
        scalar_i64(&mut other, "SELECT count(*) FROM t"),
        0,
        "others do not see uncommitted rows"
    );
    s.commit_tran().unwrap();
    assert_eq!(
        log.durable_lsn(),
        before + 1,
        "ten inserts, one transaction, one block"
    );
    assert_eq!(scalar_i64(&mut other, "SELECT count(*) FROM t"), 10);
    s.begin_tran();
    exec(&mut s, "DELETE FROM t");
    s.rollback_tran().unwrap();
    assert_eq!(scalar_i64(&mut other, "SELECT count(*) FROM t"), 10);
    assert_eq!(s.commit_tran().unwrap_err().number, 3902);
    assert_eq!(s.rollback_tran().unwrap_err().number, 3903);
}

#[test]
fn writer_queue_times_out_with_1222_and_snapshot_conflict_is_3960() {
    let dir = tempfile::tempdir().unwrap();
    let inst = open(dir.path());
    inst.create_database("d").unwrap();
    let mut a = session(&inst, "d");
    exec(&mut a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INT)");
    exec(&mut a, "INSERT INTO t(v) VALUES (1)");
    a.begin_tran();
    exec(&mut a, "UPDATE t SET v = 2");
    let mut b = session(&inst, "d");
    b.lock_timeout = Some(Duration::from_millis(100));
    let e = b.query("UPDATE t SET v = 3", &[]).unwrap_err();
    assert_eq!(e.number, 1222);
    a.commit_tran().unwrap();

    // SNAPSHOT: b reads, a commits a change, b's write must fail with 3960.
    b.isolation = Isolation::Snapshot;
    b.lock_timeout = None;
    b.begin_tran();
    assert_eq!(scalar_i64(&mut b, "SELECT v FROM t"), 2);
    exec(&mut a, "UPDATE t SET v = 5");
    assert_eq!(
        scalar_i64(&mut b, "SELECT v FROM t"),
        2,
        "snapshot is stable"
    );
    let e = b.query("UPDATE t SET v = 9", &[]).unwrap_err();
    assert_eq!(e.number, 3960, "{e}");
    b.rollback_tran().unwrap();
    assert_eq!(scalar_i64(&mut b, "SELECT v FROM t"), 5);
}

#[test]
fn concurrent_sessions_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let inst = open(dir.path());
    inst.create_database("d").unwrap();
    exec(
        &mut session(&inst, "d"),
        "CREATE TABLE t(id INTEGER PRIMARY KEY, who INT, n INT)",
    );
    let threads: Vec<_> = (0..8)
        .map(|w| {
            let inst = inst.clone();
            std::thread::spawn(move || {
                let mut s = session(&inst, "d");
                for n in 0..50 {
                    exec(&mut s, &format!("INSERT INTO t(who, n) VALUES ({w}, {n})"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut s = session(&inst, "d");
    assert_eq!(scalar_i64(&mut s, "SELECT count(*) FROM t"), 400);
    let stats = inst.database("d").unwrap().log().stats();
    assert_eq!(stats.durable_lsn, 401);
    assert!(
        stats.flushes < 401,
        "group commit batches fsyncs: {} flushes for 401 blocks",
        stats.flushes
    );
}

#[test]
fn cancel_interrupts_a_running_statement() {
    let dir = tempfile::tempdir().unwrap();
    let inst = open(dir.path());
    inst.create_database("d").unwrap();
    let mut s = session(&inst, "d");
    let h = s.cancel_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        h.cancel();
    });
    let e = s
        .query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", &[])
        .unwrap_err();
    assert!(e.is_cancel(), "{e}");
    t.join().unwrap();
    s.reset_cancel();
    assert_eq!(scalar_i64(&mut s, "SELECT 1"), 1);
}

#[test]
fn checkpoints_keep_readers_and_the_log_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        checkpoint_frames: 20,
        ..DbOptions::default()
    };
    let inst = open_with(dir.path(), opts.clone());
    inst.create_database("d").unwrap();
    let mut s = session(&inst, "d");
    exec(&mut s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    for _ in 0..300 {
        exec(&mut s, "INSERT INTO t(v) VALUES (randomblob(900))");
        assert!(scalar_i64(&mut s, "SELECT count(*) FROM t") > 0);
    }
    let db = inst.database("d").unwrap();
    assert!(
        db.control().checkpoint_lsn > 100,
        "checkpoints ran: {}",
        db.control().checkpoint_lsn
    );
    drop(s);
    drop(db);
    inst.shutdown().unwrap();
    drop(inst);
    let inst = open_with(dir.path(), opts);
    let mut s = session(&inst, "d");
    assert_eq!(scalar_i64(&mut s, "SELECT count(*) FROM t"), 300);
}

#[test]
fn a_session_always_reads_its_own_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let inst = open_with(
        dir.path(),
        DbOptions {
            checkpoint_frames: 30,
            ..DbOptions::default()
        },
    );
    inst.create_database("d").unwrap();
    exec(
        &mut session(&inst, "d"),
        "CREATE TABLE t(id INTEGER PRIMARY KEY, who INT)",
    );
    let threads: Vec<_> = (0..8)
        .map(|w| {
            let inst = inst.clone();
            std::thread::spawn(move || {
                let mut s = session(&inst, "d");
                for n in 1..=40 {
                    exec(&mut s, &format!("INSERT INTO t(who) VALUES ({w})"));
                    let seen =
                        scalar_i64(&mut s, &format!("SELECT count(*) FROM t WHERE who = {w}"));
                    assert_eq!(
                        seen, n,
                        "writer {w} does not see its own acknowledged insert"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Synchronous commit: the commit is acknowledged, and readers see it, only once the secondary hardened it; a
/// secondary silent past its session timeout is dropped and the commit goes through.
#[test]
fn sync_commit_waits_for_the_secondary_and_hides_the_commit_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let inst = open(dir.path());
    let db = inst.create_database("Ledger").unwrap();
    let mut s = session(&inst, "Ledger");
    exec(&mut s, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
    let before = db.log().durable_lsn();
    db.enable_sync_commit(before, Duration::from_secs(30));
    let inst2 = inst.clone();
    let writer = std::thread::spawn(move || {
        let mut w = session(&inst2, "Ledger");
        exec(&mut w, "INSERT INTO t VALUES (1)");
    });
    // Durable locally, but not acknowledged and not visible.
    let t0 = std::time::Instant::now();
    while db.log().durable_lsn() == before {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !writer.is_finished(),
        "the commit returned before the secondary hardened it"
    );
    assert_eq!(scalar_i64(&mut s, "SELECT count(*) FROM t"), 0);
    assert_eq!(db.visible_lsn(), before);
    db.replica_hardened(before + 1);
    writer.join().unwrap();
    assert_eq!(scalar_i64(&mut s, "SELECT count(*) FROM t"), 1);

    // A silent secondary: the commit waits out the session timeout, then goes on without it.
    db.enable_sync_commit(before + 1, Duration::from_millis(200));
    let t1 = std::time::Instant::now();
    exec(&mut s, "INSERT INTO t VALUES (2)");
    assert!(t1.elapsed() >= Duration::from_millis(200));
    assert!(!db.sync_commit_active());
    assert_eq!(db.sync_commit_timeouts(), 1);
    assert_eq!(scalar_i64(&mut s, "SELECT count(*) FROM t"), 2);
}

/// A promotion starts a new epoch at the next LSN; a demoted copy refuses writes with 3906.
#[test]
fn promotion_starts_a_new_epoch_and_demotion_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let inst = open(dir.path());
    let db = inst.create_database("Ledger").unwrap();
    let mut s = session(&inst, "Ledger");
    exec(&mut s, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
    db.demote().unwrap();
    let e = s.query("INSERT INTO t VALUES (1)", &[]).unwrap_err();
    assert_eq!(e.number, 3906, "{e}");
    let end = db.log().durable_lsn();
    let epoch = db.promote().unwrap();
    assert_eq!(db.timeline(), vec![(1, 1), (epoch, end + 1)]);
    exec(&mut s, "INSERT INTO t VALUES (1)");
    let b = db.log().read_block(end + 1).unwrap();
    assert_eq!(b.epoch, epoch);
}
