//! Database mirroring endpoints through T-SQL (in-process, through `sqlexec::Conn`): the seed's certificate and
//! endpoint scripts, the endpoint views, ALTER / DROP, and the trust exchange between a SQL Server-role instance
//! and a managed instance followed by real mirroring connections between their endpoints.

use sqlexec::{endpoints, Conn, Out, Server};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use tsql::Value;

const SQL_HOST: &str = "sqlserver1.domain.com";
const MI_HOST: &str = "managedinstance1.6d710bcf372b.database.windows.net";

struct T {
    conn: Conn,
    server: Arc<Server>,
    inst: Arc<engine::Instance>,
    dir: tempfile::TempDir,
}

fn open(
    dir: &std::path::Path,
    name: &str,
    host: &str,
    managed: bool,
) -> (Arc<engine::Instance>, Arc<Server>) {
    let inst = engine::Instance::open(engine::InstanceConfig {
        name: name.into(),
        data_dir: dir.join("data"),
        db_options: Default::default(),
    })
    .unwrap();
    let server = Server::new(inst.clone(), name, host, managed);
    (inst, server)
}

fn setup(name: &str, host: &str, managed: bool) -> T {
    let dir = tempfile::tempdir().unwrap();
    let (inst, server) = open(dir.path(), name, host, managed);
    T {
        conn: Conn::new(server.clone(), 51, "sa").unwrap(),
        server,
        inst,
        dir,
    }
}

/// Splits on GO lines, as sqlcmd and SSMS do.
fn batches(script: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in script.lines() {
        if line.trim().eq_ignore_ascii_case("GO") {
            out.push(String::new());
        } else {
            let last = out.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    out.into_iter().filter(|b| !b.trim().is_empty()).collect()
}

impl T {
    fn run(&mut self, sql: &str) -> Vec<Out> {
        let mut out = Vec::new();
        for b in batches(sql) {
            self.conn.execute_batch(&b, &mut out);
        }
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
        let mut cols = vec![];
        let mut rows = vec![];
        for o in self.ok(sql) {
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
    fn col(&mut self, sql: &str, name: &str) -> Vec<String> {
        let (cols, rows) = self.rows(sql);
        let i = cols
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("{name} not in {cols:?}"));
        rows.iter().map(|r| text(&r[i])).collect()
    }
    fn binary(&mut self, sql: &str) -> Vec<u8> {
        let (_, r) = self.rows(sql);
        match &r[0][0] {
            Value::Binary(b) => b.clone(),
            v => panic!("{v:?}"),
        }
    }
}

fn text(v: &Value) -> String {
    sqlexec::exec::display(v)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

const MASTER_KEY: &str = "-- Create MASTER KEY encryption password
-- Keep the password confidential and in a secure place.
USE MASTER
CREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!MasterKey#2026'
GO
";

fn seed_certificate(expiry: &str) -> String {
    format!(
        "-- Create the SQL Server certificate for SQL Managed Instance link
USE MASTER
GO

DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
DECLARE @sqlserver_certificate_subject NVARCHAR(MAX) = N'Certificate for ' + @sqlserver_certificate_name
DECLARE @create_sqlserver_certificate_command NVARCHAR(MAX) = N'CREATE CERTIFICATE [' + @sqlserver_certificate_name + '] WITH SUBJECT = ''' + @sqlserver_certificate_subject + ''', EXPIRY_DATE = ''{expiry}'''
EXEC sp_executesql @stmt = @create_sqlserver_certificate_command
GO
"
    )
}

const PUBLIC_KEY: &str = "-- Show the public key of the generated SQL Server certificate
USE MASTER
GO
DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
DECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(@sqlserver_certificate_name));
SELECT @PUBLICKEYENC AS PublicKeyEncoded;
";

fn seed_create_endpoint(port: u16, cert: &str) -> String {
    format!(
        "-- Create connection endpoint listener on SQL Server
USE MASTER
CREATE ENDPOINT database_mirroring_endpoint
    STATE=STARTED   
    AS TCP (LISTENER_PORT={port}, LISTENER_IP = ALL)
    FOR DATABASE_MIRRORING (
        ROLE=ALL,
        AUTHENTICATION = CERTIFICATE {cert},
        ENCRYPTION = REQUIRED ALGORITHM AES
    )  
GO
"
    )
}

fn seed_alter_endpoint(name: &str, port: u16, cert: &str) -> String {
    format!(
        "-- Alter the existing database mirroring endpoint to use CERTIFICATE for authentication and AES for encryption
USE MASTER
ALTER ENDPOINT {name}   
    STATE=STARTED   
    AS TCP (LISTENER_PORT={port}, LISTENER_IP = ALL)
    FOR DATABASE_MIRRORING (
        ROLE=ALL,
        AUTHENTICATION = WINDOWS NEGOTIATE CERTIFICATE {cert},
        ENCRYPTION = REQUIRED ALGORITHM AES
    )
GO
"
    )
}

const VIEW_ENDPOINTS: &str = "-- View database mirroring endpoints on SQL Server
SELECT
    name, type_desc, state_desc, role_desc,
    connection_auth_desc, is_encryption_enabled, encryption_algorithm_desc
FROM 
    sys.database_mirroring_endpoints
";

const SEED_STAR: &str = "-- View database mirroring endpoints on SQL Server
SELECT * FROM sys.database_mirroring_endpoints WHERE type_desc = 'DATABASE_MIRRORING'";

/// The seed's scripts verbatim (its past EXPIRY_DATE too), placeholders filled: the rows it describes.
#[test]
fn seed_certificate_and_endpoint_scripts() {
    let mut t = setup("sqlserver1", SQL_HOST, false);
    t.ok(MASTER_KEY);
    let out = t.ok(&seed_certificate("03/30/2025"));
    assert!(
        out.iter().any(|o| matches!(o, Out::Info(_, m) if m.contains("Cert_sqlserver1_endpoint") && m.contains("2025"))),
        "the past expiry date is reported: {out:?}"
    );
    let (_, r) = t.rows("USE MASTER\nGO\nSELECT * FROM sys.certificates");
    assert_eq!(r.len(), 1);
    assert_eq!(
        t.col(
            "SELECT * FROM sys.certificates",
            "pvt_key_encryption_type_desc"
        ),
        vec!["ENCRYPTED_BY_MASTER_KEY"]
    );
    let der = t.binary(PUBLIC_KEY);
    assert_eq!(der[0], 0x30);

    // No endpoint yet: the seed's check query returns the view's columns and no row.
    let (cols, r) = t.rows(SEED_STAR);
    assert!(r.is_empty());
    assert_eq!(
        cols,
        [
            "name",
            "endpoint_id",
            "principal_id",
            "protocol",
            "protocol_desc",
            "type",
            "type_desc",
            "state",
            "state_desc",
            "is_admin_endpoint",
            "role",
            "role_desc",
            "is_encryption_enabled",
            "connection_auth",
            "connection_auth_desc",
            "certificate_id",
            "encryption_algorithm",
            "encryption_algorithm_desc"
        ]
    );

    let port = free_port();
    t.ok(&seed_create_endpoint(port, "Cert_sqlserver1_endpoint"));
    assert!(listening(port), "STATE=STARTED listens on LISTENER_PORT");
    let (cols, r) = t.rows(VIEW_ENDPOINTS);
    assert_eq!(cols.len(), 7);
    let got: Vec<String> = r[0].iter().map(text).collect();
    assert_eq!(
        got,
        [
            "database_mirroring_endpoint",
            "DATABASE_MIRRORING",
            "STARTED",
            "ALL",
            "CERTIFICATE",
            "1",
            "AES"
        ]
    );
    let (cols, r) = t.rows(SEED_STAR);
    assert_eq!(r.len(), 1);
    let v = |n: &str| text(&r[0][cols.iter().position(|c| c == n).unwrap()]);
    assert_eq!(v("endpoint_id"), "65536");
    assert_eq!(v("protocol_desc"), "TCP");
    assert_eq!(v("type"), "4");
    assert_eq!(v("role"), "3");
    assert_eq!(v("connection_auth"), "4");
    assert_eq!(v("encryption_algorithm"), "2");
    let cert_id = t.col("SELECT CERT_ID(N'Cert_sqlserver1_endpoint') AS id", "id");
    assert_eq!(vec![v("certificate_id")], cert_id);
    assert_eq!(
        t.col(
            "SELECT port FROM sys.tcp_endpoints WHERE type_desc = 'DATABASE_MIRRORING'",
            "port"
        ),
        vec![port.to_string()]
    );
    assert_eq!(
        t.col("SELECT ip_address, is_dynamic_port FROM sys.tcp_endpoints WHERE name = 'database_mirroring_endpoint'", "is_dynamic_port"),
        vec!["0"]
    );
    let names = t.col(
        "SELECT name FROM sys.endpoints ORDER BY endpoint_id",
        "name",
    );
    assert_eq!(
        names,
        [
            "Dedicated Admin Connection",
            "TSQL Default TCP",
            "database_mirroring_endpoint"
        ]
    );

    // One DATABASE_MIRRORING endpoint per instance.
    let e = t.error(
        &seed_create_endpoint(free_port(), "Cert_sqlserver1_endpoint")
            .replace("database_mirroring_endpoint", "second"),
    );
    assert_eq!(e.number, 7862);

    // The certificate is in use.
    let e = t.error("DROP CERTIFICATE Cert_sqlserver1_endpoint");
    assert_eq!(e.number, 15352);
    assert!(
        e.message.contains("database_mirroring_endpoint"),
        "{}",
        e.message
    );

    // The seed's ALTER ENDPOINT variant, on a new port: dual authentication, restarted live.
    let port2 = free_port();
    t.ok(&seed_alter_endpoint(
        "database_mirroring_endpoint",
        port2,
        "Cert_sqlserver1_endpoint",
    ));
    let (_, r) = t.rows(VIEW_ENDPOINTS);
    let got: Vec<String> = r[0].iter().map(text).collect();
    assert_eq!(
        got,
        [
            "database_mirroring_endpoint",
            "DATABASE_MIRRORING",
            "STARTED",
            "ALL",
            "WINDOWS_NEGOTIATE_CERTIFICATE",
            "1",
            "AES"
        ]
    );
    assert_eq!(t.col(SEED_STAR, "connection_auth"), vec!["7"]);
    assert!(
        listening(port2) && !listening(port),
        "moved from {port} to {port2}"
    );

    // STOPPED closes the listener, STARTED reopens it.
    t.ok("ALTER ENDPOINT database_mirroring_endpoint STATE = STOPPED");
    assert!(!listening(port2));
    assert_eq!(t.col(VIEW_ENDPOINTS, "state_desc"), vec!["STOPPED"]);
    t.ok("ALTER ENDPOINT database_mirroring_endpoint STATE = STARTED");
    assert!(listening(port2));
    let e = t.error("ALTER ENDPOINT database_mirroring_endpoint");
    assert_eq!(e.number, 7863);

    // Windows only: accepted, with a message that says connections are refused.
    let out = t.ok("ALTER ENDPOINT database_mirroring_endpoint FOR DATABASE_MIRRORING (AUTHENTICATION = WINDOWS KERBEROS, ENCRYPTION = SUPPORTED ALGORITHM RC4 AES)");
    assert!(
        out.iter()
            .any(|o| matches!(o, Out::Info(_, m) if m.contains("Windows authentication only"))),
        "{out:?}"
    );
    let (_, r) = t.rows("SELECT connection_auth_desc, certificate_id, encryption_algorithm_desc FROM sys.database_mirroring_endpoints");
    assert_eq!(text(&r[0][0]), "WINDOWS_KERBEROS");
    assert_eq!(r[0][1], Value::Null);
    assert_eq!(text(&r[0][2]), "NONE, RC4, AES");
    // No longer bound: the certificate can go; a missing certificate is refused.
    t.ok("DROP CERTIFICATE Cert_sqlserver1_endpoint");
    let e = t.error("ALTER ENDPOINT database_mirroring_endpoint FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE nope)");
    assert_eq!(e.number, 15151, "{}", e.message);

    t.ok("DROP ENDPOINT database_mirroring_endpoint");
    assert!(!listening(port2));
    assert!(t.rows(SEED_STAR).1.is_empty());
    assert_eq!(
        t.error("DROP ENDPOINT database_mirroring_endpoint").number,
        15151
    );
}

/// Endpoints live in master: a restart brings the STARTED one back on its port.
#[test]
fn started_endpoint_survives_restart() {
    let mut t = setup("sqlserver1", SQL_HOST, false);
    t.ok(MASTER_KEY);
    t.ok(&seed_certificate("03/30/2035"));
    let port = free_port();
    t.ok(&seed_create_endpoint(port, "Cert_sqlserver1_endpoint"));
    assert!(listening(port));
    let T {
        conn,
        server,
        inst,
        dir,
    } = t;
    drop(conn);
    drop(server);
    // The registry lets go of a dropped server's endpoint at its next use.
    let (_, other) = open(tempfile::tempdir().unwrap().path(), "x", "x", false);
    endpoints::state(&other).unwrap();
    let t0 = std::time::Instant::now();
    while listening(port) && t0.elapsed() < std::time::Duration::from_secs(3) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !listening(port),
        "the endpoint of a dropped server is closed"
    );
    inst.shutdown().unwrap();
    drop(inst);
    let (_inst, server) = open(dir.path(), "sqlserver1", SQL_HOST, false);
    let addr = endpoints::start_at_boot(&server, None).unwrap();
    assert_eq!(addr.map(|a| a.port()), Some(port));
    assert!(listening(port));
    let mut c = Conn::new(server.clone(), 52, "sa").unwrap();
    let mut out = vec![];
    c.execute_batch(
        "SELECT state_desc, connection_auth_desc FROM sys.database_mirroring_endpoints",
        &mut out,
    );
    let row = out
        .iter()
        .find_map(|o| {
            if let Out::Row(r) = o {
                Some(r.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(text(&row[0]), "STARTED");
    assert_eq!(text(&row[1]), "CERTIFICATE");
}

/// The seed's trust exchange, then mirroring connections between the two endpoints.
#[test]
fn trust_exchange_then_endpoints_connect() {
    let mut sql = setup("sqlserver1", SQL_HOST, false);
    let mut mi = setup("managedinstance1", MI_HOST, true);
    let mi_addr = endpoints::start_managed(&mi.server, "127.0.0.1:0".parse().unwrap()).unwrap();
    assert!(listening(mi_addr.port()));
    // The managed instance's endpoint is there without T-SQL, and CREATE ENDPOINT cannot add another.
    assert_eq!(mi.col(VIEW_ENDPOINTS, "name"), vec!["Hadr_endpoint"]);
    assert_eq!(
        mi.error(&seed_create_endpoint(free_port(), "x")).number,
        7862
    );

    sql.ok(MASTER_KEY);
    sql.ok(&seed_certificate("03/30/2035"));
    let port = free_port();
    sql.ok(&seed_create_endpoint(port, "Cert_sqlserver1_endpoint"));
    let sql_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let sql_h = endpoints::state(&sql.server).unwrap();
    let mi_h = endpoints::state(&mi.server).unwrap();

    // Nothing exchanged: SQL Server refuses the MI's certificate → 41974.
    let e = sql_h.connect(MI_HOST, mi_addr).unwrap_err();
    assert_eq!(e.number, 41974, "{e}");
    assert!(e.message.contains(MI_HOST), "{e}");
    assert_eq!(sql_h.errors().last().map(|x| x.number), Some(41974));

    // sp_get_endpoint_certificate on the MI → CREATE CERTIFICATE [<MI FQDN>] FROM BINARY on SQL Server.
    let mi_der = mi.binary("-- Execute stored procedure on SQL Managed Instance to get public key of the instance certificate.\nEXEC sp_get_endpoint_certificate @endpoint_type = 4");
    sql.ok(&format!(
        "USE MASTER\nCREATE CERTIFICATE [{MI_HOST}]\nFROM BINARY = 0x{}",
        hex(&mi_der)
    ));
    assert_eq!(
        sql.col("SELECT * FROM sys.certificates", "name"),
        ["Cert_sqlserver1_endpoint", MI_HOST]
    );

    // SQL Server's certificate is not on the MI yet → 41973, from both directions.
    let e = sql_h.connect(MI_HOST, mi_addr).unwrap_err();
    assert_eq!(e.number, 41973, "{e}");
    assert!(
        e.message.contains("Cert_sqlserver1_endpoint"),
        "names the certificate: {e}"
    );
    let e = mi_h.connect(SQL_HOST, sql_addr).unwrap_err();
    assert_eq!(e.number, 41973, "{e}");

    // CERTENCODED on SQL Server → import on the MI (the REST API's hybridCertificate does this).
    let sql_der = sql.binary(PUBLIC_KEY);
    mi.server
        .trust()
        .unwrap()
        .import_public(&mi.inst.master(), SQL_HOST, &sql_der)
        .unwrap();

    let c = sql_h.connect(MI_HOST, mi_addr).unwrap();
    assert_eq!(c.peer_name, MI_HOST);
    assert!(c.version >= 1);
    let c = mi_h.connect(SQL_HOST, sql_addr).unwrap();
    assert_eq!(c.peer_name, SQL_HOST);

    // DROP CERTIFICATE refuses while the endpoint uses it.
    assert_eq!(
        sql.error("DROP CERTIFICATE Cert_sqlserver1_endpoint")
            .number,
        15352
    );

    // An expired certificate: accepted at CREATE with a warning, refused when used, naming it and its expiry.
    let out =
        sql.ok("CREATE CERTIFICATE old_cert WITH SUBJECT = 'old', EXPIRY_DATE = '03/30/2025'");
    assert!(out.iter().any(|o| matches!(o, Out::Info(..))));
    sql.ok("ALTER ENDPOINT database_mirroring_endpoint FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE old_cert)");
    let e = sql_h.connect(MI_HOST, mi_addr).unwrap_err();
    assert!(
        e.message.contains("old_cert") && e.message.contains("2025-03-30"),
        "{e}"
    );
    let e = mi_h.connect(SQL_HOST, sql_addr).unwrap_err();
    assert!(
        e.message.contains("old_cert") && e.message.contains("2025-03-30"),
        "{e}"
    );

    // Back to the good certificate, live.
    sql.ok("ALTER ENDPOINT database_mirroring_endpoint FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE Cert_sqlserver1_endpoint)");
    sql.ok("DROP CERTIFICATE old_cert");
    sql_h.connect(MI_HOST, mi_addr).unwrap();

    // ENCRYPTION = DISABLED against the managed instance's REQUIRED: refused, naming both settings.
    sql.ok(
        "ALTER ENDPOINT database_mirroring_endpoint FOR DATABASE_MIRRORING (ENCRYPTION = DISABLED)",
    );
    assert_eq!(
        sql.col(VIEW_ENDPOINTS, "encryption_algorithm_desc"),
        vec!["NONE"]
    );
    let e = mi_h.connect(SQL_HOST, sql_addr).unwrap_err();
    assert!(
        e.message.contains("DISABLED") && e.message.contains("REQUIRED"),
        "{e}"
    );
    sql.ok("ALTER ENDPOINT database_mirroring_endpoint FOR DATABASE_MIRRORING (ENCRYPTION = REQUIRED ALGORITHM AES)");
    mi_h.connect(SQL_HOST, sql_addr).unwrap();

    // Windows only: the endpoint refuses, saying why.
    sql.ok("ALTER ENDPOINT database_mirroring_endpoint FOR DATABASE_MIRRORING (AUTHENTICATION = WINDOWS NEGOTIATE)");
    let e = mi_h.connect(SQL_HOST, sql_addr).unwrap_err();
    assert!(e.message.contains("Windows authentication only"), "{e}");

    // STOPPED: the peer cannot reach it.
    sql.ok("ALTER ENDPOINT database_mirroring_endpoint STATE = STOPPED");
    let e = mi_h.connect(SQL_HOST, sql_addr).unwrap_err();
    assert_eq!(e.number, 1418, "{e}");
}

/// The link runs over the endpoint CREATE ENDPOINT started: the managed instance (its endpoint started by
/// `start_managed`, as `milink serve --managed` does) joins the seed's distributed group and receives the rows.
#[test]
fn link_runs_over_the_tsql_endpoint() {
    // The SQL Server-role instance's name as the managed instance reaches it (the ENDPOINT_URL host).
    let mut sql = setup("sqlserver1", "127.0.0.1", false);
    let mut mi = setup("managedinstance1", MI_HOST, true);
    endpoints::start_managed(&mi.server, "127.0.0.1:0".parse().unwrap()).unwrap();
    sql.ok(MASTER_KEY);
    sql.ok(&seed_certificate("03/30/2035"));
    let port = free_port();
    sql.ok(&seed_create_endpoint(port, "Cert_sqlserver1_endpoint"));
    let mi_der = mi.binary("EXEC sp_get_endpoint_certificate @endpoint_type = 4");
    sql.ok(&format!(
        "USE MASTER\nCREATE CERTIFICATE [{MI_HOST}]\nFROM BINARY = 0x{}",
        hex(&mi_der)
    ));
    let sql_der = sql.binary(PUBLIC_KEY);
    mi.server
        .trust()
        .unwrap()
        .import_public(&mi.inst.master(), "127.0.0.1", &sql_der)
        .unwrap();

    sql.ok("CREATE DATABASE SalesDb");
    sql.ok("USE SalesDb; CREATE TABLE orders(id INT IDENTITY(1,1) PRIMARY KEY, amount DECIMAL(10,2) NOT NULL)");
    for i in 0..20 {
        sql.ok(&format!(
            "USE SalesDb; INSERT INTO orders(amount) VALUES ({i}.25)"
        ));
    }
    let d = sql.dir.path().display().to_string();
    sql.ok(&format!(
        "BACKUP DATABASE SalesDb TO DISK = '{d}/full.bak' WITH INIT"
    ));
    sql.ok(&format!(
        "USE MASTER
        CREATE AVAILABILITY GROUP [AG_SalesDb]
        WITH (CLUSTER_TYPE = NONE)
            FOR database [SalesDb]
            REPLICA ON
                'sqlserver1' WITH
                (ENDPOINT_URL = 'TCP://127.0.0.1:{port}', AVAILABILITY_MODE = SYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC);"
    ));
    sql.ok(&format!(
        "CREATE AVAILABILITY GROUP [DAG_SalesDb] WITH (DISTRIBUTED) AVAILABILITY GROUP ON
        N'AG_SalesDb' WITH (LISTENER_URL = 'TCP://127.0.0.1:{port}', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC, SESSION_TIMEOUT = 20),
        N'managedinstance1' WITH (LISTENER_URL = 'tcp://{MI_HOST}:5022;Server=[managedinstance1]', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC);"
    ));

    // What the management API's PUT distributedAvailabilityGroups does, with the endpoint's runtime and identity.
    let mi_h = endpoints::state(&mi.server).unwrap();
    sqlexec::ags::join_distributed_group(
        &mi.server,
        mi_h.handle(),
        mi_h.settings().expect("the managed endpoint runs"),
        "DAG_SalesDb",
        "AG_SalesDb",
        "managedinstance1",
        "SalesDb",
        &format!("TCP://127.0.0.1:{port}"),
    )
    .unwrap();
    sql.ok("USE SalesDb; INSERT INTO orders(amount) VALUES (999.99)");
    let q = "USE SalesDb; SELECT count(*) AS n, sum(amount) AS total FROM orders";
    let want = sql.rows(q).1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = mi.run(q);
        let got: Vec<Vec<Value>> = out
            .into_iter()
            .filter_map(|o| if let Out::Row(r) = o { Some(r) } else { None })
            .collect();
        if got == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "MI has {got:?}, primary {want:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
