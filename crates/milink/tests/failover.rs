//! Failover and migration with real processes: a ledger workload (transfers between accounts, every
//! acknowledged transfer recorded by id) runs against whichever instance is primary while the link fails over
//! (planned, and back), or while the primary is killed and the managed instance is forced to take over. The
//! ledger must stay balanced, every acknowledged transfer must survive where the rules say it must, and the
//! replicas must end byte-identical (sys.dm_db_replica_checksum at equal LSNs).

mod common;

use common::{free_port, rows, wait_listening, Proc};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::compat::TokioAsyncWriteCompatExt;

const SA: &str = "Ledger!Passw0rd";
const TOKEN: &str = "failover-token";
const SUB: &str = "11111111-2222-3333-4444-555555555555";
const MI: &str = "managedinstance1";
const MI_FQDN: &str = "managedinstance1.milink.local";
const ACCOUNTS: i64 = 20;
const OPENING: i64 = 1_000_000;

fn sql(port: u16, batch: &str) -> String {
    common::sql(port, SA, batch)
}

fn try_sql(port: u16, batch: &str) -> Result<String, String> {
    common::try_sql(port, SA, batch)
}

/// One management API request; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let (status, _, body) = http_with_location(port, method, path, body);
    (status, body)
}

/// `milink mi <args>` against this pair's management API (plain HTTP on loopback); its JSON output.
fn mi_cli(mgmt_port: u16, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_milink"))
        .arg("mi")
        .args(args)
        .args(["--mi", MI, "-g", "rg-ledger", "--subscription", SUB])
        .args(["--endpoint", &format!("http://127.0.0.1:{mgmt_port}")])
        .args(["--insecure-loopback", "--token", TOKEN])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "milink mi {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Two instances linked as the seed links them, with a ledger database seeded to the managed instance.
struct Linked {
    // Processes first: fields drop in order, and the data folders must outlive them.
    sql: Option<Proc>,
    _mi: Proc,
    sql_dir: tempfile::TempDir,
    _mi_dir: tempfile::TempDir,
    sql_port: u16,
    mi_port: u16,
    mgmt_port: u16,
}

fn start_sql(dir: &std::path::Path, port: u16) -> Proc {
    let mut p = common::serve(
        dir,
        &[
            "--name",
            "sqlserver1",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        SA,
        TOKEN,
    );
    assert!(wait_listening(&mut p, port), "SQL Server did not start");
    p
}

impl Linked {
    fn base(&self) -> String {
        format!("/subscriptions/{SUB}/resourceGroups/rg-ledger/providers/Microsoft.Sql/managedInstances/{MI}")
    }

    fn kill_sql(&mut self) {
        if let Some(mut p) = self.sql.take() {
            p.0.kill().unwrap();
            p.0.wait().unwrap();
        }
    }

    fn restart_sql(&mut self) {
        assert!(self.sql.is_none());
        self.sql = Some(start_sql(self.sql_dir.path(), self.sql_port));
    }
}

#[derive(PartialEq)]
enum Via {
    Rest,
    Cli,
    Tsql,
}

fn linked() -> Linked {
    linked_via(Via::Rest)
}

/// The link created over REST (PUT, as the seed does), with `milink mi link create --wait`, or with T-SQL's
/// JOIN AVAILABILITY GROUP on the managed instance.
fn linked_via(via: Via) -> Linked {
    let sql_dir = tempfile::tempdir().unwrap();
    let mi_dir = tempfile::tempdir().unwrap();
    let (sql_port, mi_port, mgmt_port, mi_mirror, mut ep) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let sqlp = start_sql(sql_dir.path(), sql_port);
    let mut mip = common::serve(
        mi_dir.path(),
        &[
            "--managed",
            "--name",
            MI,
            "--host",
            MI_FQDN,
            "--listen",
            &format!("127.0.0.1:{mi_port}"),
            "--mirror-listen",
            &format!("127.0.0.1:{mi_mirror}"),
            "--mgmt-listen",
            &format!("127.0.0.1:{mgmt_port}"),
            "--mgmt-plain-http",
            "--subscription",
            SUB,
            "--resource-group",
            "rg-ledger",
        ],
        SA,
        TOKEN,
    );
    assert!(wait_listening(&mut mip, mi_port) && wait_listening(&mut mip, mgmt_port));
    let l = Linked {
        sql_dir,
        _mi_dir: mi_dir,
        sql: Some(sqlp),
        _mi: mip,
        sql_port,
        mi_port,
        mgmt_port,
    };
    let s = sql_port;
    // Trust, both ways.
    sql(
        s,
        "CREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!MasterKey#2026'",
    );
    sql(s, "CREATE CERTIFICATE [Cert_sqlserver1_endpoint] WITH SUBJECT = 'Certificate for Cert_sqlserver1_endpoint', EXPIRY_DATE = '03/30/2035'");
    let blob = rows(&sql(
        s,
        "SELECT CERTENCODED(CERT_ID(N'Cert_sqlserver1_endpoint')) AS k",
    ))[0][0]
        .clone();
    if via == Via::Tsql {
        // T-SQL's way to trust SQL Server on the managed instance: its certificate, named for the host the link
        // dials.
        sql(
            mi_port,
            &format!("CREATE CERTIFICATE [127.0.0.1] FROM BINARY = {blob}"),
        );
    } else {
        let (st, body) = http(
            mgmt_port,
            "POST",
            &format!(
                "{}/hybridCertificate?api-version=2020-11-01-preview",
                l.base()
            ),
            &format!("{{\"properties\":{{\"PublicBlob\":\"{blob}\"}}}}"),
        );
        assert_eq!(st, 200, "{body}");
    }
    let mi_cert = rows(&sql(
        mi_port,
        "EXEC sp_get_endpoint_certificate @endpoint_type = 4",
    ))[0][0]
        .clone();
    sql(
        s,
        &format!("CREATE CERTIFICATE [{MI_FQDN}] FROM BINARY = {mi_cert}"),
    );
    // A port picked free can be taken by a parallel test before the endpoint binds it: pick another then.
    for attempt in 0.. {
        match try_sql(s, &format!("CREATE ENDPOINT database_mirroring_endpoint STATE=STARTED AS TCP (LISTENER_PORT={ep}, LISTENER_IP = ALL) FOR DATABASE_MIRRORING (ROLE=ALL, AUTHENTICATION = CERTIFICATE [Cert_sqlserver1_endpoint], ENCRYPTION = REQUIRED ALGORITHM AES)")) {
            Ok(_) => break,
            Err(e) if e.contains("Address already in use") && attempt < 5 => {
                let _ = try_sql(s, "DROP ENDPOINT database_mirroring_endpoint");
                ep = free_port();
            }
            Err(e) => panic!("CREATE ENDPOINT: {e}"),
        }
    }
    // The ledger.
    sql(s, "CREATE DATABASE Ledger");
    sql(s, "USE Ledger; CREATE TABLE accounts(id INT PRIMARY KEY, balance BIGINT NOT NULL); CREATE TABLE transfers(id BIGINT PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount BIGINT NOT NULL)");
    let values: Vec<String> = (1..=ACCOUNTS)
        .map(|i| format!("({i}, {OPENING})"))
        .collect();
    sql(
        s,
        &format!(
            "USE Ledger; INSERT INTO accounts VALUES {}",
            values.join(", ")
        ),
    );
    sql(s, "ALTER DATABASE Ledger SET RECOVERY FULL");
    sql(
        s,
        &format!(
            "BACKUP DATABASE Ledger TO DISK = '{}/ledger.bak' WITH INIT",
            l.sql_dir.path().display()
        ),
    );
    sql(s, &format!("CREATE AVAILABILITY GROUP [AG_Ledger] WITH (CLUSTER_TYPE = NONE) FOR DATABASE [Ledger] REPLICA ON 'sqlserver1' WITH (ENDPOINT_URL = 'TCP://127.0.0.1:{ep}', AVAILABILITY_MODE = SYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC)"));
    sql(s, &format!("CREATE AVAILABILITY GROUP [DAG_Ledger] WITH (DISTRIBUTED) AVAILABILITY GROUP ON N'AG_Ledger' WITH (LISTENER_URL = 'TCP://127.0.0.1:{ep}', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC, SESSION_TIMEOUT = 10), N'{MI}' WITH (LISTENER_URL = 'tcp://{MI_FQDN}:5022;Server=[{MI}]', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC)"));
    if via == Via::Tsql {
        sql(mi_port, &format!("ALTER AVAILABILITY GROUP [DAG_Ledger] JOIN AVAILABILITY GROUP ON N'AG_Ledger' WITH (LISTENER_URL = 'TCP://127.0.0.1:{ep}', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC), N'{MI}' WITH (LISTENER_URL = 'tcp://{MI_FQDN}:5022', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC)"));
        wait_for(
            Duration::from_secs(60),
            "the managed instance to hold the ledger",
            || {
                try_sql(mi_port, "USE Ledger; SELECT count(*) FROM accounts")
                    .map(|o| {
                        rows(&o)
                            .first()
                            .is_some_and(|r| r[0] == ACCOUNTS.to_string())
                    })
                    .unwrap_or(false)
            },
        );
        return l;
    }
    if via == Via::Cli {
        // Enough data that the seeding shows progress.
        sql(
            s,
            "USE Ledger; CREATE TABLE filler(id INT IDENTITY(1,1) PRIMARY KEY, pad VARBINARY(MAX))",
        );
        for _ in 0..20 {
            sql(
                s,
                "USE Ledger; INSERT INTO filler(pad) SELECT CRYPT_GEN_RANDOM(4000) FROM accounts",
            );
        }
        let partner = format!("TCP://127.0.0.1:{ep}");
        let v = mi_cli(
            mgmt_port,
            &[
                "link",
                "create",
                "-n",
                "DAG_Ledger",
                "--partner-availability-group-name",
                "AG_Ledger",
                "--instance-availability-group-name",
                MI,
                "--partner-endpoint",
                &partner,
                "--databases",
                "Ledger",
                "--wait",
                "--timeout",
                "60",
            ],
        );
        let d = &v["properties"]["databases"][0];
        assert_eq!(d["seedingProgress"], "Completed", "{v}");
        assert_eq!(d["connectedState"], "CONNECTED", "{v}");
        // --wait returned only once the copy is consistent: it is readable at once.
        let out = sql(mi_port, "USE Ledger; SELECT count(*) FROM accounts");
        assert_eq!(rows(&out)[0][0], ACCOUNTS.to_string());
        return l;
    }
    let (st, body) = http(
        mgmt_port,
        "PUT",
        &format!("{}/distributedAvailabilityGroups/DAG_Ledger?api-version=2021-05-01-preview", l.base()),
        &format!("{{\"properties\":{{\"TargetDatabase\":\"Ledger\",\"SourceEndpoint\":\"TCP://127.0.0.1:{ep}\",\"PrimaryAvailabilityGroupName\":\"AG_Ledger\",\"SecondaryAvailabilityGroupName\":\"{MI}\",}}}}"),
    );
    assert!((200..=202).contains(&st), "{st} {body}");
    wait_for(
        Duration::from_secs(60),
        "the managed instance to hold the ledger",
        || {
            try_sql(mi_port, "USE Ledger; SELECT count(*) FROM accounts")
                .map(|o| {
                    rows(&o)
                        .first()
                        .is_some_and(|r| r[0] == ACCOUNTS.to_string())
                })
                .unwrap_or(false)
        },
    );
    l
}

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state of the ledger's copy on one instance: its role and synchronization as the HADR views show them.
fn replica_state(port: u16) -> (String, String) {
    let out = sql(port, "SELECT CASE WHEN is_primary_replica = 1 THEN 'PRIMARY' ELSE 'SECONDARY' END, synchronization_state_desc FROM sys.dm_hadr_database_replica_states WHERE is_local = 1");
    let r = rows(&out);
    (r[0][0].clone(), r[0][1].clone())
}

fn remote_state(port: u16) -> String {
    let out = sql(port, "SELECT synchronization_state_desc FROM sys.dm_hadr_database_replica_states WHERE is_local = 0");
    rows(&out)[0][0].clone()
}

/// Transfers between accounts, each one transaction with a fresh id, against whichever port is primary.
struct Ledger {
    primary: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<i64>>>,
    attempted: Arc<Mutex<BTreeSet<i64>>>,
    next_id: Arc<AtomicU64>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Ledger {
    fn start(port: u16, workers: usize) -> Ledger {
        Ledger::start_at(port, workers, 1)
    }

    fn start_at(port: u16, workers: usize, first_id: u64) -> Ledger {
        let mut l = Ledger {
            primary: Arc::new(AtomicU16::new(port)),
            stop: Arc::new(AtomicBool::new(false)),
            acked: Default::default(),
            attempted: Default::default(),
            next_id: Arc::new(AtomicU64::new(first_id)),
            workers: Vec::new(),
        };
        for w in 0..workers {
            let (primary, stop, acked, attempted, next) = (
                l.primary.clone(),
                l.stop.clone(),
                l.acked.clone(),
                l.attempted.clone(),
                l.next_id.clone(),
            );
            l.workers.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(worker(w as u64, primary, stop, acked, attempted, next));
            }));
        }
        l
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn wait_acked(&self, more_than: usize) {
        wait_for(Duration::from_secs(60), "acknowledged transfers", || {
            self.acked() > more_than
        });
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers.drain(..) {
            w.join().unwrap();
        }
    }
}

async fn worker(
    w: u64,
    primary: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<i64>>>,
    attempted: Arc<Mutex<BTreeSet<i64>>>,
    next: Arc<AtomicU64>,
) {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (w + 1);
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    while !stop.load(Ordering::SeqCst) {
        let port = primary.load(Ordering::SeqCst);
        let mut cfg = tiberius::Config::new();
        cfg.host("127.0.0.1");
        cfg.port(port);
        cfg.authentication(tiberius::AuthMethod::sql_server("sa", SA));
        cfg.database("Ledger");
        cfg.encryption(tiberius::EncryptionLevel::Off);
        cfg.trust_cert();
        let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(mut client) = tiberius::Client::connect(cfg, tcp.compat_write()).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while !stop.load(Ordering::SeqCst) && primary.load(Ordering::SeqCst) == port {
            let id = next.fetch_add(1, Ordering::SeqCst) as i64;
            let a = (rnd() % ACCOUNTS as u64) as i64 + 1;
            let b = (a % ACCOUNTS) + 1;
            let amount = (rnd() % 100) as i64 + 1;
            attempted.lock().unwrap().insert(id);
            let batch = format!("SET XACT_ABORT ON; BEGIN TRAN; UPDATE accounts SET balance = balance - {amount} WHERE id = {a}; UPDATE accounts SET balance = balance + {amount} WHERE id = {b}; INSERT INTO transfers(id, src, dst, amount) VALUES ({id}, {a}, {b}, {amount}); COMMIT TRAN;");
            let r = match client.simple_query(batch).await {
                Ok(s) => s.into_results().await.map(|_| ()),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => {
                    acked.lock().unwrap().insert(id);
                }
                Err(tiberius::error::Error::Server(e)) if e.code() == 3906 => {
                    // This instance is a secondary now: wait for the test to point us at the new primary.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(tiberius::error::Error::Server(_)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(_) => break, // connection lost: reconnect
            }
        }
    }
}

/// The ledger as one instance holds it: the transfer ids, and whether the books balance.
fn books(port: u16) -> (BTreeSet<i64>, i64) {
    let total = rows(&sql(port, "USE Ledger; SELECT sum(balance) FROM accounts"))[0][0]
        .parse::<i64>()
        .unwrap();
    let ids = rows(&sql(
        port,
        "USE Ledger; SELECT id FROM transfers ORDER BY id",
    ))
    .into_iter()
    .map(|r| r[0].parse::<i64>().unwrap())
    .collect();
    // Every transfer moved its amount from one account to another: the balances must match them exactly.
    let per_account = rows(&sql(port, "USE Ledger; SELECT a.id, a.balance - (SELECT coalesce(sum(amount), 0) FROM transfers t WHERE t.dst = a.id) + (SELECT coalesce(sum(amount), 0) FROM transfers t WHERE t.src = a.id) FROM accounts a"));
    for r in per_account {
        assert_eq!(
            r[1],
            OPENING.to_string(),
            "account {} does not match its transfers",
            r[0]
        );
    }
    (ids, total)
}

/// Wait until both replicas report the same checksum at the same LSN.
fn assert_identical(a: u16, b: u16) {
    let q = "SELECT lsn, page_count, checksum FROM sys.dm_db_replica_checksum WHERE database_name = N'Ledger'";
    let t = Instant::now();
    loop {
        let x = sql(a, q);
        let y = sql(b, q);
        if rows(&x) == rows(&y) && !rows(&x).is_empty() {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "replicas differ:\n{x}\n{y}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_sync(port: u16, sync: bool) {
    let mode = if sync {
        "SYNCHRONOUS_COMMIT"
    } else {
        "ASYNCHRONOUS_COMMIT"
    };
    let (a, b) = ("AG_Ledger", MI);
    sql(port, &format!("ALTER AVAILABILITY GROUP [DAG_Ledger] MODIFY AVAILABILITY GROUP ON N'{a}' WITH (AVAILABILITY_MODE = {mode}), N'{b}' WITH (AVAILABILITY_MODE = {mode})"));
}

#[test]
fn planned_failover_and_failback_under_load_lose_and_duplicate_nothing() {
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("{:>8.2?} {what}", t0.elapsed());
    let l = linked();
    let (s, m) = (l.sql_port, l.mi_port);
    let mut ledger = Ledger::start(s, 4);
    ledger.wait_acked(200);
    phase("load running");

    // A planned failover is refused until the partner is synchronized.
    let e = try_sql(s, "ALTER AVAILABILITY GROUP [DAG_Ledger] FAILOVER").unwrap_err();
    assert!(e.contains("41142") && e.contains("SYNCHRONIZED"), "{e}");
    // The documented switch to synchronous commit, then wait for SYNCHRONIZED.
    set_sync(s, true);
    wait_for(Duration::from_secs(30), "SYNCHRONIZED", || {
        remote_state(s) == "SYNCHRONIZED"
    });
    let before = ledger.acked();
    let t = Instant::now();
    sql(s, "ALTER AVAILABILITY GROUP [DAG_Ledger] FAILOVER");
    eprintln!("planned failover took {:?}", t.elapsed());
    ledger.primary.store(m, Ordering::SeqCst);
    assert_eq!(replica_state(m).0, "PRIMARY");
    assert_eq!(replica_state(s).0, "SECONDARY");
    // The former primary refuses writes, and the mode reverted to asynchronous on both sides.
    let e = try_sql(
        s,
        "USE Ledger; UPDATE accounts SET balance = balance WHERE id = 1",
    )
    .unwrap_err();
    assert!(e.contains("3906"), "{e}");
    for p in [s, m] {
        let modes = sql(p, "SELECT DISTINCT r.availability_mode_desc FROM sys.availability_replicas r JOIN sys.availability_groups g ON g.group_id = r.group_id WHERE g.name = N'DAG_Ledger'");
        assert_eq!(
            rows(&modes),
            vec![vec!["ASYNCHRONOUS_COMMIT".to_string()]],
            "{modes}"
        );
    }
    // Writes continue on the managed instance and replicate back to SQL Server.
    ledger.wait_acked(before + 200);
    phase("load on the managed instance");

    // Fail back the same way, asked on the secondary side this time.
    set_sync(m, true);
    wait_for(Duration::from_secs(30), "SYNCHRONIZED", || {
        remote_state(m) == "SYNCHRONIZED"
    });
    sql(s, "ALTER AVAILABILITY GROUP [DAG_Ledger] FAILOVER");
    ledger.primary.store(s, Ordering::SeqCst);
    assert_eq!(replica_state(s).0, "PRIMARY");
    assert_eq!(replica_state(m).0, "SECONDARY");
    let before = ledger.acked();
    ledger.wait_acked(before + 200);
    ledger.stop();
    phase("load stopped");

    let (ids, total) = books(s);
    assert_eq!(total, ACCOUNTS * OPENING, "the books do not balance");
    let acked = ledger.acked.lock().unwrap().clone();
    let attempted = ledger.attempted.lock().unwrap().clone();
    let lost: Vec<_> = acked.difference(&ids).collect();
    assert!(lost.is_empty(), "acknowledged transfers lost: {lost:?}");
    assert!(ids.is_subset(&attempted), "transfers nobody made");
    assert_identical(s, m);
    let (mi_ids, _) = books(m);
    assert_eq!(mi_ids, ids);
    phase("verified");
}

/// The lost ranges the former primary reported (its divergent log, kept in data/lost_log).
fn lost_ranges(dir: &std::path::Path) -> Vec<(u64, u64)> {
    let Ok(rd) = std::fs::read_dir(dir.join("lost_log")) else {
        return vec![];
    };
    rd.filter_map(|e| {
        let n = e.ok()?.file_name().to_string_lossy().to_string();
        let mut p = n.trim_end_matches(".mlog").rsplitn(3, '_');
        let last = p.next()?.parse().ok()?;
        let first = p.next()?.parse().ok()?;
        Some((first, last))
    })
    .collect()
}

/// Kill the primary under load, force the managed instance to take over, then bring the former primary back:
/// it must learn it is no longer primary, give up whatever it had that the new primary does not (reporting the
/// LSN range), and end as a byte-identical secondary.
fn forced_failover(sync: bool) {
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("{:>8.2?} {what}", t0.elapsed());
    let mut l = linked();
    phase("linked");
    let (s, m) = (l.sql_port, l.mi_port);
    if sync {
        set_sync(s, true);
        wait_for(Duration::from_secs(30), "SYNCHRONIZED", || {
            remote_state(s) == "SYNCHRONIZED"
        });
    }
    let mut ledger = Ledger::start(s, 4);
    ledger.wait_acked(300);
    phase("load running");
    l.kill_sql();
    let acked_before_crash = ledger.acked.lock().unwrap().clone();
    // The secondary is cut off; a planned failover is impossible, a forced one is not.
    let e = try_sql(m, "ALTER AVAILABILITY GROUP [DAG_Ledger] FAILOVER").unwrap_err();
    assert!(e.contains("41142"), "{e}");
    sql(
        m,
        "ALTER AVAILABILITY GROUP [DAG_Ledger] FORCE_FAILOVER_ALLOW_DATA_LOSS",
    );
    phase("forced failover");
    assert_eq!(replica_state(m).0, "PRIMARY");
    let (on_mi, _) = books(m);
    let missing: BTreeSet<i64> = acked_before_crash.difference(&on_mi).copied().collect();
    if sync {
        assert!(
            missing.is_empty(),
            "synchronous commit lost acknowledged transfers: {missing:?}"
        );
    }
    ledger.primary.store(m, Ordering::SeqCst);
    let before = ledger.acked();
    ledger.wait_acked(before + 100);

    // The former primary comes back: it steps down, refuses writes, and rejoins as a secondary.
    phase("load on the new primary");
    l.restart_sql();
    phase("former primary restarted");
    wait_for(
        Duration::from_secs(60),
        "the former primary to step down",
        || {
            try_sql(
                s,
                "USE Ledger; UPDATE accounts SET balance = balance WHERE id = 1",
            )
            .err()
            .is_some_and(|e| e.contains("3906"))
        },
    );
    phase("former primary stepped down");
    let before = ledger.acked();
    ledger.wait_acked(before + 100);
    ledger.stop();
    let lost = lost_ranges(l.sql_dir.path());
    assert!(lost.len() <= 1, "{lost:?}");
    let lost_count = lost.first().map(|(a, b)| b - a + 1).unwrap_or(0);
    eprintln!(
        "sync={sync}: {} acknowledged before the crash, {} of them missing on the new primary, reported lost LSNs {lost:?}",
        acked_before_crash.len(),
        missing.len()
    );
    // One transfer is one transaction is one log block: what was acknowledged and is missing lies in the
    // reported range, and nothing was lost unreported.
    assert!(
        missing.len() as u64 <= lost_count,
        "missing {missing:?}, reported {lost:?}"
    );
    // …and the range holds nothing else but transfers in flight when the primary died (one per worker).
    assert!(
        lost_count <= missing.len() as u64 + 4,
        "missing {missing:?}, reported {lost:?}"
    );
    let (ids, total) = books(m);
    assert_eq!(total, ACCOUNTS * OPENING, "the books do not balance");
    let acked = ledger.acked.lock().unwrap().clone();
    let after: BTreeSet<i64> = acked.difference(&acked_before_crash).copied().collect();
    assert!(
        after.is_subset(&ids),
        "transfers acknowledged by the new primary were lost"
    );
    assert_eq!(replica_state(s).0, "SECONDARY");
    assert_identical(s, m);
    phase("identical");
}

#[test]
fn forced_failover_in_sync_mode_loses_nothing_acknowledged_and_the_old_primary_rejoins() {
    forced_failover(true);
}

#[test]
fn forced_failover_in_async_mode_loses_exactly_the_reported_range() {
    forced_failover(false);
}

/// Follow a long-running operation's Azure-AsyncOperation URL to its end.
fn wait_operation(mgmt: u16, head_location: &str) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let (st, body) = http(mgmt, "GET", head_location, "");
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["status"] != "InProgress" {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "operation still in progress: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One management API request; returns (status, Azure-AsyncOperation header, body).
fn http_with_location(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Option<String>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: management.azure.com\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap();
    let loc = head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("azure-asyncoperation"))
            .map(|(_, v)| v.trim().to_string())
    });
    (status, loc, body.to_string())
}

/// The management API and the CLI drive the same failovers: `milink mi link failover --failover-type Planned`
/// to the managed instance (switching to synchronous commit by itself), setRole refused when the instance
/// already has the role, and a REST planned failover back to SQL Server, all under the ledger workload.
#[test]
fn rest_and_cli_failover_to_the_managed_instance_and_back() {
    let l = linked();
    let (s, m, g) = (l.sql_port, l.mi_port, l.mgmt_port);
    let dag = format!("{}/distributedAvailabilityGroups/DAG_Ledger", l.base());
    let mut ledger = Ledger::start(s, 4);
    ledger.wait_acked(200);

    let bad = http(
        g,
        "POST",
        &format!("{dag}/failover?api-version=2023-08-01"),
        r#"{"failoverType":"Sideways"}"#,
    );
    assert_eq!(bad.0, 400, "{}", bad.1);
    let v = mi_cli(
        g,
        &[
            "link",
            "failover",
            "-n",
            "DAG_Ledger",
            "--failover-type",
            "Planned",
        ],
    );
    assert_eq!(v["properties"]["instanceLinkRole"], "Primary", "{v}");
    assert_eq!(v["properties"]["partnerLinkRole"], "Secondary", "{v}");
    ledger.primary.store(m, Ordering::SeqCst);
    assert_eq!(replica_state(s).0, "SECONDARY");
    let before = ledger.acked();
    ledger.wait_acked(before + 200);

    let (st, body) = http(
        g,
        "POST",
        &format!("{dag}/setRole?api-version=2023-08-01"),
        r#"{"instanceRole":"Primary","roleChangeType":"Planned"}"#,
    );
    assert_eq!(st, 409, "{body}");
    assert!(
        body.contains("SetRoleInstanceAlreadyInRequestedRole"),
        "{body}"
    );

    // Back to SQL Server: setRole Secondary, planned, as a long-running operation, once the link shows the
    // partner connected again (as a DBA checks before a planned failover).
    wait_for(Duration::from_secs(30), "the link to reconnect", || {
        let (_, body) = http(g, "GET", &format!("{dag}?api-version=2023-08-01"), "");
        body.contains("\"CONNECTED\"")
    });
    let (st, loc, body) = http_with_location(
        g,
        "POST",
        &format!("{dag}/setRole?api-version=2023-08-01"),
        r#"{"instanceRole":"Secondary","roleChangeType":"Planned"}"#,
    );
    assert_eq!(st, 202, "{body}");
    let op = wait_operation(g, &loc.expect("Azure-AsyncOperation"));
    assert_eq!(op["status"], "Succeeded", "{op}");
    ledger.primary.store(s, Ordering::SeqCst);
    assert_eq!(replica_state(s).0, "PRIMARY");
    let before = ledger.acked();
    ledger.wait_acked(before + 200);
    ledger.stop();

    let (ids, total) = books(s);
    assert_eq!(total, ACCOUNTS * OPENING);
    let acked = ledger.acked.lock().unwrap().clone();
    assert!(acked.is_subset(&ids), "acknowledged transfers lost");
    assert_identical(s, m);
    let (st, body) = http(g, "GET", &format!("{dag}?api-version=2023-08-01"), "");
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["properties"]["instanceLinkRole"], "Secondary", "{v}");
    assert_eq!(v["properties"]["replicationMode"], "Async", "{v}");
}

/// Removing the link on the managed instance (REST DELETE, as Remove-AzSqlInstanceLink does) leaves its copy
/// online, writable and consistent, with everything the primary had acknowledged before.
#[test]
fn removing_the_link_leaves_the_managed_instance_copy_online_and_writable() {
    let l = linked();
    let (s, m, g) = (l.sql_port, l.mi_port, l.mgmt_port);
    let mut ledger = Ledger::start(s, 4);
    ledger.wait_acked(200);
    ledger.stop();
    let (ids, _) = books(s);
    wait_for(
        Duration::from_secs(30),
        "the managed instance to catch up",
        || books(m).0 == ids,
    );
    let (st, body) = http(
        g,
        "DELETE",
        &format!(
            "{}/distributedAvailabilityGroups/DAG_Ledger?api-version=2023-08-01",
            l.base()
        ),
        "",
    );
    assert!((200..=204).contains(&st), "{st} {body}");
    // The copy is an ordinary database now: writable, balanced, and it keeps what it had.
    sql(
        m,
        "USE Ledger; INSERT INTO transfers(id, src, dst, amount) VALUES (-1, 1, 2, 0)",
    );
    let (mi_ids, total) = books(m);
    assert_eq!(total, ACCOUNTS * OPENING);
    assert!(ids.is_subset(&mi_ids));
    assert!(mi_ids.contains(&-1));
    let out = sql(
        m,
        "SELECT count(*) FROM sys.availability_groups WHERE name = N'DAG_Ledger'",
    );
    assert_eq!(rows(&out)[0][0], "0", "{out}");
    // SQL Server's copy is untouched and still takes writes.
    sql(
        s,
        "USE Ledger; INSERT INTO transfers(id, src, dst, amount) VALUES (-2, 1, 2, 0)",
    );
    sql(s, "DROP AVAILABILITY GROUP [DAG_Ledger]");
    let out = sql(
        s,
        "SELECT log_reuse_wait_desc FROM sys.databases WHERE name = N'Ledger'",
    );
    assert_ne!(rows(&out)[0][0], "AVAILABILITY_REPLICA", "{out}");
}

/// `milink mi link create --wait` follows the link through seeding and returns once it is consistent,
/// connected and healthy; the managed instance reports the seeding as the destination.
#[test]
fn cli_link_create_waits_through_seeding() {
    let l = linked_via(Via::Cli);
    let out = sql(l.mi_port, "SELECT role_desc, internal_state_desc, transferred_size_bytes FROM sys.dm_hadr_physical_seeding_stats");
    let r = rows(&out);
    assert_eq!(r[0][0], "Destination", "{out}");
    assert_eq!(r[0][1], "Success", "{out}");
    assert!(r[0][2].parse::<u64>().unwrap() > 100_000, "{out}");
}

/// The managed instance joins with T-SQL (`ALTER AVAILABILITY GROUP … JOIN AVAILABILITY GROUP ON …`) instead of
/// the management API: it learns the database from SQL Server, seeds it, replicates, and shows it in its views.
#[test]
fn joining_with_tsql_seeds_and_replicates() {
    let l = linked_via(Via::Tsql);
    let (s, m) = (l.sql_port, l.mi_port);
    let mut ledger = Ledger::start(s, 2);
    ledger.wait_acked(100);
    ledger.stop();
    let (ids, _) = books(s);
    wait_for(
        Duration::from_secs(30),
        "the managed instance to catch up",
        || books(m).0 == ids,
    );
    let out = sql(m, "SELECT g.name, r.replica_server_name, r.availability_mode_desc FROM sys.availability_groups g JOIN sys.availability_replicas r ON r.group_id = g.group_id WHERE g.is_distributed = 1 ORDER BY r.replica_server_name");
    assert_eq!(rows(&out).len(), 2, "{out}");
    let out = sql(m, "SELECT DB_NAME(database_id), synchronization_state_desc FROM sys.dm_hadr_database_replica_states WHERE is_local = 1");
    assert_eq!(rows(&out)[0][0], "Ledger", "{out}");
    assert_identical(s, m);
}

/// Synchronous commit under repeated crashes: the primary is killed at random moments under load, and every
/// transfer it acknowledged before each kill is on the secondary; it restarts, the link resumes in sync mode.
#[test]
fn sync_mode_every_acknowledged_commit_survives_primary_kills_at_random_moments() {
    let mut l = linked();
    let (s, m) = (l.sql_port, l.mi_port);
    set_sync(s, true);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut ledger = Ledger::start(s, 4);
    for round in 0..3 {
        wait_for(Duration::from_secs(60), "SYNCHRONIZED", || {
            try_sql(s, "SELECT synchronization_state_desc FROM sys.dm_hadr_database_replica_states WHERE is_local = 0")
                .map(|o| rows(&o).first().is_some_and(|r| r[0] == "SYNCHRONIZED"))
                .unwrap_or(false)
        });
        let before = ledger.acked();
        ledger.wait_acked(before + 20);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 700));
        l.kill_sql();
        let acked = ledger.acked.lock().unwrap().clone();
        // Everything acknowledged was hardened on the managed instance; redo makes it readable there.
        wait_for(
            Duration::from_secs(20),
            "acknowledged transfers on the secondary",
            || {
                let on_mi = books(m).0;
                acked.is_subset(&on_mi)
            },
        );
        eprintln!(
            "round {round}: {} acknowledged, all on the secondary",
            acked.len()
        );
        l.restart_sql();
    }
    ledger.stop();
    let (ids, total) = books(s);
    assert_eq!(total, ACCOUNTS * OPENING);
    assert!(ledger.acked.lock().unwrap().is_subset(&ids));
    assert_identical(s, m);
}
