//! Real third-party clients (Python, Node, FreeTDS) against the server. Clients come
//! from scripts/test.sh (MILINK_TEST_CLIENTS); missing clients fail under CI=true.
mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs a command with a timeout; returns (success, stdout, stderr).
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
        // The client may exit before reading it all (failed login): ignore EPIPE.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    }
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn python() -> Option<PathBuf> {
    let p = clients_dir().join("venv/bin/python");
    require(&p, "Python client venv").then_some(p)
}

fn py_client(driver: &str, tls: bool) {
    py_client_mode(driver, tls, if tls { "1" } else { "0" });
}

fn py_client_mode(driver: &str, tls: bool, mode: &str) {
    let Some(py) = python() else { return };
    let srv = start_server(tls);
    let mut cmd = Command::new(py);
    cmd.arg(scripts().join("py_client.py")).args([
        driver,
        "127.0.0.1",
        &srv.addr.port().to_string(),
        mode,
    ]);
    cmd.env("TDS_CERT", srv.cert_dir.join(tds::tls::CERT_FILE));
    let (ok, out, err) = run(cmd, None, Duration::from_secs(120));
    println!("{out}");
    eprintln!("{err}");
    assert!(
        ok && out.contains("ALL OK"),
        "{driver} (tls={tls}) failed:\n{out}\n{err}"
    );
}

#[test]
fn python_tds_plain() {
    // python-tds without a cafile sends ENCRYPT_NOT_SUP even when the server has TLS.
    py_client("pytds", true);
}

#[test]
fn pymssql_login_only_tls() {
    // FreeTDS default "request": client OFF, server OFF -> only LOGIN7 encrypted.
    py_client("pymssql", true);
}

#[test]
fn pymssql_plain() {
    py_client("pymssql", false);
}

#[test]
fn mssql_python_tls() {
    py_client("mssql_python", true);
}

#[test]
fn mssql_python_plain() {
    py_client("mssql_python", false);
}

#[test]
fn mssql_python_tds8_strict() {
    // Encrypt=strict: TLS first (ALPN tds/8.0), PRELOGIN inside TLS.
    py_client_mode("mssql_python", true, "strict");
}

fn tedious(encrypt: bool) {
    let dir = clients_dir().join("node/node_modules");
    if !require(&dir.join("tedious"), "tedious") {
        return;
    }
    let srv = start_server(true);
    let mut cmd = Command::new("node");
    cmd.arg(scripts().join("tedious_client.js"))
        .args([
            srv.addr.port().to_string().as_str(),
            if encrypt { "1" } else { "0" },
        ])
        .env("NODE_MODULES_DIR", &dir);
    let (ok, out, err) = run(cmd, None, Duration::from_secs(120));
    println!("{out}");
    eprintln!("{err}");
    assert!(
        ok && out.contains("ALL OK"),
        "tedious (encrypt={encrypt}) failed:\n{out}\n{err}"
    );
}

#[test]
fn tedious_tls() {
    tedious(true);
}

#[test]
fn tedious_no_encrypt() {
    tedious(false);
}

fn tsql(encryption: &str, tls_server: bool) {
    let tsql = ["/usr/bin/tsql", "/usr/local/bin/tsql"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let Some(tsql) = tsql else {
        require(&PathBuf::from("/usr/bin/tsql"), "FreeTDS tsql");
        return;
    };
    let srv = start_server(tls_server);
    let conf = srv.cert_dir.join("freetds.conf");
    std::fs::create_dir_all(&srv.cert_dir).unwrap();
    std::fs::write(&conf, format!("[global]\n\ttds version = 7.4\n\tencryption = {encryption}\n\tclient charset = UTF-8\n")).unwrap();
    let port = srv.addr.port().to_string();
    let base = |pw: &str| {
        let mut c = Command::new(&tsql);
        c.args([
            "-H",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            USER,
            "-P",
            pw,
            "-D",
            "testdb",
        ])
        .env("FREETDSCONF", &conf)
        .env("TDSVER", "7.4");
        c
    };
    // wrong password
    let (_, out, err) = run(
        base("wrong"),
        Some("select 1\ngo\nquit\n"),
        Duration::from_secs(30),
    );
    assert!(
        format!("{out}{err}").contains("18456") || format!("{out}{err}").contains("Login failed"),
        "{out}\n{err}"
    );

    let input = "select types\ngo\nraiserror\ngo\nselect 1\ngo\nbegin tran\ngo\ninsert 5\ngo\ncommit\ngo\nselect rows\ngo\nquit\n";
    let (ok, out, err) = run(base(PASSWORD), Some(input), Duration::from_secs(60));
    println!("{out}\n{err}");
    assert!(ok, "tsql failed:\n{out}\n{err}");
    let all = format!("{out}\n{err}");
    for needle in [
        "-123456",
        "1234567890123",
        "12345.6789",
        "héllo wörld ✓ 日本",
        &big_text(),
        "deadbeef00",
        "6F9619FF-8B86-D011-B42D-00C04FC964FF",
        "Feb 29 2024 01:45PM",
        "Msg 50000 (severity 16, state 3)",
        "boom from the test handler",
        // BEGIN TRAN / INSERT / COMMIT then the committed row
        "v\n5\n",
    ] {
        assert!(
            all.to_lowercase().contains(&needle.to_lowercase()),
            "missing {needle:?} in:\n{all}"
        );
    }
}

#[test]
fn freetds_tsql_plain() {
    tsql("off", false);
}

#[test]
fn freetds_tsql_login_only_tls() {
    tsql("request", true);
}

#[test]
fn freetds_tsql_full_tls() {
    tsql("require", true);
}
