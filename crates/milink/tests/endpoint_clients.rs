//! The SQL endpoint proven with real SQL Server clients against a real `milink serve` process: FreeTDS tsql,
//! pymssql, python-tds, mssql-python (Encrypt=yes), tedious (encrypt true) and tiberius (TLS). Each test starts
//! its own server on an ephemeral loopback port with a temporary data directory.
//!
//! Clients come from scripts/test.sh (`MILINK_TEST_CLIENTS`, default `<workspace>/.test-clients`); a missing
//! client fails under CI=true and is skipped with a message otherwise.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tiberius::{AuthMethod, Client, Config, EncryptionLevel, Row};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

const PASSWORD: &str = "Secret123!";
const SERVER_NAME: &str = "sqlnode1";

/// A running `milink serve`; killed (and its data directory removed) on drop.
struct Milink {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Milink {
    /// Starts `milink serve --listen 127.0.0.1:0` and reads the bound address from its start-up log line, so
    /// parallel tests never race for a port.
    fn start() -> Milink {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_milink"))
            .args(["serve", "--name", SERVER_NAME, "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .env("MSSQL_SA_PASSWORD", PASSWORD)
            .env("RUST_LOG", "error,milink=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn milink");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let plain = strip_ansi(&line);
                if let Some(i) = plain.find("listen=") {
                    let addr = plain[i + "listen=".len()..]
                        .split_whitespace()
                        .next()
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    if let (Some(a), Some(tx)) = (addr, tx.take()) {
                        let _ = tx.send(a);
                        continue;
                    }
                }
                if !plain.contains(" INFO ") {
                    eprintln!("milink: {plain}");
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("milink serve did not report its listening address");
            }
        };
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "milink serve is not accepting connections on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Milink { child, addr, dir }
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }
}

impl Drop for Milink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn clients_dir() -> PathBuf {
    std::env::var_os("MILINK_TEST_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.test-clients"))
}

/// A missing client fails under CI and skips locally.
fn require(path: &Path, what: &str) -> bool {
    if path.exists() {
        return true;
    }
    if std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
    {
        panic!(
            "{what} not installed at {} (run scripts/test.sh)",
            path.display()
        );
    }
    eprintln!(
        "SKIP: {what} not installed at {} (run scripts/test.sh)",
        path.display()
    );
    false
}

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs a client with a timeout; returns (success, stdout, stderr).
fn run(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> (bool, String, String) {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn client");
    if let Some(input) = stdin {
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    }
    // Read output on threads so a chatty client never blocks on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut se, &mut s);
        s
    });
    let start = Instant::now();
    let mut ok = false;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            ok = st.success();
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (ok, to.join().unwrap(), te.join().unwrap())
}

// ---- Python clients and tedious: scripts that print PASS lines and ALL OK ----------------------------------------

fn py_client(driver: &str) {
    let py = clients_dir().join("venv/bin/python");
    if !require(&py, "Python client venv") {
        return;
    }
    let srv = Milink::start();
    let mut cmd = Command::new(py);
    cmd.arg(scripts().join("py_endpoint.py"))
        .args([driver, "127.0.0.1", &srv.port()]);
    let (ok, out, err) = run(cmd, None, Duration::from_secs(60));
    println!("{out}");
    eprintln!("{err}");
    assert!(
        ok && out.contains("ALL OK"),
        "{driver} failed:\n{out}\n{err}"
    );
}

#[test]
fn python_tds() {
    py_client("pytds");
}

#[test]
fn pymssql() {
    py_client("pymssql");
}

#[test]
fn mssql_python() {
    py_client("mssql_python");
}

#[test]
fn tedious() {
    tedious_with(true)
}

#[test]
fn tedious_unencrypted() {
    tedious_with(false)
}

fn tedious_with(encrypt: bool) {
    let dir = clients_dir().join("node/node_modules");
    if !require(&dir.join("tedious"), "tedious") {
        return;
    }
    let srv = Milink::start();
    let mut cmd = Command::new("node");
    cmd.arg(scripts().join("tedious_endpoint.js"))
        .arg(srv.port())
        .env("NODE_MODULES_DIR", &dir)
        .env("TEDIOUS_ENCRYPT", if encrypt { "true" } else { "false" })
        .env("NODE_NO_WARNINGS", "1");
    let (ok, out, err) = run(cmd, None, Duration::from_secs(60));
    println!("{out}");
    eprintln!("{err}");
    assert!(
        ok && out.contains("ALL OK"),
        "tedious failed:\n{out}\n{err}"
    );
}

// ---- FreeTDS tsql --------------------------------------------------------------------------------------------------

fn tsql_bin() -> Option<PathBuf> {
    let found = ["/usr/bin/tsql", "/usr/local/bin/tsql"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        require(Path::new("/usr/bin/tsql"), "FreeTDS tsql");
    }
    found
}

#[test]
fn freetds_tsql() {
    let Some(tsql) = tsql_bin() else { return };
    let srv = Milink::start();
    let conf = srv.dir.path().join("freetds.conf");
    // "request": login-only TLS against a server that has a certificate.
    std::fs::write(
        &conf,
        "[global]\n\ttds version = 7.4\n\tencryption = request\n\tclient charset = UTF-8\n",
    )
    .unwrap();
    let port = srv.port();
    let tsql_cmd = |pw: &str, db: Option<&str>| {
        let mut c = Command::new(&tsql);
        c.args(["-H", "127.0.0.1", "-p", &port, "-U", "sa", "-P", pw])
            .env("FREETDSCONF", &conf)
            .env("TDSVER", "7.4");
        if let Some(db) = db {
            c.args(["-D", db]);
        }
        c
    };
    let (_, out, err) = run(
        tsql_cmd("wrong", None),
        Some("select 1\ngo\nquit\n"),
        Duration::from_secs(30),
    );
    let all = format!("{out}{err}");
    assert!(
        all.contains("18456") && all.contains("Login failed"),
        "{all}"
    );

    let setup = "CREATE DATABASE db_tsql\ngo\nUSE db_tsql\ngo\n\
        CREATE TABLE t (id INT IDENTITY(1,1) PRIMARY KEY, name NVARCHAR(50) NOT NULL, amount DECIMAL(10,2), flag BIT, \
        at DATETIME2, g UNIQUEIDENTIFIER, b VARBINARY(MAX), txt NVARCHAR(MAX))\ngo\n\
        INSERT INTO t (name, amount, flag, at, g, b, txt) VALUES \
        (N'héllo wörld ✓ 日本', 12345678.91, 1, '2024-02-29 13:45:07.1234567', '6F9619FF-8B86-D011-B42D-00C04FC964FF', 0xDEADBEEF0001, N'ünïcode ✓ max'), \
        (N'nulls', NULL, NULL, NULL, NULL, NULL, NULL)\ngo\nquit\n";
    let (ok, out, err) = run(
        tsql_cmd(PASSWORD, None),
        Some(setup),
        Duration::from_secs(30),
    );
    assert!(ok && !out.contains("Msg "), "{out}\n{err}");

    // -D makes tsql send `set textsize … select @@spid use [db_tsql]` right after login.
    let script = "SELECT id, name, amount, flag, at, g, b, txt FROM t ORDER BY id\ngo\n\
        SELECT DB_NAME() AS db, @@SERVERNAME AS srv\ngo\n\
        CREATE TABLE u (k INT PRIMARY KEY)\ngo\nINSERT INTO u VALUES (1)\ngo\nINSERT INTO u VALUES (1)\ngo\n\
        SELECT 1/0\ngo\nSELECT * FROM no_such_table\ngo\n\
        BEGIN TRAN\nINSERT INTO u VALUES (10)\nROLLBACK\ngo\n\
        BEGIN TRAN\nINSERT INTO u VALUES (20)\nCOMMIT\ngo\n\
        SELECT k FROM u ORDER BY k\ngo\n\
        PRINT 'printed ' + CAST(42 AS NVARCHAR(10))\ngo\nquit\n";
    let (ok, out, err) = run(
        tsql_cmd(PASSWORD, Some("db_tsql")),
        Some(script),
        Duration::from_secs(30),
    );
    println!("{out}\n{err}");
    assert!(ok, "tsql failed:\n{out}\n{err}");
    let all = format!("{out}\n{err}");
    for needle in [
        "1\théllo wörld ✓ 日本\t12345678.91\t1\tFeb 29 2024 01:45PM\t6F9619FF-8B86-D011-B42D-00C04FC964FF\tdeadbeef0001\tünïcode ✓ max",
        "2\tnulls\tNULL\tNULL\tNULL\tNULL\tNULL\tNULL",
        "db_tsql\tsqlnode1",
        "Msg 2627 (severity 14",
        "Violation of PRIMARY KEY constraint",
        "Msg 8134 (severity 16",
        "Msg 208 (severity 16",
        "k\n1\n20\n(2 rows affected)",
        "printed 42",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

// ---- tiberius ------------------------------------------------------------------------------------------------------

type Tib = Client<Compat<tokio::net::TcpStream>>;

async fn tib(srv: &Milink, password: &str, db: Option<&str>) -> tiberius::Result<Tib> {
    tib_with(srv, password, db, EncryptionLevel::Required).await
}

async fn tib_with(
    srv: &Milink,
    password: &str,
    db: Option<&str>,
    enc: EncryptionLevel,
) -> tiberius::Result<Tib> {
    let mut cfg = Config::new();
    cfg.host("127.0.0.1");
    cfg.port(srv.addr.port());
    cfg.authentication(AuthMethod::sql_server("sa", password));
    cfg.encryption(enc);
    cfg.trust_cert();
    if let Some(db) = db {
        cfg.database(db);
    }
    let tcp = tokio::net::TcpStream::connect(srv.addr).await?;
    tcp.set_nodelay(true)?;
    Client::connect(cfg, tcp.compat_write()).await
}

/// All result sets of a SQL batch.
async fn batch(c: &mut Tib, sql: &str) -> tiberius::Result<Vec<Vec<Row>>> {
    c.simple_query(sql).await?.into_results().await
}

fn server_error(r: tiberius::Result<impl std::fmt::Debug>) -> tiberius::error::TokenError {
    match r {
        Err(tiberius::error::Error::Server(e)) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

const TEXT: &str = "héllo wörld ✓ 日本";

fn big() -> String {
    "ünïcode ✓ ".repeat(700)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiberius_client() {
    let srv = Milink::start();
    let e = server_error(tib(&srv, "nope", None).await);
    assert_eq!((e.code(), e.class()), (18456, 14));

    let mut c = tib(&srv, PASSWORD, None).await.unwrap();
    batch(&mut c, "CREATE DATABASE db_tiberius").await.unwrap();
    batch(&mut c, "USE db_tiberius").await.unwrap();
    c.execute(
        "CREATE TABLE t (id INT IDENTITY(1,1) PRIMARY KEY, name NVARCHAR(50) NOT NULL, amount DECIMAL(10,2), \
         flag BIT, at DATETIME2, g UNIQUEIDENTIFIER, b VARBINARY(MAX), txt NVARCHAR(MAX))",
        &[],
    )
    .await
    .unwrap();
    let r = c
        .execute(
            format!(
                "INSERT INTO t (name, amount, flag, at, g, b, txt) VALUES \
                 (N'{TEXT}', 12345678.91, 1, '2024-02-29 13:45:07.1234567', '6F9619FF-8B86-D011-B42D-00C04FC964FF', 0xDEADBEEF0001, N'{}'), \
                 (N'nulls', NULL, NULL, NULL, NULL, NULL, NULL), \
                 (N'third', -0.05, 0, '1999-12-31 23:59:59', NEWID(), 0x, N'')",
                big()
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.total(), 3);

    // every type read back, through sp_executesql (query) and a SQL batch (simple_query)
    for via_rpc in [true, false] {
        let sql = "SELECT id, name, amount, flag, at, g, b, txt FROM t ORDER BY id";
        let rows = if via_rpc {
            c.query(sql, &[])
                .await
                .unwrap()
                .into_first_result()
                .await
                .unwrap()
        } else {
            batch(&mut c, sql).await.unwrap().remove(0)
        };
        assert_eq!(rows.len(), 3);
        let r = &rows[0];
        let names: Vec<&str> = r.columns().iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            ["id", "name", "amount", "flag", "at", "g", "b", "txt"]
        );
        use tiberius::ColumnType as CT;
        let types: Vec<CT> = r.columns().iter().map(|c| c.column_type()).collect();
        assert_eq!(
            types,
            [
                CT::Int4,
                CT::NVarchar,
                CT::Decimaln,
                CT::Bitn,
                CT::Datetime2,
                CT::Guid,
                CT::BigVarBin,
                CT::NVarchar
            ]
        );
        assert_eq!(r.get::<i32, _>("id"), Some(1));
        assert_eq!(r.get::<&str, _>("name"), Some(TEXT));
        let d: tiberius::numeric::Numeric = r.get("amount").unwrap();
        assert_eq!((d.value(), d.scale()), (1234567891, 2));
        assert_eq!(r.get::<bool, _>("flag"), Some(true));
        let at: chrono::NaiveDateTime = r.get("at").unwrap();
        assert_eq!(at.to_string(), "2024-02-29 13:45:07.123456700");
        let g: tiberius::Uuid = r.get("g").unwrap();
        assert_eq!(
            g.to_string().to_uppercase(),
            "6F9619FF-8B86-D011-B42D-00C04FC964FF"
        );
        assert_eq!(
            r.get::<&[u8], _>("b"),
            Some(&[0xDE, 0xAD, 0xBE, 0xEF, 0, 1][..])
        );
        assert_eq!(r.get::<&str, _>("txt").map(str::to_owned), Some(big()));
        let n = &rows[1];
        assert_eq!(n.get::<&str, _>("name"), Some("nulls"));
        assert!(n.get::<tiberius::numeric::Numeric, _>("amount").is_none());
        assert!(n.get::<bool, _>("flag").is_none());
        assert!(n.get::<chrono::NaiveDateTime, _>("at").is_none());
        assert!(n.get::<tiberius::Uuid, _>("g").is_none());
        assert!(n.get::<&[u8], _>("b").is_none());
        assert!(n.get::<&str, _>("txt").is_none());
        let d: tiberius::numeric::Numeric = rows[2].get("amount").unwrap();
        assert_eq!((d.value(), d.scale()), (-5, 2));
        assert_eq!(rows[2].get::<bool, _>("flag"), Some(false));
        assert_eq!(rows[2].get::<&str, _>("txt"), Some(""));
    }

    // expressions, aggregates and NULL-only columns carry useful types
    let r = c
        .query(
            "SELECT COUNT(*) AS n, SUM(amount) AS total, MAX(name) AS mx, CAST(NULL AS INT) AS ni, NULL AS nothing, \
             SCOPE_IDENTITY() AS si, @@ROWCOUNT AS rc FROM t",
            &[],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.get::<i32, _>("n"), Some(3));
    let total: tiberius::numeric::Numeric = r.get("total").unwrap();
    assert_eq!(total.to_string(), "12345678.86");
    assert_eq!(r.get::<&str, _>("mx"), Some("third"));
    assert!(r.get::<i32, _>("ni").is_none());

    // parameters: sp_executesql with @P1… (tiberius' native way)
    let r = c
        .query(
            "SELECT name, amount FROM t WHERE id = @P1 AND name = @P2",
            &[&1i32, &TEXT],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.get::<&str, _>("name"), Some(TEXT));
    let bin: &[u8] = &[0, 0xFF];
    let none: Option<i32> = None;
    let n = c
        .execute(
            "INSERT INTO t (name, amount, flag, at, b, txt) VALUES (@P1, @P2, @P3, @P4, @P5, @P6)",
            &[
                &"p ✓",
                &tiberius::numeric::Numeric::new_with_scale(125, 2),
                &true,
                &chrono::NaiveDate::from_ymd_opt(2020, 1, 2)
                    .unwrap()
                    .and_hms_opt(3, 4, 5)
                    .unwrap(),
                &bin,
                &none,
            ],
        )
        .await
        .unwrap();
    assert_eq!(n.total(), 1);
    let r = c
        .query(
            "SELECT amount, flag, at, b, txt FROM t WHERE name = @P1",
            &[&"p ✓"],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.get::<tiberius::numeric::Numeric, _>("amount")
            .unwrap()
            .to_string(),
        "1.25"
    );
    assert_eq!(r.get::<bool, _>("flag"), Some(true));
    let at: chrono::NaiveDateTime = r.get("at").unwrap();
    assert_eq!(at.to_string(), "2020-01-02 03:04:05");
    assert_eq!(r.get::<&[u8], _>("b"), Some(bin));
    assert!(r.get::<&str, _>("txt").is_none());

    // sp_describe_undeclared_parameters (ODBC's SQLDescribeParam)
    let rows = batch(
        &mut c,
        "EXEC sp_describe_undeclared_parameters N'INSERT INTO t (name, amount) VALUES (@P1, @P2)'",
    )
    .await
    .unwrap()
    .remove(0);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].get::<&str, _>("suggested_system_type_name"),
        Some("nvarchar(50)")
    );
    assert_eq!(
        rows[1].get::<&str, _>("suggested_system_type_name"),
        Some("decimal(10,2)")
    );
    assert_eq!(rows[1].get::<i32, _>("suggested_system_type_id"), Some(106));

    // errors carry SQL Server's numbers and lines; the session stays usable
    batch(
        &mut c,
        "CREATE TABLE u (k INT PRIMARY KEY); INSERT INTO u VALUES (1)",
    )
    .await
    .unwrap();
    let e = server_error(c.execute("INSERT INTO u VALUES (1)", &[]).await);
    assert_eq!((e.code(), e.class()), (2627, 14));
    assert!(
        e.message()
            .starts_with("Violation of PRIMARY KEY constraint"),
        "{e:?}"
    );
    let e = server_error(batch(&mut c, "SELECT 1\nSELECT 1/0").await);
    assert_eq!((e.code(), e.line()), (8134, 2));
    let e = server_error(c.query("SELECT * FROM no_such_table", &[]).await);
    assert_eq!(e.code(), 208);
    assert_eq!(e.message(), "Invalid object name 'no_such_table'.");
    let e = server_error(batch(&mut c, "INSERT INTO t (name) VALUES (NULL)").await);
    assert_eq!(e.code(), 515);
    let e = server_error(c.query("SELECT no_such_column FROM t", &[]).await);
    assert_eq!(
        (e.code(), e.message()),
        (207, "Invalid column name 'no_such_column'.")
    );
    let e = server_error(
        batch(
            &mut c,
            "INSERT INTO t (name) VALUES (N'a name that is much longer than fifty characters, surely')",
        )
        .await,
    );
    assert_eq!(e.code(), 2628);
    batch(
        &mut c,
        "CREATE TABLE child (id INT PRIMARY KEY, tid INT REFERENCES t(id), qty INT CHECK (qty > 0))",
    )
    .await
    .unwrap();
    let e = server_error(batch(&mut c, "INSERT INTO child VALUES (1, 999, 1)").await);
    assert_eq!(e.code(), 547);
    assert!(
        e.message().starts_with(
            "The INSERT statement conflicted with the FOREIGN KEY constraint \"FK_child_t\"."
        ),
        "{e:?}"
    );
    let e = server_error(batch(&mut c, "INSERT INTO child VALUES (1, 1, 0)").await);
    assert_eq!(e.code(), 547);
    assert!(
        e.message()
            .starts_with("The INSERT statement conflicted with the CHECK constraint"),
        "{e:?}"
    );
    batch(&mut c, "DROP TABLE child").await.unwrap();
    let e = server_error(batch(&mut c, "SELECT name FROM t WHERE").await);
    assert_eq!(e.code(), 102);
    let e = server_error(batch(&mut c, "SELEC 1").await);
    assert_eq!(e.code(), 2812);
    let e = server_error(batch(&mut c, "IF 1 = 1\nBEGIN\n  SELECT 1/0\nEND").await);
    assert_eq!((e.code(), e.line()), (8134, 3));

    // scalar subqueries and EXISTS in procedural statements
    let rows = batch(
        &mut c,
        "DECLARE @n nvarchar(50) = (SELECT name FROM t WHERE id = 3)\n\
         DECLARE @i int = 0\n\
         WHILE (SELECT COUNT(*) FROM u) + @i < 4 SET @i = @i + 1\n\
         IF EXISTS (SELECT 1 FROM t WHERE name = @n) SELECT @n AS n, @i AS i",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>("n"), Some("third"));
    assert_eq!(rows[0][0].get::<i32, _>("i"), Some(3));
    let e = server_error(batch(&mut c, "DECLARE @x int = (SELECT id FROM t)").await);
    assert_eq!(e.code(), 512);

    // OBJECT_ID as scripts use it, consistent with sys.tables
    let rows = batch(
        &mut c,
        "IF OBJECT_ID('dbo.u', 'U') IS NOT NULL SELECT OBJECT_ID('u') AS id\n\
         IF OBJECT_ID(N'[dbo].[nope]') IS NULL SELECT 0 AS missing\n\
         SELECT object_id FROM sys.tables WHERE name = 'u'",
    )
    .await
    .unwrap();
    let id = rows[0][0].get::<i32, _>("id").unwrap();
    assert_eq!(rows[1][0].get::<i32, _>("missing"), Some(0));
    assert_eq!(rows[2][0].get::<i32, _>("object_id"), Some(id));

    // SET ROWCOUNT limits a query; with DML it is refused rather than ignored
    let rows = batch(
        &mut c,
        "SET ROWCOUNT 2\nSELECT id FROM t ORDER BY id\nSET ROWCOUNT 0",
    )
    .await
    .unwrap();
    assert_eq!(rows[0].len(), 2);
    let e = server_error(batch(&mut c, "SET ROWCOUNT 1\nDELETE FROM u").await);
    assert_eq!(e.code(), 40000);
    batch(&mut c, "SET ROWCOUNT 0").await.unwrap();

    // catalog views join each other with SQL Server's column names
    let rows = batch(
        &mut c,
        "SELECT c.name AS col, ty.name AS ty, c.max_length, c.[precision], c.scale, c.is_nullable, c.is_identity \
         FROM sys.tables t JOIN sys.columns c ON c.object_id = t.object_id \
         JOIN sys.types ty ON ty.user_type_id = c.user_type_id \
         JOIN sys.schemas s ON s.schema_id = t.schema_id \
         WHERE t.name = 't' AND s.name = 'dbo' ORDER BY c.column_id",
    )
    .await
    .unwrap()
    .remove(0);
    let cols: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.get("col").unwrap(), r.get("ty").unwrap()))
        .collect();
    assert_eq!(
        cols,
        [
            ("id", "int"),
            ("name", "nvarchar"),
            ("amount", "decimal"),
            ("flag", "bit"),
            ("at", "datetime2"),
            ("g", "uniqueidentifier"),
            ("b", "varbinary"),
            ("txt", "nvarchar")
        ]
    );
    assert_eq!(rows[0].get::<bool, _>("is_identity"), Some(true));
    assert_eq!(rows[1].get::<i16, _>("max_length"), Some(100));
    assert_eq!(rows[1].get::<bool, _>("is_nullable"), Some(false));
    assert_eq!(rows[2].get::<u8, _>("precision"), Some(10));
    assert_eq!(rows[2].get::<u8, _>("scale"), Some(2));
    assert_eq!(rows[7].get::<i16, _>("max_length"), Some(-1));
    let rows = batch(
        &mut c,
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE \
         FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 't' AND ORDINAL_POSITION = 2; \
         SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
    )
    .await
    .unwrap();
    let r = &rows[0][0];
    assert_eq!(r.get::<&str, _>("DATA_TYPE"), Some("nvarchar"));
    assert_eq!(r.get::<i32, _>("CHARACTER_MAXIMUM_LENGTH"), Some(50));
    assert_eq!(r.get::<&str, _>("IS_NULLABLE"), Some("NO"));
    let tables: Vec<&str> = rows[1].iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(tables, ["t", "u"]);

    // transactions the tiberius way: BEGIN TRAN / COMMIT / ROLLBACK as SQL
    batch(&mut c, "BEGIN TRAN").await.unwrap();
    c.execute("INSERT INTO u VALUES (@P1)", &[&10i32])
        .await
        .unwrap();
    let tc = batch(&mut c, "SELECT @@TRANCOUNT AS tc").await.unwrap();
    assert_eq!(tc[0][0].get::<i32, _>("tc"), Some(1));
    batch(&mut c, "ROLLBACK").await.unwrap();
    batch(&mut c, "BEGIN TRAN").await.unwrap();
    c.execute("INSERT INTO u VALUES (@P1)", &[&20i32])
        .await
        .unwrap();
    batch(&mut c, "COMMIT").await.unwrap();
    let e = server_error(batch(&mut c, "COMMIT").await);
    assert_eq!(e.code(), 3902);
    let ks: Vec<i32> = batch(&mut c, "SELECT k FROM u ORDER BY k").await.unwrap()[0]
        .iter()
        .map(|r| r.get::<i32, _>(0).unwrap())
        .collect();
    assert_eq!(ks, [1, 20]);

    // the seed's dynamic SQL pattern
    batch(
        &mut c,
        "DECLARE @name sysname = N'dyn'\n\
         DECLARE @cmd nvarchar(max)\n\
         SET @cmd = N'CREATE TABLE ' + QUOTENAME(@name) + N' (id INT PRIMARY KEY, v NVARCHAR(20))'\n\
         EXEC sp_executesql @stmt = @cmd",
    )
    .await
    .unwrap();
    let rows = batch(
        &mut c,
        "DECLARE @cmd nvarchar(max) = N'SELECT COUNT(*) AS n FROM dyn WHERE id > @min'\n\
         EXEC sp_executesql @stmt = @cmd, @params = N'@min int', @min = 0",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<i32, _>("n"), Some(0));
}

/// Plaintext (ENCRYPT_NOT_SUP) and login-only TLS (ENCRYPT_OFF) sessions work as well as full TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiberius_plaintext_and_login_only_tls() {
    let srv = Milink::start();
    for enc in [EncryptionLevel::NotSupported, EncryptionLevel::Off] {
        let e = server_error(tib_with(&srv, "nope", None, enc).await);
        assert_eq!(e.code(), 18456);
        let mut c = tib_with(&srv, PASSWORD, None, enc).await.unwrap();
        let r = c
            .query(
                "SELECT @P1 + 1 AS n, @@SERVERNAME AS s, @P2 AS t",
                &[&41i32, &TEXT],
            )
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.get::<i32, _>("n"), Some(42));
        assert_eq!(r.get::<&str, _>("s"), Some(SERVER_NAME));
        assert_eq!(r.get::<&str, _>("t"), Some(TEXT));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiberius_many_sessions() {
    const SESSIONS: i32 = 16;
    const ROWS: i32 = 25;
    let srv = Milink::start();
    let mut c = tib(&srv, PASSWORD, None).await.unwrap();
    batch(&mut c, "CREATE DATABASE db_many").await.unwrap();
    batch(&mut c, "USE db_many; CREATE TABLE hits (id INT IDENTITY(1,1) PRIMARY KEY, session INT NOT NULL, n INT NOT NULL)")
        .await
        .unwrap();
    let srv = std::sync::Arc::new(srv);
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let srv = srv.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = tib(&srv, PASSWORD, Some("db_many")).await.unwrap();
            let spid = batch(&mut c, "SELECT @@SPID AS spid").await.unwrap()[0][0]
                .get::<i16, _>("spid")
                .unwrap();
            for n in 0..ROWS {
                c.execute("INSERT INTO hits (session, n) VALUES (@P1, @P2)", &[&s, &n])
                    .await
                    .unwrap();
            }
            spid
        }));
    }
    let mut spids = Vec::new();
    // every live session shows in sys.dm_exec_sessions (the 16 may still be connecting or done)
    let rows = batch(
        &mut c,
        "SELECT login_name, DB_NAME(database_id) AS db FROM sys.dm_exec_sessions WHERE session_id = @@SPID",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>("login_name"), Some("sa"));
    assert_eq!(rows[0][0].get::<&str, _>("db"), Some("db_many"));
    for t in tasks {
        spids.push(t.await.unwrap());
    }
    spids.sort();
    spids.dedup();
    assert_eq!(
        spids.len(),
        SESSIONS as usize,
        "every session has its own SPID"
    );
    let rows = batch(
        &mut c,
        "SELECT COUNT(*) AS n, COUNT(DISTINCT session) AS s, MAX(id) AS mx FROM hits",
    )
    .await
    .unwrap();
    let r = &rows[0][0];
    assert_eq!(r.get::<i32, _>("n"), Some(SESSIONS * ROWS));
    assert_eq!(r.get::<i32, _>("s"), Some(SESSIONS));
    assert_eq!(r.get::<i32, _>("mx"), Some(SESSIONS * ROWS));
}

/// The T-SQL the seed types, through a real client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_tsql_through_tiberius() {
    let srv = Milink::start();
    let bk = srv.dir.path().join("backups");
    std::fs::create_dir_all(&bk).unwrap();
    let bak = bk.join("seed.bak").display().to_string();
    let trn = bk.join("seed.trn").display().to_string();
    let mut c = tib(&srv, PASSWORD, None).await.unwrap();

    let rows = batch(&mut c, "SELECT @@SERVERNAME").await.unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some(SERVER_NAME));

    // the seed's certificate steps (its placeholder password replaced by a complex one): master key, then CREATE CERTIFICATE built in a variable
    batch(
        &mut c,
        "USE MASTER\nCREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!Master#Key'",
    )
    .await
    .unwrap();
    batch(
        &mut c,
        "DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'\n\
         DECLARE @sqlserver_certificate_subject NVARCHAR(MAX) = N'Certificate for ' + @sqlserver_certificate_name\n\
         DECLARE @create_sqlserver_certificate_command NVARCHAR(MAX) = N'CREATE CERTIFICATE [' + @sqlserver_certificate_name + '] WITH SUBJECT = ''' + @sqlserver_certificate_subject + ''', EXPIRY_DATE = ''03/30/2025'''\n\
         EXEC sp_executesql @stmt = @create_sqlserver_certificate_command",
    )
    .await
    .unwrap();
    let rows = batch(&mut c, "USE MASTER\nSELECT * FROM sys.certificates")
        .await
        .unwrap()
        .remove(0);
    let cert = format!("Cert_{SERVER_NAME}_endpoint");
    assert!(
        rows.iter()
            .any(|r| r.get::<&str, _>("name") == Some(cert.as_str())),
        "certificate missing"
    );
    let rows = batch(
        &mut c,
        "DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'\n\
         DECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(@sqlserver_certificate_name));\n\
         SELECT @PUBLICKEYENC AS PublicKeyEncoded;",
    )
    .await
    .unwrap();
    let der = rows[0][0].get::<&[u8], _>("PublicKeyEncoded").unwrap();
    assert_eq!(der[0], 0x30, "a DER certificate");

    // idempotent scripts: IF NOT EXISTS over a system view (run twice)
    for _ in 0..2 {
        batch(
            &mut c,
            "IF NOT EXISTS (SELECT * FROM sys.databases WHERE name = N'SeedDB') CREATE DATABASE SeedDB",
        )
        .await
        .unwrap();
    }
    batch(
        &mut c,
        "USE SeedDB\n\
         DECLARE @cmd nvarchar(max)\n\
         SET @cmd = N'CREATE TABLE orders (id INT IDENTITY(1,1) PRIMARY KEY, amount DECIMAL(10,2))'\n\
         EXEC sp_executesql @stmt = @cmd\n\
         INSERT INTO orders (amount) VALUES (1.50), (2.25)",
    )
    .await
    .unwrap();

    let rows = batch(&mut c, "SELECT * FROM sys.databases")
        .await
        .unwrap()
        .remove(0);
    let names: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.get::<&str, _>("name"))
        .collect();
    for n in ["master", "tempdb", "model", "msdb", "SeedDB"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let cols: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
    for n in [
        "name",
        "database_id",
        "state_desc",
        "recovery_model_desc",
        "log_reuse_wait_desc",
    ] {
        assert!(cols.contains(&n), "{cols:?}");
    }

    let rows = batch(&mut c, "DBCC SQLPERF(LOGSPACE)")
        .await
        .unwrap()
        .remove(0);
    let cols: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        cols,
        [
            "Database Name",
            "Log Size (MB)",
            "Log Space Used (%)",
            "Status"
        ]
    );
    assert!(rows.iter().any(|r| r.get::<&str, _>(0) == Some("SeedDB")));

    batch(&mut c, "ALTER DATABASE SeedDB SET RECOVERY FULL")
        .await
        .unwrap();
    let rows = batch(
        &mut c,
        "SELECT recovery_model_desc FROM sys.databases WHERE name = 'SeedDB'",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("FULL"));

    batch(
        &mut c,
        &format!("BACKUP DATABASE SeedDB TO DISK = '{bak}' WITH INIT"),
    )
    .await
    .unwrap();
    batch(&mut c, "INSERT INTO orders (amount) VALUES (3.00)")
        .await
        .unwrap();
    batch(
        &mut c,
        &format!(
            "BACKUP LOG [SeedDB] TO DISK=N'{trn}' WITH NOFORMAT, NOINIT, NAME=N'SeedDB-log', SKIP, NOREWIND, \
             NOUNLOAD, COMPRESSION, STATS=1"
        ),
    )
    .await
    .unwrap();

    let rows = batch(&mut c, &format!("RESTORE HEADERONLY FROM DISK = N'{bak}'"))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<&str, _>("DatabaseName"), Some("SeedDB"));
    assert_eq!(rows[0].get::<i16, _>("BackupType"), Some(1));
    batch(&mut c, &format!("RESTORE VERIFYONLY FROM DISK = N'{bak}'"))
        .await
        .unwrap();

    batch(&mut c, "USE master").await.unwrap();
    batch(
        &mut c,
        &format!("RESTORE DATABASE SeedCopy FROM DISK = N'{bak}' WITH NORECOVERY"),
    )
    .await
    .unwrap();
    let rows = batch(
        &mut c,
        "SELECT state_desc FROM sys.databases WHERE name = 'SeedCopy'",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("RESTORING"));
    batch(
        &mut c,
        &format!("RESTORE LOG SeedCopy FROM DISK = N'{trn}' WITH RECOVERY"),
    )
    .await
    .unwrap();
    let rows = batch(
        &mut c,
        "USE SeedCopy; SELECT COUNT(*) AS n, SUM(amount) AS s FROM orders",
    )
    .await
    .unwrap();
    let r = &rows[0][0];
    assert_eq!(r.get::<i32, _>("n"), Some(3));
    assert_eq!(
        r.get::<tiberius::numeric::Numeric, _>("s")
            .unwrap()
            .to_string(),
        "6.75"
    );

    let rows = batch(
        &mut c,
        "SELECT database_name, type, backup_start_date, first_lsn, last_lsn FROM msdb.dbo.backupset \
         WHERE database_name = 'SeedDB' ORDER BY backup_start_date, type",
    )
    .await
    .unwrap()
    .remove(0);
    let kinds: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.get::<&str, _>("type"))
        .collect();
    assert_eq!(kinds, ["D", "L"]);
}
