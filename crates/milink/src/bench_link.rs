//! `milink bench link`: the link on loopback over the real mirroring transport (mutual TLS), each figure against
//! a baseline measured in the same run: commit throughput at 16 sessions with the asynchronous link vs no link;
//! commit→visible lag on the secondary at a steady rate; seeding speed vs a raw copy of the same file over a
//! loopback socket whose receiver also writes and fsyncs. As the brief's "Measuring" asks, the primary, its
//! clients and every baseline run on one core and the secondary on the other (threads pinned with
//! sched_setaffinity), so a ratio measures the link rather than two servers sharing two cores.

use anyhow::{Context, Result};
use engine::{Instance, InstanceConfig, Session};
use hadr::link::{self, LinkStats, Stats};
use hadr::transport::{
    ConnectErrorLog, Endpoint, EndpointSettings, IdentitySource, Role, StoreTrust,
};
use rusqlite::types::Value;
use serde_json::json;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SQL: &str = "sqlserver1.bench";
/// The primary, its clients and the baselines run here; the secondary on the next CPU.
const PRIMARY_CPU: usize = 0;
const SECONDARY_CPU: usize = 1;

/// Pin the calling thread, and the threads it starts afterwards, to one CPU (no-op on a single CPU).
fn pin_to(cpu: usize) {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if n < 2 {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it; pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % n, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn pinned_runtime(cpu: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(move || pin_to(cpu))
        .enable_all()
        .build()?)
}
const MI: &str = "mi1.bench";

struct Side {
    inst: Arc<Instance>,
    store: Arc<trust::TrustStore>,
}

fn side(dir: &std::path::Path, name: &str) -> Result<Side> {
    let inst = Instance::open(InstanceConfig {
        name: name.into(),
        data_dir: dir.to_path_buf(),
        db_options: Default::default(),
    })?;
    let store = Arc::new(
        trust::TrustStore::open(&inst.master(), inst.data_dir())
            .map_err(|e| anyhow::anyhow!("{}", e.message))?,
    );
    Ok(Side { inst, store })
}

fn e(x: trust::TrustError) -> anyhow::Error {
    anyhow::anyhow!("{}", x.message)
}

fn trusted(dir: &std::path::Path) -> Result<(Side, Side)> {
    let sql = side(&dir.join("sql"), "sqlserver1")?;
    let mi = side(&dir.join("mi"), "mi1")?;
    let c = sql.inst.master();
    sql.store
        .create_master_key(&c, "Bench!Passw0rd#1")
        .map_err(e)?;
    sql.store
        .create_self_signed(
            &c,
            "Cert_bench",
            "bench",
            None,
            Some(trust::now_utc() + chrono::Duration::days(30)),
        )
        .map_err(e)?;
    let id = sql
        .store
        .cert_id(&c, "Cert_bench")
        .map_err(e)?
        .context("cert")?;
    let der = sql.store.cert_encoded(&c, id).map_err(e)?.context("der")?;
    let m = mi.inst.master();
    mi.store
        .ensure_managed_identity(
            &m,
            MI,
            trust::now_utc(),
            chrono::Duration::days(30),
            chrono::Duration::days(7),
        )
        .map_err(e)?;
    mi.store.import_public(&m, SQL, &der).map_err(e)?;
    let mider = mi
        .store
        .endpoint_certificate_public_key(&m, MI)
        .map_err(e)?;
    sql.store.import_public(&c, MI, &mider).map_err(e)?;
    drop(c);
    drop(m);
    Ok((sql, mi))
}

fn settings(s: &Side, me: &str, role: Role, id: IdentitySource) -> EndpointSettings {
    EndpointSettings::new(
        me,
        role,
        Arc::new(StoreTrust {
            db_path: s.inst.data_dir().join("master.db"),
            store: s.store.clone(),
            identity: id,
        }),
    )
}

fn load(inst: &Arc<Instance>, rows: usize, incompressible: bool) -> Result<()> {
    let mut s = Session::new(inst.clone());
    s.use_database(Some("Sales"))?;
    s.begin_tran();
    let v = if incompressible {
        "randomblob(2000)"
    } else {
        "zeroblob(2000)"
    };
    for i in 0..rows {
        s.query(
            &format!("INSERT INTO t(k, v) VALUES (?1, {v})"),
            &[Value::Integer(i as i64)],
        )?;
    }
    s.commit_tran()?;
    Ok(())
}

fn create(inst: &Arc<Instance>) -> Result<()> {
    inst.create_database("Sales")?;
    let mut s = Session::new(inst.clone());
    s.use_database(Some("Sales"))?;
    s.query("CREATE TABLE t(id INTEGER PRIMARY KEY, k INT, v BLOB)", &[])?;
    // The lag probe's own table: the poller finds new rows by primary key, whatever the size of t.
    s.query("CREATE TABLE lag(k INTEGER PRIMARY KEY, v BLOB)", &[])?;
    Ok(())
}

fn tps(inst: &Arc<Instance>, sessions: usize, dur: Duration) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let n = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..sessions)
        .map(|w| {
            let (inst, stop, n) = (inst.clone(), stop.clone(), n.clone());
            std::thread::spawn(move || -> Result<()> {
                let mut s = Session::new(inst);
                s.use_database(Some("Sales"))?;
                while !stop.load(Ordering::Relaxed) {
                    s.query(
                        "INSERT INTO t(k, v) VALUES (?1, randomblob(100))",
                        &[Value::Integer(w as i64)],
                    )?;
                    n.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::SeqCst);
    for h in hs {
        h.join().expect("thread")?;
    }
    Ok(n.load(Ordering::SeqCst) as f64 / dur.as_secs_f64())
}

/// Raw copy baseline: the file over a loopback socket, the receiver writes and fsyncs it.
fn raw_copy(path: &std::path::Path, dest: &std::path::Path) -> Result<f64> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let dest = dest.to_path_buf();
    let rx = std::thread::spawn(move || -> Result<u64> {
        pin_to(SECONDARY_CPU);
        let (mut s, _) = l.accept()?;
        let mut f = std::fs::File::create(&dest)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n])?;
            total += n as u64;
        }
        f.sync_all()?;
        Ok(total)
    });
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr)?;
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut s)?;
    drop(s);
    let bytes = rx.join().expect("receiver")?;
    Ok(bytes as f64 / t.elapsed().as_secs_f64())
}

struct Running {
    rt: tokio::runtime::Runtime,
    /// The secondary's runtime, on its own CPU.
    srt: tokio::runtime::Runtime,
    primary_stats: Stats,
    primary: Arc<engine::Database>,
}

impl Running {
    /// Switch the link to synchronous commit and wait until the secondary is SYNCHRONIZED.
    fn synchronous(&self) -> Result<()> {
        self.primary_stats.lock().expect("stats").sync_mode = true;
        let t = Instant::now();
        while !self.primary.sync_commit_active() {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(30),
                "the secondary never became SYNCHRONIZED"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn shutdown(self) {
        self.srt.shutdown_timeout(Duration::from_secs(1));
        self.rt.shutdown_timeout(Duration::from_secs(1));
    }
}

fn start_link(sql: &Side, mi: &Side) -> Result<Running> {
    let rt = pinned_runtime(PRIMARY_CPU)?;
    let srt = pinned_runtime(SECONDARY_CPU)?;
    let ps = settings(
        sql,
        SQL,
        Role::SqlServer,
        IdentitySource::Certificate("Cert_bench".into()),
    );
    let inst = sql.inst.clone();
    let primary_stats: Stats = Arc::new(Mutex::new(LinkStats::default()));
    let pstats = primary_stats.clone();
    let addr = rt.block_on(async move {
        let mut ep = Endpoint::start(
            "127.0.0.1:0".parse().expect("addr"),
            ps,
            ConnectErrorLog::default(),
        )
        .await
        .map_err(|x| anyhow::anyhow!("{x}"))?;
        let addr = ep.local_addr();
        let stats = pstats;
        tokio::spawn(async move {
            while let Some(conn) = ep.accept().await {
                let (inst, stats) = (inst.clone(), stats.clone());
                tokio::spawn(async move {
                    let _ = link::serve_primary(
                        inst,
                        conn,
                        move |_| Ok(stats.clone()),
                        |_| Ok("Sales".to_string()),
                    )
                    .await;
                });
            }
        });
        anyhow::Ok(addr)
    })?;
    let ms = settings(
        mi,
        MI,
        Role::ManagedInstance,
        IdentitySource::InstanceEndpoint { fqdn: MI.into() },
    );
    let (inst, st) = (mi.inst.clone(), Arc::new(Mutex::new(LinkStats::default())));
    srt.spawn(async move {
        link::dial(
            inst,
            &ms,
            &ConnectErrorLog::default(),
            SQL,
            addr,
            "Sales",
            st,
        )
        .await
    });
    Ok(Running {
        rt,
        srt,
        primary_stats,
        primary: sql.inst.database("Sales")?,
    })
}

fn wait_caught_up(sql: &Side, mi: &Side, deadline: Duration) -> Result<()> {
    let t = Instant::now();
    loop {
        let p = sql.inst.database("Sales")?.log().durable_lsn();
        if let Ok(d) = mi.inst.database("Sales") {
            if d.log().durable_lsn() >= p {
                return Ok(());
            }
        }
        anyhow::ensure!(t.elapsed() < deadline, "the secondary did not catch up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn seeding_rate(
    dir: &std::path::Path,
    rows: usize,
    incompressible: bool,
) -> Result<(f64, f64, u64)> {
    let (sql, mi) = trusted(dir)?;
    create(&sql.inst)?;
    load(&sql.inst, rows, incompressible)?;
    let db = sql.inst.database("Sales")?;
    db.checkpoint()?;
    let size = std::fs::metadata(db.db_path())?.len();
    let raw = raw_copy(db.db_path(), &dir.join("raw-copy"))?;
    let t = Instant::now();
    let running = start_link(&sql, &mi)?;
    wait_caught_up(&sql, &mi, Duration::from_secs(300))?;
    let rate = size as f64 / t.elapsed().as_secs_f64();
    running.shutdown();
    Ok((rate, raw, size))
}

pub fn run(quick: bool) -> Result<()> {
    pin_to(PRIMARY_CPU);
    let dur = Duration::from_secs(if quick { 2 } else { 6 });
    let tmp = tempfile::tempdir()?;

    // Throughput: 16 and 1 sessions, no link vs asynchronous and synchronous link (same data directory kind, same workload).
    let base_dir = tmp.path().join("nolink");
    let plain = Instance::open(InstanceConfig {
        name: "p".into(),
        data_dir: base_dir,
        db_options: Default::default(),
    })?;
    create(&plain)?;
    let no_link = tps(&plain, 16, dur)?;
    let no_link_1 = tps(&plain, 1, dur)?;
    plain.shutdown()?;

    let (sql, mi) = trusted(&tmp.path().join("link"))?;
    create(&sql.inst)?;
    load(&sql.inst, 100, true)?;
    let running = start_link(&sql, &mi)?;
    wait_caught_up(&sql, &mi, Duration::from_secs(60))?;
    let with_link = tps(&sql.inst, 16, dur)?;
    let async_1 = tps(&sql.inst, 1, dur)?;
    wait_caught_up(&sql, &mi, Duration::from_secs(60))?;
    // Synchronous commit: the session waits for the secondary to harden each commit.
    running.synchronous()?;
    let sync_16 = tps(&sql.inst, 16, dur)?;
    let sync_1 = tps(&sql.inst, 1, dur)?;
    running.primary_stats.lock().expect("stats").sync_mode = false;
    wait_caught_up(&sql, &mi, Duration::from_secs(60))?;

    // Lag: commit acknowledged on the primary → first moment a polling reader on the secondary sees the row,
    // at a steady rate of ~1,000 commits/s.
    let target_rate = 1000.0;
    let commits = if quick { 500 } else { 3000 };
    let seen: Arc<Mutex<std::collections::HashMap<i64, Instant>>> =
        Arc::new(Mutex::new(Default::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (inst, seen, stop) = (mi.inst.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || -> Result<()> {
            pin_to(SECONDARY_CPU);
            let mut s = Session::new(inst);
            s.use_database(Some("Sales"))?;
            let mut last = -1i64;
            while !stop.load(Ordering::Relaxed) {
                let r = s.query(
                    "SELECT k FROM lag WHERE k > ?1 ORDER BY k",
                    &[Value::Integer(last)],
                )?;
                let now = Instant::now();
                let mut g = seen.lock().expect("seen");
                for row in r.rows {
                    if let Value::Integer(k) = row[0] {
                        g.entry(k).or_insert(now);
                        last = last.max(k);
                    }
                }
            }
            Ok(())
        })
    };
    let mut acked = Vec::with_capacity(commits);
    {
        let mut s = Session::new(sql.inst.clone());
        s.use_database(Some("Sales"))?;
        let t0 = Instant::now();
        for i in 0..commits {
            let due = t0 + Duration::from_secs_f64(i as f64 / target_rate);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            s.query(
                "INSERT INTO lag(k, v) VALUES (?1, randomblob(100))",
                &[Value::Integer(1_000_000 + i as i64)],
            )?;
            acked.push(Instant::now());
        }
    }
    wait_caught_up(&sql, &mi, Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::SeqCst);
    poller.join().expect("poller")?;
    let seen = seen.lock().expect("seen").clone();
    let mut lags: Vec<f64> = acked
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            seen.get(&(1_000_000 + i as i64))
                .map(|s| s.saturating_duration_since(*t).as_secs_f64() * 1000.0)
        })
        .collect();
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 * p) as usize).min(lags.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (p50, p99) = (pct(0.50), pct(0.99));
    running.shutdown();

    // Seeding vs a raw copy, compressible and incompressible data.
    let rows = if quick { 5_000 } else { 40_000 };
    let (seed_c, raw_c, size_c) = seeding_rate(&tmp.path().join("seed-c"), rows, false)?;
    let (seed_i, raw_i, size_i) = seeding_rate(&tmp.path().join("seed-i"), rows, true)?;

    let mb = |x: f64| x / 1048576.0;
    println!("milink bench link (loopback, mutual TLS 1.3 AES-GCM; primary, clients and baselines pinned to CPU {PRIMARY_CPU}, secondary to CPU {SECONDARY_CPU})");
    println!("{:<60} {:>12}", "figure", "value");
    println!(
        "{:<60} {:>12.0}",
        "commits/s, 16 sessions, no link (baseline)", no_link
    );
    println!(
        "{:<60} {:>12.0}",
        "commits/s, 16 sessions, asynchronous link", with_link
    );
    println!(
        "{:<60} {:>12.2}",
        "ratio async link vs no link (target >= 0.9)",
        with_link / no_link
    );
    println!(
        "{:<60} {:>12.0}",
        "commits/s, 16 sessions, synchronous link", sync_16
    );
    println!(
        "{:<60} {:>12.2}",
        "ratio sync link vs no link (target >= 0.7)",
        sync_16 / no_link
    );
    println!(
        "{:<60} {:>12.0}",
        "commits/s, 1 session: no link / async / sync", no_link_1
    );
    println!(
        "{:<60} {:>12.2}",
        "ratio 1 session, async link vs no link",
        async_1 / no_link_1
    );
    println!(
        "{:<60} {:>12.2}",
        "ratio 1 session, sync link vs no link",
        sync_1 / no_link_1
    );
    println!(
        "{:<60} {:>12.2}",
        "commit -> visible on the secondary, p50 ms (~1,000 tx/s)", p50
    );
    println!(
        "{:<60} {:>12.2}",
        "commit -> visible on the secondary, p99 ms (target <= 10)", p99
    );
    println!(
        "{:<60} {:>12.1}",
        "seeding MB/s, compressible data",
        mb(seed_c)
    );
    println!(
        "{:<60} {:>12.1}",
        "raw copy MB/s (receiver fsyncs), compressible data",
        mb(raw_c)
    );
    println!(
        "{:<60} {:>12.2}",
        "ratio seeding vs raw copy, compressible (target >= 0.7)",
        seed_c / raw_c
    );
    println!(
        "{:<60} {:>12.1}",
        "seeding MB/s, incompressible data",
        mb(seed_i)
    );
    println!(
        "{:<60} {:>12.1}",
        "raw copy MB/s (receiver fsyncs), incompressible data",
        mb(raw_i)
    );
    println!(
        "{:<60} {:>12.2}",
        "ratio seeding vs raw copy, incompressible (target >= 0.7)",
        seed_i / raw_i
    );
    println!(
        "{}",
        json!({
            "suite": "link",
            "tps_16_no_link": no_link.round(), "tps_16_async_link": with_link.round(),
            "ratio_async_vs_no_link": ((with_link / no_link) * 100.0).round() / 100.0,
            "tps_16_sync_link": sync_16.round(), "ratio_sync_vs_no_link": ((sync_16 / no_link) * 100.0).round() / 100.0,
            "tps_1_no_link": no_link_1.round(), "tps_1_async_link": async_1.round(), "tps_1_sync_link": sync_1.round(),
            "lag_ms_p50": (p50 * 100.0).round() / 100.0, "lag_ms_p99": (p99 * 100.0).round() / 100.0, "lag_samples": lags.len(),
            "seed_mb_s_compressible": (mb(seed_c) * 10.0).round() / 10.0, "raw_mb_s_compressible": (mb(raw_c) * 10.0).round() / 10.0,
            "ratio_seed_vs_raw_compressible": ((seed_c / raw_c) * 100.0).round() / 100.0,
            "seed_mb_s_incompressible": (mb(seed_i) * 10.0).round() / 10.0, "raw_mb_s_incompressible": (mb(raw_i) * 10.0).round() / 10.0,
            "ratio_seed_vs_raw_incompressible": ((seed_i / raw_i) * 100.0).round() / 100.0,
            "seed_bytes": [size_c, size_i],
        })
    );
    Ok(())
}

/// `milink bench failover`: a planned failover under load, from the request to the new primary's first
/// accepted write, against the baseline of one synchronous commit under the same load (the handover is a
/// fence, a drain and one such round trip, so that is the floor). Target: at most 1 s on loopback.
pub fn run_failover(quick: bool) -> Result<()> {
    pin_to(PRIMARY_CPU);
    let rounds = if quick { 2 } else { 5 };
    let tmp = tempfile::tempdir()?;
    let mut failovers = Vec::new();
    let mut sync_commits = Vec::new();
    let mut writes_during = 0u64;
    for round in 0..rounds {
        let (sql, mi) = trusted(&tmp.path().join(format!("round{round}")))?;
        create(&sql.inst)?;
        load(&sql.inst, 200, true)?;
        let running = start_link(&sql, &mi)?;
        wait_caught_up(&sql, &mi, Duration::from_secs(60))?;
        // Load: 8 sessions commit continuously on the primary until it refuses them (it stepped down).
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (inst, stop, done) = (sql.inst.clone(), stop.clone(), done.clone());
                std::thread::spawn(move || -> Result<()> {
                    let mut s = Session::new(inst);
                    s.use_database(Some("Sales"))?;
                    while !stop.load(Ordering::Relaxed) {
                        if s.query(
                            "INSERT INTO t(k, v) VALUES (?1, randomblob(100))",
                            &[Value::Integer(w)],
                        )
                        .is_err()
                        {
                            break;
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // Baseline: single synchronous commits under the same load.
        running.synchronous()?;
        {
            let mut s = Session::new(sql.inst.clone());
            s.use_database(Some("Sales"))?;
            for _ in 0..50 {
                let t = Instant::now();
                s.query("INSERT INTO t(k, v) VALUES (-1, randomblob(100))", &[])?;
                sync_commits.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        running.primary_stats.lock().expect("stats").sync_mode = false;
        // The planned failover, asked of the primary's session, timed until the new primary takes a write.
        let before = done.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let stats = running.primary_stats.clone();
        let req = std::thread::spawn(move || {
            link::request_failover(&stats, false, Duration::from_secs(60))
        });
        let mut s = Session::new(mi.inst.clone());
        loop {
            if s.use_database(Some("Sales")).is_ok()
                && s.query("INSERT INTO t(k, v) VALUES (-2, randomblob(100))", &[])
                    .is_ok()
            {
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "the new primary never accepted a write"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        failovers.push(t0.elapsed().as_secs_f64() * 1000.0);
        req.join()
            .map_err(|_| anyhow::anyhow!("failover thread"))?
            .map_err(|(n, m)| anyhow::anyhow!("failover failed: {n} {m}"))?;
        writes_during += done.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().map_err(|_| anyhow::anyhow!("writer"))??;
        }
        running.shutdown();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    };
    let fo = median(&mut failovers);
    let worst = failovers.iter().cloned().fold(0.0, f64::max);
    let sc = median(&mut sync_commits);
    println!("milink bench failover (loopback, mutual TLS 1.3; both instances in one process on {} cores; {rounds} rounds, 8 writing sessions)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    println!("{:<60} {:>12}", "figure", "value");
    println!(
        "{:<60} {:>12.2}",
        "synchronous commit under load, p50 ms (baseline)", sc
    );
    println!(
        "{:<60} {:>12.1}",
        "planned failover: request -> new primary's first write, p50 ms", fo
    );
    println!(
        "{:<60} {:>12.1}",
        "planned failover, worst round, ms", worst
    );
    println!(
        "{:<60} {:>12.1}",
        "ratio failover vs one synchronous commit",
        fo / sc
    );
    println!(
        "{:<60} {:>12.2}",
        "ratio failover vs target 1 s (target <= 1)",
        fo / 1000.0
    );
    println!(
        "{}",
        json!({
            "suite": "failover", "rounds": rounds,
            "failover_ms_p50": (fo * 10.0).round() / 10.0, "failover_ms_max": (worst * 10.0).round() / 10.0,
            "sync_commit_ms_p50": (sc * 100.0).round() / 100.0,
            "ratio_failover_vs_sync_commit": (fo / sc * 10.0).round() / 10.0,
            "ratio_failover_vs_target": (fo / 1000.0 * 100.0).round() / 100.0,
            "commits_on_old_primary_during_failover": writes_during,
        })
    );
    Ok(())
}
