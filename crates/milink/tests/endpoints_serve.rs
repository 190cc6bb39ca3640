//! The seed's trust set-up between two real `milink serve` processes, driven by `milink sql -i script.sql`:
//! a SQL Server-role instance (master key, certificate, CREATE ENDPOINT) and a managed instance
//! (`--managed --mirror-listen`, endpoint started without T-SQL, `sp_get_endpoint_certificate`). After the
//! exchange, mirroring connections between the two processes' endpoints succeed; before it, they are refused
//! with 41973. A restart brings the SQL Server-role endpoint back.

use hadr::transport::{self, ConnectErrorLog, EndpointSettings, IdentitySource, Role, StoreTrust};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Endp0int!Passw0rd";
const SQL_HOST: &str = "sqlserver1.domain.com";
const MI_HOST: &str = "managedinstance1.6d710bcf372b.database.windows.net";

struct Serve {
    child: Child,
    addr: SocketAddr,
    data: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn up(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Starts `milink serve`; `mirror` = the managed instance's --mirror-listen.
fn serve(data: &Path, name: &str, host: &str, mirror: Option<SocketAddr>) -> Serve {
    for _ in 0..5 {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_milink"));
        cmd.args([
            "serve",
            "--name",
            name,
            "--host",
            host,
            "--listen",
            &addr.to_string(),
            "--data-dir",
        ])
        .arg(data);
        if let Some(m) = mirror {
            cmd.args(["--managed", "--mirror-listen", &m.to_string()]);
        }
        let mut child = cmd
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
            if up(addr) && mirror.is_none_or(up) {
                return Serve {
                    child,
                    addr,
                    data: data.to_path_buf(),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("milink serve did not start");
}

/// `milink sql -b -i file`: the script as a DBA would run it (GO-separated batches).
fn script(s: &Serve, dir: &Path, text: &str) -> String {
    let f = dir.join(format!("script-{}.sql", free_port()));
    std::fs::write(&f, text).unwrap();
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
            "-i",
        ])
        .arg(&f)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn binary_in(out: &str) -> Vec<u8> {
    let tok = out
        .split_whitespace()
        .find(|t| t.starts_with("0x") && t.len() > 100)
        .unwrap_or_else(|| panic!("no 0x… value in {out}"));
    trust::parse_binary_literal(tok).unwrap()
}

fn settings(data: &Path, local: &str, role: Role, identity: IdentitySource) -> EndpointSettings {
    let db = data.join("master.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let store = Arc::new(trust::TrustStore::open(&c, data).unwrap());
    EndpointSettings::new(
        local,
        role,
        Arc::new(StoreTrust {
            db_path: db,
            store,
            identity,
        }),
    )
}

const SEED_CERT: &str = "-- Create MASTER KEY encryption password
-- Keep the password confidential and in a secure place.
USE MASTER
CREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!MasterKey#2026'
GO

-- Create the SQL Server certificate for SQL Managed Instance link
USE MASTER
GO

DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
DECLARE @sqlserver_certificate_subject NVARCHAR(MAX) = N'Certificate for ' + @sqlserver_certificate_name
DECLARE @create_sqlserver_certificate_command NVARCHAR(MAX) = N'CREATE CERTIFICATE [' + @sqlserver_certificate_name + '] WITH SUBJECT = ''' + @sqlserver_certificate_subject + ''', EXPIRY_DATE = ''03/30/2035'''
EXEC sp_executesql @stmt = @create_sqlserver_certificate_command
GO
";

const PUBLIC_KEY: &str = "-- Show the public key of the generated SQL Server certificate
USE MASTER
GO
DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
DECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(@sqlserver_certificate_name));
SELECT @PUBLICKEYENC AS PublicKeyEncoded;
";

const VIEW: &str = "-- View database mirroring endpoints on SQL Server
SELECT
    name, type_desc, state_desc, role_desc,
    connection_auth_desc, is_encryption_enabled, encryption_algorithm_desc
FROM 
    sys.database_mirroring_endpoints
";

#[test]
fn seed_trust_between_two_serve_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mirror: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mi = serve(
        &dir.path().join("mi"),
        "managedinstance1",
        MI_HOST,
        Some(mirror),
    );
    let sql_data = dir.path().join("sql");
    let sql = serve(&sql_data, "sqlserver1", SQL_HOST, None);

    script(&sql, dir.path(), SEED_CERT);
    let certs = script(
        &sql,
        dir.path(),
        "USE MASTER\nGO\nSELECT * FROM sys.certificates\n",
    );
    assert!(
        certs.contains("Cert_sqlserver1_endpoint") && certs.contains("ENCRYPTED_BY_MASTER_KEY"),
        "{certs}"
    );

    // The managed instance's endpoint certificate, imported on SQL Server under the MI's FQDN.
    let out = script(&mi, dir.path(), "-- Execute stored procedure on SQL Managed Instance to get public key of the instance certificate.\nEXEC sp_get_endpoint_certificate @endpoint_type = 4\n");
    assert!(out.contains("EndpointCertificatePublicKey"), "{out}");
    let mi_der = binary_in(&out);
    let hex: String = mi_der.iter().map(|b| format!("{b:02X}")).collect();
    script(
        &sql,
        dir.path(),
        &format!("USE MASTER\nCREATE CERTIFICATE [{MI_HOST}]\nFROM BINARY = 0x{hex}\n"),
    );

    let empty = script(&sql, dir.path(), "-- View database mirroring endpoints on SQL Server\nSELECT * FROM sys.database_mirroring_endpoints WHERE type_desc = 'DATABASE_MIRRORING'\n");
    assert!(
        empty.contains("connection_auth_desc") && empty.contains("(0 rows affected)"),
        "{empty}"
    );
    let port = free_port();
    script(
        &sql,
        dir.path(),
        &format!(
            "-- Create connection endpoint listener on SQL Server
USE MASTER
CREATE ENDPOINT database_mirroring_endpoint
    STATE=STARTED   
    AS TCP (LISTENER_PORT={port}, LISTENER_IP = ALL)
    FOR DATABASE_MIRRORING (
        ROLE=ALL,
        AUTHENTICATION = CERTIFICATE Cert_sqlserver1_endpoint,
        ENCRYPTION = REQUIRED ALGORITHM AES
    )  
GO
"
        ),
    );
    let view = script(&sql, dir.path(), VIEW);
    let row = view.lines().nth(2).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "database_mirroring_endpoint",
            "DATABASE_MIRRORING",
            "STARTED",
            "ALL",
            "CERTIFICATE",
            "1",
            "AES"
        ],
        "{view}"
    );
    let sql_ep: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(up(sql_ep));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let sql_side = settings(
        &sql_data,
        SQL_HOST,
        Role::SqlServer,
        IdentitySource::Certificate("Cert_sqlserver1_endpoint".into()),
    );
    let mi_side = settings(
        &mi.data,
        MI_HOST,
        Role::ManagedInstance,
        IdentitySource::InstanceEndpoint {
            fqdn: MI_HOST.into(),
        },
    );
    let errors = ConnectErrorLog::default();

    // SQL Server's certificate is not on the managed instance yet.
    let e = rt
        .block_on(transport::connect(&sql_side, &errors, MI_HOST, mirror))
        .unwrap_err();
    assert_eq!(e.number, 41973, "{e}");

    // CERTENCODED on SQL Server → the managed instance (what the REST API's hybridCertificate does).
    let sql_der = binary_in(&script(&sql, dir.path(), PUBLIC_KEY));
    {
        let c = rusqlite::Connection::open(mi.data.join("master.db")).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        trust::TrustStore::open(&c, &mi.data)
            .unwrap()
            .import_public(&c, SQL_HOST, &sql_der)
            .unwrap();
    }
    let c = rt
        .block_on(transport::connect(&sql_side, &errors, MI_HOST, mirror))
        .unwrap();
    assert_eq!(c.peer_name, MI_HOST);
    let c = rt
        .block_on(transport::connect(&mi_side, &errors, SQL_HOST, sql_ep))
        .unwrap();
    assert_eq!(c.peer_name, SQL_HOST);
    drop(c);

    // The endpoint lives in master: a restarted instance listens again without any T-SQL.
    drop(sql);
    assert!(!up(sql_ep));
    let sql = serve(&sql_data, "sqlserver1", SQL_HOST, None);
    let t = Instant::now();
    while !up(sql_ep) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(transport::connect(&mi_side, &errors, SQL_HOST, sql_ep))
        .unwrap();
    assert!(script(&sql, dir.path(), VIEW).contains("STARTED"));
    drop(mi);
}
