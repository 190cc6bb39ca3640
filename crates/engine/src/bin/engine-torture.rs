//! Crash-test worker: writes a ledger through the engine from several threads and prints every acknowledged
//! commit ("ACK w seq") and every reader observation ("SAW w seq"), so a parent test can SIGKILL it at any moment
//! (or let an injected fault point kill it) and check what survived.
//!
//!   engine-torture work DIR WRITERS READERS
//!   engine-torture verify DIR           prints "ROW w max count counter" lines and "INTEGRITY ok|<msg>"

use engine::{DbOptions, Instance, InstanceConfig, Session};
use rusqlite::types::Value;
use std::io::Write;
use std::sync::Arc;

fn open(dir: &str) -> Arc<Instance> {
    let opts = DbOptions {
        checkpoint_frames: 64,
        ..Default::default()
    };
    Instance::open(InstanceConfig {
        name: "torture".into(),
        data_dir: dir.into(),
        db_options: opts,
    })
    .expect("open")
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        _ => -1,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(2).expect("DIR").clone();
    match args.get(1).map(String::as_str) {
        Some("work") => {
            let writers: i64 = args[3].parse().unwrap();
            let readers: usize = args[4].parse().unwrap();
            work(&dir, writers, readers)
        }
        Some("verify") => verify(&dir),
        _ => panic!("usage: engine-torture work|verify DIR ..."),
    }
}

fn work(dir: &str, writers: i64, readers: usize) {
    let inst = open(dir);
    if inst.database("ledger").is_err() {
        inst.create_database("ledger").unwrap();
        let mut s = Session::new(inst.clone());
        s.use_database(Some("ledger")).unwrap();
        s.query(
            "CREATE TABLE ledger(w INT, seq INT, payload BLOB, PRIMARY KEY (w, seq))",
            &[],
        )
        .unwrap();
        s.query("CREATE TABLE counters(w INTEGER PRIMARY KEY, n INT)", &[])
            .unwrap();
    }
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    println!("READY");
    let mut handles = Vec::new();
    for w in 0..writers {
        let inst = inst.clone();
        let out = out.clone();
        handles.push(std::thread::spawn(move || {
            let mut s = Session::new(inst);
            s.use_database(Some("ledger")).unwrap();
            s.query(
                "INSERT OR IGNORE INTO counters(w, n) VALUES (?1, 0)",
                &[Value::Integer(w)],
            )
            .unwrap();
            let next = s
                .query(
                    "SELECT coalesce(max(seq), -1) + 1 FROM ledger WHERE w = ?1",
                    &[Value::Integer(w)],
                )
                .unwrap();
            let mut seq = int(&next.rows[0][0]);
            loop {
                s.begin_tran();
                let size = 100 + (seq * 7919 % 3000);
                s.query(
                    "INSERT INTO ledger(w, seq, payload) VALUES (?1, ?2, randomblob(?3))",
                    &[Value::Integer(w), Value::Integer(seq), Value::Integer(size)],
                )
                .unwrap();
                s.query(
                    "UPDATE counters SET n = n + 1 WHERE w = ?1",
                    &[Value::Integer(w)],
                )
                .unwrap();
                if s.commit_tran().is_err() {
                    return;
                }
                let mut o = out.lock().unwrap();
                let _ = writeln!(o, "ACK {w} {seq}");
                let _ = o.flush();
                seq += 1;
            }
        }));
    }
    for _ in 0..readers {
        let inst = inst.clone();
        let out = out.clone();
        handles.push(std::thread::spawn(move || {
            let mut s = Session::new(inst);
            s.use_database(Some("ledger")).unwrap();
            loop {
                // One read transaction: the ledger and the counters must agree inside one snapshot.
                s.isolation = engine::session::Isolation::Snapshot;
                s.begin_tran();
                let seen = s
                    .query("SELECT w, max(seq), count(*) FROM ledger GROUP BY w", &[])
                    .unwrap();
                let counters = s.query("SELECT w, n FROM counters", &[]).unwrap();
                let _ = s.commit_tran();
                let mut o = out.lock().unwrap();
                for r in &seen.rows {
                    let n = counters
                        .rows
                        .iter()
                        .find(|c| int(&c[0]) == int(&r[0]))
                        .map(|c| int(&c[1]))
                        .unwrap_or(0);
                    if n != int(&r[2]) || int(&r[1]) + 1 != int(&r[2]) {
                        let _ =
                            writeln!(o, "TORN {} {} {} {}", int(&r[0]), int(&r[1]), int(&r[2]), n);
                    }
                    let _ = writeln!(o, "SAW {} {}", int(&r[0]), int(&r[1]));
                }
                let _ = o.flush();
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
}

fn verify(dir: &str) {
    let inst = open(dir);
    let mut s = Session::new(inst.clone());
    if let Err(e) = s.use_database(Some("ledger")) {
        println!("OPENERROR {e} / {:?}", inst.suspect_reason("ledger"));
        return;
    }
    let rows = s.query("SELECT w, max(seq), count(*), (SELECT n FROM counters c WHERE c.w = l.w) FROM ledger l GROUP BY w", &[]).unwrap();
    for r in rows.rows {
        println!(
            "ROW {} {} {} {}",
            int(&r[0]),
            int(&r[1]),
            int(&r[2]),
            int(&r[3])
        );
    }
    let ic = s.query("PRAGMA integrity_check", &[]).unwrap();
    match &ic.rows[0][0] {
        Value::Text(t) => println!("INTEGRITY {t}"),
        v => println!("INTEGRITY {v:?}"),
    }
    drop(s);
    inst.shutdown().unwrap();
}
