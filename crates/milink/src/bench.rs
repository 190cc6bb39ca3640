//! `milink bench <suite>`: figures measured against a baseline in the same run, printed as a table and, on the
//! last line, one JSON object.

use anyhow::{bail, Result};
use engine::log::LogConfig;
use engine::{DbOptions, Instance, InstanceConfig, Session};
use rusqlite::types::Value;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub fn run(suite: &str, quick: bool) -> Result<()> {
    match suite {
        "engine" => engine_suite(quick),
        "sql" => crate::bench_sql::run(quick),
        "link" => crate::bench_link::run(quick),
        "failover" => crate::bench_link::run_failover(quick),
        other => bail!("unknown bench suite '{other}' (available: engine, sql, link, failover)"),
    }
}

const PAYLOAD: &str = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";

fn bare_sqlite_full(dir: &Path, txns: u64) -> Result<f64> {
    let c = rusqlite::Connection::open(dir.join("bare.sqlite"))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, k INT, v TEXT)")?;
    let t = Instant::now();
    let mut st = c.prepare("INSERT INTO t(k, v) VALUES (?1, ?2)")?;
    for i in 0..txns {
        st.execute(rusqlite::params![i as i64, PAYLOAD])?;
    }
    Ok(txns as f64 / t.elapsed().as_secs_f64())
}

fn instance(dir: &Path, opts: DbOptions) -> Result<Arc<Instance>> {
    Ok(Instance::open(InstanceConfig {
        name: "bench".into(),
        data_dir: dir.to_path_buf(),
        db_options: opts,
    })?)
}

fn engine_rate(inst: &Arc<Instance>, sessions: u64, txns_per_session: u64) -> Result<f64> {
    let t = Instant::now();
    let handles: Vec<_> = (0..sessions)
        .map(|w| {
            let inst = inst.clone();
            std::thread::spawn(move || -> Result<()> {
                let mut s = Session::new(inst);
                s.use_database(Some("bench"))?;
                for i in 0..txns_per_session {
                    s.query(
                        "INSERT INTO t(k, v) VALUES (?1, ?2)",
                        &[
                            Value::Integer((w * 1_000_000 + i) as i64),
                            Value::Text(PAYLOAD.into()),
                        ],
                    )?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("bench thread")?;
    }
    Ok((sessions * txns_per_session) as f64 / t.elapsed().as_secs_f64())
}

fn engine_suite(quick: bool) -> Result<()> {
    let scale = if quick { 1 } else { 4 };
    let txns = 500 * scale;
    let tmp = tempfile::tempdir()?;

    // Baseline: bare SQLite, WAL, synchronous=FULL (one fsync per commit), same rows.
    // fsync latency on a virtual disk swings a lot: baseline and engine alternate, three rounds, medians.
    let mut bares = Vec::new();

    let inst = instance(&tmp.path().join("inst"), DbOptions::default())?;
    let db = inst.create_database("bench")?;
    let mut s = Session::new(inst.clone());
    s.use_database(Some("bench"))?;
    s.query("CREATE TABLE t(id INTEGER PRIMARY KEY, k INT, v TEXT)", &[])?;
    drop(s);
    let before = db.log().stats();
    let mut ones = Vec::new();
    let mut sixteens = Vec::new();
    let mut after1 = before;
    for _ in 0..3 {
        bares.push(bare_sqlite_full(tmp.path(), txns)?);
        ones.push(engine_rate(&inst, 1, txns)?);
        after1 = db.log().stats();
        sixteens.push(engine_rate(&inst, 16, txns / 4)?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    };
    let (bare, one, sixteen) = (median(&mut bares), median(&mut ones), median(&mut sixteens));
    let after16 = db.log().stats();
    let blocks = after16.durable_lsn - before.durable_lsn;
    let log_bytes_per_txn = (after16.bytes_written - before.bytes_written) as f64 / blocks as f64;
    let txn_per_flush_16 = (after16.durable_lsn - after1.durable_lsn) as f64
        / (after16.flushes - after1.flushes).max(1) as f64;
    drop(db);
    inst.shutdown()?;
    drop(inst);

    // Recovery: a log with no checkpoint since its start, replayed at open.
    let rdir = tmp.path().join("recovery");
    let opts = DbOptions {
        checkpoint_frames: u32::MAX,
        log: LogConfig::default(),
        ..Default::default()
    };
    let log_bytes = {
        let inst = instance(&rdir, opts.clone())?;
        let db = inst.create_database("bench")?;
        let mut s = Session::new(inst.clone());
        s.use_database(Some("bench"))?;
        s.query("CREATE TABLE t(id INTEGER PRIMARY KEY, k INT, v BLOB)", &[])?;
        s.begin_tran();
        for i in 0..(2000 * scale) {
            s.query(
                "INSERT INTO t(k, v) VALUES (?1, randomblob(2000))",
                &[Value::Integer(i as i64)],
            )?;
            if i % 20 == 19 {
                s.commit_tran()?;
                s.begin_tran();
            }
        }
        s.commit_tran()?;
        let bytes = db.log().stats().retained_bytes;
        // No shutdown: the process "crashes" with every block after the (empty) checkpoint still to redo.
        std::mem::forget(s);
        std::mem::forget(db);
        std::mem::forget(inst);
        bytes
    };
    // The forgotten instance still holds the directory lock: copy the files as a crashed process leaves them.
    let crashed = tmp.path().join("crashed");
    copy_dir(&rdir, &crashed)?;
    std::fs::remove_file(crashed.join("milink.lock")).ok();
    let t = Instant::now();
    let inst = instance(&crashed, opts)?;
    let recovery_s = t.elapsed().as_secs_f64();
    let mut s = Session::new(inst.clone());
    s.use_database(Some("bench"))?;
    let n = s.query("SELECT count(*) FROM t", &[])?;
    if n.rows[0][0] != Value::Integer(2000 * scale as i64) {
        bail!("recovery lost rows: {:?}", n.rows[0][0]);
    }
    let per_100mb = recovery_s * (100.0 * 1024.0 * 1024.0) / log_bytes as f64;

    let r1 = one / bare;
    let r16 = sixteen / one;
    println!(
        "milink bench engine ({} txns per run; machine: {} cores)",
        txns,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("{:<48} {:>12}", "figure", "value");
    println!(
        "{:<48} {:>12.0}",
        "bare SQLite WAL synchronous=FULL, 1 session tx/s", bare
    );
    println!("{:<48} {:>12.0}", "milink engine, 1 session tx/s", one);
    println!(
        "{:<48} {:>12.0}",
        "milink engine, 16 sessions tx/s", sixteen
    );
    println!(
        "{:<48} {:>12.2}",
        "ratio 1 session vs bare SQLite (target >= 0.8)", r1
    );
    println!(
        "{:<48} {:>12.2}",
        "ratio 16 sessions vs 1 session (target >= 3)", r16
    );
    println!(
        "{:<48} {:>12.1}",
        "transactions per fsync at 16 sessions", txn_per_flush_16
    );
    println!(
        "{:<48} {:>12.0}",
        "log bytes per transaction (1-row insert)", log_bytes_per_txn
    );
    println!(
        "{:<48} {:>12.3}",
        "recovery seconds per 100 MB of log", per_100mb
    );
    println!(
        "{}",
        json!({
            "suite": "engine",
            "txns": txns,
            "bare_sqlite_full_tps": bare.round(),
            "engine_1_session_tps": one.round(),
            "engine_16_sessions_tps": sixteen.round(),
            "ratio_1_vs_bare": (r1 * 100.0).round() / 100.0,
            "ratio_16_vs_1": (r16 * 100.0).round() / 100.0,
            "txns_per_fsync_16": (txn_per_flush_16 * 10.0).round() / 10.0,
            "log_bytes_per_txn": log_bytes_per_txn.round(),
            "recovery_s_per_100mb": (per_100mb * 1000.0).round() / 1000.0,
            "recovery_log_bytes": log_bytes,
        })
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let p = e.path();
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&p, &dest)?;
        } else {
            std::fs::copy(&p, &dest)?;
        }
    }
    Ok(())
}
