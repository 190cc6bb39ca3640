mod common;
use common::*;
use engine::backup::{self, BackupOptions, RestoreOptions};
use engine::log::LogConfig;
use engine::{DbOptions, RecoveryModel};
use std::path::Path;
use std::time::Duration;

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn no_progress() -> impl FnMut(u32) {
    |_| {}
}

/// BACKUP DATABASE with default options, no progress.
fn full_backup(inst: &engine::Instance, db: &str, path: &Path) -> engine::Result<backup::Summary> {
    backup::backup_database(
        inst,
        db,
        path,
        &BackupOptions::default(),
        &mut no_progress(),
    )
}

/// BACKUP LOG with default options, no progress.
fn log_backup(inst: &engine::Instance, db: &str, path: &Path) -> engine::Result<backup::Summary> {
    backup::backup_log(
        inst,
        db,
        path,
        &BackupOptions::default(),
        &mut no_progress(),
    )
}

#[test]
fn point_in_time_restore_from_full_and_two_log_backups() {
    let dir = tempfile::tempdir().unwrap();
    let bak = tempfile::tempdir().unwrap();
    let inst = open(dir.path());
    inst.create_database("shop").unwrap();
    let mut s = session(&inst, "shop");
    exec(
        &mut s,
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, amount INT)",
    );
    exec(&mut s, "INSERT INTO orders(amount) VALUES (1)");
    let full = bak.path().join("shop.bak");
    let mut pcts = Vec::new();
    let opts = BackupOptions {
        stats_percent: Some(10),
        ..Default::default()
    };
    backup::backup_database(&inst, "shop", &full, &opts, &mut |p| pcts.push(p)).unwrap();
    assert_eq!(
        pcts.last(),
        Some(&100),
        "STATS reports up to 100 percent: {pcts:?}"
    );
    // Commits with known gaps between them, remembering the acknowledgement times.
    let mut acked = Vec::new();
    for i in 2..=6 {
        std::thread::sleep(Duration::from_millis(30));
        let start = now_us();
        exec(&mut s, &format!("INSERT INTO orders(amount) VALUES ({i})"));
        acked.push((start, now_us()));
        if i == 3 {
            log_backup(&inst, "shop", &bak.path().join("log1.trn")).unwrap();
        }
    }
    log_backup(&inst, "shop", &bak.path().join("log2.trn")).unwrap();
    // Stop between the commit of amount=4 (acked[2]) and amount=5 (acked[3]).
    let stop = acked[2].1 + (acked[3].0 - acked[2].1) / 2;

    let norec = RestoreOptions {
        recovery: false,
        ..Default::default()
    };
    backup::restore_database(&inst, "shop_pit", &full, &norec, &mut no_progress()).unwrap();
    assert_eq!(
        inst.database("shop_pit").unwrap_err().number,
        927,
        "RESTORING databases are not usable"
    );
    // Out of sequence: log2 before log1.
    let e = backup::restore_log(
        &inst,
        "shop_pit",
        &bak.path().join("log2.trn"),
        &norec,
        &mut no_progress(),
    )
    .unwrap_err();
    assert_eq!(e.number, 4305, "{e}");
    backup::restore_log(
        &inst,
        "shop_pit",
        &bak.path().join("log1.trn"),
        &norec,
        &mut no_progress(),
    )
    .unwrap();
    let last = RestoreOptions {
        recovery: true,
        stop_at_us: Some(stop),
        ..Default::default()
    };
    let sum = backup::restore_log(
        &inst,
        "shop_pit",
        &bak.path().join("log2.trn"),
        &last,
        &mut no_progress(),
    )
    .unwrap();
    assert!(sum.stopped_at);
    let mut r = session(&inst, "shop_pit");
    let rows = exec(&mut r, "SELECT amount FROM orders ORDER BY id");
    let amounts: Vec<i64> = rows
        .rows
        .iter()
        .map(|r| match r[0] {
            rusqlite::types::Value::Integer(i) => i,
            _ => -1,
        })
        .collect();
    assert_eq!(
        amounts,
        vec![1, 2, 3, 4],
        "exactly the rows committed before STOPAT"
    );
    // The restored database takes writes and survives a restart.
    exec(&mut r, "INSERT INTO orders(amount) VALUES (100)");
    drop(r);
    drop(s);
    inst.shutdown().unwrap();
    drop(inst);
    let inst = open(dir.path());
    let mut r = session(&inst, "shop_pit");
    assert_eq!(scalar_i64(&mut r, "SELECT sum(amount) FROM orders"), 110);
    let hist = inst.backup_history("shop").unwrap();
    assert_eq!(
        hist.iter()
            .map(|h| h.backup_type.as_str())
            .collect::<Vec<_>>(),
        vec!["D", "L", "L"]
    );
}

#[test]
fn chain_rules_and_bad_backups() {
    let dir = tempfile::tempdir().unwrap();
    let bak = tempfile::tempdir().unwrap();
    let inst = open(dir.path());
    inst.create_database("d").unwrap();
    let mut s = session(&inst, "d");
    exec(&mut s, "CREATE TABLE t(x)");
    let e = log_backup(&inst, "d", &bak.path().join("l.trn")).unwrap_err();
    assert_eq!(e.number, 4214);
    let copy = BackupOptions {
        copy_only: true,
        ..Default::default()
    };
    backup::backup_database(
        &inst,
        "d",
        &bak.path().join("copy.bak"),
        &copy,
        &mut no_progress(),
    )
    .unwrap();
    let e = log_backup(&inst, "d", &bak.path().join("l.trn")).unwrap_err();
    assert_eq!(e.number, 4214, "a COPY_ONLY backup does not start a chain");
    let full = bak.path().join("full.bak");
    full_backup(&inst, "d", &full).unwrap();
    let e = full_backup(&inst, "d", &full).unwrap_err();
    assert!(e.message.contains("WITH INIT"), "{e}");
    // Restoring over an online database needs REPLACE.
    let e = backup::restore_database(
        &inst,
        "d",
        &full,
        &RestoreOptions {
            recovery: true,
            ..Default::default()
        },
        &mut no_progress(),
    )
    .unwrap_err();
    assert_eq!(e.number, 3159);
    // A damaged copy is refused, and the database it would replace is untouched.
    exec(&mut s, "INSERT INTO t VALUES (42)");
    let mut bytes = std::fs::read(&full).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let bad = bak.path().join("bad.bak");
    std::fs::write(&bad, &bytes).unwrap();
    let e = backup::restore_database(
        &inst,
        "d",
        &bad,
        &RestoreOptions {
            recovery: true,
            replace: true,
            ..Default::default()
        },
        &mut no_progress(),
    )
    .unwrap_err();
    assert_eq!(e.number, 3241, "{e}");
    assert!(backup::verify(&bad).is_err());
    let truncated = bak.path().join("trunc.bak");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    assert_eq!(backup::verify(&truncated).unwrap_err().number, 3241);
    assert_eq!(scalar_i64(&mut s, "SELECT x FROM t"), 42);
    let h = backup::verify(&full).unwrap();
    assert_eq!(h.database_name, "d");
    // Restoring a log of another database is refused.
    inst.create_database("other").unwrap();
    full_backup(&inst, "other", &bak.path().join("o.bak")).unwrap();
    let olog = bak.path().join("o.trn");
    log_backup(&inst, "other", &olog).unwrap();
    backup::restore_database(
        &inst,
        "d2",
        &full,
        &RestoreOptions::default(),
        &mut no_progress(),
    )
    .unwrap();
    let e = backup::restore_log(
        &inst,
        "d2",
        &olog,
        &RestoreOptions::default(),
        &mut no_progress(),
    )
    .unwrap_err();
    assert_eq!(e.number, 3154);
}

#[test]
fn log_full_9002_then_resumes_when_the_reason_clears() {
    let dir = tempfile::tempdir().unwrap();
    let bak = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        log: LogConfig {
            segment_bytes: 16 << 10,
            compress: false,
        },
        checkpoint_frames: 50,
        ..Default::default()
    };
    let inst = open_with(dir.path(), opts);
    let db = inst.create_database("d").unwrap();
    db.set_recovery_model(RecoveryModel::Full).unwrap();
    db.set_max_log_bytes(256 << 10).unwrap();
    let mut s = session(&inst, "d");
    exec(&mut s, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    full_backup(&inst, "d", &bak.path().join("f.bak")).unwrap();
    let mut acked = 0;
    let err = loop {
        match s.query("INSERT INTO t(v) VALUES (randomblob(3000))", &[]) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 10_000, "the log never filled");
    };
    assert_eq!(err.number, 9002);
    assert_eq!(
        err.message,
        "The transaction log for database 'd' is full due to 'LOG_BACKUP'."
    );
    assert_eq!(db.log_reuse().reason, "LOG_BACKUP");
    log_backup(&inst, "d", &bak.path().join("l1.trn")).unwrap();
    exec(&mut s, "INSERT INTO t(v) VALUES (randomblob(3000))");
    acked += 1;
    assert_eq!(scalar_i64(&mut s, "SELECT count(*) FROM t"), acked);

    // A replica that stops hardening holds the log: AVAILABILITY_REPLICA, until it catches up or is removed.
    db.hold_log("replica:mi", db.log().durable_lsn() + 1);
    let err = loop {
        match s.query("INSERT INTO t(v) VALUES (randomblob(3000))", &[]) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        log_backup(&inst, "d", &bak.path().join(format!("l{acked}.trn"))).unwrap();
    };
    assert_eq!(
        err.message,
        "The transaction log for database 'd' is full due to 'AVAILABILITY_REPLICA'."
    );
    db.release_log("replica:mi").unwrap();
    log_backup(&inst, "d", &bak.path().join("last.trn")).unwrap();
    exec(&mut s, "INSERT INTO t(v) VALUES (randomblob(3000))");
    acked += 1;
    assert_eq!(
        scalar_i64(&mut s, "SELECT count(*) FROM t"),
        acked,
        "nothing acknowledged was lost"
    );

    // SIMPLE: the checkpoint alone frees the log.
    db.set_recovery_model(RecoveryModel::Simple).unwrap();
    for _ in 0..300 {
        exec(&mut s, "INSERT INTO t(v) VALUES (randomblob(3000))");
    }
    assert!(db.log_used_bytes() < 256 << 10);
}
