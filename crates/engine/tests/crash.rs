//! Kill a real process (SIGKILL, or an injected fault point that SIGKILLs itself) while it commits through the
//! engine, restart, and check: no acknowledged transaction lost, no torn transaction, no reader ever saw a
//! transaction that was then lost.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_engine-torture");

#[derive(Default)]
struct Observed {
    acked: HashMap<i64, i64>,
    saw: HashMap<i64, i64>,
    torn: Vec<String>,
}

fn run_and_kill(dir: &str, fault: Option<&str>, kill_after: Duration) -> Observed {
    let mut cmd = Command::new(BIN);
    cmd.args(["work", dir, "4", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(f) = fault {
        cmd.env("MILINK_FAULT", f);
    }
    let mut child = cmd.spawn().expect("spawn worker");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut o = Observed::default();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let p: Vec<&str> = line.split_whitespace().collect();
            match p.first().copied() {
                Some("ACK") => {
                    let (w, s) = (p[1].parse().unwrap(), p[2].parse().unwrap());
                    let e = o.acked.entry(w).or_insert(-1);
                    *e = (*e).max(s);
                }
                Some("SAW") => {
                    let (w, s) = (p[1].parse().unwrap(), p[2].parse().unwrap());
                    let e = o.saw.entry(w).or_insert(-1);
                    *e = (*e).max(s);
                }
                Some("TORN") => o.torn.push(line.clone()),
                _ => {}
            }
        }
        o
    });
    let deadline = Instant::now() + kill_after;
    loop {
        if child.try_wait().unwrap().is_some() {
            break; // a fault point killed it
        }
        if Instant::now() >= deadline {
            let _ = child.kill(); // SIGKILL
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.wait();
    reader.join().unwrap()
}

fn verify(dir: &str) -> (HashMap<i64, (i64, i64, i64)>, String) {
    let out = Command::new(BIN)
        .args(["verify", dir])
        .output()
        .expect("verify");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut rows = HashMap::new();
    let mut integrity = String::new();
    for line in text.lines() {
        let p: Vec<&str> = line.split_whitespace().collect();
        match p.first().copied() {
            Some("ROW") => {
                rows.insert(
                    p[1].parse().unwrap(),
                    (
                        p[2].parse().unwrap(),
                        p[3].parse().unwrap(),
                        p[4].parse().unwrap(),
                    ),
                );
            }
            Some("INTEGRITY") => integrity = p[1..].join(" "),
            Some("OPENERROR") => panic!(
                "recovery failed: {line}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
            _ => {}
        }
    }
    (rows, integrity)
}

#[test]
fn sigkill_at_many_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let faults: &[Option<&str>] = &[
        None,
        Some("commit.after_sqlite_commit:40"),
        None,
        Some("log.mid_write:25"),
        Some("checkpoint.after_copy:1"),
        None,
        Some("log.before_fsync:60"),
        Some("commit.before_ack_wait:90"),
        Some("checkpoint.before:2"),
        None,
        Some("log.after_fsync:33"),
        None,
    ];
    let mut total_acked = 0;
    for (i, fault) in faults.iter().enumerate() {
        let kill_after = Duration::from_millis(150 + (i as u64 * 137) % 500);
        let obs = run_and_kill(d, *fault, kill_after);
        assert!(
            obs.torn.is_empty(),
            "a reader saw a torn transaction: {:?}",
            obs.torn
        );
        eprintln!("round {i} {fault:?}: verifying");
        if std::env::var("CRASH_KEEP").is_ok() {
            let _ = Command::new("cp")
                .args(["-a", d, &format!("/tmp/crash-round-{i}")])
                .status();
        }
        let (rows, integrity) = verify(d);
        assert_eq!(integrity, "ok", "round {i} ({fault:?})");
        for (w, (max, count, counter)) in &rows {
            assert_eq!(*count, max + 1, "round {i}: writer {w} has holes");
            assert_eq!(
                count, counter,
                "round {i}: writer {w}: ledger and counter disagree (torn transaction)"
            );
        }
        for (w, acked) in &obs.acked {
            let got = rows.get(w).map(|r| r.0).unwrap_or(-1);
            assert!(
                got >= *acked,
                "round {i} ({fault:?}): writer {w} acked {acked} but only {got} survived"
            );
        }
        for (w, saw) in &obs.saw {
            let got = rows.get(w).map(|r| r.0).unwrap_or(-1);
            assert!(
                got >= *saw,
                "round {i} ({fault:?}): a reader saw writer {w} at {saw}, but only {got} survived"
            );
        }
        let acked: i64 = obs.acked.values().map(|s| s + 1).sum();
        eprintln!("round {i} {fault:?}: {acked} acknowledged, recovered {rows:?}");
        total_acked += acked;
    }
    assert!(
        total_acked > 100,
        "the workload made progress ({total_acked} acknowledged)"
    );
}
