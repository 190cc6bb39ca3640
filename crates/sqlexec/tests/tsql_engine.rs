//! T-SQL through the executor on a real engine (in-process, no network): the instance-engine surface a DBA reads
//! with SQL — sys.databases, the log views, DBCC SQLPERF(LOGSPACE), BACKUP/RESTORE with the seed's options.

use sqlexec::{Conn, Out, Server};
use tsql::Value;

struct T {
    conn: Conn,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
}

fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let inst = engine::Instance::open(engine::InstanceConfig {
        name: "sqlserver1".into(),
        data_dir: dir.path().join("data"),
        db_options: Default::default(),
    })
    .unwrap();
    let server = Server::new(inst, "sqlserver1", "sqlserver1.example", false);
    let p = dir.path().to_path_buf();
    T {
        conn: Conn::new(server, 51, "sa").unwrap(),
        _dir: dir,
        dir: p,
    }
}

impl T {
    fn run(&mut self, sql: &str) -> Vec<Out> {
        let mut out = Vec::new();
        self.conn.execute_batch(sql, &mut out);
        out
    }
    fn ok(&mut self, sql: &str) -> Vec<Out> {
        let out = self.run(sql);
        if let Some(Out::Error(e)) = out.iter().find(|o| matches!(o, Out::Error(_))) {
            panic!("{sql}: Msg {} {}", e.number, e.message);
        }
        out
    }
    fn rows(&mut self, sql: &str) -> (Vec<String>, Vec<Vec<Value>>) {
        let out = self.ok(sql);
        let mut cols = vec![];
        let mut rows = vec![];
        for o in out {
            match o {
                Out::Columns(c) => cols = c.into_iter().map(|(n, _)| n).collect(),
                Out::Row(r) => rows.push(r),
                _ => {}
            }
        }
        (cols, rows)
    }
    fn error(&mut self, sql: &str) -> tsql::SqlError {
        self.run(sql)
            .into_iter()
            .find_map(|o| if let Out::Error(e) = o { Some(e) } else { None })
            .unwrap_or_else(|| panic!("{sql}: expected an error"))
    }
}

fn text(v: &Value) -> String {
    sqlexec::exec::display(v)
}

#[test]
fn databases_and_log_views() {
    let mut t = setup();
    t.ok("CREATE DATABASE Sales");
    t.ok("USE Sales; CREATE TABLE dbo.Orders(id INT IDENTITY(1,1) PRIMARY KEY, amount DECIMAL(10,2) NOT NULL)");
    t.ok("INSERT INTO Orders(amount) VALUES (1.10), (2.20)");
    let (_, r) = t.rows("SELECT name, state_desc, recovery_model_desc, log_reuse_wait_desc FROM sys.databases WHERE name = 'Sales'");
    assert_eq!(r.len(), 1);
    assert_eq!(text(&r[0][1]), "ONLINE");
    assert_eq!(text(&r[0][2]), "FULL");
    let (cols, r) = t.rows("DBCC SQLPERF(LOGSPACE)");
    assert_eq!(
        cols,
        vec![
            "Database Name",
            "Log Size (MB)",
            "Log Space Used (%)",
            "Status"
        ]
    );
    assert_eq!(text(&r[0][0]), "Sales");
    let (_, r) = t.rows(
        "SELECT used_log_space_in_bytes, total_log_size_in_bytes FROM sys.dm_db_log_space_usage",
    );
    assert!(matches!(r[0][0], Value::BigInt(n) if n > 0), "{:?}", r[0]);
    let (_, r) = t.rows("SELECT log_end_lsn, log_truncation_holdup_reason FROM sys.dm_db_log_stats WHERE database_id = DB_ID()");
    assert_eq!(r.len(), 1);
    assert!(
        text(&r[0][0]).ends_with("00000"),
        "LSNs look like SQL Server's numeric(25,0): {:?}",
        r[0][0]
    );
    t.ok("ALTER DATABASE Sales SET RECOVERY SIMPLE");
    let (_, r) =
        t.rows("SELECT recovery_model_desc FROM sys.databases WHERE database_id = DB_ID('Sales')");
    assert_eq!(text(&r[0][0]), "SIMPLE");
}

#[test]
fn backup_and_restore_in_tsql_with_the_seeds_options() {
    let mut t = setup();
    t.ok("CREATE DATABASE Shop");
    t.ok("USE Shop; CREATE TABLE t(id INT PRIMARY KEY, v NVARCHAR(20)); INSERT INTO t VALUES (1, N'one')");
    let e = t.error(&format!(
        "BACKUP LOG [Shop] TO DISK = N'{}/early.trn'",
        t.dir.display()
    ));
    assert_eq!(e.number, 4214);
    let full = format!("{}/shop.bak", t.dir.display());
    let out = t.ok(&format!(
        "BACKUP DATABASE Shop TO DISK = '{full}' WITH INIT, STATS = 50"
    ));
    assert!(out
        .iter()
        .any(|o| matches!(o, Out::Info(3211, m) if m == "100 percent processed.")));
    assert!(out.iter().any(|o| matches!(o, Out::Info(3014, m) if m.starts_with("BACKUP DATABASE successfully processed"))));
    t.ok("INSERT INTO t VALUES (2, N'two')");
    let log = format!("{}/shop.trn", t.dir.display());
    t.ok(&format!(
        "BACKUP LOG [Shop] TO DISK = N'{log}' WITH NOFORMAT, NOINIT, NAME = N'Shop-log', SKIP, NOREWIND, NOUNLOAD, COMPRESSION, STATS = 1"
    ));
    let (_, r) =
        t.rows("SELECT database_name, type, name FROM msdb.dbo.backupset ORDER BY backup_set_id");
    assert_eq!(
        r.iter().map(|r| text(&r[1])).collect::<Vec<_>>(),
        vec!["D", "L"]
    );
    assert_eq!(text(&r[1][2]), "Shop-log");
    let (cols, r) = t.rows(&format!("RESTORE HEADERONLY FROM DISK = N'{log}'"));
    assert_eq!(cols[0], "BackupName");
    assert_eq!(text(&r[0][5]), "Shop");
    t.ok(&format!("RESTORE VERIFYONLY FROM DISK = N'{log}'"));
    t.ok("USE master");
    let e = t.error(&format!("RESTORE DATABASE Shop FROM DISK = '{full}'"));
    assert_eq!(e.number, 3159);
    t.ok(&format!(
        "RESTORE DATABASE Shop2 FROM DISK = '{full}' WITH NORECOVERY"
    ));
    let (_, r) = t.rows("SELECT state_desc FROM sys.databases WHERE name = 'Shop2'");
    assert_eq!(text(&r[0][0]), "RESTORING");
    let out = t.ok(&format!(
        "RESTORE LOG Shop2 FROM DISK = N'{log}' WITH RECOVERY"
    ));
    // 3014 carries the rate, as SQL Server's does; a log restore counts the blocks it applied.
    let done = out
        .iter()
        .find_map(|o| match o {
            Out::Info(3014, m) => Some(m.clone()),
            _ => None,
        })
        .expect("3014 after RESTORE LOG");
    assert!(
        done.starts_with("RESTORE LOG successfully processed ") && done.ends_with(" MB/sec)."),
        "{done}"
    );
    assert!(!done.contains("processed 0 pages"), "{done}");
    let (_, r) = t.rows("USE Shop2; SELECT v FROM t ORDER BY id");
    assert_eq!(
        r.iter().map(|r| text(&r[0])).collect::<Vec<_>>(),
        vec!["one", "two"]
    );
}

#[test]
fn seed_dynamic_sql_pattern_and_control_flow() {
    let mut t = setup();
    t.ok("CREATE DATABASE d");
    let (_, r) = t.rows(
        "USE d
         DECLARE @name NVARCHAR(MAX) = N'Tbl_' + @@servername + N'_x'
         DECLARE @cmd NVARCHAR(MAX) = N'CREATE TABLE [' + @name + '] (id INT)'
         EXEC sp_executesql @stmt = @cmd
         IF EXISTS (SELECT 1 FROM sys.tables WHERE name = N'Tbl_sqlserver1_x') SELECT N'created' AS r ELSE SELECT N'missing' AS r",
    );
    assert_eq!(text(&r[0][0]), "created");
    let (_, r) = t.rows("DECLARE @i INT = 0, @s INT = 0; WHILE @i < 10 BEGIN SET @i += 1; IF @i % 2 = 0 CONTINUE; SET @s += @i END; SELECT @s");
    assert_eq!(r[0][0], Value::Int(25));
    let e = t.error("SELECT 1/0");
    assert_eq!((e.number, e.severity), (8134, 16));
    let (_, r) = t.rows("BEGIN TRY RAISERROR('boom %d', 16, 1, 42) END TRY BEGIN CATCH SELECT ERROR_NUMBER(), ERROR_MESSAGE() END CATCH");
    assert_eq!(text(&r[0][1]), "boom 42");
}

#[test]
fn catalog_views_join_each_other_and_user_tables() {
    let mut t = setup();
    t.ok("CREATE DATABASE cat; USE cat");
    t.ok("CREATE TABLE dbo.Customers(id INT IDENTITY(1,1) PRIMARY KEY, name NVARCHAR(40) NOT NULL, balance DECIMAL(12,2) NULL)");
    let (_, r) = t.rows(
        "SELECT t.name, c.name, ty.name, c.max_length, c.precision, c.scale, c.is_nullable, c.is_identity
         FROM sys.tables t JOIN sys.columns c ON c.object_id = t.object_id JOIN sys.types ty ON ty.user_type_id = c.user_type_id
         ORDER BY c.column_id",
    );
    let got: Vec<String> = r
        .iter()
        .map(|r| r.iter().map(text).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(
        got,
        vec![
            "Customers|id|int|4|10|0|0|1",
            "Customers|name|nvarchar|80|0|0|0|0",
            "Customers|balance|decimal|9|12|2|1|0"
        ]
    );
    let (_, r) = t.rows("SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'Customers' AND COLUMN_NAME = 'name'");
    assert_eq!(
        r.iter()
            .map(|r| r.iter().map(text).collect::<Vec<_>>().join("|"))
            .collect::<Vec<_>>(),
        vec!["Customers|name|nvarchar|40"]
    );
    let (_, r) = t.rows("SELECT s.name FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id WHERE o.name = 'Customers'");
    assert_eq!(text(&r[0][0]), "dbo");
    let (_, r) = t.rows("SELECT login_name, DB_NAME(database_id) FROM sys.dm_exec_sessions WHERE session_id = @@SPID");
    assert_eq!(
        r.iter()
            .map(|r| r.iter().map(text).collect::<Vec<_>>().join("|"))
            .collect::<Vec<_>>(),
        vec!["sa|cat"]
    );
    let (_, r) =
        t.rows("SELECT TABLE_TYPE FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_NAME = 'Customers'");
    assert_eq!(text(&r[0][0]), "BASE TABLE");
}

/// The seed's certificate steps, verbatim except the expiry date and the MI's certificate.
#[test]
fn seed_master_key_and_certificates() {
    let mut t = setup();
    let e = t.error("USE MASTER\nCREATE MASTER KEY ENCRYPTION BY PASSWORD = 'weak'");
    assert_eq!(e.number, 15118);
    t.ok("USE MASTER\nCREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!MasterKey#2026'");
    let (_, r) = t.rows("SELECT name, symmetric_key_id FROM sys.symmetric_keys");
    assert_eq!(text(&r[0][0]), "##MS_DatabaseMasterKey##");
    assert_eq!(r[0][1], Value::Int(101));
    t.ok(
        "USE MASTER
        DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
        DECLARE @sqlserver_certificate_subject NVARCHAR(MAX) = N'Certificate for ' + @sqlserver_certificate_name
        DECLARE @create_sqlserver_certificate_command NVARCHAR(MAX) = N'CREATE CERTIFICATE [' + @sqlserver_certificate_name + '] WITH SUBJECT = ''' + @sqlserver_certificate_subject + ''', EXPIRY_DATE = ''03/30/2035'''
        EXEC sp_executesql @stmt = @create_sqlserver_certificate_command",
    );
    let (_, r) = t.rows("USE MASTER\nSELECT name, subject, pvt_key_encryption_type_desc, key_length FROM sys.certificates");
    assert_eq!(text(&r[0][0]), "Cert_sqlserver1_endpoint");
    assert_eq!(text(&r[0][1]), "Certificate for Cert_sqlserver1_endpoint");
    assert_eq!(text(&r[0][2]), "ENCRYPTED_BY_MASTER_KEY");
    assert_eq!(r[0][3], Value::Int(2048));
    let (cols, r) = t.rows(
        "USE MASTER
        DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
        DECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(@sqlserver_certificate_name));
        SELECT @PUBLICKEYENC AS PublicKeyEncoded;",
    );
    assert_eq!(cols, vec!["PublicKeyEncoded"]);
    let Value::Binary(der) = &r[0][0] else {
        panic!("{:?}", r[0][0])
    };
    assert!(der.len() > 500 && der[0] == 0x30, "a DER certificate");
    // Import it back under another name, the way the other side of the link does.
    let hex: String = der.iter().map(|b| format!("{b:02X}")).collect();
    t.ok(&format!("USE MASTER\nCREATE CERTIFICATE [managedinstance1.example.database.windows.net]\nFROM BINARY = 0x{hex}"));
    let (_, r) = t.rows("SELECT pvt_key_encryption_type_desc FROM sys.certificates WHERE name = 'managedinstance1.example.database.windows.net'");
    assert_eq!(text(&r[0][0]), "NO_PRIVATE_KEY");
    let e = t.error("CREATE CERTIFICATE bad FROM BINARY = 0x0102");
    assert!(e.number != 0 && !e.message.is_empty());
    // A past expiry date is accepted with a warning that names the certificate.
    let out = t.ok("CREATE CERTIFICATE old WITH SUBJECT = 'old', EXPIRY_DATE = '03/30/2025'");
    assert!(
        out.iter()
            .any(|o| matches!(o, Out::Info(_, m) if m.contains("old") && m.contains("2025"))),
        "{out:?}"
    );
}

/// The seed's availability-group steps on the SQL Server side, and the views it reads.
#[test]
fn seed_availability_group_and_distributed_group() {
    let mut t = setup();
    t.ok("CREATE DATABASE SalesDb");
    let e = t.error(
        "USE MASTER
        CREATE AVAILABILITY GROUP [AG_SalesDb]
        WITH (CLUSTER_TYPE = NONE)
            FOR database [SalesDb]
            REPLICA ON
                'sqlserver1' WITH
                (
                ENDPOINT_URL = 'TCP://127.0.0.1:5022',
                AVAILABILITY_MODE = SYNCHRONOUS_COMMIT,
                FAILOVER_MODE = MANUAL,
                SEEDING_MODE = AUTOMATIC
                );",
    );
    assert_eq!(e.number, 1475, "no full backup yet: {}", e.message);
    t.ok(&format!(
        "BACKUP DATABASE SalesDb TO DISK = '{}/s.bak' WITH INIT",
        t.dir.display()
    ));
    t.ok("USE MASTER
        CREATE AVAILABILITY GROUP [AG_SalesDb]
        WITH (CLUSTER_TYPE = NONE)
            FOR database [SalesDb]
            REPLICA ON
                'sqlserver1' WITH
                (
                ENDPOINT_URL = 'TCP://127.0.0.1:5022',
                AVAILABILITY_MODE = SYNCHRONOUS_COMMIT,
                FAILOVER_MODE = MANUAL,
                SEEDING_MODE = AUTOMATIC
                );");
    t.ok(
        "CREATE AVAILABILITY GROUP [DAG_SalesDb]
        WITH (DISTRIBUTED)
        AVAILABILITY GROUP ON
        N'AG_SalesDb' WITH (LISTENER_URL = 'TCP://127.0.0.1:5022', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC, SESSION_TIMEOUT = 20),
        N'managedinstance1' WITH (LISTENER_URL = 'tcp://managedinstance1.example.database.windows.net:5022;Server=[managedinstance1]', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC);",
    );
    let (_, r) = t.rows("SELECT name, is_distributed, cluster_type_desc, sequence_number, is_contained FROM sys.availability_groups");
    let got: Vec<String> = r
        .iter()
        .map(|r| r.iter().map(text).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(got, vec!["AG_SalesDb|0|NONE|1|0", "DAG_SalesDb|1|NONE|2|0"]);
    // The seed's verification query: the AG is connected, the managed instance not yet.
    let (_, r) = t.rows(
        "SELECT
            r.replica_server_name AS [Replica],
            r.endpoint_url AS [Endpoint],
            rs.connected_state_desc AS [Connected state],
            rs.last_connect_error_description AS [Last connection error],
            rs.last_connect_error_number AS [Last connection error No],
            rs.last_connect_error_timestamp AS [Last error timestamp]
        FROM
            sys.dm_hadr_availability_replica_states rs
            JOIN sys.availability_replicas r
            ON rs.replica_id = r.replica_id",
    );
    let got: Vec<String> = r
        .iter()
        .map(|r| format!("{}|{}", text(&r[0]), text(&r[2])))
        .collect();
    assert_eq!(
        got,
        vec![
            "sqlserver1|CONNECTED",
            "AG_SalesDb|CONNECTED",
            "managedinstance1|DISCONNECTED"
        ]
    );
    t.ok("ALTER AVAILABILITY GROUP [DAG_SalesDb] MODIFY AVAILABILITY GROUP ON 'AG_SalesDb' WITH (AVAILABILITY_MODE = SYNCHRONOUS_COMMIT), 'managedinstance1' WITH (AVAILABILITY_MODE = SYNCHRONOUS_COMMIT)");
    let (_, r) = t.rows("SELECT DISTINCT availability_mode_desc FROM sys.availability_replicas r JOIN sys.availability_groups g ON g.group_id = r.group_id WHERE g.name = 'DAG_SalesDb'");
    assert_eq!(
        r.iter().map(|r| text(&r[0])).collect::<Vec<_>>(),
        vec!["SYNCHRONOUS_COMMIT"]
    );
    t.ok("DROP AVAILABILITY GROUP [DAG_SalesDb]");
    t.ok("DROP AVAILABILITY GROUP [AG_SalesDb]");
    let (_, r) = t.rows("SELECT count(*) FROM sys.availability_groups");
    assert_eq!(r[0][0], Value::Int(0));
}

#[test]
fn system_view_names_are_case_insensitive() {
    let mut t = setup();
    t.ok("CREATE DATABASE ci; USE ci; CREATE TABLE x(a INT)");
    let (_, r) = t.rows("SELECT Name FROM SYS.DATABASES WHERE name = 'ci'");
    assert_eq!(r.len(), 1);
    let (_, r) = t.rows("SELECT table_name FROM information_schema.tables");
    assert_eq!(r.len(), 1);
}

#[test]
fn sp_who_lists_every_session() {
    let mut t = setup();
    let other = Conn::new(t.conn.server.clone(), 77, "app_login").unwrap();
    let (_, r) = t.rows("EXEC sp_who");
    let spids: Vec<String> = r.iter().map(|r| text(&r[0])).collect();
    assert_eq!(spids, vec!["51", "77"]);
    assert_eq!(text(&r[1][1]), "app_login");
    drop(other);
    let (_, r) = t.rows("EXEC sp_who");
    assert_eq!(r.len(), 1, "a closed session leaves the registry");
}
