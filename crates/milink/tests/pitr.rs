//! Point-in-time restore through a real client: `milink sql` (tiberius underneath) against a real `milink serve`
//! process: full backup, two log backups, RESTORE … WITH NORECOVERY, RESTORE LOG … WITH STOPAT, exact rows.

mod common;

use common::{free_port, rows, serve, try_sql, wait_listening, Proc};
use std::time::Duration;

const PASSWORD: &str = "Pitr!Passw0rd";

struct Serve {
    _p: Proc,
    port: u16,
    dir: tempfile::TempDir,
}

fn start() -> Serve {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..5 {
        let port = free_port();
        let mut p = serve(
            &dir.path().join("data"),
            &[
                "--name",
                "sqlserver1",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ],
            PASSWORD,
            "unused",
        );
        if wait_listening(&mut p, port) {
            return Serve { _p: p, port, dir };
        }
    }
    panic!("milink serve did not start");
}

fn sql(s: &Serve, batch: &str) -> String {
    common::sql(s.port, PASSWORD, batch)
}

fn sql_err(s: &Serve, batch: &str) -> String {
    try_sql(s.port, PASSWORD, batch).expect_err("the batch should fail")
}

#[test]
fn point_in_time_restore_through_a_real_client() {
    let s = start();
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
        let t = rows(&now)[0][0].trim().to_string();
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
    let amounts: Vec<String> = rows(&out).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(amounts, vec!["1.00", "2.00", "3.00", "4.00"], "{out}");
    let hist = sql(
        &s,
        "SELECT type FROM msdb.dbo.backupset WHERE database_name = 'Shop' ORDER BY backup_set_id",
    );
    let types: Vec<String> = rows(&hist).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(types, vec!["D", "L", "L"]);
}
