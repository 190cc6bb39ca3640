//! Point-in-time restore through a real client: `milink sql` (tiberius underneath) against a real `milink serve`
//! process: full backup, two log backups, RESTORE … WITH NORECOVERY, RESTORE LOG … WITH STOPAT, exact rows.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "Pitr!Passw0rd";

struct Serve {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_milink"))
            .args([
                "serve",
                "--name",
                "sqlserver1",
                "--listen",
                &addr.to_string(),
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .env("MSSQL_SA_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Serve { child, addr, dir };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("milink serve did not start");
}

/// Run a batch with `milink sql -b`; returns stdout, panics with stderr on failure.
fn sql(s: &Serve, batch: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_milink"))
        .args([
            "sql",
            "-S",
            &format!("127.0.0.1,{}", s.addr.port()),
            "-U",
            "sa",
            "-P",
            PASSWORD,
            "-b",
            "-Q",
            batch,
        ])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{batch}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sql_err(s: &Serve, batch: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_milink"))
        .args([
            "sql",
            "-S",
            &format!("127.0.0.1,{}", s.addr.port()),
            "-U",
            "sa",
            "-P",
            PASSWORD,
            "-b",
            "-Q",
            batch,
        ])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{batch} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn point_in_time_restore_through_a_real_client() {
    let s = serve();
    let d = s.dir.path().display().to_string();
    sql(&s, "CREATE DATABASE Shop");
    sql(&s, "USE Shop; CREATE TABLE orders(id INT IDENTITY(1,1) PRIMARY KEY, amount DECIMAL(10,2) NOT NULL, at DATETIME2 NOT NULL DEFAULT SYSDATETIME())");
    sql(&s, "USE Shop; INSERT INTO orders(amount) VALUES (1.00)");
    sql(
        &s,
        &format!("BACKUP DATABASE Shop TO DISK = '{d}/shop.bak' WITH INIT"),
    );
    let mut marks = Vec::new();
    for i in 2..=5 {
        std::thread::sleep(Duration::from_millis(1100));
        sql(
            &s,
            &format!("USE Shop; INSERT INTO orders(amount) VALUES ({i}.00)"),
        );
        // The server's own clock, in its STOPAT format, right after each commit.
        let now = sql(&s, "SELECT CONVERT(NVARCHAR(30), SYSDATETIME(), 121) AS t");
        let t = now.lines().nth(2).unwrap().trim().to_string();
        marks.push(t);
        if i == 3 {
            sql(&s, &format!("BACKUP LOG Shop TO DISK = N'{d}/log1.trn' WITH NOFORMAT, NOINIT, NAME = N'log1', SKIP, NOREWIND, NOUNLOAD, COMPRESSION, STATS = 1"));
        }
    }
    sql(
        &s,
        &format!("BACKUP LOG Shop TO DISK = N'{d}/log2.trn' WITH INIT"),
    );
    // Stop right after the commit of amount 4 (marks[2]).
    let stop = &marks[2];
    sql(
        &s,
        &format!("RESTORE DATABASE ShopPit FROM DISK = '{d}/shop.bak' WITH NORECOVERY"),
    );
    let e = sql_err(
        &s,
        &format!("RESTORE LOG ShopPit FROM DISK = N'{d}/log2.trn' WITH NORECOVERY"),
    );
    assert!(e.contains("Msg 4305"), "{e}");
    sql(
        &s,
        &format!("RESTORE LOG ShopPit FROM DISK = N'{d}/log1.trn' WITH NORECOVERY"),
    );
    sql(
        &s,
        &format!(
            "RESTORE LOG ShopPit FROM DISK = N'{d}/log2.trn' WITH RECOVERY, STOPAT = '{stop}'"
        ),
    );
    let out = sql(&s, "USE ShopPit; SELECT amount FROM orders ORDER BY id");
    let amounts: Vec<&str> = out.lines().skip(2).take_while(|l| !l.is_empty()).collect();
    assert_eq!(amounts, vec!["1.00", "2.00", "3.00", "4.00"], "{out}");
    let hist = sql(
        &s,
        "SELECT type FROM msdb.dbo.backupset WHERE database_name = 'Shop' ORDER BY backup_set_id",
    );
    assert_eq!(
        hist.lines()
            .skip(2)
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>(),
        vec!["D", "L", "L"]
    );
}
